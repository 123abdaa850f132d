package zone

import (
	"bufio"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var benchQueries = []struct {
	name  string
	qname string
	qtype uint16
}{
	{"hit", "host1.example.com.", dns.TypeA},
	{"hit-mixed-case", "HoSt1.ExAmple.COM.", dns.TypeA},
	{"cname-chain", "www.example.com.", dns.TypeA},
	{"mx-additional", "example.com.", dns.TypeMX},
	{"nxdomain", "nx.example.com.", dns.TypeA},
	{"nodata", "host1.example.com.", dns.TypeMX},
	{"wildcard", "anything.wild.example.com.", dns.TypeA},
	{"referral", "www.sub.example.com.", dns.TypeA},
	{"dname", "www.old.example.com.", dns.TypeA},
	{"refused", "example.org.", dns.TypeA},
}

// BenchmarkLookup measures one Lookup into a reused Response.
func BenchmarkLookup(b *testing.B) {
	s := shippedSnapshot(b)
	for _, q := range benchQueries {
		b.Run(q.name, func(b *testing.B) {
			b.ReportAllocs()
			var r Response
			for b.Loop() {
				s.Lookup(q.qname, q.qtype, &r)
			}
		})
	}
}

// BenchmarkLookupParallel runs lookups on every core against one snapshot
// loaded from a Store: the time per op falls with cores, as nothing is
// locked.
func BenchmarkLookupParallel(b *testing.B) {
	st := NewStore(shippedSnapshot(b))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var r Response
		i := 0
		for pb.Next() {
			q := benchQueries[i%len(benchQueries)]
			st.Load().Lookup(q.qname, q.qtype, &r)
			i++
		}
	})
}

