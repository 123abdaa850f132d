package server

import (
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/anyns/anyns/zone"
)

// Case is one answer test: a query and the response expected.
type Case struct {
	Name   string
	Qname  string
	Qtype  uint16
	Rcode  int
	AA     bool
	Answer []string
	Ns     []string
	Extra  []string // without OPT
}

func TestAnswersShippedZones(t *testing.T) {
	s := newServer(t, testConfig(), nil)
	soaCom := "example.com. 300 IN SOA ns1.example.com. hostmaster.example.com. 2026112201 7200 3600 1209600 300"
	cases := []Case{
		{Name: "apex SOA", Qname: "example.com.", Qtype: dns.TypeSOA, AA: true,
			Answer: []string{soaCom[:len("example.com. ")] + "3600" + soaCom[len("example.com. 300"):]}},
		{Name: "CNAME chain", Qname: "www.example.com.", Qtype: dns.TypeA, AA: true, Answer: []string{
			"www.example.com. 3600 IN CNAME web.example.com.",
			"web.example.com. 3600 IN CNAME host1.example.com.",
			"host1.example.com. 3600 IN A 192.0.2.10",
		}},
		{Name: "AAAA", Qname: "host1.example.com.", Qtype: dns.TypeAAAA, AA: true,
			Answer: []string{"host1.example.com. 3600 IN AAAA 2001:db8::10"}},
		{Name: "NXDOMAIN", Qname: "nope.example.com.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, AA: true,
			Ns: []string{soaCom}},
		{Name: "NODATA", Qname: "host1.example.com.", Qtype: dns.TypeMX, AA: true, Ns: []string{soaCom}},
		{Name: "referral", Qname: "www.sub.example.com.", Qtype: dns.TypeA, AA: false,
			Ns: []string{
				"sub.example.com. 3600 IN NS ns1.sub.example.com.",
				"sub.example.com. 3600 IN NS ns2.sub.example.com.",
				"sub.example.com. 3600 IN NS ns.example.net.",
			},
			Extra: []string{
				"ns1.sub.example.com. 3600 IN A 192.0.2.101",
				"ns2.sub.example.com. 3600 IN AAAA 2001:db8::102",
			}},
		{Name: "wildcard", Qname: "anything.wild.example.com.", Qtype: dns.TypeA, AA: true,
			Answer: []string{"anything.wild.example.com. 3600 IN A 192.0.2.99"}},
		{Name: "outside every zone", Qname: "example.org.", Qtype: dns.TypeA, Rcode: dns.RcodeRefused},
		{Name: "MX with additional", Qname: "example.net.", Qtype: dns.TypeMX, AA: true,
			Answer: []string{"example.net. 1800 IN MX 10 mail.example.net."},
			Extra:  []string{"mail.example.net. 1800 IN A 198.51.100.25"}},
	}
	for _, tc := range cases {
		for _, tr := range []Transport{UDP, TCP} {
			t.Run(tc.Name+"/"+tr.String(), func(t *testing.T) {
				q := question(tc.Qname, tc.Qtype)
				q.RecursionDesired = true
				r := respond(t, s, q, tr)
				checkCase(t, r, tc)
				if !r.RecursionDesired || r.RecursionAvailable {
					t.Errorf("RD=%v RA=%v, want RD echoed and RA clear", r.RecursionDesired, r.RecursionAvailable)
				}
			})
		}
	}
}

func checkCase(t *testing.T, r *dns.Msg, tc Case) {
	t.Helper()
	if r.Rcode != tc.Rcode {
		t.Errorf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.Rcode])
	}
	if r.Authoritative != tc.AA {
		t.Errorf("AA=%v, want %v", r.Authoritative, tc.AA)
	}
	if !sameRRs(r.Answer, tc.Answer) {
		t.Errorf("answer:\n%v\nwant:\n%v", r.Answer, tc.Answer)
	}
	if !sameRRs(r.Ns, tc.Ns) {
		t.Errorf("authority:\n%v\nwant:\n%v", r.Ns, tc.Ns)
	}
	var extra []dns.RR
	for _, x := range r.Extra {
		if x.Header().Rrtype != dns.TypeOPT {
			extra = append(extra, x)
		}
	}
	if !sameRRs(extra, tc.Extra) {
		t.Errorf("additional:\n%v\nwant:\n%v", extra, tc.Extra)
	}
}

