package zone

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

const head = "$TTL 300\n@ SOA ns.example. h.example. 1 2 3 4 60\n@ NS ns.example.\n"

// TestParseErrors checks one validation rule per case: the error must be
// exactly "file:line: reason" (file is the path given to ParseFile).
func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		name, file, text string
		want             string // after "<path>"
	}{
		{"syntax", "example.zone", head + "\nwww A 192.0.2.999\n",
			`:5: bad A A: "192.0.2.999"`},
		{"no SOA", "example.zone", "$TTL 300\n@ NS ns.example.\n",
			": no SOA record"},
		{"empty file", "example.zone", "; nothing\n",
			": no SOA record"},
		{"SOA not at apex", "example.zone", head + "sub SOA ns.example. h.example. 1 2 3 4 60\n",
			":4: SOA record at sub.example. is not at the zone apex example."},
		{"two SOA", "example.zone", head + "; again\n@ SOA ns.example. h.example. 2 2 3 4 60\n",
			":5: more than one SOA record (the first is at line 2)"},
		{"no apex NS", "example.zone", "$TTL 300\n@ SOA ns.example. h.example. 1 2 3 4 60\nwww A 192.0.2.1\n",
			": no NS records at the zone apex example."},
		{"outside origin", "example.zone", head + "www.example.org. A 192.0.2.1\n",
			":4: www.example.org. is outside the zone example."},
		{"outside origin before SOA", "example.zone", "$TTL 300\nwww.example.org. A 192.0.2.1\n@ SOA ns.example. h.example. 1 2 3 4 60\n@ NS ns.example.\n",
			":2: www.example.org. is outside the zone example."},
		{"CNAME beside data", "example.zone", head + "www A 192.0.2.1\nwww CNAME host.example.\n",
			":5: CNAME record beside other data at www.example. (RFC 2181 section 10.1)"},
		{"data beside CNAME", "example.zone", head + "www CNAME host.example.\n     MX 10 mail.example.\n",
			":5: MX record beside a CNAME at www.example. (RFC 2181 section 10.1)"},
		{"CNAME at apex", "example.zone", head + "@ CNAME host.example.\n",
			":4: CNAME record beside other data at example. (RFC 2181 section 10.1)"},
		{"two CNAMEs", "example.zone", head + "www CNAME a.example.\nWWW CNAME b.example.\n",
			":5: more than one CNAME record at www.example."},
		{"two DNAMEs", "example.zone", head + "d DNAME a.example.\nd DNAME b.example.\n",
			":5: more than one DNAME record at d.example. (RFC 6672 section 2.4)"},
		{"class", "example.zone", head + "x CH TXT \"hello\"\n",
			":4: class CH is not supported, only IN"},
		{"no RDATA", "example.zone", head + "www CNAME\n",
			":4: CNAME record without data"},
		{"NS at wildcard", "example.zone", head + "* NS ns.example.\n",
			":4: NS record at the wildcard *.example. is not supported (RFC 4592 section 4.2)"},
		{"$GENERATE into a directive", "example.zone", head + "$GENERATE 1-2 \\$INCLUDE /etc/passwd\n",
			`:4: $GENERATE owner must not start with \, " or $$ (it would be expanded into a directive)`},
		{"$GENERATE into a directive with $$", "example.zone", head + "$GENERATE 1-2 $$INCLUDE /etc/passwd\n",
			`:4: $GENERATE owner must not start with \, " or $$ (it would be expanded into a directive)`},
		{"error after multi-line SOA", "example.zone", "$TTL 300\n@ SOA ns.example. h.example. (\n 1 2 3\n 4 60 )\n@ NS ns.example.\n; a comment\nwww A 192.0.2.1 ; \"quoted ( in a comment\n\tTXT \"x\"\nx.example.org. TXT \"a ; (\" \"b\"\n",
			":9: x.example.org. is outside the zone example."},
		{"escaped newlines are counted", "example.zone", head + "x TXT \"a\\\nb\"\nwww.example.org. A 192.0.2.1\n",
			":6: www.example.org. is outside the zone example."},
		{"multi-line record reports its first line", "example.zone", head + "\n@ SOA ns.example. h.example. (\n 2 ; serial\n 2 3 4 60 )\n",
			":5: more than one SOA record (the first is at line 2)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := writeZone(t, dir, c.file, c.text)
			z, err := ParseFile(path, dir)
			if z != nil {
				t.Errorf("zone loaded: %s", z.Origin)
			}
			if err == nil {
				t.Fatal("no error")
			}
			if got, want := err.Error(), path+c.want; got != want {
				t.Errorf("error:\n got %s\nwant %s", got, want)
			}
			var ze *Error
			if !errors.As(err, &ze) {
				t.Errorf("error is %T, not *Error", err)
			}
		})
	}
}

