package zone

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

// runtimeUint64 reads the runtime/metrics counter name.
func runtimeUint64(t *testing.T, name string) uint64 {
	t.Helper()
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		t.Fatalf("%s: kind %v", name, s[0].Value.Kind())
	}
	return s[0].Value.Uint64()
}

// gogc returns the GC target percent now (as GOGC), -1 when off.
func gogc(t *testing.T) int {
	t.Helper()
	return int(int64(runtimeUint64(t, "/gc/gogc:percent")))
}

// forcedGCs returns the number of GC cycles forced so far (runtime.GC).
func forcedGCs(t *testing.T) uint64 {
	t.Helper()
	return runtimeUint64(t, "/gc/cycles/forced:gc-cycles")
}

func TestLoadSettings(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	procs := runtime.GOMAXPROCS(0)

	end1 := beginLoad()
	if got := gogc(t); got != loadGCPercent {
		t.Fatalf("GOGC during a load = %d, want %d", got, loadGCPercent)
	}
	if got := runtime.GOMAXPROCS(0); got != procs+loadExtraProcs {
		t.Fatalf("GOMAXPROCS during a load = %d, want %d+%d", got, procs, loadExtraProcs)
	}
	if got := Procs(); got != procs {
		t.Fatalf("Procs during a load = %d, want %d (as outside)", got, procs)
	}
	end2 := beginLoad() // overlapping load
	end1(endCollect)
	if got := gogc(t); got != loadGCPercent {
		t.Fatalf("GOGC after the first of two loads ended = %d, want %d (one still runs)", got, loadGCPercent)
	}
	end2(endCollect)
	if got := gogc(t); got != 100 {
		t.Fatalf("GOGC after both loads = %d, want 100 again", got)
	}
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Fatalf("GOMAXPROCS after both loads = %d, want %d again", got, procs)
	}

	// A higher target, or none, is the operator's: left alone.
	for _, p := range []int{800, -1} {
		debug.SetGCPercent(p)
		end := beginLoad()
		if got := gogc(t); got != p && !(p < 0 && got < 0) {
			t.Errorf("GOGC=%d: %d during a load", p, got)
		}
		end(endRelease)
		if got := gogc(t); got != p && !(p < 0 && got < 0) {
			t.Errorf("GOGC=%d: %d after a load", p, got)
		}
	}
}

// TestSpareProc checks the P SpareProc adds, alone and overlapping loads
// and other holders in every order, and that Procs stays the cores.
func TestSpareProc(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	check := func(when string, want int) {
		t.Helper()
		if got := runtime.GOMAXPROCS(0); got != want {
			t.Fatalf("GOMAXPROCS %s = %d, want %d", when, got, want)
		}
		if got := Procs(); got != procs {
			t.Fatalf("Procs %s = %d, want %d (the cores)", when, got, procs)
		}
	}
	r1 := SpareProc()
	check("with a spare", procs+1)
	r2 := SpareProc()
	check("with two holders", procs+1)
	end := beginLoad()
	check("with a spare and a load", procs+1+loadExtraProcs)
	r1()
	r1() // a second call does nothing
	check("with one holder left and a load", procs+1+loadExtraProcs)
	r2()
	check("with the load alone", procs+loadExtraProcs)
	r3 := SpareProc()
	check("with a spare taken during the load", procs+1+loadExtraProcs)
	end(endNothing)
	check("with the spare after the load", procs+1)
	r3()
	check("after all", procs)
}

// TestLoaderSettings checks the Loader restores the GC target after a
// reload, also one whose precomputed answers are built in the background.
func TestLoaderSettings(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	procs := runtime.GOMAXPROCS(0)
	dir := t.TempDir()
	data := "$ORIGIN gc.example.\n@ SOA ns1 h 1 2 3 4 5\n@ NS ns1\nns1 A 192.0.2.1\n"
	if err := os.WriteFile(filepath.Join(dir, "gc.example.zone"), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := NewLoader(Config{Dir: dir, Rescan: -1}, NewStore(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := gogc(t); got != 100 {
		t.Fatalf("GOGC after Reload = %d, want 100", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "gc.example.zone"), []byte(data+"www A 192.0.2.2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if changed, err := l.ReloadServing(); err != nil || !changed {
		t.Fatalf("ReloadServing: changed=%v, %v", changed, err)
	}
	l.bg.Wait()
	forced := forcedGCs(t)
	if changed, err := l.ReloadServing(); err != nil || changed {
		t.Fatalf("ReloadServing of an unchanged file: changed=%v, %v", changed, err)
	}
	l.bg.Wait()
	if n := forcedGCs(t) - forced; n != 0 {
		t.Errorf("a reload that parsed nothing forced %d GC cycles, want 0", n)
	}
	if err := os.WriteFile(filepath.Join(dir, "gc.example.zone"), []byte(data+"www A 192.0.2.3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := l.ReloadServing(); err != nil {
		t.Fatal(err)
	}
	l.bg.Wait()
	if n := forcedGCs(t) - forced; n != 1 {
		t.Errorf("a reload that parsed a file forced %d GC cycles, want 1", n)
	}
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Fatalf("GOMAXPROCS after ReloadServing's background work = %d, want %d", got, procs)
	}
	if got := gogc(t); got != 100 {
		t.Fatalf("GOGC after ReloadServing's background work = %d, want 100", got)
	}
}

// TestPacing checks that a load's loops yield unless it runs alone, and
// that only a Loader's first load runs alone.
func TestPacing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "big.example.zone")
	writeBigZone(t, path, 300_000)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < splitMin {
		t.Fatalf("%d bytes: too small to be parsed in parts", len(data))
	}
	small := data[:bytes.Index(data, []byte("\nh3000 "))+1] // parsed sequentially
	for _, c := range []struct {
		name    string
		data    []byte
		workers int
	}{{"parts", data, 2}, {"one part", data, 1}, {"sequential", small, 2}} {
		for _, p := range []pacing{loadAlone, yieldToListeners} {
			before := yields.Load()
			if _, _, err := parseData(c.data, path, dir, 0, c.workers, p); err != nil {
				t.Fatal(err)
			}
			n := yields.Load() - before
			if want := len(c.data) / 25 / yieldEvery / 2; p == loadAlone && n != 0 || p == yieldToListeners && n < uint64(want) {
				t.Errorf("%s, pacing %d: %d yields (want none alone, else at least %d)", c.name, p, n, want)
			}
		}
	}

	l, err := NewLoader(Config{Dir: dir, Rescan: -1}, NewStore(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.pace(); got != loadAlone {
		t.Errorf("before the first load: pacing %d, want loadAlone", got)
	}
	if _, err := l.ReloadServing(); err != nil {
		t.Fatal(err)
	}
	l.bg.Wait()
	l.mu.Lock()
	got := l.pace()
	l.mu.Unlock()
	if got != yieldToListeners {
		t.Errorf("after the first load: pacing %d, want yieldToListeners", got)
	}
}
