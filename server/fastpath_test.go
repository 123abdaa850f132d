package server

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/anyns/anyns/zone"
)

// zoneNames returns every owner and every domain name in RDATA of the zone
// files in dir, canonical, and every type they hold.
func zoneNames(t *testing.T, dir string) (names []string, types []uint16) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.zone"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no zone files in %s: %v", dir, err)
	}
	seen := map[string]bool{}
	add := func(n string) {
		n = strings.ToLower(dns.Fqdn(n))
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		zp := dns.NewZoneParser(fh, strings.TrimSuffix(filepath.Base(f), ".zone"), f)
		zp.SetIncludeAllowed(true)
		for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
			add(rr.Header().Name)
			if !slices.Contains(types, rr.Header().Rrtype) {
				types = append(types, rr.Header().Rrtype)
			}
			switch rr := rr.(type) {
			case *dns.NS:
				add(rr.Ns)
			case *dns.CNAME:
				add(rr.Target)
			case *dns.DNAME:
				add(rr.Target)
			case *dns.MX:
				add(rr.Mx)
			case *dns.SRV:
				add(rr.Target)
			}
		}
		fh.Close()
		// A zone that does not parse here is the zone tests' business.
		if zp.Err() != nil {
			t.Logf("%s: %v", f, zp.Err())
		}
	}
	return names, types
}

// queryNames extends names with names that do not exist (NXDOMAIN or
// wildcard matches), names below each name (below delegations, DNAMEs,
// wildcards) and the names that wildcards cover.
func queryNames(names []string) []string {
	out := slices.Clone(names)
	for _, n := range names {
		below := func(label string) string {
			if n == "." {
				return label + "."
			}
			return label + "." + n
		}
		out = append(out, below("nx-q"), below("a.b"))
		if rest, ok := strings.CutPrefix(n, "*."); ok {
			out = append(out, "wild-x."+rest)
		}
	}
	return out
}

// mixCase returns name with every other letter in upper case (0x20).
func mixCase(name string) string {
	b := []byte(name)
	up := true
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			if up {
				b[i] = c - 'a' + 'A'
			}
			up = !up
		}
	}
	return string(b)
}

// ednsVariants are the OPT RRs the equivalence test sends (nil: no EDNS).
var ednsVariants = []struct {
	name string
	opt  func(m *dns.Msg)
}{
	{"noedns", func(*dns.Msg) {}},
	{"edns", func(m *dns.Msg) { withEDNS(m, 1232, false) }},
	{"do", func(m *dns.Msg) { withEDNS(m, 4096, true) }},
	{"nsid", func(m *dns.Msg) { withEDNS(m, 1232, false, &dns.EDNS0_NSID{Code: dns.EDNS0NSID}) }},
	{"do-nsid-cookie", func(m *dns.Msg) {
		withEDNS(m, 1232, true, &dns.EDNS0_NSID{Code: dns.EDNS0NSID},
			&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
	}},
	{"small", func(m *dns.Msg) { withEDNS(m, 512, false) }},
	{"nsid-keepalive", func(m *dns.Msg) {
		withEDNS(m, 1232, false, &dns.EDNS0_NSID{Code: dns.EDNS0NSID}, &dns.EDNS0_TCP_KEEPALIVE{Code: dns.EDNS0TCPKEEPALIVE})
	}},
	{"keepalive-nsid", func(m *dns.Msg) {
		withEDNS(m, 1232, false, &dns.EDNS0_TCP_KEEPALIVE{Code: dns.EDNS0TCPKEEPALIVE}, &dns.EDNS0_NSID{Code: dns.EDNS0NSID})
	}},
}

// TestFastPathEquivalence checks that the fast path (precomputed answers
// and the allocation-free packer) and the general path give byte-identical
// responses for every name and type of the shipped zones and the test
// zones, plus names that do not exist, names below every name, and names
// that wildcards cover; with and without EDNS, DO, NSID, keepalive; over
// UDP and TCP; in lower and mixed case. It also checks that the fast path
// answers most of them, so that the comparison is not vacuous.
func TestFastPathEquivalence(t *testing.T) {
	for _, tc := range []struct {
		name string
		dirs []string
	}{
		{"shipped", []string{"../zones", "testdata"}},
		{"rfc1034", []string{"../zone/testdata/rfc1034"}},
		{"rfc4592", []string{"../zone/testdata/rfc4592"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, testConfig(), loadStore(t, tc.dirs...))
			var names []string
			var types []uint16
			for _, d := range tc.dirs {
				n, ty := zoneNames(t, d)
				names = append(names, n...)
				for _, x := range ty {
					if !slices.Contains(types, x) {
						types = append(types, x)
					}
				}
			}
			for _, x := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeMX, dns.TypeTXT, dns.TypeNS,
				dns.TypeSOA, dns.TypeCNAME, dns.TypeDS, dns.TypeSRV, dns.TypePTR, dns.TypeANY, dns.TypeCAA} {
				if !slices.Contains(types, x) {
					types = append(types, x)
				}
			}
			fastBuf := make([]byte, dns.MaxMsgSize)
			slowBuf := make([]byte, dns.MaxMsgSize)
			respBuf := make([]byte, dns.MaxMsgSize)
			total, fast := 0, 0
			byResult := map[int]int{}
			for _, name := range queryNames(names) {
				for _, qname := range []string{name, mixCase(name)} {
					for _, qtype := range types {
						for _, ev := range ednsVariants {
							m := question(qname, qtype)
							m.Id = 0xbeef
							m.RecursionDesired = qtype%2 == 0
							ev.opt(m)
							req := pack(t, m)
							for _, tr := range []Transport{UDP, TCP} {
								total++
								slow, ok := s.respondWith(req, slowBuf, tr, false)
								if !ok {
									t.Fatalf("%s %s %s %d: general path dropped the query", qname, dns.TypeToString[qtype], ev.name, tr)
								}
								got, ok := s.Respond(req, respBuf, tr)
								if !ok || !bytes.Equal(got, slow) {
									t.Errorf("%s %s %s %d: Respond differs from the general path\n got %x\nwant %x",
										qname, dns.TypeToString[qtype], ev.name, tr, got, slow)
								}
								q := s.queries.Get().(*query)
								out, ok := s.respondFast(q, req, fastBuf, tr)
								if ok {
									fast++
									byResult[int(slow[3]&0xf)]++
									if !bytes.Equal(out, slow) {
										t.Errorf("%s %s %s %d: fast path differs\nfast %x\nslow %x\n%v", qname,
											dns.TypeToString[qtype], ev.name, tr, out, slow, unpack(t, slow))
									}
								}
								s.release(q)
							}
						}
					}
				}
			}
			t.Logf("%d queries, %d on the fast path, by rcode %v", total, fast, byResult)
			if fast < total/4 || byResult[dns.RcodeSuccess] == 0 || byResult[dns.RcodeNameError] == 0 {
				t.Errorf("the fast path answered %d of %d queries (by rcode %v): the comparison is vacuous", fast, total, byResult)
			}
		})
	}
}