// writeBigZone writes a zone of n records: about 520,000 names with A,
// AAAA, MX and TXT records, and CNAMEs.
func writeBigZone(tb testing.TB, path string, n int) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("$ORIGIN big.example.\n$TTL 3600\n@ SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ NS ns1\n@ NS ns2\nns1 A 192.0.2.1\nns2 A 192.0.2.2\n")
	records := 5
	var buf []byte
	for i := 0; records < n; i++ {
		name := strconv.AppendInt(append(buf[:0], 'h'), int64(i), 10)
		if i%10 == 9 {
			w.WriteString("c")
			w.Write(name[1:])
			w.WriteString(" CNAME h")
			w.WriteString(strconv.Itoa(i - 1))
			w.WriteString("\n")
			records++
			continue
		}
		w.Write(name)
		w.WriteString(" A 10." + strconv.Itoa(i>>16&255) + "." + strconv.Itoa(i>>8&255) + "." + strconv.Itoa(i&255) + "\n")
		records++
		if i%2 == 0 && records < n {
			w.WriteString("  AAAA 2001:db8::" + strconv.FormatInt(int64(i>>16), 16) + ":" + strconv.FormatInt(int64(i&0xffff), 16) + "\n")
			records++
		}
		if i%5 == 0 && records < n {
			w.WriteString("  MX 10 mail\n")
			records++
		}
		if i%3 == 0 && records < n {
			w.WriteString("  TXT \"v=spf1 -all\"\n")
			records++
		}
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkLoad1M loads a 1,000,000-record zone (writeBigZone: about
// 520,000 names with A, AAAA, MX, TXT and CNAME records) and reports what
// benchLoad measures.
func BenchmarkLoad1M(b *testing.B) {
	benchLoad(b, 1_000_000, writeBigZone)
}

// BenchmarkLoad1MFlat is BenchmarkLoad1M for the zone of
// deploy/bench/compare.sh: 1,000,000 records, nearly all of them one A
// record at a name of its own ("hN IN A 10.x.y.z").
func BenchmarkLoad1MFlat(b *testing.B) {
	benchLoad(b, 1_000_000, writeFlatZone)
}

// writeFlatZone writes the zone of deploy/bench/compare.sh, with n records
// (n >= 3): the SOA, one NS, its address and n-3 names with one A record
// each.
func writeFlatZone(tb testing.TB, path string, n int) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("$ORIGIN big.example.\n$TTL 3600\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ IN NS ns1\nns1 IN A 192.0.2.1\n")
	var buf []byte
	for i := 1; i <= n-3; i++ {
		buf = strconv.AppendInt(append(buf[:0], 'h'), int64(i), 10)
		buf = append(buf, " IN A 10."...)
		buf = strconv.AppendInt(buf, int64(i>>16&255), 10)
		buf = append(buf, '.')
		buf = strconv.AppendInt(buf, int64(i>>8&255), 10)
		buf = append(buf, '.')
		buf = strconv.AppendInt(buf, int64(i&255), 10)
		buf = append(buf, '\n')
		w.Write(buf)
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// benchLoad loads a zone of n records, written by write, and reports the
// time to parse and validate it (s/ready: what the Loader publishes
// first), the time to build its precomputed answers (s/precompute), their
// sum (s/load, what ParseFile takes), and the memory the loaded zone
// keeps, after GC: heap bytes/record, and RSS-bytes/record, the growth of
// the process's resident size once the freed memory is returned to the OS
// (debug.FreeOSMemory, as the Loader does after a large load).
//
// One iteration takes seconds: with a fixed count above 3 (such as
// -benchtime=2000x for the lookup benchmarks) it is skipped; run it with
// -benchtime=1x.
//
// On a shared machine wall time measures the neighbours too: cpu-s/ready is
// the CPU time of the parsing goroutine's thread (what wall time is on an
// idle machine, as the GC's workers run on the other cores) and
// process-cpu-s/load the whole process's, GC included.
//
// gc-ms is the wall time of one full collection (runtime.GC) with the
// loaded zone live, and gc-cpu-ms the CPU the collector spent on it
// (runtime/metrics /cpu/classes/gc/total:cpu-seconds): what marking the
// zone costs at every GC cycle while it is served, such as the one at the
// end of a reload.
func benchLoad(b *testing.B, n int, write func(testing.TB, string, int)) {
	if f := flag.Lookup("test.benchtime"); f != nil {
		if c, ok := strings.CutSuffix(f.Value.String(), "x"); ok {
			if count, err := strconv.Atoi(c); err == nil && count > 3 {
				b.Skipf("-benchtime=%s: loading %d records %d times takes too long; use -benchtime=1x", f.Value, n, count)
			}
		}
	}
	dir := b.TempDir()
	path := filepath.Join(dir, "big.example.zone")
	write(b, path, n)
	b.ReportAllocs()
	var (
		perRecord, rssPerRecord float64
		ready, pre              float64
		readyCPU, procCPU       float64
		gcWall, gcCPU           float64
		loads                   int
	)
	gcTotal := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for b.Loop() {
		var before, after runtime.MemStats
		debug.FreeOSMemory()
		runtime.ReadMemStats(&before)
		rss0 := residentBytes(b)
		p0, _ := processCPU()
		t0, _ := threadCPU()
		start := time.Now()
		data, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		z, _, err := parseData(data, path, dir, 0, runtime.GOMAXPROCS(0), loadAlone)
		if err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		t1, _ := threadCPU()
		z = z.Precompute()
		p1, _ := processCPU()
		readyCPU += (t1 - t0).Seconds()
		procCPU += (p1 - p0).Seconds()
		ready += mid.Sub(start).Seconds()
		pre += time.Since(mid).Seconds()
		debug.FreeOSMemory()
		runtime.ReadMemStats(&after)
		rss1 := residentBytes(b)
		if z.Records != n {
			b.Fatalf("%d records, want %d", z.Records, n)
		}
		perRecord += float64(after.HeapAlloc-before.HeapAlloc) / float64(z.Records)
		rssPerRecord += float64(rss1-rss0) / float64(z.Records)
		metrics.Read(gcTotal)
		c0 := gcTotal[0].Value.Float64()
		g0 := time.Now()
		runtime.GC()
		gcWall += time.Since(g0).Seconds()
		metrics.Read(gcTotal)
		gcCPU += gcTotal[0].Value.Float64() - c0
		loads++
		runtime.KeepAlive(z)
	}
	b.ReportMetric(perRecord/float64(loads), "bytes/record")
	b.ReportMetric(rssPerRecord/float64(loads), "RSS-bytes/record")
	b.ReportMetric(ready/float64(loads), "s/ready")
	b.ReportMetric(readyCPU/float64(loads), "cpu-s/ready")
	b.ReportMetric(procCPU/float64(loads), "process-cpu-s/load")
	b.ReportMetric(pre/float64(loads), "s/precompute")
	b.ReportMetric((ready+pre)/float64(loads), "s/load")
	b.ReportMetric(1e3*gcWall/float64(loads), "gc-ms")
	b.ReportMetric(1e3*gcCPU/float64(loads), "gc-cpu-ms")
}

// residentBytes returns the resident set size of the process
// (/proc/self/statm), or skips the benchmark where there is none.
func residentBytes(b *testing.B) int64 {
	b.Helper()
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		b.Skip("no /proc/self/statm:", err)
	}
	fields := strings.Fields(string(data))
	if len(fields) < 2 {
		b.Fatalf("statm: %q", data)
	}
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
}

// BenchmarkPrecomputed measures the fast path's lookup of a precomputed
// response (a hit) and of a miss (the server then calls Lookup).
func BenchmarkPrecomputed(b *testing.B) {
	s := shippedSnapshot(b)
	for _, q := range []struct {
		name  string
		qname string
		qtype uint16
	}{
		{"hit", "host1.example.com.", dns.TypeA},
		{"miss", "nx.example.com.", dns.TypeA},
	} {
		b.Run(q.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Precomputed(q.qname, q.qtype)
			}
		})
	}
}

// BenchmarkPrecomputedLarge measures Precomputed hits at random names of
// the 1,000,000-record zone of BenchmarkLoad1MFlat: with a zone far larger
// than the caches, what the name index's memory accesses cost.
func BenchmarkPrecomputedLarge(b *testing.B) {
	const n = 1_000_000
	dir := b.TempDir()
	path := filepath.Join(dir, "big.example.zone")
	writeFlatZone(b, path, n)
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	z, _, err := parseData(data, path, dir, 0, runtime.GOMAXPROCS(0), loadAlone)
	if err != nil {
		b.Fatal(err)
	}
	s, err := NewSnapshot(z.Precompute())
	if err != nil {
		b.Fatal(err)
	}
	names := make([]string, 1<<16)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range names {
		names[i] = "h" + strconv.Itoa(1+rng.IntN(n-3)) + ".big.example."
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if s.Precomputed(names[i%len(names)], dns.TypeA) == nil {
			b.Fatal("no precomputed answer for", names[i%len(names)])
		}
		i++
	}
}
