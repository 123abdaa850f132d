package xfr

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakePrimary is an in-process primary over TCP on 127.0.0.1: SOA queries,
// AXFR, IXFR from the versions it was given, and TSIG with one key. Its
// knobs make it misbehave the ways the secondary must survive.
type fakePrimary struct {
	t    testing.TB
	addr netip.AddrPort
	srv  *dns.Server

	mu       sync.Mutex
	zones    map[string][]version // by origin, oldest first
	key      string               // canonical key name required of clients; "" for none
	down     bool                 // answer REFUSED to everything
	refuse   bool                 // answer IXFR with REFUSED
	asAXFR   bool                 // answer IXFR with the whole zone
	badDelta bool                 // answer IXFR with a delta that deletes a missing record
	broken   []dns.RR             // when set, AXFR sends these records instead
	unsigned bool                 // never sign answers
	seen     []string             // "QTYPE zone signed|unsigned" per request
}

type version struct {
	serial uint32
	rrs    []dns.RR // SOA first
}

const testKeyName, testSecret = "xfr-key.", "a2V5IGZvciB0aGUgYW55bnMgeGZyIHRlc3RzIQ=="

func newFakePrimary(t testing.TB, key string) *fakePrimary {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &fakePrimary{t: t, zones: make(map[string][]version), key: key,
		addr: netip.MustParseAddrPort(ln.Addr().String())}
	started := make(chan struct{})
	p.srv = &dns.Server{Listener: ln, Net: "tcp", Handler: p,
		TsigSecret:        map[string]string{testKeyName: testSecret},
		NotifyStartedFunc: func() { close(started) }}
	go p.srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { p.srv.Shutdown() })
	return p
}

// set adds a version of a zone given in zone-file lines, SOA first.
func (p *fakePrimary) set(lines ...string) {
	p.t.Helper()
	v := version{rrs: rrs(p.t, lines...)}
	soa := v.rrs[0].(*dns.SOA)
	v.serial = soa.Serial
	origin := dns.CanonicalName(soa.Hdr.Name)
	p.mu.Lock()
	p.zones[origin] = append(p.zones[origin], v)
	p.mu.Unlock()
}

func (p *fakePrimary) with(f func(p *fakePrimary)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

// requests returns the requests seen so far.
func (p *fakePrimary) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.seen)
}

func (p *fakePrimary) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	if len(r.Question) != 1 {
		return
	}
	q := r.Question[0]
	origin := dns.CanonicalName(q.Name)
	ts := r.IsTsig()
	signed := ts != nil && w.TsigStatus() == nil
	p.mu.Lock()
	unsigned := p.unsigned
	p.seen = append(p.seen, dns.TypeToString[q.Qtype]+" "+origin+map[bool]string{true: " signed", false: " unsigned"}[signed])
	vs := p.zones[origin]
	down, refuse, asAXFR, badDelta, broken := p.down, p.refuse, p.asAXFR, p.badDelta, p.broken
	wantKey := p.key
	p.mu.Unlock()

	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	sign := func() {
		if signed && !unsigned {
			m.SetTsig(ts.Hdr.Name, ts.Algorithm, 300, time.Now().Unix())
		}
	}
	fail := func(rcode int) {
		m.Authoritative = false
		m.Rcode = rcode
		sign()
		w.WriteMsg(m)
	}
	switch {
	case wantKey != "" && (!signed || dns.CanonicalName(ts.Hdr.Name) != wantKey):
		m.Rcode = dns.RcodeNotAuth
		w.WriteMsg(m) // unsigned: the client cannot check it
		return
	case down:
		fail(dns.RcodeRefused)
		return
	case len(vs) == 0:
		fail(dns.RcodeNotAuth)
		return
	}
	cur := vs[len(vs)-1]
	switch q.Qtype {
	case dns.TypeSOA:
		m.Answer = []dns.RR{cur.rrs[0]}
		sign()
		w.WriteMsg(m)
	case dns.TypeAXFR:
		if broken != nil {
			p.out(w, r, broken)
			return
		}
		p.out(w, r, append(slices.Clone(cur.rrs), cur.rrs[0]))
	case dns.TypeIXFR:
		if refuse {
			fail(dns.RcodeRefused)
			return
		}
		have := r.Ns[0].(*dns.SOA).Serial
		if have == cur.serial {
			p.out(w, r, []dns.RR{cur.rrs[0]})
			return
		}
		from := slices.IndexFunc(vs, func(v version) bool { return v.serial == have })
		if asAXFR || from < 0 {
			p.out(w, r, append(slices.Clone(cur.rrs), cur.rrs[0]))
			return
		}
		out := []dns.RR{cur.rrs[0]}
		for i := from; i+1 < len(vs); i++ {
			del, add := diff(vs[i].rrs[1:], vs[i+1].rrs[1:])
			if badDelta {
				del = append(del, rr(p.t, "missing."+origin+" 300 IN A 192.0.2.254"))
			}
			out = append(out, vs[i].rrs[0])
			out = append(out, del...)
			out = append(out, vs[i+1].rrs[0])
			out = append(out, add...)
		}
		p.out(w, r, append(out, cur.rrs[0]))
	default:
		fail(dns.RcodeNotImplemented)
	}
}

// out sends rrs as a transfer, three records per message so that TSIG
// covers several messages.
func (p *fakePrimary) out(w dns.ResponseWriter, r *dns.Msg, rrs []dns.RR) {
	ch := make(chan *dns.Envelope)
	tr := new(dns.Transfer)
	done := make(chan error, 1)
	go func() { done <- tr.Out(w, r, ch) }()
	for chunk := range slices.Chunk(rrs, 3) {
		ch <- &dns.Envelope{RR: chunk}
	}
	close(ch)
	<-done
}

// diff returns the records of a missing from b and those of b missing
// from a.
func diff(a, b []dns.RR) (del, add []dns.RR) {
	in := func(x dns.RR, set []dns.RR) bool {
		return slices.ContainsFunc(set, func(y dns.RR) bool { return x.String() == y.String() })
	}
	for _, x := range a {
		if !in(x, b) {
			del = append(del, x)
		}
	}
	for _, x := range b {
		if !in(x, a) {
			add = append(add, x)
		}
	}
	return del, add
}

// zoneLines is a small zone: SOA with the given serial and expire, NS,
// and extra records.
func zoneLines(origin string, serial, expire uint32, extra ...string) []string {
	soa := origin + " 300 IN SOA ns." + origin + " host." + origin + " " + itoa(serial) + " 3600 600 " + itoa(expire) + " 60"
	return append([]string{soa, origin + " 300 IN NS ns." + origin, "ns." + origin + " 300 IN A 192.0.2.1"}, extra...)
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

// countPrefix returns how many requests begin with prefix.
func countPrefix(reqs []string, prefix string) int {
	n := 0
	for _, r := range reqs {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}