// fastCases are queries that must take the fast path, allocation-free.
func fastCases() []struct {
	name string
	m    *dns.Msg
	tr   Transport
} {
	nsid := &dns.EDNS0_NSID{Code: dns.EDNS0NSID}
	return []struct {
		name string
		m    *dns.Msg
		tr   Transport
	}{
		{"udp-hit", withEDNS(question("host1.example.com.", dns.TypeA), 1232, false), UDP},
		{"udp-hit-noedns", question("host1.example.com.", dns.TypeA), UDP},
		{"udp-hit-0x20", withEDNS(question("HoSt1.ExAmPlE.cOm.", dns.TypeA), 1232, false), UDP},
		{"udp-hit-do-nsid", withEDNS(question("host1.example.com.", dns.TypeA), 1232, true, nsid), UDP},
		{"udp-nxdomain", withEDNS(question("nope.example.com.", dns.TypeA), 1232, false), UDP},
		{"udp-nxdomain-0x20", withEDNS(question("NoPe.ExAmPlE.cOm.", dns.TypeA), 1232, true), UDP},
		{"udp-nodata", withEDNS(question("host1.example.com.", dns.TypeTXT), 1232, false), UDP},
		{"udp-referral", withEDNS(question("www.sub.example.com.", dns.TypeA), 1232, false), UDP},
		{"tcp-hit", withEDNS(question("host1.example.com.", dns.TypeA), 1232, false), TCP},
		{"tcp-hit-keepalive", withEDNS(question("host1.example.com.", dns.TypeA), 1232, false,
			&dns.EDNS0_TCP_KEEPALIVE{Code: dns.EDNS0TCPKEEPALIVE}), TCP},
		{"tcp-nxdomain", withEDNS(question("nope.example.com.", dns.TypeA), 1232, false), TCP},
		{"tcp-referral", question("www.sub.example.com.", dns.TypeA), TCP},
		// Precomputed answers over the UDP limit (fasttrunc.go).
		{"udp-truncated", withEDNS(question("many.big.test.", dns.TypeTXT), 1232, false), UDP},
		{"udp-truncated-noedns", question("MaNy.BiG.tEsT.", dns.TypeTXT), UDP},
		{"udp-additional-left-out", question("mx.big.test.", dns.TypeMX), UDP},
	}
}