// TestParseErrorsGolden checks that every problem in a zone is reported,
// in line order.
func TestParseErrorsGolden(t *testing.T) {
	_, err := ParseFile("testdata/bad/many.zone", "testdata/bad")
	if err == nil {
		t.Fatal("no error")
	}
	got := []byte(err.Error() + "\n")
	golden := "testdata/bad/many.golden"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("errors differ from %s (go test -update to rewrite):\n got:\n%s\nwant:\n%s", golden, got, want)
	}
}

// TestParseOK checks zones that must load.
func TestParseOK(t *testing.T) {
	for _, c := range []struct {
		name, file, text string
		origin           string
		records          int
	}{
		{"origin from file name", "example.org.zone", "$TTL 60\n@ SOA ns h 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\n", "example.org.", 3},
		{"origin from $ORIGIN", "whatever.zone", "$ORIGIN Example.NET.\n$TTL 60\n@ SOA ns h 1 2 3 4 5\n@ NS ns\n", "example.net.", 2},
		{"origin from SOA owner", "db.zone", "example.info. 60 SOA ns.example.info. h.example.info. 1 2 3 4 5\nexample.info. 60 NS ns.example.info.\n", "example.info.", 2},
		{"duplicates dropped", "example.zone", head + "www A 192.0.2.1\nWWW 600 A 192.0.2.1\n@ NS NS.example.\n", "example.", 3},
		{"RRSIG and NSEC beside CNAME", "example.zone", head +
			"www CNAME host.example.\nwww NSEC host.example. CNAME RRSIG NSEC\n" +
			"www RRSIG CNAME 13 2 300 20300101000000 20200101000000 12345 example. AAAA\n", "example.", 5},
		{"data below DNAME is occluded but loads", "example.zone", head + "d DNAME example.net.\nx.d A 192.0.2.1\n", "example.", 4},
		{"no TTL uses 3600", "example.zone", "@ SOA ns.example. h.example. 1 2 3 4 60\n@ NS ns.example.\n", "example.", 2},
		{"root zone", "root.zone", ". 60 SOA a.root. h.root. 1 2 3 4 5\n. 60 NS a.root.\na.root. 60 A 192.0.2.1\n", ".", 3},
		{"escaped owner", "example.zone", head + "\\065b A 192.0.2.1\n", "example.", 3},
		{"$GENERATE", "example.zone", head + "$GENERATE 1-100 h$ A 192.0.2.$\n$GENERATE 1-3 ${0,3,d}x CNAME h$\n", "example.", 105},
	} {
		t.Run(c.name, func(t *testing.T) {
			z := zoneFromText(t, c.file, c.text)
			if z.Origin != c.origin || z.Records != c.records {
				t.Errorf("origin %q, %d records; want %q, %d", z.Origin, z.Records, c.origin, c.records)
			}
		})
	}
}

// TestEscapedOwner checks that a name escaped in the zone file matches the
// same name from the wire.
func TestEscapedOwner(t *testing.T) {
	z := zoneFromText(t, "example.zone", head+"\\065b A 192.0.2.1\nsp\\032ace TXT x\n")
	s, _ := NewSnapshot(z)
	runCases(t, s, []Case{
		{Qname: "ab.example.", Qtype: dns.TypeA, Result: Success, AA: true, Answer: []string{"ab.example. 300 IN A 192.0.2.1"}},
		{Qname: "AB.example.", Qtype: dns.TypeA, Result: Success, AA: true, Answer: []string{"ab.example. 300 IN A 192.0.2.1"}},
		{Qname: "sp\\ ace.example.", Qtype: dns.TypeTXT, Result: Success, AA: true, Answer: []string{"sp\\ ace.example. 300 IN TXT x"}},
	})
}