func (t Transport) String() string {
	if t == TCP {
		return "tcp"
	}
	return "udp"
}

func TestQuestionEchoedAsSent(t *testing.T) {
	s := newServer(t, testConfig(), nil)
	for _, name := range []string{"WwW.ExAmPlE.CoM.", "HOST1.example.COM.", "NoPe.Example.Com.", "X.Wild.Example.Com."} {
		q := question(name, dns.TypeA)
		r := respond(t, s, q, UDP)
		if len(r.Question) != 1 || r.Question[0].Name != name {
			t.Errorf("question %v, want %s", r.Question, name)
		}
		if len(r.Answer) > 0 && r.Answer[0].Header().Name != name {
			t.Errorf("first answer owner %q, want %q as in the question", r.Answer[0].Header().Name, name)
		}
	}
}

func TestANYMinimalOverUDP(t *testing.T) {
	s := newServer(t, testConfig(), nil)
	r := respond(t, s, question("example.com.", dns.TypeANY), UDP)
	if r.Rcode != dns.RcodeSuccess || !r.Authoritative || len(r.Answer) == 0 {
		t.Fatalf("ANY: %v", r)
	}
	for _, a := range r.Answer {
		if a.Header().Rrtype != r.Answer[0].Header().Rrtype {
			t.Errorf("ANY over UDP gave more than one RRset: %v", r.Answer)
		}
	}
	full := respond(t, s, question("example.com.", dns.TypeANY), TCP)
	types := map[uint16]bool{}
	for _, a := range full.Answer {
		types[a.Header().Rrtype] = true
	}
	if len(types) < 5 {
		t.Errorf("ANY over TCP: %d types, want the whole node: %v", len(types), full.Answer)
	}
}

func TestCHAOS(t *testing.T) {
	withVersion := testConfig()
	noVersion := testConfig()
	noVersion.Version = ""
	noIdentity := testConfig()
	noIdentity.Identity = ""
	cases := []struct {
		name  string
		cfg   Config
		qname string
		qtype uint16
		rcode int
		txt   string
	}{
		{"id.server", withVersion, "id.server.", dns.TypeTXT, dns.RcodeSuccess, "anyns-test-1"},
		{"hostname.bind", withVersion, "hostname.bind.", dns.TypeTXT, dns.RcodeSuccess, "anyns-test-1"},
		{"case kept", withVersion, "ID.Server.", dns.TypeTXT, dns.RcodeSuccess, "anyns-test-1"},
		{"version.bind", withVersion, "version.bind.", dns.TypeTXT, dns.RcodeSuccess, "anyns 0.0-test"},
		{"version.server", withVersion, "version.server.", dns.TypeTXT, dns.RcodeSuccess, "anyns 0.0-test"},
		{"version.bind unset", noVersion, "version.bind.", dns.TypeTXT, dns.RcodeRefused, ""},
		{"version.server unset", noVersion, "version.server.", dns.TypeTXT, dns.RcodeRefused, ""},
		{"id.server unset", noIdentity, "id.server.", dns.TypeTXT, dns.RcodeRefused, ""},
		{"other name", withVersion, "authors.bind.", dns.TypeTXT, dns.RcodeRefused, ""},
		{"other type", withVersion, "id.server.", dns.TypeA, dns.RcodeRefused, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, tc.cfg, zone.NewStore(nil))
			q := question(tc.qname, tc.qtype)
			q.Question[0].Qclass = dns.ClassCHAOS
			r := respond(t, s, q, UDP)
			if r.Rcode != tc.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
			}
			if r.Question[0].Name != tc.qname {
				t.Errorf("question %q, want %q", r.Question[0].Name, tc.qname)
			}
			if r.Authoritative != chaosAuthoritative {
				t.Errorf("AA=%v, want %v", r.Authoritative, chaosAuthoritative)
			}
			if tc.txt == "" {
				if len(r.Answer) != 0 {
					t.Errorf("answer %v, want none", r.Answer)
				}
				return
			}
			if len(r.Answer) != 1 {
				t.Fatalf("answer %v, want one TXT", r.Answer)
			}
			txt, ok := r.Answer[0].(*dns.TXT)
			if !ok || len(txt.Txt) != 1 || txt.Txt[0] != tc.txt || txt.Hdr.Ttl != 0 ||
				txt.Hdr.Class != dns.ClassCHAOS || txt.Hdr.Name != tc.qname {
				t.Errorf("answer %v, want %s 0 CH TXT %q", r.Answer[0], tc.qname, tc.txt)
			}
		})
	}
}

