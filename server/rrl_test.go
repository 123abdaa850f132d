package server

import (
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeClock is a clock for RRL tests: it moves only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// rrlServer returns a server with RRL at rps responses a second on a fake
// clock.
func rrlServer(t testing.TB, rrl RRLConfig) (*Server, *fakeClock) {
	t.Helper()
	cfg := testConfig()
	cfg.RRL = rrl
	s := newServer(t, cfg, nil)
	clk := &fakeClock{t: time.Unix(1_000_000, 0)}
	base := clk.t
	s.rrl.elapsed = func() int64 { return int64(clk.t.Sub(base)) }
	return s, clk
}

// outcome of one query under RRL.
type outcome int

const (
	pass outcome = iota
	drop
	slip
)

func (o outcome) String() string { return [...]string{"pass", "drop", "slip"}[o] }

// ask sends m from client over t and classifies what came back; a slip is
// checked to be TC=1 with the question and nothing else.
func ask(t *testing.T, s *Server, client string, m *dns.Msg, tr Transport) outcome {
	t.Helper()
	req := pack(t, m)
	out, ok := s.RespondFrom(req, make([]byte, 65535), tr, netip.MustParseAddr(client))
	if !ok {
		return drop
	}
	r := unpack(t, out)
	if r.Id != m.Id || !r.Response {
		t.Fatalf("response ID %d QR=%v", r.Id, r.Response)
	}
	if !r.Truncated {
		return pass
	}
	if len(r.Answer)+len(r.Ns)+len(r.Extra) != 0 || r.Rcode != dns.RcodeSuccess || r.Authoritative {
		t.Fatalf("slip with records, rcode %s or AA: %v", dns.RcodeToString[r.Rcode], r)
	}
	if len(m.Question) == 1 && (len(r.Question) != 1 || r.Question[0] != m.Question[0]) {
		t.Fatalf("slip question %v, want %v", r.Question, m.Question)
	}
	return slip
}

// step is one query of an RRL scenario: after advancing the clock by
// after, send n copies of q from client over tr and expect want for each
// (or the pattern of wants, repeated).
type step struct {
	after  time.Duration
	client string
	q      *dns.Msg
	tr     Transport
	n      int
	want   []outcome
}

func TestRRLAccounting(t *testing.T) {
	hit := func() *dns.Msg { return withEDNS(question("host1.example.com.", dns.TypeA), 1232, false) }
	hitAAAA := func() *dns.Msg { return question("host1.example.com.", dns.TypeAAAA) }
	www := func() *dns.Msg { return question("www.example.com.", dns.TypeA) }
	nx := func(name string) *dns.Msg { return question(name+".example.com.", dns.TypeA) }
	ref := func(name string) *dns.Msg { return question(name+".sub.example.com.", dns.TypeA) }
	refused := func(name string) *dns.Msg { return question(name+".invalid.", dns.TypeA) }
	five := []outcome{pass}
	limited := []outcome{drop, slip} // slip 2: every second limited response slips

	cases := []struct {
		name  string
		rrl   RRLConfig
		steps []step
	}{
		{"burst then limit, slip 2", RRLConfig{ResponsesPerSecond: 5}, []step{
			{client: "192.0.2.1", q: hit(), n: 5, want: five},
			{client: "192.0.2.1", q: hit(), n: 6, want: limited},
		}},
		{"one account per /24", RRLConfig{ResponsesPerSecond: 5}, []step{
			{client: "192.0.2.1", q: hit(), n: 5, want: five},
			{client: "192.0.2.200", q: hit(), n: 2, want: limited},
			{client: "192.0.3.1", q: hit(), n: 5, want: five}, // another /24
		}},
		{"per qname and qtype", RRLConfig{ResponsesPerSecond: 5}, []step{
			{client: "192.0.2.1", q: hit(), n: 5, want: five},
			{client: "192.0.2.1", q: hit(), n: 1, want: []outcome{drop}},
			{client: "192.0.2.1", q: www(), n: 5, want: five},
			{client: "192.0.2.1", q: hitAAAA(), n: 5, want: five},
		}},
		{"qname case does not matter", RRLConfig{ResponsesPerSecond: 2}, []step{
			{client: "192.0.2.1", q: question("host1.example.com.", dns.TypeA), n: 1, want: five},
			{client: "192.0.2.1", q: question("HOST1.example.COM.", dns.TypeA), n: 1, want: five},
			{client: "192.0.2.1", q: question("HoSt1.ExAmPlE.cOm.", dns.TypeA), n: 1, want: []outcome{drop}},
		}},
		{"NXDOMAIN per zone", RRLConfig{ResponsesPerSecond: 3}, []step{
			{client: "192.0.2.1", q: nx("a"), n: 1, want: five},
			{client: "192.0.2.1", q: nx("b"), n: 1, want: five},
			{client: "192.0.2.1", q: nx("c"), n: 1, want: five},
			{client: "192.0.2.1", q: nx("d"), n: 2, want: limited},
			{client: "192.0.2.1", q: question("nope.example.net.", dns.TypeA), n: 3, want: five},
		}},
		{"referrals per delegation", RRLConfig{ResponsesPerSecond: 2}, []step{
			{client: "192.0.2.1", q: ref("a"), n: 1, want: five},
			{client: "192.0.2.1", q: ref("b"), n: 1, want: five},
			{client: "192.0.2.1", q: ref("c"), n: 1, want: []outcome{drop}},
		}},
		{"errors per client prefix", RRLConfig{ResponsesPerSecond: 2}, []step{
			{client: "192.0.2.1", q: refused("a"), n: 1, want: five},
			{client: "192.0.2.1", q: refused("b"), n: 1, want: five},
			{client: "192.0.2.1", q: func() *dns.Msg { m := hit(); m.Opcode = dns.OpcodeNotify; return m }(), n: 2, want: limited},
			{client: "192.0.2.1", q: hit(), n: 2, want: five}, // answers are another account
		}},
		{"refill at the rate", RRLConfig{ResponsesPerSecond: 5, Window: 2 * time.Second}, []step{
			{client: "192.0.2.1", q: hit(), n: 5, want: five},
			{client: "192.0.2.1", q: hit(), n: 5, want: limited},                                        // 5 of debt: 1s to repay
			{after: 999 * time.Millisecond, client: "192.0.2.1", q: hit(), n: 1, want: []outcome{slip}}, // 6th limited
			{after: 600 * time.Millisecond, client: "192.0.2.1", q: hit(), n: 1, want: five},            // the limited ones are debited too
		}},
		{"debt bounded by the window", RRLConfig{ResponsesPerSecond: 5, Window: 2 * time.Second, Slip: -1}, []step{
			{client: "192.0.2.1", q: hit(), n: 5, want: five},
			{client: "192.0.2.1", q: hit(), n: 1000, want: []outcome{drop}},
			// The floor is 2s of debt: repaid 2s after the flood, then
			// one second of credit.
			{after: 2*time.Second + 200*time.Millisecond, client: "192.0.2.1", q: hit(), n: 1, want: five},
		}},
		{"slip 1 slips all", RRLConfig{ResponsesPerSecond: 1, Slip: 1}, []step{
			{client: "192.0.2.1", q: hit(), n: 1, want: five},
			{client: "192.0.2.1", q: hit(), n: 4, want: []outcome{slip}},
		}},
		{"slip 3", RRLConfig{ResponsesPerSecond: 1, Slip: 3}, []step{
			{client: "192.0.2.1", q: hit(), n: 1, want: five},
			{client: "192.0.2.1", q: hit(), n: 6, want: []outcome{drop, drop, slip}},
		}},
		{"exempt prefix", RRLConfig{ResponsesPerSecond: 1, Exempt: []netip.Prefix{netip.MustParsePrefix("192.0.2.128/25")}}, []step{
			{client: "192.0.2.200", q: hit(), n: 20, want: five},
			{client: "192.0.2.1", q: hit(), n: 1, want: five},
			{client: "192.0.2.1", q: hit(), n: 1, want: []outcome{drop}},
		}},
		{"TCP is never limited", RRLConfig{ResponsesPerSecond: 1}, []step{
			{client: "192.0.2.1", q: hit(), n: 1, want: five},
			{client: "192.0.2.1", q: hit(), tr: TCP, n: 20, want: five},
			{client: "192.0.2.1", q: hit(), n: 1, want: []outcome{drop}},
		}},
		{"IPv6 per /56", RRLConfig{ResponsesPerSecond: 2}, []step{
			{client: "2001:db8:0:1::1", q: hit(), n: 2, want: five},
			{client: "2001:db8:0:ff::2", q: hit(), n: 1, want: []outcome{drop}},
			{client: "2001:db8:0:100::1", q: hit(), n: 2, want: five},
		}},
		{"IPv4-mapped is IPv4", RRLConfig{ResponsesPerSecond: 1}, []step{
			{client: "192.0.2.1", q: hit(), n: 1, want: five},
			{client: "::ffff:192.0.2.9", q: hit(), n: 1, want: []outcome{drop}},
		}},
		{"per address with /32", RRLConfig{ResponsesPerSecond: 1, IPv4PrefixLen: 32}, []step{
			{client: "192.0.2.1", q: hit(), n: 1, want: five},
			{client: "192.0.2.2", q: hit(), n: 1, want: five},
			{client: "192.0.2.1", q: hit(), n: 1, want: []outcome{drop}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, clk := rrlServer(t, tc.rrl)
			var drops, slips uint64
			for i, st := range tc.steps {
				clk.advance(st.after)
				tr := st.tr
				if tr == 0 {
					tr = UDP
				}
				for j := range st.n {
					st.q.Id = uint16(i<<8 + j)
					got := ask(t, s, st.client, st.q, tr)
					if want := st.want[j%len(st.want)]; got != want {
						t.Fatalf("step %d (%s %v over %v), query %d: %v, want %v", i, st.client, st.q.Question, tr, j, got, want)
					}
					switch got {
					case drop:
						drops++
					case slip:
						slips++
					}
				}
			}
			if st := s.Stats(); st.RRLDropped != drops || st.RRLSlipped != slips || st.Dropped != 0 {
				t.Errorf("Stats RRLDropped %d RRLSlipped %d Dropped %d, want %d, %d, 0", st.RRLDropped, st.RRLSlipped, st.Dropped, drops, slips)
			}
		})
	}
}

// TestRRLOff checks that RRL is off by default and that Respond, which
// has no client address, is never limited.
func TestRRLOff(t *testing.T) {
	s := newServer(t, testConfig(), nil)
	if s.rrl != nil {
		t.Fatal("RRL on by default")
	}
	for i := range 100 {
		m := question("host1.example.com.", dns.TypeA)
		m.Id = uint16(i)
		if got := ask(t, s, "192.0.2.1", m, UDP); got != pass {
			t.Fatalf("query %d: %v with RRL off", i, got)
		}
	}
	s, _ = rrlServer(t, RRLConfig{ResponsesPerSecond: 1})
	req := pack(t, question("host1.example.com.", dns.TypeA))
	for i := range 10 {
		if _, ok := s.Respond(req, make([]byte, 512), UDP); !ok {
			t.Fatalf("Respond %d dropped: no client, no RRL", i)
		}
	}
}

// TestRRLBucketReuse checks that the table stays bounded: a key whose
// bucket another key took starts again with full credit.
func TestRRLBucketReuse(t *testing.T) {
	s, _ := rrlServer(t, RRLConfig{ResponsesPerSecond: 1})
	r := s.rrl
	a := uint64(7)
	b := a + rrlBuckets // same bucket
	if r.account(a) != rrlPass || r.account(a) == rrlPass {
		t.Fatal("a: want pass then limited")
	}
	if r.account(b) != rrlPass {
		t.Fatal("b: want pass (bucket reset for a new key)")
	}
	if r.account(a) != rrlPass {
		t.Fatal("a again: want pass (bucket reset again)")
	}
	if len(r.buckets) != rrlBuckets {
		t.Fatalf("%d buckets", len(r.buckets))
	}
}

func TestRRLConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		rrl  RRLConfig
		ok   bool
	}{
		{"zero", RRLConfig{}, true},
		{"defaults", RRLConfig{ResponsesPerSecond: 100}, true},
		{"negative rate", RRLConfig{ResponsesPerSecond: -1}, false},
		{"window too short", RRLConfig{ResponsesPerSecond: 1, Window: time.Millisecond}, false},
		{"window too long", RRLConfig{ResponsesPerSecond: 1, Window: 2 * time.Hour}, false},
		{"slip -2", RRLConfig{Slip: -2}, false},
		{"ipv4 33", RRLConfig{IPv4PrefixLen: 33}, false},
		{"ipv6 129", RRLConfig{IPv6PrefixLen: 129}, false},
		{"bad exempt", RRLConfig{Exempt: []netip.Prefix{{}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.RRL = tc.rrl
			if err := cfg.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate: %v, want ok=%v", err, tc.ok)
			}
		})
	}
	cfg := testConfig()
	cfg.TCPMaxConnectionsPerPrefix = -2
	cfg.TCPReadTimeout = -time.Second
	if err := cfg.Validate(); err == nil {
		t.Error("Validate accepted negative TCP limits")
	}
}
