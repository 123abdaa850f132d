package zone

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// BenchmarkReload1M reloads a changed 1,000,000-record zone through the
// Loader (ReloadServing, as Run does) while two goroutines keep answering
// queries from the store as the server does (Snapshot.Precomputed, else
// Lookup). It reports the time until the new zone serves (s/ready), until
// its precomputed answers serve too (s/reload), the peak heap above the
// steady state during the reload, how many lookups were answered meanwhile
// (lookups never wait for a reload: they read the old snapshot until the
// pointer swap), and the 99th percentile and maximum latency of a lookup
// during the reload and the second after it (when the load's garbage is
// collected: see gc.go). Run it with -benchtime=1x (or a few x): each iteration
// takes seconds.
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

	// Two goroutines query at a fixed pace (one lookup every 50us each,
	// about 40,000 per second in all), as a server's listeners would:
	// a lookup's latency runs from when it was due, so time spent waiting
	// to be scheduled counts (no coordinated omission).
	const (
		settle   = time.Second // recording goes on after each reload
		interval = 50 * time.Microsecond
		bucket   = 10 * time.Microsecond
		buckets  = 100_000 // up to 1 s
	)
	var (
		stop      atomic.Bool
		recording atomic.Bool
		lookups   atomic.Int64
		wg        sync.WaitGroup
		hist      [2][]int64 // latency histograms, by bucket
	)
	for g := range hist {
		hist[g] = make([]int64, buckets)
		wg.Go(func() {
			var r Response
			names := []string{"h1.big.example.", "c9.big.example.", "nope.big.example.", "h123456.big.example."}
			due := time.Now()
			for i := 0; !stop.Load() && i < 1<<30; i++ {
				due = due.Add(interval)
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				}
				name := names[i%len(names)]
				s := store.Load()
				if s.Precomputed(name, dns.TypeA) == nil {
					s.Lookup(name, dns.TypeA, &r)
				}
				lat := time.Since(due)
				if recording.Load() {
					hist[g][min(int(lat/bucket), buckets-1)]++
				}
				lookups.Add(1)
				if lat > time.Second {
					due = time.Now() // fell far behind: start again
				}
			}
		})
	}
	heap := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	readHeap := func() uint64 { metrics.Read(heap); return heap[0].Value.Uint64() }

	sched := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	var schedCounts []uint64 // scheduling latencies during reloads
	var schedBuckets []float64
	var ready, seconds, peakExtra float64
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
		metrics.Read(sched)
		h0 := sched[0].Value.Float64Histogram()
		c0 := slices.Clone(h0.Counts)
		recording.Store(true)
		b.StartTimer()
		start := time.Now()
		changed, err := l.ReloadServing()
		ready += time.Since(start).Seconds()
		l.bg.Wait()
		seconds += time.Since(start).Seconds()
		during += lookups.Load() - before
		b.StopTimer()
		// The load's garbage is collected after it: latencies count
		// for a while longer.
		time.Sleep(settle)
		recording.Store(false)
		metrics.Read(sched)
		h1 := sched[0].Value.Float64Histogram()
		if schedCounts == nil {
			schedCounts, schedBuckets = make([]uint64, len(h1.Counts)), h1.Buckets
		}
		for i := range h1.Counts {
			schedCounts[i] += h1.Counts[i] - c0[i]
		}
		close(done)
		if err != nil || !changed {
			b.Fatalf("reload: changed=%v err=%v", changed, err)
		}
		if z := store.Load().Zone("big.example."); z == nil || !z.Precomputed() {
			b.Fatal("the reloaded zone serves without its precomputed answers")
		}
		if p := peak.Load(); p > base {
			peakExtra += float64(p - base)
		}
		n++
		b.StartTimer()
	}
	stop.Store(true)
	wg.Wait()
	var total int64
	for g := range hist {
		for _, c := range hist[g] {
			total += c
		}
	}
	var seen int64
	p99, maxLat := -1, 0
	for i := range buckets {
		c := hist[0][i] + hist[1][i]
		if c == 0 {
			continue
		}
		seen += c
		if p99 < 0 && seen*100 >= total*99 {
			p99 = i
		}
		maxLat = i
	}
	if total > 0 {
		b.ReportMetric(float64(time.Duration(p99+1)*bucket)/1e3, "p99-us")
		b.ReportMetric(float64(time.Duration(maxLat+1)*bucket)/1e3, "max-us")
	}
	// The runtime's scheduling latency (runnable to running) of every
	// goroutine during the reloads: what a listener goroutine waits for a
	// P. Reported as the upper bound of the bucket holding the 99th
	// percentile.
	var schedTotal, schedSeen uint64
	for _, c := range schedCounts {
		schedTotal += c
	}
	for i, c := range schedCounts {
		if schedSeen += c; schedTotal > 0 && schedSeen*100 >= schedTotal*99 {
			b.ReportMetric(schedBuckets[i+1]*1e6, "sched-p99-us")
			break
		}
	}
	b.ReportMetric(ready/float64(n), "s/ready")
	b.ReportMetric(seconds/float64(n), "s/reload")
	b.ReportMetric(peakExtra/float64(n)/(1<<20), "peak-extra-MiB")
	b.ReportMetric(float64(during)/float64(n), "lookups-during-reload")
}