func TestOtherClassRefused(t *testing.T) {
	s := newServer(t, testConfig(), nil)
	q := question("example.com.", dns.TypeSOA)
	q.Question[0].Qclass = dns.ClassHESIOD
	if r := respond(t, s, q, UDP); r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 {
		t.Errorf("class HS: %v", r)
	}
	q.Question[0].Qclass = dns.ClassANY
	if r := respond(t, s, q, UDP); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("class ANY: %v", r)
	}
}

func optOf(t *testing.T, r *dns.Msg) *dns.OPT {
	t.Helper()
	var opt *dns.OPT
	for _, x := range r.Extra {
		if o, ok := x.(*dns.OPT); ok {
			if opt != nil {
				t.Fatalf("two OPTs in the response")
			}
			opt = o
		}
	}
	return opt
}

func TestEDNS(t *testing.T) {
	cfg := testConfig()
	cfg.UDPSize = 1400
	s := newServer(t, cfg, nil)

	t.Run("no EDNS no OPT", func(t *testing.T) {
		if r := respond(t, s, question("example.com.", dns.TypeSOA), UDP); optOf(t, r) != nil {
			t.Errorf("OPT in the response to a query without one")
		}
	})
	t.Run("OPT echoed with our size", func(t *testing.T) {
		r := respond(t, s, withEDNS(question("example.com.", dns.TypeSOA), 4096, false), UDP)
		o := optOf(t, r)
		if o == nil || o.UDPSize() != 1400 || o.Version() != 0 || o.Do() {
			t.Fatalf("OPT %v, want size 1400 version 0 DO clear", o)
		}
	})
	t.Run("DO echoed", func(t *testing.T) {
		r := respond(t, s, withEDNS(question("example.com.", dns.TypeSOA), 4096, true), UDP)
		if o := optOf(t, r); o == nil || !o.Do() {
			t.Fatalf("OPT %v, want DO", o)
		}
	})
	t.Run("BADVERS", func(t *testing.T) {
		q := withEDNS(question("example.com.", dns.TypeSOA), 4096, false)
		q.IsEdns0().SetVersion(1)
		r := respond(t, s, q, UDP)
		o := optOf(t, r)
		if r.Rcode != dns.RcodeBadVers || o == nil || o.Version() != 0 || len(r.Answer) != 0 {
			t.Fatalf("rcode %d OPT %v answer %v: want BADVERS, OPT version 0, no answer", r.Rcode, o, r.Answer)
		}
	})
	t.Run("unknown option ignored", func(t *testing.T) {
		q := withEDNS(question("example.com.", dns.TypeSOA), 4096, false,
			&dns.EDNS0_LOCAL{Code: 65001, Data: []byte{1, 2, 3}})
		r := respond(t, s, q, UDP)
		o := optOf(t, r)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || o == nil || len(o.Option) != 0 {
			t.Fatalf("rcode %d answer %v OPT %v", r.Rcode, r.Answer, o)
		}
	})
	t.Run("NSID", func(t *testing.T) {
		q := withEDNS(question("example.com.", dns.TypeSOA), 4096, false, &dns.EDNS0_NSID{Code: dns.EDNS0NSID})
		for _, tr := range []Transport{UDP, TCP} {
			r := respond(t, s, q, tr)
			o := optOf(t, r)
			if o == nil || len(o.Option) != 1 {
				t.Fatalf("OPT %v, want NSID", o)
			}
			n, ok := o.Option[0].(*dns.EDNS0_NSID)
			if got, _ := hex.DecodeString(n.Nsid); !ok || string(got) != "anyns-test-1" {
				t.Errorf("NSID %v, want %q", o.Option[0], "anyns-test-1")
			}
		}
		if r := respond(t, s, withEDNS(question("example.com.", dns.TypeSOA), 4096, false), UDP); len(optOf(t, r).Option) != 0 {
			t.Errorf("NSID sent unasked")
		}
	})
	t.Run("keepalive", func(t *testing.T) {
		q := withEDNS(question("example.com.", dns.TypeSOA), 4096, false,
			&dns.EDNS0_TCP_KEEPALIVE{Code: dns.EDNS0TCPKEEPALIVE})
		r := respond(t, s, q, TCP)
		o := optOf(t, r)
		if o == nil || len(o.Option) != 1 {
			t.Fatalf("OPT %v, want keepalive", o)
		}
		if ka, ok := o.Option[0].(*dns.EDNS0_TCP_KEEPALIVE); !ok || ka.Timeout != 100 {
			t.Errorf("keepalive %v, want timeout 100 (10s)", o.Option[0])
		}
		// RFC 7828 3.2.2: a server MUST ignore the option over UDP.
		if r := respond(t, s, q, UDP); len(optOf(t, r).Option) != 0 {
			t.Errorf("keepalive over UDP: %v", optOf(t, r))
		}
	})
}

