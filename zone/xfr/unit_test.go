package xfr

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func rr(t testing.TB, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return r
}

func rrs(t testing.TB, lines ...string) []dns.RR {
	t.Helper()
	out := make([]dns.RR, len(lines))
	for i, l := range lines {
		out[i] = rr(t, l)
	}
	return out
}

// texts returns the records in presentation form, sorted.
func texts(rs []dns.RR) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	slices.Sort(out)
	return out
}

func soaLine(serial string) string {
	return "example.org. 3600 IN SOA ns.example.org. host.example.org. " + serial + " 3600 600 86400 300"
}

func TestSerialCompare(t *testing.T) {
	tests := []struct {
		a, b uint32
		want int
	}{
		{1, 1, 0},
		{2, 1, 1},
		{1, 2, -1},
		{0, 0xFFFFFFFF, 1},          // wrap: 0 follows 2^32-1
		{0xFFFFFFFF, 0, -1},         //
		{5, 0xFFFFFFF0, 1},          // across the wrap
		{0x7FFFFFFF, 0, 1},          // the largest step forward
		{0x80000000, 0, -1},         // 2^31 apart: undefined, never newer
		{0, 0x80000000, -1},         // in either direction
		{2019010100, 2019010099, 1}, // date serials
	}
	for _, tt := range tests {
		if got := serialCompare(tt.a, tt.b); got != tt.want {
			t.Errorf("serialCompare(%d, %d) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := serialNewer(tt.a, tt.b); got != (tt.want > 0) {
			t.Errorf("serialNewer(%d, %d) = %v", tt.a, tt.b, got)
		}
	}
}

func baseZone(t *testing.T) *recordSet {
	t.Helper()
	rs, err := fromAXFR("example.org.", rrs(t,
		soaLine("1"),
		"example.org. 3600 IN NS ns.example.org.",
		"ns.example.org. 3600 IN A 192.0.2.1",
		"www.example.org. 3600 IN A 192.0.2.10",
		"www.example.org. 3600 IN A 192.0.2.20",
		soaLine("1"),
	))
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestApplyIXFR(t *testing.T) {
	tests := []struct {
		name    string
		ixfr    []string
		want    []string // the whole zone after, when it applies
		wantErr bool     // errInconsistent: the caller falls back to AXFR
	}{
		{
			name: "one delta",
			ixfr: []string{soaLine("2"),
				soaLine("1"), "www.example.org. 3600 IN A 192.0.2.10",
				soaLine("2"), "www.example.org. 3600 IN A 192.0.2.11",
				soaLine("2")},
			want: []string{soaLine("2"), "example.org. 3600 IN NS ns.example.org.", "ns.example.org. 3600 IN A 192.0.2.1",
				"www.example.org. 3600 IN A 192.0.2.11", "www.example.org. 3600 IN A 192.0.2.20"},
		},
		{
			name: "three deltas, adds then deletes of the same record",
			ixfr: []string{soaLine("4"),
				soaLine("1"), soaLine("2"), "mail.example.org. 300 IN A 192.0.2.25", "example.org. 3600 IN MX 10 mail.example.org.",
				soaLine("2"), "mail.example.org. 300 IN A 192.0.2.25", "www.example.org. 3600 IN A 192.0.2.20",
				soaLine("3"), "mail.example.org. 300 IN A 192.0.2.26",
				soaLine("3"), "example.org. 3600 IN MX 10 mail.example.org.", soaLine("4"), "example.org. 3600 IN TXT \"v=1\"",
				soaLine("4")},
			want: []string{soaLine("4"), "example.org. 3600 IN NS ns.example.org.", "ns.example.org. 3600 IN A 192.0.2.1",
				"www.example.org. 3600 IN A 192.0.2.10", "mail.example.org. 300 IN A 192.0.2.26", "example.org. 3600 IN TXT \"v=1\""},
		},
		{
			name: "delete matches whatever the TTL and case, add replaces the TTL",
			ixfr: []string{soaLine("2"),
				soaLine("1"), "WWW.Example.ORG. 60 IN A 192.0.2.10",
				soaLine("2"), "ns.example.org. 60 IN A 192.0.2.1",
				soaLine("2")},
			want: []string{soaLine("2"), "example.org. 3600 IN NS ns.example.org.", "ns.example.org. 60 IN A 192.0.2.1",
				"www.example.org. 3600 IN A 192.0.2.20"},
		},
		{
			name: "deletes a record we lack",
			ixfr: []string{soaLine("2"),
				soaLine("1"), "www.example.org. 3600 IN A 192.0.2.99",
				soaLine("2"),
				soaLine("2")},
			wantErr: true,
		},
		{
			name: "starts from another serial",
			ixfr: []string{soaLine("3"),
				soaLine("2"), soaLine("3"), "x.example.org. 3600 IN A 192.0.2.3",
				soaLine("3")},
			wantErr: true,
		},
		{
			name: "ends before the announced serial",
			ixfr: []string{soaLine("3"),
				soaLine("1"), soaLine("2"), "x.example.org. 3600 IN A 192.0.2.3",
				soaLine("3")},
			wantErr: true,
		},
		{
			name: "adds a record outside the zone",
			ixfr: []string{soaLine("2"),
				soaLine("1"), soaLine("2"), "www.example.com. 3600 IN A 192.0.2.3",
				soaLine("2")},
			wantErr: true,
		},
		{
			name: "delta without its new SOA",
			ixfr: []string{soaLine("2"),
				soaLine("1"), "www.example.org. 3600 IN A 192.0.2.10",
				soaLine("2")},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cur := baseZone(t)
			before := texts(cur.records())
			got, err := applyIXFR(cur, rrs(t, tt.ixfr...))
			if !slices.Equal(texts(cur.records()), before) {
				t.Errorf("applyIXFR changed the current version")
			}
			if tt.wantErr {
				if !errors.Is(err, errInconsistent) {
					t.Fatalf("err = %v, want errInconsistent", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g, w := texts(got.records()), texts(rrs(t, tt.want...)); !slices.Equal(g, w) {
				t.Errorf("zone after IXFR:\n%s\nwant:\n%s", strings.Join(g, "\n"), strings.Join(w, "\n"))
			}
		})
	}
}

func TestFromAXFR(t *testing.T) {
	ns := "example.org. 3600 IN NS ns.example.org."
	tests := []struct {
		name string
		axfr []string
		ok   bool
	}{
		{"good", []string{soaLine("7"), ns, soaLine("7")}, true},
		{"serials differ", []string{soaLine("7"), ns, soaLine("8")}, false},
		{"no final SOA", []string{soaLine("7"), ns}, false},
		{"SOA in the middle", []string{soaLine("7"), soaLine("7"), ns, soaLine("7")}, false},
		{"outside the zone", []string{soaLine("7"), "example.com. 3600 IN NS ns.example.org.", soaLine("7")}, false},
		{"class CH", []string{soaLine("7"), "example.org. 3600 CH TXT x", soaLine("7")}, false},
		{"SOA only", []string{soaLine("7")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := fromAXFR("example.org.", rrs(t, tt.axfr...))
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if tt.ok && rs.len() != len(tt.axfr)-1 {
				t.Errorf("%d records, want %d", rs.len(), len(tt.axfr)-1)
			}
		})
	}
}

func TestParseCatalog(t *testing.T) {
	const cat = "catalog.invalid."
	head := []string{
		cat + " 0 IN SOA invalid. invalid. 1 3600 600 86400 0",
		cat + " 0 IN NS invalid.",
	}
	version2 := `version.catalog.invalid. 0 IN TXT "2"`
	tests := []struct {
		name    string
		records []string
		want    map[string]string
		wantErr bool
	}{
		{
			name: "two members",
			records: []string{version2,
				"a1.zones.catalog.invalid. 0 IN PTR example.org.",
				"b2.zones.catalog.invalid. 0 IN PTR Example.NET.",
				`group.a1.zones.catalog.invalid. 0 IN TXT "blue"`,
				"coo.b2.zones.catalog.invalid. 0 IN PTR other.invalid."},
			want: map[string]string{"example.org.": "a1", "example.net.": "b2"},
		},
		{name: "no members", records: []string{version2}, want: map[string]string{}},
		{name: "no version", records: []string{"a1.zones.catalog.invalid. 0 IN PTR example.org."}, wantErr: true},
		{name: "version 1", records: []string{`version.catalog.invalid. 0 IN TXT "1"`, "a1.zones.catalog.invalid. 0 IN PTR example.org."}, wantErr: true},
		{name: "two versions", records: []string{version2, `version.catalog.invalid. 0 IN TXT "1"`}, wantErr: true},
		{
			name: "an ID with two PTRs is ignored",
			records: []string{version2,
				"a1.zones.catalog.invalid. 0 IN PTR example.org.",
				"a1.zones.catalog.invalid. 0 IN PTR example.com.",
				"b2.zones.catalog.invalid. 0 IN PTR example.net."},
			want: map[string]string{"example.net.": "b2"},
		},
		{
			name: "a zone under two IDs keeps the first",
			records: []string{version2,
				"z9.zones.catalog.invalid. 0 IN PTR example.org.",
				"a1.zones.catalog.invalid. 0 IN PTR example.org."},
			want: map[string]string{"example.org.": "a1"},
		},
		{
			name:    "the catalog itself is not a member",
			records: []string{version2, "a1.zones.catalog.invalid. 0 IN PTR catalog.invalid."},
			want:    map[string]string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCatalog(cat, rrs(t, append(slices.Clone(head), tt.records...)...))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("members %v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("members %v, want %v", got, tt.want)
			}
			for z, id := range tt.want {
				if got[z] != id {
					t.Errorf("members %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	key := Key{Name: "xfr-key.", Algorithm: "hmac-sha256", Secret: "c2VjcmV0"}
	p := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:53")}
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings, one per expected problem; none: valid
	}{
		{name: "valid", cfg: Config{Dir: "/var/lib/anyns", Keys: []Key{key}, Sources: []Source{
			{Zone: "example.org.", Primaries: p, TSIG: "xfr-key."},
			{Catalog: "catalog.invalid.", Primaries: p},
		}}},
		{name: "empty is valid", cfg: Config{}},
		{name: "every problem at once", cfg: Config{
			Keys: []Key{
				{Name: "", Algorithm: "hmac-md5", Secret: "!!"},
				key, key,
				{Name: "k2.", Algorithm: "hmac-sha512", Secret: ""},
			},
			Sources: []Source{
				{Zone: "example.org.", Catalog: "c.invalid.", Primaries: p},
				{Primaries: p},
				{Zone: "example..org", Primaries: p},
				{Zone: "Example.ORG", Primaries: []netip.AddrPort{p[0], {}, netip.MustParseAddrPort("192.0.2.2:0")}, TSIG: "nokey."},
				{Catalog: "cat.invalid."},
			},
			MaxInterval: time.Second, MinInterval: time.Minute, Timeout: -1, Attempts: -1,
		}, want: []string{
			`tsig_keys[0].name: "" is not a domain name`,
			`tsig_keys[0].algorithm: "hmac-md5" is not one of`,
			`tsig_keys[0].secret: not base64`,
			`tsig_keys[2].name: key xfr-key. is defined twice`,
			`tsig_keys[3].secret: empty`,
			`secondary[0]: set zone or catalog, not both`,
			`secondary[1]: set zone or catalog`,
			`secondary[2].zone: "example..org" is not a domain name`,
			`secondary[3].zone: example.org. is already listed at secondary[0]`,
			`secondary[3].primaries[1]: "invalid AddrPort" is not an address:port`,
			`secondary[3].primaries[2]: "192.0.2.2:0" is not an address:port`,
			`secondary[3].tsig: no key "nokey." in tsig_keys`,
			`secondary[4].primaries: at least one primary is required`,
			`secondary_dir: required`,
			`max_interval: must not be below min_interval`,
			`timeout: must not be negative`,
			`attempts: must not be negative`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate: nil, want errors")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Errorf("%d problems, want %d:\n%s", len(lines), len(tt.want), err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("no problem %q in:\n%s", w, err)
				}
			}
		})
	}
}

func TestFileBase(t *testing.T) {
	for in, want := range map[string]string{
		"example.org.":   "example.org",
		"Example.ORG":    "example.org",
		".":              "root",
		"a/b.example.":   "a%2Fb.example",
		`a\032b.test.`:   "a%5C032b.test",
		"xn--bcher-kva.": "xn--bcher-kva",
	} {
		if got := fileBase(in); got != want {
			t.Errorf("fileBase(%q) = %q, want %q", in, got, want)
		}
	}
}
