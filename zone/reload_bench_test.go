package zone

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// BenchmarkReload1M reloads a changed 1,000,000-record zone through the
// Loader while two goroutines keep looking names up in the store. It reports
// the reload time, the peak heap above the steady state during the reload,
// and how many lookups were answered meanwhile (lookups never wait for a
// reload: they read the old snapshot until the pointer swap). Run it with
// -benchtime=1x (or a few x): each iteration takes seconds.
func BenchmarkReload1M(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "big.example.zone")
	writeBigZone(b, path, 1_000_000)
	store := NewStore(nil)
	l, err := NewLoader(Config{Dir: dir, Rescan: -1}, store, nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := l.Reload(); err != nil {
		b.Fatal(err)
	}

	var (
		stop    atomic.Bool
		lookups atomic.Int64
		wg      sync.WaitGroup
	)
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r Response
			names := []string{"h1.big.example.", "c9.big.example.", "nope.big.example.", "h123456.big.example."}
			for i := 0; !stop.Load() && i < 1<<30; i++ {
				store.Load().Lookup(names[i%len(names)], dns.TypeA, &r)
				lookups.Add(1)
			}
		}()
	}
	heap := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	readHeap := func() uint64 { metrics.Read(heap); return heap[0].Value.Uint64() }

	var seconds, peakExtra float64
	var during int64
	n := 0
	for b.Loop() {
		b.StopTimer()
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(f, "added%d A 192.0.2.9\n", n)
		f.Close()
		runtime.GC()
		base := readHeap()
		var peak atomic.Uint64
		done := make(chan struct{})
		go func() {
			for t := time.NewTicker(2 * time.Millisecond); ; {
				select {
				case <-done:
					t.Stop()
					return
				case <-t.C:
					if h := readHeap(); h > peak.Load() {
						peak.Store(h)
					}
				}
			}
		}()
		before := lookups.Load()
		b.StartTimer()
		start := time.Now()
		changed, err := l.Reload()
		seconds += time.Since(start).Seconds()
		b.StopTimer()
		close(done)
		if err != nil || !changed {
			b.Fatalf("reload: changed=%v err=%v", changed, err)
		}
		during += lookups.Load() - before
		if p := peak.Load(); p > base {
			peakExtra += float64(p - base)
		}
		n++
		b.StartTimer()
	}
	stop.Store(true)
	wg.Wait()
	b.ReportMetric(seconds/float64(n), "s/reload")
	b.ReportMetric(peakExtra/float64(n)/(1<<20), "peak-extra-MiB")
	b.ReportMetric(float64(during)/float64(n), "lookups-during-reload")
}