// rawQuery packs m, then lets edit change the wire form.
func rawQuery(t *testing.T, m *dns.Msg, edit func([]byte) []byte) []byte {
	t.Helper()
	b := pack(t, m)
	if edit != nil {
		b = edit(b)
	}
	return b
}

func TestMalformed(t *testing.T) {
	s := newServer(t, testConfig(), nil)
	opt := func() dns.RR {
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(4096)
		return o
	}
	base := func() *dns.Msg { return question("example.com.", dns.TypeSOA) }
	cases := []struct {
		name     string
		wire     []byte
		rcode    int
		question bool
	}{
		{"QDCOUNT 0", rawQuery(t, &dns.Msg{MsgHdr: dns.MsgHdr{Id: 7}}, nil), dns.RcodeFormatError, false},
		{"QDCOUNT 2", rawQuery(t, func() *dns.Msg {
			m := base()
			m.Question = append(m.Question, dns.Question{Name: "example.net.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
			return m
		}(), nil), dns.RcodeFormatError, false},
		{"QDCOUNT 1 without question", []byte{0, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}, dns.RcodeFormatError, false},
		{"two OPTs", rawQuery(t, func() *dns.Msg { m := base(); m.Extra = []dns.RR{opt(), opt()}; return m }(), nil),
			dns.RcodeFormatError, true},
		{"OPT in answer", rawQuery(t, func() *dns.Msg { m := base(); m.Answer = []dns.RR{opt()}; return m }(), nil),
			dns.RcodeFormatError, true},
		{"OPT not root", rawQuery(t, func() *dns.Msg {
			m := base()
			o := opt().(*dns.OPT)
			o.Hdr.Name = "example.com."
			m.Extra = []dns.RR{o}
			return m
		}(), nil), dns.RcodeFormatError, true},
		{"answer section", rawQuery(t, func() *dns.Msg {
			m := base()
			m.Answer = []dns.RR{rr(t, "example.com. 1 IN A 192.0.2.1")}
			return m
		}(), nil), dns.RcodeFormatError, true},
		{"truncated question", rawQuery(t, base(), func(b []byte) []byte { return b[:len(b)-3] }), dns.RcodeFormatError, false},
		{"garbage record", rawQuery(t, base(), func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[10:], 1)
			return append(b, 0xff, 0xff, 0xff)
		}), dns.RcodeFormatError, true},
		{"NOTIFY", rawQuery(t, func() *dns.Msg { m := base(); m.Opcode = dns.OpcodeNotify; return m }(), nil),
			dns.RcodeNotImplemented, true},
		{"UPDATE", rawQuery(t, func() *dns.Msg { m := base(); m.Opcode = dns.OpcodeUpdate; return m }(), nil),
			dns.RcodeNotImplemented, true},
		{"opcode 15 unparsable body", []byte{0, 9, 0x78, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff}, dns.RcodeNotImplemented, false},
		{"AXFR", rawQuery(t, question("example.com.", dns.TypeAXFR), nil), dns.RcodeRefused, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := s.Stats()
			out, ok := s.Respond(tc.wire, make([]byte, 65535), UDP)
			if !ok {
				t.Fatal("dropped")
			}
			r := unpack(t, out)
			if r.Rcode != tc.rcode || !r.Response {
				t.Errorf("rcode %s QR=%v, want %s", dns.RcodeToString[r.Rcode], r.Response, dns.RcodeToString[tc.rcode])
			}
			if r.Id != binary.BigEndian.Uint16(tc.wire) {
				t.Errorf("ID %d, want %d", r.Id, binary.BigEndian.Uint16(tc.wire))
			}
			if got := len(r.Question) == 1; got != tc.question {
				t.Errorf("question %v, want present=%v", r.Question, tc.question)
			}
			if len(r.Answer)+len(r.Ns) != 0 {
				t.Errorf("records in an error response: %v", r)
			}
			after := s.Stats()
			switch tc.rcode {
			case dns.RcodeFormatError:
				if after.FormErr != before.FormErr+1 {
					t.Errorf("FormErr %d -> %d", before.FormErr, after.FormErr)
				}
			case dns.RcodeNotImplemented:
				if after.NotImp != before.NotImp+1 {
					t.Errorf("NotImp %d -> %d", before.NotImp, after.NotImp)
				}
			}
		})
	}
}

