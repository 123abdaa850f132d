package zone

import (
	"strconv"

	"github.com/miekg/dns"
)

// Result is the outcome of a lookup.
type Result int

const (
	// Success: the answer section holds the data (possibly reached through a
	// CNAME/DNAME chain or a wildcard).
	Success Result = iota
	// NameError: NXDOMAIN; the SOA for negative caching is in Ns.
	NameError
	// NoData: NOERROR with no data of the type asked; the SOA is in Ns.
	NoData
	// Delegation: a referral; NS in Ns, glue in Extra, AA=0 unless Answer
	// holds records from a CNAME chain that led to the referral.
	Delegation
	// NotAuth: the name is in no served zone; the server answers REFUSED.
	NotAuth
	// YXDomain: a DNAME substitution produced a name longer than 255
	// octets; the server answers YXDOMAIN with the DNAME (and any CNAMEs
	// before it) in Answer (RFC 6672 section 2.2).
	YXDomain
)

var resultNames = [...]string{"Success", "NameError", "NoData", "Delegation", "NotAuth", "YXDomain"}

func (r Result) String() string {
	if r >= 0 && int(r) < len(resultNames) {
		return resultNames[r]
	}
	return "Result(" + strconv.Itoa(int(r)) + ")"
}

// Rcode returns the DNS response code for r.
func (r Result) Rcode() int {
	switch r {
	case NameError:
		return dns.RcodeNameError
	case NotAuth:
		return dns.RcodeRefused
	case YXDomain:
		return dns.RcodeYXDomain
	}
	return dns.RcodeSuccess
}

// Response is what a lookup fills in. It is meant to be reused (pooled) by
// the caller: Reset keeps the slices' capacity. The RRs it holds may be the
// stored, shared ones: callers must not modify them (copy one with dns.Copy
// first). The slices themselves belong to the Response: Lookup appends to
// them and never hands out a stored slice, so a caller may append too.
type Response struct {
	Answer, Ns, Extra []dns.RR
	Result            Result
	// Zone is the zone that answered the query name (the first zone in a
	// CNAME chain); nil when Result is NotAuth.
	Zone *Zone

	// buf holds the lower-cased name being looked up, so that a lookup
	// of a mixed-case name does not allocate. See Response.canon.
	buf [256]byte
}

// Reset empties r for reuse, keeping capacity and clearing pointers.
func (r *Response) Reset() {
	clear(r.Answer)
	clear(r.Ns)
	clear(r.Extra)
	r.Answer, r.Ns, r.Extra = r.Answer[:0], r.Ns[:0], r.Extra[:0]
	r.Result = Success
	r.Zone = nil
}

// Authoritative reports whether the response carries AA=1: every result but
// a Delegation with an empty answer section, and NotAuth (REFUSED).
func (r *Response) Authoritative() bool {
	switch r.Result {
	case NotAuth:
		return false
	case Delegation:
		return len(r.Answer) > 0
	}
	return true
}
