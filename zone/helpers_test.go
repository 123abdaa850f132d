package zone

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// rr parses one record in zone file syntax.
func rr(t testing.TB, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("bad test record %q: %v", s, err)
	}
	if r == nil {
		t.Fatalf("no record in %q", s)
	}
	return r
}

// Case is one lookup and the response it must give. Records are in zone
// file syntax; sections are compared without regard to order, and names
// without regard to case.
type Case struct {
	Name   string // subtest name; defaults to Qname/Qtype
	Qname  string
	Qtype  uint16
	Result Result
	AA     bool
	Answer []string
	Ns     []string
	Extra  []string
}

func (c Case) name() string {
	if c.Name != "" {
		return c.Name
	}
	return c.Qname + "/" + dns.TypeToString[c.Qtype]
}

// normalize renders records in a canonical text form, sorted.
func normalize(t testing.TB, rrs []dns.RR) []string {
	t.Helper()
	out := make([]string, 0, len(rrs))
	for _, r := range rrs {
		// Round-trip through the parser so expected and actual records
		// print the same way.
		out = append(out, strings.ToLower(rr(t, r.String()).String()))
	}
	slices.Sort(out)
	return out
}

func parseAll(t testing.TB, ss []string) []dns.RR {
	t.Helper()
	var out []dns.RR
	for _, s := range ss {
		out = append(out, rr(t, s))
	}
	return out
}

func runCases(t *testing.T, s *Snapshot, cases []Case) {
	t.Helper()
	var r Response
	for _, c := range cases {
		t.Run(c.name(), func(t *testing.T) {
			s.Lookup(c.Qname, c.Qtype, &r)
			checkResponse(t, &r, c)
		})
	}
}

func checkResponse(t *testing.T, r *Response, c Case) {
	t.Helper()
	if r.Result != c.Result {
		t.Errorf("result = %v, want %v", r.Result, c.Result)
	}
	if got := r.Authoritative(); got != c.AA {
		t.Errorf("AA = %v, want %v", got, c.AA)
	}
	for _, sec := range []struct {
		name      string
		got, want []dns.RR
	}{
		{"answer", r.Answer, parseAll(t, c.Answer)},
		{"authority", r.Ns, parseAll(t, c.Ns)},
		{"additional", r.Extra, parseAll(t, c.Extra)},
	} {
		got, want := normalize(t, sec.got), normalize(t, sec.want)
		if !slices.Equal(got, want) {
			t.Errorf("%s section:\n got: %s\nwant: %s", sec.name,
				strings.Join(got, "\n      "), strings.Join(want, "\n      "))
		}
	}
}

// mustParse parses a zone file in testdata.
func mustParse(t testing.TB, path string) *Zone {
	t.Helper()
	z, err := ParseFile(path, filepath.Dir(path))
	if err != nil {
		t.Fatalf("ParseFile(%s): %v", path, err)
	}
	return z
}

// snapshotOf parses zone files and builds a snapshot of them.
func snapshotOf(t testing.TB, paths ...string) *Snapshot {
	t.Helper()
	var zs []*Zone
	for _, p := range paths {
		zs = append(zs, mustParse(t, p))
	}
	s, err := NewSnapshot(zs...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// writeZone writes a zone file named name with content into dir.
func writeZone(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// zoneFromText parses content as the zone file dir/name.
func zoneFromText(t testing.TB, name, content string) *Zone {
	t.Helper()
	dir := t.TempDir()
	return mustParse(t, writeZone(t, dir, name, content))
}
