package zone

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// zoneText is a small valid zone whose www A record is addr.
func zoneText(origin string, serial uint32, addr string) string {
	return fmt.Sprintf(`$ORIGIN %s
$TTL 300
@    IN SOA ns1 hostmaster %d 7200 3600 1209600 300
     IN NS  ns1
ns1  IN A   192.0.2.53
www  IN A   %s
`, origin, serial, addr)
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeAtomic writes content to a temporary file and renames it into place,
// as editors, rsync and git do.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	write(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// wwwA returns the address www.<origin> resolves to in st, or "" (REFUSED
// or no answer).
func wwwA(st *Store, origin string) string {
	var r Response
	st.Load().Lookup("www."+origin, dns.TypeA, &r)
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			return a.A.String()
		}
	}
	return ""
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type loaderRig struct {
	dir    string
	store  *Store
	loader *Loader
	logs   *observer.ObservedLogs
}

// newRig loads dir and, with run, keeps it current in the background until
// the test ends.
func newRig(t *testing.T, dir string, debounce time.Duration, run bool) *loaderRig {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	st := NewStore(nil)
	l, err := NewLoader(Config{Dir: dir, Debounce: debounce, Rescan: -1}, st, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = l.Reload()
	if run {
		done := make(chan struct{})
		ctx := t.Context()
		go func() { defer close(done); _ = l.Run(ctx) }()
		t.Cleanup(func() { <-done })
	}
	return &loaderRig{dir: dir, store: st, loader: l, logs: logs}
}

func (r *loaderRig) status(t *testing.T, file string) FileStatus {
	t.Helper()
	for _, s := range r.loader.Status() {
		if filepath.Base(s.File) == file {
			return s
		}
	}
	t.Fatalf("no status for %s", file)
	return FileStatus{}
}

func TestLoaderWatchesChanges(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.test.zone")
	write(t, path, zoneText("a.test.", 1, "192.0.2.1"))
	r := newRig(t, dir, 30*time.Millisecond, true)
	if got := wwwA(r.store, "a.test."); got != "192.0.2.1" {
		t.Fatalf("initial load: www = %q", got)
	}

	t.Run("atomic rename", func(t *testing.T) {
		writeAtomic(t, path, zoneText("a.test.", 2, "192.0.2.2"))
		waitFor(t, "192.0.2.2", func() bool { return wwwA(r.store, "a.test.") == "192.0.2.2" })
	})

	t.Run("in-place write in chunks", func(t *testing.T) {
		errsBefore := r.logs.FilterMessage("zone not loaded").Len()
		text := zoneText("a.test.", 3, "192.0.2.3")
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		half := len(text) / 2
		if _, err := f.WriteString(text[:half]); err != nil {
			t.Fatal(err)
		}
		f.Sync()
		time.Sleep(5 * time.Millisecond) // pace the writer, well inside the debounce
		if _, err := f.WriteString(text[half:]); err != nil {
			t.Fatal(err)
		}
		f.Close()
		waitFor(t, "192.0.2.3", func() bool { return wwwA(r.store, "a.test.") == "192.0.2.3" })
		if n := r.logs.FilterMessage("zone not loaded").Len(); n != errsBefore {
			t.Errorf("the half-written file was read: %d load errors logged", n-errsBefore)
		}
	})

	t.Run("broken file keeps the good version, fixed file recovers", func(t *testing.T) {
		writeAtomic(t, path, zoneText("a.test.", 4, "192.0.2.4")+"bad IN A not-an-address\n")
		waitFor(t, "the error in the status", func() bool { return r.status(t, "a.test.zone").Err != nil })
		st := r.status(t, "a.test.zone")
		if !strings.Contains(st.Err.Error(), "a.test.zone:7:") {
			t.Errorf("error does not name file and line: %v", st.Err)
		}
		if !st.Serving || st.Serial != 3 || wwwA(r.store, "a.test.") != "192.0.2.3" {
			t.Errorf("the previous version is not serving: %+v, www %s", st, wwwA(r.store, "a.test."))
		}
		writeAtomic(t, path, zoneText("a.test.", 5, "192.0.2.5"))
		waitFor(t, "192.0.2.5", func() bool { return wwwA(r.store, "a.test.") == "192.0.2.5" })
		if st := r.status(t, "a.test.zone"); st.Err != nil || st.Serial != 5 {
			t.Errorf("after the fix: %+v", st)
		}
	})

	t.Run("delete and re-create", func(t *testing.T) {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the zone to go", func() bool { return r.store.Load().Find("www.a.test.") == nil })
		if r.logs.FilterMessage("zone file removed, zone no longer served").Len() == 0 {
			t.Error("removal not logged")
		}
		write(t, path, zoneText("a.test.", 6, "192.0.2.6"))
		waitFor(t, "192.0.2.6", func() bool { return wwwA(r.store, "a.test.") == "192.0.2.6" })
	})

	t.Run("new zone file", func(t *testing.T) {
		writeAtomic(t, filepath.Join(dir, "b.test.zone"), zoneText("b.test.", 1, "192.0.2.7"))
		waitFor(t, "b.test.", func() bool { return wwwA(r.store, "b.test.") == "192.0.2.7" })
		if wwwA(r.store, "a.test.") != "192.0.2.6" {
			t.Error("adding a zone disturbed another")
		}
	})
}

func TestLoaderIncludeChangeReloads(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "inc", "hosts.inc"), "www IN A 192.0.2.10\n")
	body := "$ORIGIN i.test.\n$TTL 300\n@ IN SOA ns1 hm 1 2 3 4 5\n@ IN NS ns1\nns1 IN A 192.0.2.53\n$INCLUDE inc/hosts.inc\n"
	write(t, filepath.Join(dir, "i.test.zone"), body)
	write(t, filepath.Join(dir, "j.test.zone"), strings.ReplaceAll(body, "i.test.", "j.test."))
	r := newRig(t, dir, 30*time.Millisecond, true)
	if wwwA(r.store, "i.test.") != "192.0.2.10" || wwwA(r.store, "j.test.") != "192.0.2.10" {
		t.Fatal("initial load failed")
	}
	writeAtomic(t, filepath.Join(dir, "inc", "hosts.inc"), "www IN A 192.0.2.11\n")
	defer func() {
		for _, e := range r.logs.All() {
			t.Log(e.Message, e.ContextMap())
		}
	}()
	waitFor(t, "both including zones to reload", func() bool {
		return wwwA(r.store, "i.test.") == "192.0.2.11" && wwwA(r.store, "j.test.") == "192.0.2.11"
	})
}

