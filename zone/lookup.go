package zone

import (
	"strings"
	"unsafe"

	"github.com/miekg/dns"
)

// maxChain is the number of CNAMEs (stored or synthesized from a DNAME) a
// lookup follows.
const maxChain = 12

// Lookup answers qname/qtype (class IN) per RFC 1034 section 4.3.2 into r,
// which it Resets first. It neither writes shared state nor logs, and r's
// slices are its own (stored RRs are appended, never aliased).
//
//   - The zone is the longest match among the served zones, so a child zone
//     served here wins over its parent's delegation. A DS query for the apex
//     of a served child is answered from the served parent when the parent
//     delegates it (the DS lives on the parent side of the cut).
//   - A name at or below a zone cut (NS at a non-apex node) gets a referral:
//     the NS RRset in Ns and the A/AAAA of NS targets at or below the cut
//     (in-domain glue, RFC 9471) in Extra. DS at the cut itself is answered
//     from this zone, with NODATA if it has none.
//   - A name below a DNAME gets the DNAME and a synthesized CNAME with the
//     DNAME's TTL (RFC 6672 section 3.2), or YXDomain if the new name is too
//     long.
//   - A CNAME is answered and its target looked up again in every served zone,
//     unless qtype is CNAME (or ANY); at most 12 CNAMEs are followed and a
//     loop stops the chain, both with Success and the chain so far.
//   - A name that does not exist is answered from the wildcard
//     "*.<closest encloser>" if there is one (RFC 4592 section 3.3.1;
//     empty non-terminals are encloses too, so they block wildcards), with
//     copies of its RRs renamed to qname; else NameError.
//   - NameError and NoData carry the zone's negative SOA (Zone.NegativeSOA)
//     in Ns. Positive answers carry nothing in Ns (as NSD and Knot with
//     minimal responses).
//   - For qtype ANY, Answer holds every RRset at the node (the server decides
//     what to send, RFC 8482).
//   - Extra holds the A and AAAA RRsets of MX, NS and SRV targets in Answer
//     that exist in the same zone as the record naming them and are not
//     below a zone cut or DNAME.
func (s *Snapshot) Lookup(qname string, qtype uint16, r *Response) {
	r.Reset()
	name := r.canon(qname)
	z := s.find(name)
	if z == nil {
		r.Result = NotAuth
		return
	}
	for links := 0; ; {
		if qtype == dns.TypeDS && name == z.Origin && name != "." {
			// DS lives on the parent side of the cut.
			if p := s.find(parentName(name)); p != nil {
				if n := p.lookup(name); n != nil && n.flags&flagCut != 0 {
					z = p
				}
			}
		}
		if r.Zone == nil {
			r.Zone = z
		}
		target, follow := z.answer(name, qtype, r)
		// A CNAME asked for is the answer: a CNAME synthesized from a DNAME
		// is not followed either (RFC 6672 section 3.2, as NSD and Knot).
		if !follow || qtype == dns.TypeCNAME {
			break
		}
		if links++; links >= maxChain {
			break
		}
		// r.canon overwrites the buffer name may point into: name is
		// not used after this.
		name = r.canon(target)
		if r.inChain(name) {
			break
		}
		if z = s.find(name); z == nil {
			break
		}
	}
	s.additional(r)
}

// canon returns name in canonical form (see canonicalName). A name that is
// not already canonical is lower-cased into r.buf and the result points
// into it: it is valid until the next call to canon and must never be
// stored (strings.Clone it).
func (r *Response) canon(name string) string {
	if name == "" {
		return "."
	}
	upper := false
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '\\' || c >= 0x80 || c < ' ' {
			return canonicalName(name)
		}
		if 'A' <= c && c <= 'Z' {
			upper = true
		}
	}
	fq := name[len(name)-1] == '.'
	if !upper && fq {
		return name
	}
	n := len(name)
	if !fq {
		n++
	}
	if n > len(r.buf) {
		return canonicalName(name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		r.buf[i] = c
	}
	if !fq {
		r.buf[n-1] = '.'
	}
	return unsafe.String(&r.buf[0], n)
}

