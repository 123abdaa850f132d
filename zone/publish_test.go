package zone

import (
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// TestReloadServingTwoPhase checks the two-phase publish: ReloadServing
// publishes the parsed zone without precomputed answers (Lookup answers
// it), then a copy with them; the first zone is never written, lookups
// running meanwhile see one or the other (run with -race), and both give
// the same answers.
func TestReloadServingTwoPhase(t *testing.T) {
	dir := t.TempDir()
	writeBigZone(t, filepath.Join(dir, "big.example.zone"), 30_000)
	store := NewStore(nil)
	l, err := NewLoader(Config{Dir: dir, Rescan: -1}, store, nil)
	if err != nil {
		t.Fatal(err)
	}

	var (
		stop    atomic.Bool
		wg      sync.WaitGroup
		answers atomic.Int64
	)
	wg.Go(func() {
		var r Response
		for i := 0; !stop.Load() && i < 10_000_000; i++ {
			s := store.Load()
			s.Precomputed("h1.big.example.", dns.TypeA)
			s.Lookup("h1.big.example.", dns.TypeA, &r)
			if r.Result == Success {
				answers.Add(1)
			}
		}
	})

	changed, err := l.ReloadServing()
	if err != nil || !changed {
		t.Fatalf("ReloadServing: changed=%v err=%v", changed, err)
	}
	first := store.Load().Zone("big.example.")
	if first == nil {
		t.Fatal("the zone does not serve after ReloadServing")
	}
	l.bg.Wait()
	stop.Store(true)
	wg.Wait()

	second := store.Load().Zone("big.example.")
	if second == nil || !second.Precomputed() {
		t.Fatal("the precomputed copy was not published")
	}
	if first != second && first.Precomputed() {
		t.Error("the first published zone was given precomputed answers after publication")
	}
	st := l.Status()
	if len(st) != 1 || !st[0].Serving || st[0].Records != 30_000 {
		t.Errorf("status %+v, want one serving file of 30000 records", st)
	}
	// The answers of both phases agree, and the precomputed one exists.
	s1, err := NewSnapshot(first)
	if err != nil {
		t.Fatal(err)
	}
	s2 := store.Load()
	for _, q := range []struct {
		name string
		typ  uint16
	}{
		{"h1.big.example.", dns.TypeA}, {"h0.big.example.", dns.TypeMX}, {"c9.big.example.", dns.TypeCNAME},
		{"nope.big.example.", dns.TypeA}, {"big.example.", dns.TypeNS},
	} {
		var r1, r2 Response
		s1.Lookup(q.name, q.typ, &r1)
		s2.Lookup(q.name, q.typ, &r2)
		if r1.Result != r2.Result || len(r1.Answer) != len(r2.Answer) || len(r1.Extra) != len(r2.Extra) {
			t.Errorf("%s %s: phases differ: %v/%d vs %v/%d", q.name, dns.TypeToString[q.typ], r1.Result, len(r1.Answer), r2.Result, len(r2.Answer))
		}
	}
	if s2.Precomputed("h1.big.example.", dns.TypeA) == nil {
		t.Error("no precomputed answer for h1.big.example. A")
	}
	if store.Load().Zone("big.example.") == first && !first.Precomputed() {
		t.Error("the second phase was not published")
	}

	// An unchanged directory: nothing reparsed, nothing republished.
	if changed, err := l.ReloadServing(); err != nil || changed {
		t.Errorf("second ReloadServing: changed=%v err=%v, want false, nil", changed, err)
	}
	l.bg.Wait()
	if store.Load().Zone("big.example.") != second {
		t.Error("an unchanged reload replaced the zone")
	}
}

// TestPrecomputeSharesZone checks that Precompute leaves its receiver as
// it was and returns a copy that shares its data.
func TestPrecomputeSharesZone(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "big.example.zone")
	writeBigZone(t, path, 20_000)
	z, err := ParseFile(path, dir)
	if err != nil {
		t.Fatal(err)
	}
	if !z.Precomputed() {
		t.Fatal("ParseFile returned a zone without precomputed answers")
	}
	bare := *z
	bare.pre = nil
	c := bare.precompute(3)
	if bare.pre != nil || c == &bare || !c.Precomputed() {
		t.Fatal("precompute wrote its receiver or returned it")
	}
	if c.Precompute() != c {
		t.Error("Precompute of a precomputed zone is not the zone itself")
	}
	s1, _ := NewSnapshot(z)
	s3, _ := NewSnapshot(c)
	for name, n := range z.allNodes() {
		for _, set := range z.setsOf(n) {
			a, b := s1.Precomputed(name, set.typ), s3.Precomputed(name, set.typ)
			if string(a) != string(b) {
				t.Fatalf("%s %s: 1 and 3 workers give different messages", name, dns.TypeToString[set.typ])
			}
		}
	}
}
