package zone

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// dumpZone lists every node of z (empty non-terminals included) and its
// RRs in presentation form, sorted, with the zone's counts.
func dumpZone(z *Zone) []string {
	out := []string{"origin " + z.Origin, "records " + strconv.Itoa(z.Records), "serial " + strconv.FormatUint(uint64(z.Serial), 10)}
	for name, n := range z.allNodes() {
		out = append(out, "node "+name+" flags "+strconv.Itoa(int(n.flags)))
		sets := z.setsOf(n)
		for i := range sets {
			for _, rr := range z.appendSet(nil, n, &sets[i], "") {
				out = append(out, rr.String())
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestParseSplit checks that a zone parsed in parts gives the very zone a
// sequential parse gives, and that files whose parts could depend on each
// other are not split.
func TestParseSplit(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.example.zone")
	writeBigZone(t, big, 20_000)
	data, err := os.ReadFile(big)
	if err != nil {
		t.Fatal(err)
	}
	var tricky strings.Builder
	tricky.WriteString("$ORIGIN tricky.example.\n$TTL 300 ; default\n@ SOA ns1 hostmaster (\n 1 7200 3600\n 1209600 300 )\n@ NS ns1\nns1 A 192.0.2.1\n")
	for i := range 3000 {
		s := strconv.Itoa(i)
		switch i % 6 {
		case 0:
			tricky.WriteString("t" + s + " TXT \"a;b\" \"line\nbreak\" ; comment (\n")
		case 1:
			tricky.WriteString("m" + s + " 60 MX ( 10 ; pref\n  mail" + s + " )\n")
		case 2:
			tricky.WriteString("; a comment line\n\n")
		case 3:
			tricky.WriteString("a" + s + ".sub A 192.0.2." + strconv.Itoa(i%250) + "\n  AAAA 2001:db8::1\n")
		case 4:
			tricky.WriteString("e" + s + " TXT \"escaped \\\" quote\"\n")
		case 5:
			tricky.WriteString("@ 120 TXT \"apex" + s + "\"\n")
		}
	}
	// split: parsed in parts; whole: parsed in one part through the plain
	// reader (a late $ORIGIN or a missing $TTL is harmless there).
	for _, tc := range []struct {
		name, file, data string
		split, whole     bool
	}{
		{"big", "big.example.zone", string(data), true, true},
		{"tricky", "tricky.example.zone", tricky.String(), true, true},
		{"records before the SOA", "big.example.zone", strings.Replace(string(data), "$TTL 3600\n", "$TTL 3600\nearly A 192.0.2.9\nEarly TXT x\n", 1), true, true},
		{"upper case and repeated owners", "big.example.zone", strings.ReplaceAll(string(data), "\nh1", "\nH1"), true, true},
		{"no $TTL", "big.example.zone", strings.Replace(string(data), "$TTL 3600\n", "", 1), false, true},
		{"late directive", "big.example.zone", string(data) + "$ORIGIN other.big.example.\nx A 192.0.2.3\n", false, true},
		{"include", "big.example.zone", strings.Replace(string(data), "$TTL 3600\n", "$TTL 3600\n$INCLUDE nothing\n", 1), false, false},
		{"generate", "big.example.zone", string(data) + "$GENERATE 1-3 g$ A 192.0.2.$\n", false, false},
		{"dollar in a token", "big.example.zone", string(data) + "d TXT a$b\n", false, false},
		{"dollar in parentheses", "big.example.zone", string(data) + "d TXT ( a\n$GENERATE 1-2 x$ A 192.0.2.1 )\n", false, false},
		{"escaped newline", "tricky.example.zone", strings.ReplaceAll(tricky.String(), "\" quote\"\n", "\" quote\"\nx TXT a\\\nb\n"), false, false},
		{"error", "big.example.zone", string(data) + "bad A 300.1.1.1\n", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.file)
			want, _, werr := parse([]byte(tc.data), path, dir, 0, yieldToListeners)
			if tc.split && werr != nil {
				t.Fatalf("sequential parse: %v", werr)
			}
			for _, c := range []struct{ workers, parts int }{{1, 1}, {1, 3}, {2, 2}, {2, 7}, {3, 32}} {
				workers, parts := c.workers, c.parts
				z, ok := parseSplit([]byte(tc.data), path, 0, workers, parts, yieldToListeners)
				if want := tc.split || parts == 1 && tc.whole; ok != want {
					t.Fatalf("workers=%d parts=%d: split=%v, want %v", workers, parts, ok, !ok)
				}
				if !ok {
					continue
				}
				if werr != nil {
					t.Fatalf("sequential parse failed: %v", werr)
				}
				if got, w := dumpZone(z), dumpZone(want); !slices.Equal(got, w) {
					t.Fatalf("workers=%d parts=%d: zone differs from the sequential parse (%d vs %d lines)", workers, parts, len(got), len(w))
				}
			}
			// parseData gives the sequential result whether or not it splits.
			z, _, err := parseData([]byte(tc.data), path, dir, 0, 2, yieldToListeners)
			if (err != nil) != (werr != nil) || (err != nil && err.Error() != werr.Error()) {
				t.Fatalf("parseData error %v, want %v", err, werr)
			}
			if err == nil && !slices.Equal(dumpZone(z), dumpZone(want)) {
				t.Fatal("parseData zone differs from the sequential parse")
			}
		})
	}
}

// TestParseSplitLines checks that an error found after parsing in parts
// names the same line as a sequential parse (validation errors carry
// lines from the later parts too).
func TestParseSplitLines(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "big.example.zone")
	writeBigZone(t, path, 20_000)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// A CNAME beside other data near the end: a validation error, found by
	// the builder, with the line the RR was read on.
	bad := string(data) + "h2 CNAME h4\n"
	_, _, want := parse([]byte(bad), path, dir, 0, yieldToListeners)
	if want == nil {
		t.Fatal("sequential parse accepted the zone")
	}
	for _, parts := range []int{2, 3} {
		if _, ok := parseSplit([]byte(bad), path, 0, 2, parts, yieldToListeners); ok {
			t.Fatalf("parts=%d: split parse accepted the zone", parts)
		}
	}
	_, _, got := parseData([]byte(bad), path, dir, 0, 2, yieldToListeners)
	if got == nil || got.Error() != want.Error() {
		t.Fatalf("error %v, want %v", got, want)
	}
}

// FuzzSplit checks, for any input, that parsing in parts either declines
// (and the caller parses sequentially) or gives the very zone the
// sequential parse gives; and that parseData's result, error included,
// is the sequential parse's.
func FuzzSplit(f *testing.F) {
	for _, p := range []string{"../zones/example.com.zone", "../zones/example.net.zone", "testdata/rfc4592/example.zone"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("$TTL 300\n" + head + "a TXT \"x\ny\" ; (\nb ( A\n 192.0.2.1 )\nc MX 1 ( m\n)\nd TXT a\\;b\ne TXT \"$\"\n"))
	f.Add([]byte("$ORIGIN fuzz.example.\n$TTL 60\n@ SOA ns h 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\nA.b AAAA ::1\n a.B TXT x\n$ORIGIN sub.fuzz.example.\nx A 192.0.2.2\n"))
	dir := f.TempDir()
	path := filepath.Join(dir, "fuzz.example.zone")
	f.Fuzz(func(t *testing.T, data []byte) {
		want, _, werr := parse(data, path, dir, 10_000, loadAlone)
		for _, c := range []struct{ workers, parts int }{{1, 1}, {1, 3}, {2, 2}, {2, 5}} {
			z, ok := parseSplit(data, path, 10_000, c.workers, c.parts, loadAlone)
			if !ok {
				continue
			}
			if werr != nil {
				t.Fatalf("workers=%d parts=%d: parsed in parts, but the sequential parse fails: %v", c.workers, c.parts, werr)
			}
			if got, w := dumpZone(z), dumpZone(want); !slices.Equal(got, w) {
				t.Fatalf("workers=%d parts=%d: zone differs from the sequential parse:\n%q\nwant\n%q", c.workers, c.parts, got, w)
			}
		}
	})
}
