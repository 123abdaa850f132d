package zone

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// TestStoredRecords checks that records of many types come back from the
// zone's wire storage (records.go) as they were written, in load order per
// RRset even when a set's records are not together in the file.
func TestStoredRecords(t *testing.T) {
	records := []string{
		"rt.example. 300 IN SOA ns1.rt.example. hostmaster.rt.example. 7 7200 3600 1209600 300",
		"rt.example. 300 IN NS ns1.rt.example.",
		"rt.example. 300 IN NS NS2.Elsewhere.example.",
		"rt.example. 300 IN MX 10 Mail.rt.example.",
		"rt.example. 300 IN TXT \"v=spf1 -all\" \"two words\" \"semi;colon\" \"quote\\\"d\"",
		"rt.example. 300 IN CAA 0 issue \"ca.example.net\"",
		"rt.example. 300 IN DNSKEY 257 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==",
		"ns1.rt.example. 300 IN A 192.0.2.1",
		"ns1.rt.example. 300 IN AAAA 2001:db8::1",
		"a.rt.example. 60 IN A 192.0.2.10",
		"b.rt.example. 300 IN A 192.0.2.20",
		"a.rt.example. 120 IN A 192.0.2.11", // a's set continues after b's
		"b.rt.example. 300 IN AAAA 2001:db8::20",
		"a.rt.example. 300 IN A 192.0.2.12",
		"_sip._tcp.rt.example. 300 IN SRV 10 60 5060 Sip.rt.example.",
		"4.rt.example. 300 IN PTR host.rt.example.",
		"c.rt.example. 300 IN CNAME a.rt.example.",
		"d.rt.example. 300 IN DNAME target.example.",
		"s.rt.example. 300 IN SSHFP 1 1 123456789abcdef67890123456789abcdef67890",
		"_443._tcp.rt.example. 300 IN TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"n.rt.example. 300 IN NAPTR 100 10 \"U\" \"E2U+sip\" \"!^.*$!sip:info@example.com!\" .",
		"h.rt.example. 300 IN HINFO \"cpu\" \"os\"",
		"l.rt.example. 300 IN LOC 52 22 23.000 N 4 53 32.000 E -2.00m 0.00m 10000m 10m",
		"svc.rt.example. 300 IN HTTPS 1 . alpn=\"h2,h3\" port=8443",
		"u.rt.example. 300 IN URI 10 1 \"https://example.com/\"",
		"x.rt.example. 300 IN TYPE65000 \\# 3 abcdef",
		"sub.rt.example. 300 IN NS ns.sub.rt.example.",
		"sub.rt.example. 300 IN DS 12345 13 2 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"ns.sub.rt.example. 300 IN A 192.0.2.53",
	}
	z := zoneFromText(t, "rt.example.zone", strings.Join(records, "\n")+"\n")
	if z.Records != len(records) {
		t.Fatalf("%d records, want %d", z.Records, len(records))
	}
	// In AXFR order: the SOA, the apex, then the names in canonical order,
	// each set in load order.
	// Each record is compared in presentation form and packed (as the
	// server would send it: the same bytes as the record parsed).
	buf := make([]byte, dns.MaxMsgSize)
	packed := func(r dns.RR) string {
		n, err := dns.PackRR(dns.Copy(r), buf, 0, nil, false)
		if err != nil {
			t.Fatalf("%v: %v", r, err)
		}
		return string(buf[:n])
	}
	want := map[string][]string{}
	for _, s := range records {
		r := rr(t, s)
		k := r.Header().Name + " " + dns.TypeToString[r.Header().Rrtype]
		want[k] = append(want[k], strings.ToLower(r.String()), packed(r))
	}
	got := map[string][]string{}
	for _, r := range z.AllRecords() {
		k := r.Header().Name + " " + dns.TypeToString[r.Header().Rrtype]
		got[k] = append(got[k], strings.ToLower(r.String()), packed(r))
	}
	for k, w := range want {
		if strings.Join(got[k], "\n") != strings.Join(w, "\n") {
			t.Errorf("%s:\n got %q\nwant %q", k, got[k], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d RRsets, want %d", len(got), len(want))
	}
	// Lookup answers the same records, named by the node.
	s := mustSnapshot(t, z)
	var r Response
	s.Lookup("A.rt.example.", dns.TypeA, &r)
	checkResponse(t, &r, Case{Result: Success, AA: true, Answer: []string{
		"a.rt.example. 60 IN A 192.0.2.10", "a.rt.example. 120 IN A 192.0.2.11", "a.rt.example. 300 IN A 192.0.2.12",
	}})
	if r.Answer[1].Header().Ttl != 120 {
		t.Errorf("set order: %v", r.Answer)
	}
}

// TestStoredObjects checks which RRsets are kept as dns.RR objects: those
// of a referral (a cut's NS, its in-bailiwick glue) and those miekg/dns
// does not pack, which are loaded and served as before.
func TestStoredObjects(t *testing.T) {
	z := zoneFromText(t, "obj.example.zone", `$ORIGIN obj.example.
$TTL 300
@ SOA ns1 hostmaster 1 7200 3600 1209600 300
@ NS ns1
ns1 A 192.0.2.1
sub NS ns.sub
sub NS ns.other.example.
sub NS ns1
ns.sub A 192.0.2.2
ns.sub AAAA 2001:db8::2
ns.sub TXT "not glue"
bad DNSKEY 257 3 8 !!!notbase64
bad2 A 192.0.2.3
bad2 DS 1 8 2 zz
bad2 DS 1 8 2 0123456789abcdef
`)
	obj := map[string]bool{}
	for name, n := range z.allNodes() {
		for _, set := range z.setsOf(n) {
			obj[name+" "+dns.TypeToString[set.typ]] = set.obj
		}
	}
	for k, want := range map[string]bool{
		"obj.example. NS":          false,
		"ns1.obj.example. A":       false, // glue outside the cut: not sent in a referral
		"sub.obj.example. NS":      true,
		"ns.sub.obj.example. A":    true,
		"ns.sub.obj.example. AAAA": true,
		"ns.sub.obj.example. TXT":  false,
		"bad.obj.example. DNSKEY":  true,
		"bad2.obj.example. A":      false,
		"bad2.obj.example. DS":     true,
	} {
		if got, ok := obj[k]; !ok || got != want {
			t.Errorf("%s: object %v (present %v), want %v", k, got, ok, want)
		}
	}
	s := mustSnapshot(t, z)
	runCases(t, s, []Case{
		{Qname: "www.sub.obj.example.", Qtype: dns.TypeA, Result: Delegation,
			Ns:    []string{"sub.obj.example. 300 IN NS ns.sub.obj.example.", "sub.obj.example. 300 IN NS ns.other.example.", "sub.obj.example. 300 IN NS ns1.obj.example."},
			Extra: []string{"ns.sub.obj.example. 300 IN A 192.0.2.2", "ns.sub.obj.example. 300 IN AAAA 2001:db8::2"}},
		{Qname: "bad.obj.example.", Qtype: dns.TypeDNSKEY, Result: Success, AA: true,
			Answer: []string{"bad.obj.example. 300 IN DNSKEY 257 3 8 !!!notbase64"}},
		{Qname: "bad2.obj.example.", Qtype: dns.TypeDS, Result: Success, AA: true,
			Answer: []string{"bad2.obj.example. 300 IN DS 1 8 2 zz", "bad2.obj.example. 300 IN DS 1 8 2 0123456789abcdef"}},
	})
	var r Response
	s.Lookup("www.sub.obj.example.", dns.TypeA, &r)
	if n := testing.AllocsPerRun(100, func() { s.Lookup("www.sub.obj.example.", dns.TypeA, &r) }); n != 0 {
		t.Errorf("referral: %v allocs per Lookup, want 0", n)
	}
	if got := len(z.AllRecords()); got != z.Records || z.Records != 13 {
		t.Errorf("AllRecords: %d records, zone %d, want 13", got, z.Records)
	}
}

// TestStoredDuplicates checks that duplicate RRs are dropped (RFC 2181
// section 5) as dns.IsDuplicate finds them, names in RDATA compared without
// regard to case, in small and large sets, whether or not a set's records
// are together in the file.
func TestStoredDuplicates(t *testing.T) {
	var b strings.Builder
	b.WriteString("$ORIGIN dup.example.\n$TTL 300\n@ SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ NS ns1\n@ NS NS1\n@ NS ns1.dup.example.\nns1 A 192.0.2.1\n")
	b.WriteString("m MX 10 Mail\nother A 192.0.2.2\nm 600 MX 10 mail\nm MX 20 mail\nother A 192.0.2.2\n")
	b.WriteString("t TXT \"a b\"\nt TXT \"a\" \"b\"\nother AAAA 2001:db8::1\nt 60 TXT \"a b\"\nother AAAA 2001:DB8:0::1\n")
	for i := range 40 { // a large set: duplicates found through a map
		b.WriteString("big A 10.0.0." + strconv.Itoa(i%30) + "\n")
		if i%7 == 0 {
			b.WriteString("other2 A 192.0.2." + strconv.Itoa(i) + "\n")
		}
	}
	z := zoneFromText(t, "dup.example.zone", b.String())
	s := mustSnapshot(t, z)
	var want []string
	for i := range 30 {
		want = append(want, "big.dup.example. 300 IN A 10.0.0."+strconv.Itoa(i))
	}
	runCases(t, s, []Case{
		{Qname: "dup.example.", Qtype: dns.TypeNS, Result: Success, AA: true,
			Answer: []string{"dup.example. 300 IN NS ns1.dup.example."},
			Extra:  []string{"ns1.dup.example. 300 IN A 192.0.2.1"}},
		{Qname: "m.dup.example.", Qtype: dns.TypeMX, Result: Success, AA: true,
			Answer: []string{"m.dup.example. 300 IN MX 10 Mail.dup.example.", "m.dup.example. 300 IN MX 20 mail.dup.example."}},
		{Qname: "big.dup.example.", Qtype: dns.TypeA, Result: Success, AA: true, Answer: want},
		{Qname: "t.dup.example.", Qtype: dns.TypeTXT, Result: Success, AA: true,
			Answer: []string{`t.dup.example. 300 IN TXT "a b"`, `t.dup.example. 300 IN TXT "a" "b"`}},
		{Qname: "other.dup.example.", Qtype: dns.TypeA, Result: Success, AA: true,
			Answer: []string{"other.dup.example. 300 IN A 192.0.2.2"}},
		{Qname: "other.dup.example.", Qtype: dns.TypeAAAA, Result: Success, AA: true,
			Answer: []string{"other.dup.example. 300 IN AAAA 2001:db8::1"}},
	})
	if z.Records != 1+1+1+2+1+2+1+30+6 {
		t.Errorf("%d records", z.Records)
	}
}

// FuzzStored loads zone files and checks the stored records: AllRecords
// unpacks every one, and every precomputed message is what miekg/dns packs
// for the Lookup answer.
func FuzzStored(f *testing.F) {
	head := "$ORIGIN fuzz.example.\n$TTL 300\n@ SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ NS ns1\nns1 A 192.0.2.1\n"
	for _, body := range []string{
		"a A 192.0.2.1\nb A 192.0.2.2\na A 192.0.2.3\na A 192.0.2.1\n",
		"m MX 10 Mail\nm MX 10 mail\nmail A 192.0.2.9\nmail AAAA 2001:db8::9\n",
		"sub NS ns.sub\nsub NS NS.sub\nns.sub A 192.0.2.5\n* TXT \"x\" \"y;z\"\nc CNAME a\n",
		"bad DNSKEY 257 3 8 !!!\nbad DS 1 8 2 zz\nx TYPE65000 \\# 2 abcd\nd DNAME other.example.\n",
		"s SRV 1 2 3 Target\nh HTTPS 1 . alpn=h2\nl LOC 52 22 23 N 4 53 32 E -2m\n",
	} {
		f.Add(head + body)
	}
	dir := f.TempDir()
	path := filepath.Join(dir, "fuzz.example.zone")
	f.Fuzz(func(t *testing.T, body string) {
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		z, err := ParseFile(path, dir)
		if err != nil {
			return
		}
		if got := len(z.AllRecords()); got != z.Records {
			t.Fatalf("AllRecords: %d records, zone %d", got, z.Records)
		}
		s := mustSnapshot(t, z)
		for name, n := range z.allNodes() {
			for _, set := range z.setsOf(n) {
				checkPrecomputed(t, s, name, set.typ)
			}
		}
	})
}
