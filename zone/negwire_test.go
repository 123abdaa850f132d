package zone

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// TestAppendNegative checks the precomputed authority section of negative
// answers against miekg/dns packing the same message with compression, for
// SOAs whose names compress against the apex, against each other, against
// names below the apex, or not at all, and for questions of every length
// up to 255 bytes, in zones named by short and long origins and the root.
func TestAppendNegative(t *testing.T) {
	long := strings.Repeat("l", 60) + "." + strings.Repeat("m", 60) + "." + strings.Repeat("n", 60) + ".example."
	for _, c := range []struct {
		origin, soa string
		template    bool // a template is built
	}{
		{"example.com.", "ns1.example.com. hostmaster.example.com.", true},
		{"example.com.", "ns.other.net. host.other.net.", true},
		{"example.com.", "ns.other.net. hostmaster.example.com.", true},
		{"example.com.", "a.b.example.com. c.b.example.com.", true},
		{"example.com.", "example.com. example.com.", true},
		{"example.com.", "NS1.Example.COM. h\\.master.example.com.", true},
		{long + "", "ns1." + long + " hostmaster." + long, true},
		{".", "a.root-servers.net. nstld.verisign-grs.com.", true},
		{"a.example.", "a.a.example. b.a.example.", true}, // "a.a.example." is taken: another label is used
	} {
		dir := t.TempDir()
		path := filepath.Join(dir, "z.zone")
		data := "$ORIGIN " + c.origin + "\n@ 3600 SOA " + c.soa + " 1 7200 3600 1209600 300\n@ NS ns.other.net.\n"
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		z := mustParse(t, path)
		if (z.pre.neg != nil) != c.template {
			t.Fatalf("%s %s: template %v, want %v", c.origin, c.soa, z.pre.neg != nil, c.template)
		}
		soa := z.neg.(*dns.SOA)
		var names []string
		for _, n := range []string{soa.Ns, soa.Mbox} {
			n = canonicalName(n)
			names = append(names, n, "x."+n, "sub.x."+n)
		}
		for l := 1; len(names) < 400; l++ {
			q := strings.Repeat("q", min(l, 63)) + "." + strings.Repeat("r.", l/64) + c.origin
			if c.origin == "." {
				q = q[:len(q)-1]
			}
			if len(q) > 250 {
				break
			}
			names = append(names, q)
		}
		under := func(l string) string {
			if c.origin == "." {
				return l + "."
			}
			return l + "." + c.origin
		}
		names = append(names, c.origin, under("a\\.b"), under("x\\065"), under("*"))
		general, fast := 0, 0
		for _, q := range names {
			if !dns.IsSubDomain(c.origin, q) || len(q) > 254 {
				continue
			}
			m := &dns.Msg{Compress: true, Question: []dns.Question{{Name: q, Qtype: dns.TypeA, Qclass: dns.ClassINET}}, Ns: []dns.RR{z.neg}}
			want, err := m.Pack()
			if err != nil {
				t.Fatalf("%s, SOA %s, question %s: %v", c.origin, c.soa, q, err)
			}
			qEnd, err := dns.PackDomainName(q, make([]byte, 256), 0, nil, false)
			if err != nil {
				t.Fatal(err)
			}
			qEnd += headerLen + 4
			buf := make([]byte, 0, 4096)
			buf = append(buf, want[:qEnd]...)
			got, ok := z.AppendNegative(buf, qEnd, canonicalName(q), []dns.RR{z.neg})
			if !ok {
				general++
				continue
			}
			fast++
			if !bytes.Equal(got, want) {
				t.Errorf("%s, SOA %s, question %s:\n got %x\nwant %x", c.origin, c.soa, q, got, want)
			}
		}
		if c.template && fast < 50 {
			t.Errorf("%s, SOA %s: %d questions answered from the template, %d not", c.origin, c.soa, fast, general)
		}
		// Not z's SOA, or a buffer too small: refused.
		if _, ok := z.AppendNegative(make([]byte, 0, 4096), 30, "x."+c.origin, []dns.RR{dns.Copy(z.neg)}); ok {
			t.Errorf("%s: another SOA accepted", c.origin)
		}
		if _, ok := z.AppendNegative(make([]byte, 0, 40), 30, "x."+c.origin, []dns.RR{z.neg}); ok {
			t.Errorf("%s: a buffer too small accepted", c.origin)
		}
	}
}