// inChain reports whether the answer already holds a CNAME owned by name.
func (r *Response) inChain(name string) bool {
	for _, rr := range r.Answer {
		if h := rr.Header(); h.Rrtype == dns.TypeCNAME && h.Name == name {
			return true
		}
	}
	return false
}

// answer looks name up in z, whose origin name is at or below. When it
// adds a CNAME to follow it returns the target and true.
func (z *Zone) answer(name string, qtype uint16, r *Response) (string, bool) {
	// Walk from name up to the apex: the first node found is the closest
	// encloser; the highest cut or DNAME strictly above name (or a cut at
	// name, except for DS) stops the lookup.
	var ce, stop *node
	ceOff := 0
	apexOff := len(name) - len(z.Origin)
	for off := 0; ; {
		if n := z.lookup(name[off:]); n != nil {
			if ce == nil {
				ce, ceOff = n, off
			}
			if n.flags&flagDNAME != 0 && off > 0 {
				stop = n
			}
			if n.flags&flagCut != 0 && (off > 0 || qtype != dns.TypeDS) {
				stop = n
			}
		}
		if off >= apexOff {
			break
		}
		next, end := dns.NextLabel(name, off)
		if end || next > apexOff {
			next = apexOff
		}
		off = next
	}
	switch {
	case stop != nil && stop.flags&flagCut != 0:
		z.referral(stop, r)
		return "", false
	case stop != nil:
		return z.dname(stop, name, r)
	case ceOff == 0:
		return z.node(ce, name, qtype, false, r)
	}
	// RFC 4592 section 3.3.1: the source of synthesis is "*." + the
	// closest encloser. The name is built on the stack, and looked up
	// through a string view of it, which lookup does not keep.
	var kb [258]byte
	key := append(kb[:0], '*', '.')
	if ceName := z.name(ce); ceName != "." {
		key = append(key, ceName...)
	}
	if w := z.lookup(unsafe.String(&key[0], len(key))); w != nil {
		return z.node(w, name, qtype, true, r)
	}
	r.Result = NameError
	r.Ns = append(r.Ns, z.neg)
	return "", false
}

// node answers from n, the node of name or (wild) the wildcard that
// matches it.
func (z *Zone) node(n *node, name string, qtype uint16, wild bool, r *Response) (string, bool) {
	owner := ""
	if wild && (!n.empty() || qtype == dns.TypeANY) && (qtype == dns.TypeANY || z.set(n, qtype) != nil || n.flags&flagCNAME != 0) {
		// Synthesized RRs are named qname; a wildcard NODATA names
		// nothing (and allocates nothing).
		owner = strings.Clone(name)
	}
	if qtype == dns.TypeANY && !n.empty() {
		sets := z.setsOf(n)
		for i := range sets {
			r.Answer = z.appendSet(r.Answer, n, &sets[i], owner)
		}
		r.Result = Success
		return "", false
	}
	if set := z.set(n, qtype); set != nil {
		r.Answer = z.appendSet(r.Answer, n, set, owner)
		r.Result = Success
		return "", false
	}
	if n.flags&flagCNAME != 0 {
		k := len(r.Answer)
		r.Answer = z.appendSet(r.Answer, n, z.set(n, dns.TypeCNAME), owner)
		r.Result = Success
		if len(r.Answer) > k {
			if c, ok := r.Answer[k].(*dns.CNAME); ok {
				return c.Target, true
			}
		}
		return "", false
	}
	r.Result = NoData
	r.Ns = append(r.Ns, z.neg)
	return "", false
}

// referral answers with the delegation at cut: its NS RRset and in-domain
// glue (addresses of NS targets at or below the cut; RFC 9471).
//
// Both are stored as objects (see records.go): a referral does not
// allocate.
func (z *Zone) referral(cut *node, r *Response) {
	k := len(r.Ns)
	r.Ns = z.appendType(r.Ns, cut, dns.TypeNS)
	r.Result = Delegation
	for _, rr := range r.Ns[k:] {
		n, ok := rr.(*dns.NS)
		if !ok {
			continue
		}
		t := r.canon(n.Ns)
		if !isSubdomain(t, z.name(cut)) {
			continue
		}
		if g := z.lookup(t); g != nil {
			r.Extra = z.appendType(r.Extra, g, dns.TypeA)
			r.Extra = z.appendType(r.Extra, g, dns.TypeAAAA)
		}
	}
}