func TestDropped(t *testing.T) {
	s := newServer(t, testConfig(), nil)
	resp := pack(t, question("example.com.", dns.TypeA))
	resp[2] |= 0x80 // QR
	for name, wire := range map[string][]byte{
		"empty": {}, "short": {1, 2, 3, 4, 5}, "11 bytes": make([]byte, 11), "QR=1": resp,
	} {
		before := s.Stats().Dropped
		if out, ok := s.Respond(wire, make([]byte, 512), UDP); ok || out != nil {
			t.Errorf("%s: answered", name)
		}
		if after := s.Stats().Dropped; after != before+1 {
			t.Errorf("%s: Dropped %d -> %d", name, before, after)
		}
	}
}

func TestTruncation(t *testing.T) {
	s := newServer(t, testConfig(), nil)
	cases := []struct {
		name     string
		q        *dns.Msg
		tc       bool
		answer   int // RRs expected over UDP
		extra    int // non-OPT additional RRs expected over UDP
		fullAns  int // RRs over TCP
		fullXtra int
	}{
		{"RRset too big", withEDNS(question("many.big.test.", dns.TypeTXT), 1232, false), true, 0, 0, 40, 0},
		{"keeps RRsets that fit", withEDNS(question("alias.big.test.", dns.TypeTXT), 1232, false), true, 1, 0, 41, 0},
		{"no EDNS: 512", question("alias.big.test.", dns.TypeTXT), true, 1, 0, 41, 0},
		{"additional dropped without TC", question("mx.big.test.", dns.TypeMX), false, 1, 0, 1, 60},
		{"in-domain glue sets TC (RFC 9471)", question("www.deleg.big.test.", dns.TypeA), true, 0, -1, 0, 60},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			limit := 512
			if o := tc.q.IsEdns0(); o != nil {
				limit = min(int(o.UDPSize()), 1232)
			}
			out, ok := s.Respond(pack(t, tc.q), make([]byte, 65535), UDP)
			if !ok {
				t.Fatal("dropped")
			}
			if len(out) > limit {
				t.Errorf("UDP response of %d bytes, limit %d", len(out), limit)
			}
			r := unpack(t, out)
			if r.Truncated != tc.tc || len(r.Answer) != tc.answer {
				t.Errorf("TC=%v answer %d RRs, want TC=%v %d", r.Truncated, len(r.Answer), tc.tc, tc.answer)
			}
			if (tc.q.IsEdns0() != nil) != (optOf(t, r) != nil) {
				t.Errorf("OPT lost in truncation")
			}
			extra := len(r.Extra)
			if optOf(t, r) != nil {
				extra--
			}
			if tc.extra >= 0 && extra != tc.extra {
				t.Errorf("additional %d RRs, want %d", extra, tc.extra)
			}
			full := respond(t, s, tc.q, TCP)
			extra = len(full.Extra)
			if optOf(t, full) != nil {
				extra--
			}
			if full.Truncated || len(full.Answer) != tc.fullAns || extra != tc.fullXtra {
				t.Errorf("TCP: TC=%v answer %d additional %d, want full %d/%d", full.Truncated, len(full.Answer), extra, tc.fullAns, tc.fullXtra)
			}
		})
	}
}

