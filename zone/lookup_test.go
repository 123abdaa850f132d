package zone

import (
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

func shippedSnapshot(t testing.TB) *Snapshot {
	t.Helper()
	zs, err := LoadDir("../zones")
	if err != nil {
		t.Fatalf("LoadDir(../zones): %v", err)
	}
	s, err := NewSnapshot(zs...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestShippedZones loads the example zones in zones/ and checks answers
// that exercise each feature they show.
func TestShippedZones(t *testing.T) {
	s := shippedSnapshot(t)
	if got := len(s.Zones()); got != 2 {
		t.Fatalf("%d zones, want 2", got)
	}
	com := s.Zone("Example.COM")
	if com == nil || com.Origin != "example.com." || com.Serial != 2026112201 {
		t.Fatalf("Zone(example.com) = %+v", com)
	}
	// 32 records written out, 5 generated.
	if com.Records != 37 {
		t.Errorf("example.com has %d records, want 37", com.Records)
	}
	comSOA := "example.com. 300 IN SOA ns1.example.com. hostmaster.example.com. 2026112201 7200 3600 1209600 300"
	netSOA := "example.net. 600 IN SOA ns1.example.com. hostmaster.example.net. 2026112201 7200 3600 1209600 600"
	host1 := "host1.example.com. 3600 IN A 192.0.2.10"
	sub := []string{
		"sub.example.com. 3600 IN NS ns1.sub.example.com.",
		"sub.example.com. 3600 IN NS ns2.sub.example.com.",
		"sub.example.com. 3600 IN NS ns.example.net.",
	}
	glue := []string{
		"ns1.sub.example.com. 3600 IN A 192.0.2.101",
		"ns2.sub.example.com. 3600 IN AAAA 2001:db8::102",
	}
	runCases(t, s, []Case{
		{
			// Additional data only from the record's own zone, as NSD and
			// Knot do: mail.example.net is served here but is another zone.
			Name: "apex MX with additional from its own zone", Qname: "example.com.", Qtype: dns.TypeMX, Result: Success, AA: true,
			Answer: []string{
				"example.com. 3600 IN MX 10 mail.example.com.",
				"example.com. 3600 IN MX 20 mail.example.net.",
			},
			Extra: []string{
				"mail.example.com. 3600 IN A 192.0.2.25",
				"mail.example.com. 3600 IN AAAA 2001:db8::25",
			},
		},
		{
			Name: "apex NS", Qname: "example.com.", Qtype: dns.TypeNS, Result: Success, AA: true,
			Answer: []string{
				"example.com. 3600 IN NS ns1.example.com.",
				"example.com. 3600 IN NS ns2.example.net.",
			},
			Extra: []string{
				"ns1.example.com. 3600 IN A 192.0.2.53",
				"ns1.example.com. 3600 IN AAAA 2001:db8::53",
			},
		},
		{
			Name: "apex AAAA", Qname: "example.com.", Qtype: dns.TypeAAAA, Result: Success, AA: true,
			Answer: []string{"example.com. 3600 IN AAAA 2001:db8::1"},
		},
		{
			Name: "CNAME chain", Qname: "www.example.com.", Qtype: dns.TypeA, Result: Success, AA: true,
			Answer: []string{
				"www.example.com. 3600 IN CNAME web.example.com.",
				"web.example.com. 3600 IN CNAME host1.example.com.",
				host1,
			},
		},
		{
			Name: "CNAME qtype", Qname: "www.example.com.", Qtype: dns.TypeCNAME, Result: Success, AA: true,
			Answer: []string{"www.example.com. 3600 IN CNAME web.example.com."},
		},
		{
			Name: "CNAME chain to NODATA", Qname: "www.example.com.", Qtype: dns.TypeMX, Result: NoData, AA: true,
			Answer: []string{
				"www.example.com. 3600 IN CNAME web.example.com.",
				"web.example.com. 3600 IN CNAME host1.example.com.",
			},
			Ns: []string{comSOA},
		},
		{
			Name: "cross-zone CNAME", Qname: "ftp.example.com.", Qtype: dns.TypeA, Result: Success, AA: true,
			Answer: []string{
				"ftp.example.com. 3600 IN CNAME www.example.net.",
				"www.example.net. 1800 IN A 198.51.100.80",
			},
		},
		{
			Name: "cross-zone CNAME back", Qname: "alias.example.net.", Qtype: dns.TypeAAAA, Result: Success, AA: true,
			Answer: []string{
				"alias.example.net. 1800 IN CNAME www.example.com.",
				"www.example.com. 3600 IN CNAME web.example.com.",
				"web.example.com. 3600 IN CNAME host1.example.com.",
				"host1.example.com. 3600 IN AAAA 2001:db8::10",
			},
		},
		{
			Name: "CNAME loop", Qname: "loop1.example.com.", Qtype: dns.TypeA, Result: Success, AA: true,
			Answer: []string{
				"loop1.example.com. 3600 IN CNAME loop2.example.com.",
				"loop2.example.com. 3600 IN CNAME loop1.example.com.",
			},
		},
		{
			Name: "SRV additional", Qname: "_sip._udp.example.com.", Qtype: dns.TypeSRV, Result: Success, AA: true,
			Answer: []string{"_sip._udp.example.com. 3600 IN SRV 10 60 5060 sip.example.com."},
			Extra:  []string{"sip.example.com. 3600 IN A 192.0.2.60"},
		},
		{
			Name: "wildcard", Qname: "anything.wild.example.com.", Qtype: dns.TypeA, Result: Success, AA: true,
			Answer: []string{"anything.wild.example.com. 3600 IN A 192.0.2.99"},
		},
		{
			Name: "wildcard deeper", Qname: "a.b.wild.example.com.", Qtype: dns.TypeTXT, Result: Success, AA: true,
			Answer: []string{`a.b.wild.example.com. 3600 IN TXT "wildcard answer"`},
		},
		{
			Name: "wildcard NODATA", Qname: "anything.wild.example.com.", Qtype: dns.TypeMX, Result: NoData, AA: true,
			Ns: []string{comSOA},
		},
		{
			Name: "explicit name beats wildcard", Qname: "explicit.wild.example.com.", Qtype: dns.TypeA, Result: Success, AA: true,
			Answer: []string{"explicit.wild.example.com. 3600 IN A 192.0.2.98"},
		},
		{
			Name: "explicit name NODATA", Qname: "explicit.wild.example.com.", Qtype: dns.TypeTXT, Result: NoData, AA: true,
			Ns: []string{comSOA},
		},
		{
			Name: "literal wildcard", Qname: "*.wild.example.com.", Qtype: dns.TypeA, Result: Success, AA: true,
			Answer: []string{"*.wild.example.com. 3600 IN A 192.0.2.99"},
		},
		{
			Name: "empty non-terminal", Qname: "b.ent.example.com.", Qtype: dns.TypeTXT, Result: NoData, AA: true,
			Ns: []string{comSOA},
		},
		{
			Name: "below empty non-terminal", Qname: "a.b.ent.example.com.", Qtype: dns.TypeTXT, Result: Success, AA: true,
			Answer: []string{`a.b.ent.example.com. 3600 IN TXT "below an empty non-terminal"`},
		},
		{
			Name: "NXDOMAIN", Qname: "nx.example.com.", Qtype: dns.TypeA, Result: NameError, AA: true,
			Ns: []string{comSOA},
		},
		{
			Name: "NXDOMAIN beside empty non-terminal", Qname: "x.ent.example.com.", Qtype: dns.TypeA, Result: NameError, AA: true,
			Ns: []string{comSOA},
		},
		{
			Name: "referral", Qname: "www.sub.example.com.", Qtype: dns.TypeA, Result: Delegation, AA: false,
			Ns: sub, Extra: glue,
		},
		{
			Name: "referral at cut", Qname: "sub.example.com.", Qtype: dns.TypeNS, Result: Delegation, AA: false,
			Ns: sub, Extra: glue,
		},
		{
			Name: "glue is not answered", Qname: "ns1.sub.example.com.", Qtype: dns.TypeA, Result: Delegation, AA: false,
			Ns: sub, Extra: glue,
		},
		{
			Name: "DS at cut", Qname: "sub.example.com.", Qtype: dns.TypeDS, Result: Success, AA: true,
			Answer: []string{"sub.example.com. 3600 IN DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"},
		},
		{
			Name: "DS below cut", Qname: "x.sub.example.com.", Qtype: dns.TypeDS, Result: Delegation, AA: false,
			Ns: sub, Extra: glue,
		},
		{
			Name: "DNAME", Qname: "www.old.example.com.", Qtype: dns.TypeA, Result: Success, AA: true,
			Answer: []string{
				"old.example.com. 3600 IN DNAME example.net.",
				"www.old.example.com. 3600 IN CNAME www.example.net.",
				"www.example.net. 1800 IN A 198.51.100.80",
			},
		},
		{
			Name: "DNAME to NXDOMAIN", Qname: "nx.old.example.com.", Qtype: dns.TypeA, Result: NameError, AA: true,
			Answer: []string{
				"old.example.com. 3600 IN DNAME example.net.",
				"nx.old.example.com. 3600 IN CNAME nx.example.net.",
			},
			Ns: []string{netSOA},
		},
		{
			// The synthesized CNAME is the answer to a CNAME query: not
			// followed, no SOA (RFC 6672 3.2; what NSD and Knot answer).
			Name: "DNAME, qtype CNAME", Qname: "www.old.example.com.", Qtype: dns.TypeCNAME, Result: Success, AA: true,
			Answer: []string{
				"old.example.com. 3600 IN DNAME example.net.",
				"www.old.example.com. 3600 IN CNAME www.example.net.",
			},
		},
		{
			Name: "DNAME owner", Qname: "old.example.com.", Qtype: dns.TypeDNAME, Result: Success, AA: true,
			Answer: []string{"old.example.com. 3600 IN DNAME example.net."},
		},
		{
			Name: "DNAME owner other type", Qname: "old.example.com.", Qtype: dns.TypeA, Result: NoData, AA: true,
			Ns: []string{comSOA},
		},
		{
			Name: "$GENERATE", Qname: "host-3.example.com.", Qtype: dns.TypeA, Result: Success, AA: true,
			Answer: []string{"host-3.example.com. 3600 IN A 198.51.100.3"},
		},
		{
			Name: "wildcard CNAME", Qname: "bob.users.example.net.", Qtype: dns.TypeA, Result: Success, AA: true,
			Answer: []string{
				"bob.users.example.net. 1800 IN CNAME www.example.net.",
				"www.example.net. 1800 IN A 198.51.100.80",
			},
		},
		{
			Name: "case-insensitive", Qname: "WwW.ExAmPlE.CoM.", Qtype: dns.TypeA, Result: Success, AA: true,
			Answer: []string{
				"www.example.com. 3600 IN CNAME web.example.com.",
				"web.example.com. 3600 IN CNAME host1.example.com.",
				host1,
			},
		},
		{
			Name: "not fully qualified", Qname: "host1.example.com", Qtype: dns.TypeA, Result: Success, AA: true,
			Answer: []string{host1},
		},
		{
			Name: "wildcard keeps no query case", Qname: "UPPER.wild.example.com.", Qtype: dns.TypeA, Result: Success, AA: true,
			Answer: []string{"upper.wild.example.com. 3600 IN A 192.0.2.99"},
		},
		{
			Name: "not served", Qname: "example.org.", Qtype: dns.TypeA, Result: NotAuth, AA: false,
		},
		{
			Name: "root not served", Qname: ".", Qtype: dns.TypeNS, Result: NotAuth, AA: false,
		},
		{
			Name: "parent of zone not served", Qname: "com.", Qtype: dns.TypeNS, Result: NotAuth, AA: false,
		},
	})
}

// TestLookupZones covers DNAME, long CNAME chains, nested zones and other
// cases the shipped zones do not have.
func TestLookupZones(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("a", 63)
	chain := ""
	for i := 1; i < 20; i++ {
		chain += "c" + strconv.Itoa(i) + " CNAME c" + strconv.Itoa(i+1) + "\n"
	}
	p := writeZone(t, dir, "test.zone", `$ORIGIN test.
$TTL 300
@ SOA ns.test. h.test. 1 2 3 4 60
@ NS ns.test.
ns A 192.0.2.1
old 600 DNAME new.test.
www.new A 192.0.2.2
x DNAME `+long+"."+long+"."+long+`.
`+chain+`c20 A 192.0.2.20
dn CNAME www.old.test.
deleg NS ns.deleg.test.
deleg NS ns.child.test.
ns.deleg A 192.0.2.3
child NS ns.child.test.
ns.child A 192.0.2.4
into CNAME www.deleg.test.
*.wc CNAME c19.test.
ext CNAME www.example.org.
mx MX 10 ns.deleg.test.
mx2 MX 10 below.old.test.
`)
	child := writeZone(t, dir, "child.test.zone", `$TTL 300
@ SOA ns.child.test. h.test. 7 2 3 4 60
@ NS ns.child.test.
ns A 192.0.2.4
www A 192.0.2.5
`)
	orphan := writeZone(t, dir, "orphan.test.zone", "$TTL 300\n@ SOA ns.test. h.test. 9 2 3 4 60\n@ NS ns.test.\n")
	s := snapshotOf(t, p, child, orphan)
	soa := "test. 60 IN SOA ns.test. h.test. 1 2 3 4 60"
	var chain12 []string
	for i := 1; i <= 12; i++ {
		chain12 = append(chain12, "c"+strconv.Itoa(i)+".test. 300 IN CNAME c"+strconv.Itoa(i+1)+".test.")
	}
	deleg := []string{"deleg.test. 300 IN NS ns.deleg.test.", "deleg.test. 300 IN NS ns.child.test."}
	runCases(t, s, []Case{
		{
			Name: "DNAME synthesis uses the DNAME TTL", Qname: "www.old.test.", Qtype: dns.TypeA, Result: Success, AA: true,
			Answer: []string{
				"old.test. 600 IN DNAME new.test.",
				"www.old.test. 600 IN CNAME www.new.test.",
				"www.new.test. 300 IN A 192.0.2.2",
			},
		},
		{
			Name: "DNAME applies to any qtype below", Qname: "a.b.old.test.", Qtype: dns.TypeDNAME, Result: NameError, AA: true,
			Answer: []string{
				"old.test. 600 IN DNAME new.test.",
				"a.b.old.test. 600 IN CNAME a.b.new.test.",
			},
			Ns: []string{soa},
		},
		{
			Name: "CNAME into DNAME", Qname: "dn.test.", Qtype: dns.TypeA, Result: Success, AA: true,
			Answer: []string{
				"dn.test. 300 IN CNAME www.old.test.",
				"old.test. 600 IN DNAME new.test.",
				"www.old.test. 600 IN CNAME www.new.test.",
				"www.new.test. 300 IN A 192.0.2.2",
			},
		},
		{
			Name: "DNAME too long is YXDOMAIN", Qname: long + "." + long + ".x.test.", Qtype: dns.TypeA, Result: YXDomain, AA: true,
			Answer: []string{"x.test. 300 IN DNAME " + long + "." + long + "." + long + "."},
		},
		{
			Name: "chain stops after 12 CNAMEs", Qname: "c1.test.", Qtype: dns.TypeA, Result: Success, AA: true,
			Answer: chain12,
		},
		{
			Name: "chain of 2", Qname: "c18.test.", Qtype: dns.TypeA, Result: Success, AA: true,
			Answer: []string{
				"c18.test. 300 IN CNAME c19.test.",
				"c19.test. 300 IN CNAME c20.test.",
				"c20.test. 300 IN A 192.0.2.20",
			},
		},
		{
			Name: "wildcard CNAME chain", Qname: "x.wc.test.", Qtype: dns.TypeA, Result: Success, AA: true,
			Answer: []string{
				"x.wc.test. 300 IN CNAME c19.test.",
				"c19.test. 300 IN CNAME c20.test.",
				"c20.test. 300 IN A 192.0.2.20",
			},
		},
		{
			Name: "CNAME out of served zones", Qname: "ext.test.", Qtype: dns.TypeA, Result: Success, AA: true,
			Answer: []string{"ext.test. 300 IN CNAME www.example.org."},
		},
		{
			Name: "CNAME into a delegation", Qname: "into.test.", Qtype: dns.TypeA, Result: Delegation, AA: true,
			Answer: []string{"into.test. 300 IN CNAME www.deleg.test."},
			Ns:     deleg,
			Extra:  []string{"ns.deleg.test. 300 IN A 192.0.2.3"},
		},
		{
			Name: "served child wins over the delegation", Qname: "www.child.test.", Qtype: dns.TypeA, Result: Success, AA: true,
			Answer: []string{"www.child.test. 300 IN A 192.0.2.5"},
		},
		{
			Name: "child apex", Qname: "child.test.", Qtype: dns.TypeNS, Result: Success, AA: true,
			Answer: []string{"child.test. 300 IN NS ns.child.test."},
			Extra:  []string{"ns.child.test. 300 IN A 192.0.2.4"},
		},
		{
			Name: "DS for child apex from the parent", Qname: "child.test.", Qtype: dns.TypeDS, Result: NoData, AA: true,
			Ns: []string{soa},
		},
		{
			// The parent does not delegate orphan.test.: the child answers.
			Name: "DS for an undelegated child apex", Qname: "orphan.test.", Qtype: dns.TypeDS, Result: NoData, AA: true,
			Ns: []string{"orphan.test. 60 IN SOA ns.test. h.test. 9 2 3 4 60"},
		},
		{
			Name: "child NXDOMAIN has the child SOA", Qname: "nx.child.test.", Qtype: dns.TypeA, Result: NameError, AA: true,
			Ns: []string{"child.test. 60 IN SOA ns.child.test. h.test. 7 2 3 4 60"},
		},
		{
			// Glue is only for referrals: ns.deleg is below a cut.
			Name: "no additional from glue", Qname: "mx.test.", Qtype: dns.TypeMX, Result: Success, AA: true,
			Answer: []string{"mx.test. 300 IN MX 10 ns.deleg.test."},
		},
		{
			Name: "no additional below DNAME", Qname: "mx2.test.", Qtype: dns.TypeMX, Result: Success, AA: true,
			Answer: []string{"mx2.test. 300 IN MX 10 below.old.test."},
		},
		{
			// ns.child.test. is out of the deleg.test. domain: no glue
			// from this zone (it would come from the served child, but
			// glue is in-domain only).
			Name: "in-domain glue only", Qname: "deleg.test.", Qtype: dns.TypeA, Result: Delegation, AA: false,
			Ns: deleg, Extra: []string{"ns.deleg.test. 300 IN A 192.0.2.3"},
		},
	})
}

// TestLookupDoesNotShareSlices checks that appending to a response cannot
// write into the snapshot.
func TestLookupDoesNotShareSlices(t *testing.T) {
	s := shippedSnapshot(t)
	var r Response
	s.Lookup("example.com.", dns.TypeNS, &r)
	if len(r.Answer) != 2 {
		t.Fatalf("got %d NS", len(r.Answer))
	}
	r.Answer = append(r.Answer, rr(t, "evil.example.com. 1 IN A 192.0.2.66"))
	r.Answer[0] = rr(t, "evil.example.com. 1 IN A 192.0.2.67")
	r.Ns = append(r.Ns, rr(t, "evil.example.com. 1 IN A 192.0.2.68"))

	var r2 Response
	s.Lookup("example.com.", dns.TypeNS, &r2)
	checkResponse(t, &r2, Case{
		Result: Success, AA: true,
		Answer: []string{"example.com. 3600 IN NS ns1.example.com.", "example.com. 3600 IN NS ns2.example.net."},
		Extra: []string{
			"ns1.example.com. 3600 IN A 192.0.2.53",
			"ns1.example.com. 3600 IN AAAA 2001:db8::53",
		},
	})
	// Stored slices are clipped.
	for _, z := range s.Zones() {
		for name, n := range z.allNodes() {
			if sets := z.setsOf(n); len(sets) != cap(sets) {
				t.Errorf("%s: %d sets, cap %d", name, len(sets), cap(sets))
			}
		}
		if len(z.sets) != cap(z.sets) || len(z.rrData) != cap(z.rrData) || len(z.objs) != cap(z.objs) {
			t.Errorf("%s: stored arrays have spare capacity", z.Origin)
		}
	}
	// A wildcard answer is a copy: the stored record keeps its owner.
	s.Lookup("x.wild.example.com.", dns.TypeA, &r)
	r.Answer[0].Header().Ttl = 1
	s.Lookup("*.wild.example.com.", dns.TypeA, &r2)
	if got := r2.Answer[0].Header(); got.Name != "*.wild.example.com." || got.Ttl != 3600 {
		t.Errorf("stored wildcard changed: %v", r2.Answer[0])
	}
}

// TestLookupAllocs keeps the lookups the server's fast path makes
// (NXDOMAIN, NODATA, referral, REFUSED) free of allocations, and bounds
// the others: each RR they answer with is unpacked from the zone's wire
// data (records.go), 3 allocations for an A record (its header, the RR,
// the address), more for a name in the RDATA.
func TestLookupAllocs(t *testing.T) {
	s := shippedSnapshot(t)
	for _, c := range []struct {
		qname string
		qtype uint16
		max   float64
	}{
		{"host1.example.com.", dns.TypeA, 3},
		{"HOST1.Example.Com.", dns.TypeA, 3},
		{"www.example.com.", dns.TypeA, 9}, // CNAME chain
		{"example.com.", dns.TypeMX, 12},   // additional section
		{"nx.example.com.", dns.TypeA, 0},
		{"host1.example.com.", dns.TypeMX, 0},
		{"www.sub.example.com.", dns.TypeA, 0},
		{"sub.example.com.", dns.TypeNS, 0},
		{"example.org.", dns.TypeA, 0},
		// A wildcard answer: qname copied, and the RR unpacked with it.
		{"x.wild.example.com.", dns.TypeA, 4},
	} {
		t.Run(c.qname+"/"+dns.TypeToString[c.qtype], func(t *testing.T) {
			var r Response
			s.Lookup(c.qname, c.qtype, &r) // grow the slices
			got := testing.AllocsPerRun(100, func() { s.Lookup(c.qname, c.qtype, &r) })
			if got > c.max {
				t.Errorf("%v allocs per Lookup, want <= %v", got, c.max)
			}
		})
	}
}

func TestSnapshot(t *testing.T) {
	com := mustParse(t, "../zones/example.com.zone")
	net := mustParse(t, "../zones/example.net.zone")
	com2 := zoneFromText(t, "example.com.zone", "@ 60 SOA ns. h. 2 1 1 1 1\n@ 60 NS ns.\n")

	if _, err := NewSnapshot(com, com2); err == nil || !strings.Contains(err.Error(), com.File) || !strings.Contains(err.Error(), com2.File) {
		t.Errorf("duplicate origin: err = %v, want both files named", err)
	}
	s, err := NewSnapshot(net, com)
	if err != nil {
		t.Fatal(err)
	}
	if zs := s.Zones(); len(zs) != 2 || zs[0] != com || zs[1] != net {
		t.Errorf("Zones() = %v, want sorted", zs)
	}
	if s.Find("a.b.WWW.example.net") != net || s.Find("example.com.") != com || s.Find("org.") != nil {
		t.Error("Find picks the wrong zone")
	}
	s2 := s.With(com2)
	if s2.Zone("example.com.") != com2 || s.Zone("example.com.") != com || s2.Zone("example.net.") != net {
		t.Error("With replaced the wrong zone or changed s")
	}
	s3 := s2.Without("EXAMPLE.com")
	if s3.Zone("example.com.") != nil || len(s3.Zones()) != 1 || len(s2.Zones()) != 2 {
		t.Error("Without removed the wrong zone or changed s2")
	}

	st := NewStore(nil)
	var r Response
	st.Load().Lookup("example.com.", dns.TypeSOA, &r)
	if r.Result != NotAuth || r.Authoritative() {
		t.Errorf("empty store: %v", r.Result)
	}
	st.Store(s)
	st.Load().Lookup("example.com.", dns.TypeSOA, &r)
	if r.Result != Success || r.Zone != com || len(r.Answer) != 1 {
		t.Errorf("after Store: %v %v", r.Result, r.Answer)
	}
}

// TestStoreConcurrent swaps snapshots while readers look up: run with
// -race, it shows readers and the writer share nothing mutable.
func TestStoreConcurrent(t *testing.T) {
	a := shippedSnapshot(t)
	b := a.Without("example.net.")
	st := NewStore(a)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r Response
			for i := range 2000 {
				q := benchQueries[i%len(benchQueries)]
				st.Load().Lookup(q.qname, q.qtype, &r)
				if q.name == "hit" && (r.Result != Success || len(r.Answer) != 1) {
					t.Errorf("%s: %v %v", q.qname, r.Result, r.Answer)
					return
				}
			}
		}()
	}
	for i := range 200 {
		if i%2 == 0 {
			st.Store(b)
		} else {
			st.Store(a)
		}
	}
	wg.Wait()
}

// FuzzLookup looks up any name and type in the shipped zones: no panic, and
// a response consistent with its result.
func FuzzLookup(f *testing.F) {
	for _, q := range benchQueries {
		f.Add(q.qname, q.qtype)
	}
	f.Add("", uint16(0))
	f.Add(".", dns.TypeANY)
	f.Add("a\\.b.example.com.", dns.TypeA)
	f.Add("\\255.*.wild.example.com", dns.TypeTXT)
	f.Add(strings.Repeat("x.", 120)+"old.example.com.", dns.TypeA)
	s := shippedSnapshot(f)
	f.Fuzz(func(t *testing.T, qname string, qtype uint16) {
		var r Response
		s.Lookup(qname, qtype, &r)
		switch r.Result {
		case NotAuth:
			if len(r.Answer)+len(r.Ns)+len(r.Extra) != 0 || r.Zone != nil {
				t.Fatalf("NotAuth with data: %v", r)
			}
		case NameError, NoData:
			if len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA {
				t.Fatalf("%v without SOA: %v", r.Result, r.Ns)
			}
		case Delegation:
			if len(r.Ns) == 0 || r.Ns[0].Header().Rrtype != dns.TypeNS {
				t.Fatalf("referral without NS: %v", r.Ns)
			}
		}
		if len(r.Answer) > 2*maxChain+10 {
			t.Fatalf("%d answers", len(r.Answer))
		}
	})
}