func TestInclude(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "zones")
	writeZone(t, root, "secret.txt", "leak 60 TXT \"secret\"\n")
	writeZone(t, dir, "inc/hosts.inc", "; hosts\nhost1 A 192.0.2.1\n\nhost2 A 192.0.2.999\n")
	writeZone(t, dir, "inc/ok.inc", "host1 A 192.0.2.1\n$INCLUDE more.inc\n")
	writeZone(t, dir, "inc/more.inc", "host2 A 192.0.2.2\n")
	if err := os.Symlink(filepath.Join(root, "secret.txt"), filepath.Join(dir, "link.inc")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("inc", "more.inc"), filepath.Join(dir, "inlink.inc")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "inc", "more.inc"), filepath.Join(dir, "abslink.inc")); err != nil {
		t.Fatal(err)
	}

	t.Run("ok", func(t *testing.T) {
		p := writeZone(t, dir, "ok.example.zone", head+"$INCLUDE inc/ok.inc\n$INCLUDE "+filepath.Join(dir, "inlink.inc")+" sub\n$INCLUDE abslink.inc sub2\nafter A 192.0.2.3\n")
		z, err := ParseFile(p, dir)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := NewSnapshot(z)
		runCases(t, s, []Case{
			{Qname: "host1.ok.example.", Qtype: dns.TypeA, Result: Success, AA: true, Answer: []string{"host1.ok.example. 300 IN A 192.0.2.1"}},
			{Qname: "host2.ok.example.", Qtype: dns.TypeA, Result: Success, AA: true, Answer: []string{"host2.ok.example. 300 IN A 192.0.2.2"}},
			{Qname: "host2.sub.ok.example.", Qtype: dns.TypeA, Result: Success, AA: true, Answer: []string{"host2.sub.ok.example. 300 IN A 192.0.2.2"}},
			{Qname: "host2.sub2.ok.example.", Qtype: dns.TypeA, Result: Success, AA: true, Answer: []string{"host2.sub2.ok.example. 300 IN A 192.0.2.2"}},
			{Qname: "after.ok.example.", Qtype: dns.TypeA, Result: Success, AA: true, Answer: []string{"after.ok.example. 300 IN A 192.0.2.3"}},
		})
	})
	for _, c := range []struct {
		name, text, want string
	}{
		{"dot-dot", "$INCLUDE ../secret.txt\n",
			"{zone}:4: $INCLUDE " + filepath.Join(root, "secret.txt") + ": outside the zones directory " + dir},
		{"absolute", "$INCLUDE " + filepath.Join(root, "secret.txt") + "\n",
			"{zone}:4: $INCLUDE " + filepath.Join(root, "secret.txt") + ": outside the zones directory " + dir},
		{"symlink", "\n$INCLUDE link.inc\n",
			"{zone}:5: $INCLUDE " + filepath.Join(dir, "link.inc") + ": outside the zones directory " + dir + " (through a symbolic link)"},
		{"missing", "$INCLUDE nope.inc\n",
			"{zone}:4: $INCLUDE " + filepath.Join(dir, "nope.inc") + ": no such file or directory"},
		{"error in included file", "$INCLUDE inc/hosts.inc\n",
			filepath.Join(dir, "inc/hosts.inc") + `:4: bad A A: "192.0.2.999"`},
		{"validation error in included file", "$INCLUDE inc/more.inc elsewhere.example.\n",
			filepath.Join(dir, "inc/more.inc") + ":1: host2.elsewhere.example. is outside the zone bad.example."},
		{"$GENERATE in included file", "$INCLUDE gen.inc\n",
			filepath.Join(dir, "gen.inc") + `:1: $GENERATE owner must not start with \, " or $$ (it would be expanded into a directive)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			writeZone(t, dir, "gen.inc", "$GENERATE 1-1 \\$INCLUDE ../secret.txt\n")
			p := writeZone(t, dir, "bad.example.zone", head+c.text)
			defer os.Remove(p)
			z, err := ParseFile(p, dir)
			if err == nil {
				t.Fatalf("loaded %d records", z.Records)
			}
			want := strings.ReplaceAll(c.want, "{zone}", p)
			if err.Error() != want {
				t.Errorf("error:\n got %s\nwant %s", err, want)
			}
			if strings.Contains(err.Error(), "secret") && !strings.Contains(err.Error(), "secret.txt") {
				t.Errorf("error leaks the file: %s", err)
			}
		})
	}
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	writeZone(t, dir, "a.example.zone", head)
	writeZone(t, dir, "b.example.zone", "$TTL 60\n@ SOA ns h 1 2 3 4 5\n@ NS ns\n")
	writeZone(t, dir, "c.example.zone", head+"www A 192.0.2.999\n")
	writeZone(t, dir, "d.example.zone", "$TTL 60\n@ NS ns\n")
	writeZone(t, dir, "dup.zone", "$ORIGIN b.example.\n$TTL 60\n@ SOA ns h 1 2 3 4 5\n@ NS ns\n")
	writeZone(t, dir, ".hidden.zone", "garbage")
	writeZone(t, dir, "notes.txt", "garbage")
	writeZone(t, dir, "sub/e.example.zone", "garbage")
	if err := os.Mkdir(filepath.Join(dir, "dir.zone"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a.example.zone", filepath.Join(dir, "link.example.zone")); err != nil {
		t.Fatal(err)
	}

	zs, err := LoadDir(dir)
	var origins []string
	for _, z := range zs {
		origins = append(origins, z.Origin)
	}
	// link.example.zone is a zone of its own: "@" takes the origin from
	// the file name.
	if got, want := strings.Join(origins, " "), "a.example. b.example. link.example."; got != want {
		t.Errorf("loaded %q, want %q", got, want)
	}
	want := strings.Join([]string{
		filepath.Join(dir, "c.example.zone") + `:4: bad A A: "192.0.2.999"`,
		filepath.Join(dir, "d.example.zone") + ": no SOA record",
		filepath.Join(dir, "dup.zone") + ": zone b.example. already loaded from " + filepath.Join(dir, "b.example.zone"),
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("error:\n got %v\nwant %s", err, want)
	}

	if _, err := LoadDir(filepath.Join(dir, "missing")); err == nil {
		t.Error("LoadDir of a missing directory: no error")
	}
}

func TestErrorFormat(t *testing.T) {
	inner := errors.New("inner")
	e := &Error{File: "a.zone", Line: 3, Reason: "bad", Err: inner}
	if e.Error() != "a.zone:3: bad" || !errors.Is(e, inner) {
		t.Errorf("got %q", e.Error())
	}
	if e := (&Error{File: "a.zone", Reason: "bad"}); e.Error() != "a.zone: bad" {
		t.Errorf("got %q", e.Error())
	}
}

// FuzzParse feeds any text to the parser: it must return a zone or an
// error, never panic, and a zone it returns must answer a lookup.
func FuzzParse(f *testing.F) {
	for _, p := range []string{
		"../zones/example.com.zone", "../zones/example.net.zone",
		"testdata/rfc1034/root.zone", "testdata/rfc1034/edu.zone",
		"testdata/rfc4592/example.zone", "testdata/bad/many.zone",
	} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(head + "$INCLUDE ../x\n"))
	f.Add([]byte(head + "$GENERATE 1-3 \\$INCLUDE /etc/passwd\n"))
	f.Add([]byte(head + "* CNAME x\nx DNAME y.\n(\n"))
	f.Add([]byte(head + "$GENERATE 1-65535 @ TXT \"$\"\n$GENERATE 1-65535 h$ A 192.0.2.1\n"))
	f.Add([]byte(head + "$GENERATE 1-1 a TXT x\\\n\\$INCLUDE /etc/passwd\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		z, _, err := parse(data, filepath.Join(dir, "fuzz.example.zone"), dir, 100_000, loadAlone)
		if (z == nil) == (err == nil) {
			t.Fatalf("zone %v, error %v", z, err)
		}
		if err != nil {
			var ze *Error
			if !errors.As(err, &ze) {
				t.Fatalf("error %T is not *Error: %v", err, err)
			}
			return
		}
		s, err := NewSnapshot(z)
		if err != nil {
			t.Fatal(err)
		}
		var r Response
		for _, q := range []string{z.Origin, "www." + z.Origin, "a.b.c." + z.Origin} {
			s.Lookup(q, dns.TypeA, &r)
			s.Lookup(q, dns.TypeANY, &r)
			if r.Result == NotAuth {
				t.Fatalf("%s in its own zone: NotAuth", q)
			}
		}
	})
}