func TestLargeUDPSize(t *testing.T) {
	cfg := testConfig()
	cfg.UDPSize = 4096
	s := newServer(t, cfg, nil)
	r := respond(t, s, withEDNS(question("many.big.test.", dns.TypeTXT), 4096, false), UDP)
	if r.Truncated || len(r.Answer) != 40 {
		t.Errorf("TC=%v answer %d, want the 40 TXT in 4096 bytes", r.Truncated, len(r.Answer))
	}
	// The client's smaller size wins.
	r = respond(t, s, withEDNS(question("many.big.test.", dns.TypeTXT), 1500, false), UDP)
	if !r.Truncated || len(r.Answer) != 0 {
		t.Errorf("TC=%v answer %d, want TC and no answer in 1500 bytes", r.Truncated, len(r.Answer))
	}
	// A client size under 512 counts as 512.
	r = respond(t, s, withEDNS(question("alias.big.test.", dns.TypeTXT), 100, false), UDP)
	if !r.Truncated || len(r.Answer) != 1 {
		t.Errorf("TC=%v answer %d, want TC and the CNAME", r.Truncated, len(r.Answer))
	}
}

func TestPanicRecovered(t *testing.T) {
	s := newServer(t, testConfig(), nil)
	s.testHookRespond = func(m *dns.Msg) {
		if len(m.Question) == 1 && strings.HasPrefix(m.Question[0].Name, "panic.") {
			panic("injected")
		}
	}
	r := respond(t, s, question("panic.example.com.", dns.TypeA), UDP)
	if r.Rcode != dns.RcodeServerFailure || len(r.Question) != 1 {
		t.Errorf("after panic: %v", r)
	}
	if st := s.Stats(); st.Panics != 1 || st.ServFail != 1 {
		t.Errorf("Panics %d ServFail %d, want 1 1", st.Panics, st.ServFail)
	}
	if r := respond(t, s, question("example.com.", dns.TypeSOA), UDP); r.Rcode != dns.RcodeSuccess {
		t.Errorf("after a panic: %v", r)
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []Config{
		{UDPSize: 100},
		{UDPSize: 70000},
		{Identity: strings.Repeat("x", 256)},
		{Version: strings.Repeat("x", 256)},
		{TCPIdleTimeout: -1},
		{TCPMaxConnections: -1},
	}
	for _, c := range bad {
		if _, err := New(c, zone.NewStore(nil), nil); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
	if _, err := New(Config{}, zone.NewStore(nil), nil); err != nil {
		t.Errorf("New(zero Config): %v", err)
	}
}

// TestReleaseClearsCopies checks that a query returned to the pool keeps no
// copy of a stored RR that packCopy made (it would pin an old zone's names
// in memory), and that the general path's copies are cleared too.
func TestReleaseClearsCopies(t *testing.T) {
	s := newServer(t, testConfig(), testStore(t))
	buf := make([]byte, 512)
	for _, tc := range []struct {
		name string
		fill func(q *query)
	}{
		{"packCopy", func(q *query) {
			if _, ok := q.packCopy(rr(t, "example.com. 300 IN SOA ns1.example.com. h.example.com. 1 2 3 4 5"), buf, 12); !ok {
				t.Fatal("packCopy of an SOA failed")
			}
			if _, ok := q.packCopy(rr(t, "www.example.com. 300 IN A 192.0.2.1"), buf, 100); !ok {
				t.Fatal("packCopy of an A failed")
			}
		}},
		{"general path", func(q *query) {
			q.slow = true
			q.aaaa = *rr(t, "www.example.com. 300 IN AAAA 2001:db8::1").(*dns.AAAA)
		}},
	} {
		q := s.queries.Get().(*query)
		tc.fill(q)
		if q.soa.Hdr.Name == "" && q.aaaa.Hdr.Name == "" {
			t.Fatalf("%s: nothing was copied", tc.name)
		}
		s.release(q)
		if q.copied || q.slow || q.soa.Hdr.Name != "" || q.a.A != nil || q.aaaa.AAAA != nil || q.ns.Ns != "" {
			t.Errorf("%s: release left copies: soa %q a %v aaaa %v copied %v", tc.name, q.soa.Hdr.Name, q.a.A, q.aaaa.AAAA, q.copied)
		}
	}
}