// TestRespondAllocs fails when an answer on the steady-state query path
// (hit, NXDOMAIN, NODATA, referral; UDP and TCP) allocates: the budget is
// zero (issue 6).
func TestRespondAllocs(t *testing.T) {
	s := newServer(t, testConfig(), nil)
	buf := make([]byte, dns.MaxMsgSize)
	for _, tc := range fastCases() {
		if raceEnabled {
			// Still check that each case takes the fast path.
			defer t.Log("allocations not counted under -race: sync.Pool drops items at random")
		}
		t.Run(tc.name, func(t *testing.T) {
			req := pack(t, tc.m)
			q := s.queries.Get().(*query)
			_, ok := s.respondFast(q, req, buf, tc.tr)
			s.release(q)
			if !ok {
				t.Fatal("not answered on the fast path")
			}
			if raceEnabled {
				return
			}
			if n := testing.AllocsPerRun(200, func() { s.Respond(req, buf, tc.tr) }); n != 0 {
				t.Errorf("%v allocs per query, want 0", n)
			}
		})
	}
}

// TestPrecomputedNested checks that a precomputed answer whose additional
// section depends on in-zone targets is not used when a more specific zone
// is served beside it (the general lookup then leaves out the parent's
// addresses of a name that belongs to the child).
func TestPrecomputedNested(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("example.org.zone", `$ORIGIN example.org.
@ 300 IN SOA ns1 h 1 2 3 4 5
@ 300 IN NS ns1
@ 300 IN MX 10 mail.child
ns1 300 IN A 192.0.2.1
mail.child 300 IN A 192.0.2.9
`)
	write("child.example.org.zone", `$ORIGIN child.example.org.
@ 300 IN SOA ns1 h 1 2 3 4 5
@ 300 IN NS ns1
ns1 300 IN A 192.0.2.2
mail 300 IN A 192.0.2.3
`)
	zs, err := zone.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	parentOnly, err := zone.NewSnapshot(zs[1]) // sorted: child first
	if err != nil {
		t.Fatal(err)
	}
	if parentOnly.Zones()[0].Origin != "example.org." {
		t.Fatalf("zones not sorted as expected: %v", parentOnly.Zones()[0].Origin)
	}
	if parentOnly.Precomputed("example.org.", dns.TypeMX) == nil {
		t.Fatal("no precomputed MX answer with the parent alone")
	}
	both, err := zone.NewSnapshot(zs...)
	if err != nil {
		t.Fatal(err)
	}
	if both.Precomputed("example.org.", dns.TypeMX) != nil {
		t.Error("precomputed MX answer used although the child zone is served")
	}
	if both.Precomputed("ns1.example.org.", dns.TypeA) == nil {
		t.Error("no precomputed A answer (no targets) with the child zone served")
	}
	s := newServer(t, testConfig(), zone.NewStore(both))
	if r := respond(t, s, question("example.org.", dns.TypeMX), UDP); len(r.Extra) != 0 {
		t.Errorf("MX additional = %v, want none (the name is the child zone's)", r.Extra)
	}
	s = newServer(t, testConfig(), zone.NewStore(parentOnly))
	r := respond(t, s, question("example.org.", dns.TypeMX), UDP)
	if len(r.Extra) != 1 || r.Extra[0].(*dns.A).A.String() != "192.0.2.9" {
		t.Errorf("MX additional = %v, want the parent's mail.child A", r.Extra)
	}
}

// TestRespondAllocsRRL is TestRespondAllocs with RRL on, through
// RespondFrom: responses that pass, and limited ones (dropped and
// slipped), allocate nothing either.
func TestRespondAllocsRRL(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	buf := make([]byte, dns.MaxMsgSize)
	client := netip.MustParseAddr("192.0.2.1")
	for _, rrl := range []struct {
		name string
		cfg  RRLConfig
	}{
		{"pass", RRLConfig{ResponsesPerSecond: 1_000_000}},
		{"limited", RRLConfig{ResponsesPerSecond: 1, Slip: 2}},
		{"exempt", RRLConfig{ResponsesPerSecond: 1, Exempt: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}},
	} {
		cfg := testConfig()
		cfg.RRL = rrl.cfg
		s := newServer(t, cfg, nil)
		for _, tc := range fastCases() {
			t.Run(rrl.name+"/"+tc.name, func(t *testing.T) {
				req := pack(t, tc.m)
				if n := testing.AllocsPerRun(200, func() { s.RespondFrom(req, buf, tc.tr, client) }); n != 0 {
					t.Errorf("%v allocs per query, want 0", n)
				}
			})
		}
		t.Run(rrl.name+"/error", func(t *testing.T) {
			req := pack(t, question("nope.invalid.", dns.TypeA)) // REFUSED, general path
			s.RespondFrom(req, buf, UDP, client)
			// The general path allocates; RRL must add nothing to it.
			with := testing.AllocsPerRun(100, func() { s.RespondFrom(req, buf, UDP, client) })
			without := testing.AllocsPerRun(100, func() { s.Respond(req, buf, UDP) })
			if with > without {
				t.Errorf("%v allocs with RRL, %v without", with, without)
			}
		})
	}
}