// TestLoaderConfigMapSwap replays how Kubernetes updates a ConfigMap volume:
// the zone files are links through ..data, a link swapped atomically to a
// new timestamped directory.
func TestLoaderConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "..2026_11_22_01", "c.test.zone"), zoneText("c.test.", 1, "192.0.2.20"))
	must(t, os.Symlink("..2026_11_22_01", filepath.Join(dir, "..data")))
	must(t, os.Symlink(filepath.Join("..data", "c.test.zone"), filepath.Join(dir, "c.test.zone")))
	r := newRig(t, dir, 30*time.Millisecond, true)
	if wwwA(r.store, "c.test.") != "192.0.2.20" {
		t.Fatal("initial load through the links failed")
	}
	write(t, filepath.Join(dir, "..2026_11_22_02", "c.test.zone"), zoneText("c.test.", 2, "192.0.2.21"))
	must(t, os.Symlink("..2026_11_22_02", filepath.Join(dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	must(t, os.RemoveAll(filepath.Join(dir, "..2026_11_22_01")))
	waitFor(t, "the swapped version", func() bool { return wwwA(r.store, "c.test.") == "192.0.2.21" })
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestLoaderTrigger(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "t.test.zone")
	write(t, path, zoneText("t.test.", 1, "192.0.2.30"))
	// A debounce longer than the test: only Trigger can reload.
	r := newRig(t, dir, time.Hour, true)
	writeAtomic(t, path, zoneText("t.test.", 2, "192.0.2.31"))
	r.loader.Trigger()
	waitFor(t, "the triggered reload", func() bool { return wwwA(r.store, "t.test.") == "192.0.2.31" })
}

func TestLoaderReloadRules(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.zone")
	write(t, a, zoneText("dup.test.", 10, "192.0.2.40"))
	r := newRig(t, dir, time.Hour, false)
	z := r.store.Load().Zone("dup.test.")
	if z == nil {
		t.Fatal("not loaded")
	}

	// Unchanged content: nothing reparsed, nothing published.
	changed, err := r.loader.Reload()
	if changed || err != nil || r.store.Load().Zone("dup.test.") != z {
		t.Errorf("unchanged file reloaded: changed=%v err=%v", changed, err)
	}
	loaded := r.logs.FilterMessage("zone loaded").Len()

	// A second file claiming the same origin: error naming both, the
	// serving one stays.
	b := filepath.Join(dir, "0-b.zone") // sorts before a.zone
	write(t, b, zoneText("dup.test.", 11, "192.0.2.41"))
	_, err = r.loader.Reload()
	if err == nil || !strings.Contains(err.Error(), b) || !strings.Contains(err.Error(), a) {
		t.Errorf("duplicate origin error should name both files: %v", err)
	}
	if wwwA(r.store, "dup.test.") != "192.0.2.40" {
		t.Error("the serving zone was replaced by the duplicate")
	}
	must(t, os.Remove(b))
	if _, err := r.loader.Reload(); err != nil {
		t.Errorf("after removing the duplicate: %v", err)
	}

	// A lower serial (RFC 1982) still loads, with a warning.
	write(t, a, zoneText("dup.test.", 9, "192.0.2.42"))
	if changed, _ := r.loader.Reload(); !changed || wwwA(r.store, "dup.test.") != "192.0.2.42" {
		t.Error("lower serial not loaded")
	}
	if r.logs.FilterMessage("zone serial went backwards").Len() != 1 {
		t.Error("lower serial not warned about")
	}
	if r.logs.FilterMessage("zone loaded").Len() != loaded+2 {
		t.Errorf("zone loaded %d times, want %d", r.logs.FilterMessage("zone loaded").Len(), loaded+2)
	}
	// Serial arithmetic wraps.
	if !serialLess(0xFFFFFFF0, 5) || serialLess(5, 0xFFFFFFF0) || serialLess(7, 7) {
		t.Error("serialLess does not follow RFC 1982")
	}
}

func TestLoaderExtraDirs(t *testing.T) {
	dir, extra := t.TempDir(), filepath.Join(t.TempDir(), "secondary")
	write(t, filepath.Join(dir, "a.test.zone"), zoneText("a.test.", 1, "192.0.2.1"))
	core, _ := observer.New(zapcore.DebugLevel)
	st := NewStore(nil)
	l, err := NewLoader(Config{Dir: dir, ExtraDirs: []string{extra}, Debounce: 30 * time.Millisecond, Rescan: -1}, st, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	// The extra directory does not exist yet: not an error.
	if _, err := l.Reload(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = l.Run(t.Context()) }()
	t.Cleanup(func() { <-done })
	// Made later, as a secondary does, and announced with Trigger.
	writeAtomic(t, filepath.Join(extra, "s.test.zone"), zoneText("s.test.", 1, "192.0.2.50"))
	l.Trigger()
	waitFor(t, "the secondary zone", func() bool { return wwwA(st, "s.test.") == "192.0.2.50" })
	// Now watched: a change there is seen without Trigger.
	writeAtomic(t, filepath.Join(extra, "s.test.zone"), zoneText("s.test.", 2, "192.0.2.51"))
	waitFor(t, "the changed secondary zone", func() bool { return wwwA(st, "s.test.") == "192.0.2.51" })
	if wwwA(st, "a.test.") != "192.0.2.1" {
		t.Error("the zones directory's zone is gone")
	}
}

// TestContentSum checks that the sum that decides whether a file changed
// sees a one-byte change anywhere, chunk boundaries included, and a change
// of an included file, and nothing else.
func TestContentSum(t *testing.T) {
	data := make([]byte, 3*hashChunk+17)
	for i := range data {
		data[i] = byte(i * 7)
	}
	base := hashData(data, loadAlone)
	if again := hashData(slices.Clone(data), yieldToListeners); again != base {
		t.Fatal("the same content hashed differently")
	}
	for _, at := range []int{0, 1, hashChunk - 1, hashChunk, hashChunk + 1, 2 * hashChunk, len(data) - 1} {
		d := slices.Clone(data)
		d[at] ^= 1
		if hashData(d, loadAlone) == base {
			t.Errorf("a change at byte %d kept the sum", at)
		}
	}
	if hashData(data[:len(data)-1], loadAlone) == base {
		t.Error("a shorter file kept the sum")
	}
	dir := t.TempDir()
	inc := filepath.Join(dir, "inc")
	if err := os.WriteFile(inc, []byte("a A 192.0.2.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f1 := fingerprint(base, []string{inc}, loadAlone)
	if fingerprint(base, []string{inc}, loadAlone) != f1 || fingerprint(base, nil, loadAlone) == f1 {
		t.Fatal("fingerprint does not follow its includes")
	}
	if err := os.WriteFile(inc, []byte("a A 192.0.2.2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if fingerprint(base, []string{inc}, loadAlone) == f1 {
		t.Error("a changed include kept the fingerprint")
	}
}