// dname answers name, which is below the DNAME at n (RFC 6672 section 3.2):
// the DNAME, then a CNAME from name to the substituted name with the
// DNAME's TTL, which the caller follows.
func (z *Zone) dname(n *node, name string, r *Response) (string, bool) {
	k := len(r.Answer)
	r.Answer = z.appendType(r.Answer, n, dns.TypeDNAME)
	var d *dns.DNAME
	if len(r.Answer) > k {
		d, _ = r.Answer[k].(*dns.DNAME)
	}
	if d == nil {
		clear(r.Answer[k:])
		r.Answer = r.Answer[:k]
		return "", false
	}
	prefix := name // the labels of name above the DNAME owner, with a dot
	if owner := z.name(n); owner != "." {
		prefix = name[:len(name)-len(owner)]
	}
	target := prefix + d.Target
	if d.Target == "." {
		target = prefix
	}
	if !fits(target) {
		r.Result = YXDomain
		return "", false
	}
	r.Answer = append(r.Answer, &dns.CNAME{
		Hdr:    dns.RR_Header{Name: strings.Clone(name), Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: d.Hdr.Ttl},
		Target: target,
	})
	r.Result = Success
	return target, true
}

// fits reports whether name is a valid domain name of at most 255 octets
// on the wire.
func fits(name string) bool {
	var buf [256]byte
	_, err := dns.PackDomainName(name, buf[:], 0, nil, false)
	return err == nil
}

// additionalTarget returns the name whose A and AAAA records go in the
// additional section for rr (RFC 1035 3.3.9, RFC 2782: MX, NS and SRV
// targets), and whether rr has one.
func additionalTarget(rr dns.RR) (string, bool) {
	switch rr := rr.(type) {
	case *dns.MX:
		return rr.Mx, true
	case *dns.NS:
		return rr.Ns, true
	case *dns.SRV:
		return rr.Target, true
	}
	return "", false
}

// additional adds the A and AAAA RRsets of MX, NS and SRV targets in the
// answer section, when they are authoritative data of a served zone.
func (s *Snapshot) additional(r *Response) {
	for i, n := 0, len(r.Answer); i < n; i++ {
		target, ok := additionalTarget(r.Answer[i])
		if !ok {
			continue
		}
		// Only from the zone the record belongs to, as NSD and Knot do:
		// data of another zone served here is not additional data here.
		z := s.find(r.Answer[i].Header().Name)
		if z == nil {
			continue
		}
		t := r.canon(target)
		if !isSubdomain(t, z.Origin) || s.find(t) != z {
			continue
		}
		n := z.lookup(t)
		if n == nil || n.flags&flagCut != 0 || z.occluded(t) {
			continue
		}
		if inExtra(r.Extra, z.name(n)) {
			continue
		}
		r.Extra = z.appendType(r.Extra, n, dns.TypeA)
		r.Extra = z.appendType(r.Extra, n, dns.TypeAAAA)
	}
}

func inExtra(extra []dns.RR, owner string) bool {
	for _, rr := range extra {
		if rr.Header().Name == owner {
			return true
		}
	}
	return false
}

// occluded reports whether name (in z) is below a zone cut or a DNAME.
func (z *Zone) occluded(name string) bool {
	apexOff := len(name) - len(z.Origin)
	for off := 0; off < apexOff; {
		next, end := dns.NextLabel(name, off)
		if end || next > apexOff {
			next = apexOff
		}
		off = next
		if n := z.lookup(name[off:]); n != nil && (n.flags&flagDNAME != 0 || (n.flags&flagCut != 0 && off < apexOff)) {
			return true
		}
	}
	return false
}
