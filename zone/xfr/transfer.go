package xfr

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// tsigKey is a configured key in miekg/dns form.
type tsigKey struct {
	name   string // canonical
	alg    string // dns.HmacSHA256 and so on
	secret string // base64
}

// fudge is the TSIG fudge (RFC 8945 section 10 recommends 300 seconds).
const fudge = 300

func (k *tsigKey) secrets() map[string]string {
	if k == nil {
		return nil
	}
	return map[string]string{k.name: k.secret}
}

// exchanger does SOA queries and transfers with one primary. All of it
// runs over TCP.
type exchanger struct {
	timeout time.Duration
}

// querySOA asks primary for the SOA of zone (RFC 1034 section 4.3.5) and
// returns it. A response that is not signed with key when key is set, not
// authoritative or holds no SOA for zone is an error.
func (x exchanger) querySOA(ctx context.Context, primary netip.AddrPort, zone string, key *tsigKey) (*dns.SOA, error) {
	m := new(dns.Msg)
	m.SetQuestion(zone, dns.TypeSOA)
	m.RecursionDesired = false
	if key != nil {
		m.SetTsig(key.name, key.alg, fudge, time.Now().Unix())
	}
	c := &dns.Client{Net: "tcp", Timeout: x.timeout, TsigSecret: key.secrets()}
	r, _, err := c.ExchangeContext(ctx, m, primary.String())
	if err != nil {
		return nil, fmt.Errorf("soa query: %w", err)
	}
	if key != nil && r.IsTsig() == nil {
		return nil, errors.New("soa query: response not signed")
	}
	if r.Rcode != dns.RcodeSuccess {
		return nil, fmt.Errorf("soa query: %s", dns.RcodeToString[r.Rcode])
	}
	for _, rr := range r.Answer {
		if soa, ok := rr.(*dns.SOA); ok && dns.CanonicalName(soa.Hdr.Name) == zone {
			if !r.Authoritative {
				return nil, errors.New("soa query: answer not authoritative")
			}
			return soa, nil
		}
	}
	return nil, errors.New("soa query: no SOA in the answer")
}

// transfer runs an AXFR, or an IXFR from cur when cur is not nil, and
// returns the records of the response, the TSIG records left out. Every
// message must be signed when key is set (dns.Transfer checks it).
func (x exchanger) transfer(ctx context.Context, primary netip.AddrPort, zone string, key *tsigKey, cur *dns.SOA) ([]dns.RR, error) {
	m := new(dns.Msg)
	what := "axfr"
	if cur != nil {
		what = "ixfr"
		m.SetIxfr(zone, cur.Serial, cur.Ns, cur.Mbox)
	} else {
		m.SetAxfr(zone)
	}
	m.RecursionDesired = false
	if key != nil {
		m.SetTsig(key.name, key.alg, fudge, time.Now().Unix())
	}
	d := net.Dialer{Timeout: x.timeout}
	conn, err := d.DialContext(ctx, "tcp", primary.String())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	// Closing the connection ends a transfer that ctx cancels.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	t := &dns.Transfer{
		Conn:         &dns.Conn{Conn: conn},
		DialTimeout:  x.timeout,
		ReadTimeout:  x.timeout,
		WriteTimeout: x.timeout,
		TsigSecret:   key.secrets(),
	}
	conn.SetWriteDeadline(time.Now().Add(x.timeout))
	env, err := t.In(m, primary.String())
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var rrs []dns.RR
	var terr error
	for e := range env { // drained to the end: In's goroutine closes it
		if e.Error != nil {
			terr = e.Error
			continue
		}
		rrs = append(rrs, e.RR...)
	}
	if terr != nil {
		if ctx.Err() != nil {
			terr = ctx.Err()
		}
		return nil, fmt.Errorf("%s: %w", what, terr)
	}
	if len(rrs) == 0 {
		return nil, fmt.Errorf("%s: empty response", what)
	}
	if soa, ok := rrs[0].(*dns.SOA); !ok || dns.CanonicalName(soa.Hdr.Name) != zone {
		return nil, fmt.Errorf("%s: response does not begin with the SOA of %s", what, zone)
	}
	return rrs, nil
}
