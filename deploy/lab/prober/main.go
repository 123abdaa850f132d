// Command prober is the client of the anycast lab (deploy/lab/lab.sh): it
// sends one SOA query with an NSID request every -interval to the service
// address, each on its own socket so a lost query does not delay the next,
// prints one line per query and, when it stops, a summary: how many queries
// failed, which instance answered how many, and every switch from one
// instance to another with the gap between the last answer of the first and
// the first answer of the second.
//
// SIGUSR1 marks the moment of an event (the lab sends it when it kills a
// listener, drains or stops an instance); the summary reports what happened
// after the mark. The prober stops on SIGINT or SIGTERM, once -until is met
// (-run answers in a row after the mark from an instance, or "!id": from any
// instance but id), or after -max. It always waits for the queries in flight
// and exits 0 unless -until was set and not met.
package main

import (
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// result is one query.
type result struct {
	seq  int
	sent time.Duration // since start
	rtt  time.Duration
	id   string // the NSID of the instance that answered; empty on failure
	soa  uint32
	err  string
}

func main() {
	var (
		server   = flag.String("server", "192.0.2.53:53", "service `address` host:port")
		qname    = flag.String("name", "example.com.", "zone whose SOA is asked")
		interval = flag.Duration("interval", 20*time.Millisecond, "time between queries")
		timeout  = flag.Duration("timeout", 500*time.Millisecond, "per-query timeout")
		maxRun   = flag.Duration("max", 30*time.Second, "stop after this long (at most 5m)")
		until    = flag.String("until", "", "after the mark, stop once -run answers in a row came from this `id` (\"!id\": from any other)")
		run      = flag.Int("run", 25, "answers in a row that meet -until")
		quiet    = flag.Bool("q", false, "print only the summary")
	)
	flag.Parse()
	if *interval <= 0 || *maxRun <= 0 || *maxRun > 5*time.Minute || *run < 1 {
		fmt.Fprintln(os.Stderr, "prober: -interval and -run must be positive, -max between 0 and 5m")
		os.Exit(2)
	}
	os.Exit(probe(*server, dns.Fqdn(*qname), *interval, *timeout, *maxRun, *until, *run, *quiet))
}

func probe(server, qname string, interval, timeout, maxRun time.Duration, until string, run int, quiet bool) int {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	markC := make(chan os.Signal, 1)
	signal.Notify(markC, syscall.SIGUSR1)

	start := time.Now()
	var (
		mu      sync.Mutex
		results []result
		mark    time.Duration = -1
		met     bool
		wg      sync.WaitGroup
	)
	done := make(chan struct{}) // closed once -until is met
	record := func(r result) {
		mu.Lock()
		defer mu.Unlock()
		results = append(results, r)
		if !quiet {
			fmt.Println(r)
		}
		if until == "" || mark < 0 || met {
			return
		}
		if untilMet(results, mark, until, run) {
			met = true
			close(done)
		}
	}

	tick := time.NewTicker(interval)
	defer tick.Stop()
	end := time.After(maxRun)
	maxCount := int(maxRun/interval) + 1
	reason := "max"
loop:
	for seq := 0; seq < maxCount; seq++ {
		wg.Add(1)
		go func(seq int, sent time.Time) {
			defer wg.Done()
			r := query(server, qname, timeout)
			r.seq, r.sent, r.rtt = seq, sent.Sub(start), time.Since(sent)
			record(r)
		}(seq, time.Now())
		select {
		case <-tick.C:
		case <-markC:
			mu.Lock()
			if mark < 0 {
				mark = time.Since(start)
			}
			mu.Unlock()
		case <-stop:
			reason = "signal"
			break loop
		case <-done:
			reason = "until"
			break loop
		case <-end:
			break loop
		}
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	summarize(results, mark, reason)
	if until != "" && !met {
		fmt.Printf("summary: -until %s not met (%d answers in a row after the mark)\n", until, run)
		return 1
	}
	return 0
}

// untilMet reports whether the latest run answered queries sent after mark
// all match want ("id" or "!id"), with no failure among them.
func untilMet(rs []result, mark time.Duration, want string, run int) bool {
	sorted := slices.Clone(rs)
	slices.SortFunc(sorted, func(a, b result) int { return a.seq - b.seq })
	n := 0
	for _, r := range sorted {
		if r.sent < mark {
			continue
		}
		if matches(r.id, want) {
			n++
		} else {
			n = 0
		}
	}
	return n >= run
}

func matches(id, want string) bool {
	if id == "" {
		return false
	}
	if not, ok := strings.CutPrefix(want, "!"); ok {
		return id != not
	}
	return id == want
}

func (r result) String() string {
	if r.err != "" {
		return fmt.Sprintf("query %5d +%7.3fs %7.1fms FAIL %s", r.seq, r.sent.Seconds(), ms(r.rtt), r.err)
	}
	return fmt.Sprintf("query %5d +%7.3fs %7.1fms %s serial %d", r.seq, r.sent.Seconds(), ms(r.rtt), r.id, r.soa)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// query sends one SOA query with NSID over UDP; it fails unless the answer
// is NOERROR, authoritative, carries the SOA and names its instance.
func query(server, qname string, timeout time.Duration) result {
	m := new(dns.Msg)
	m.SetQuestion(qname, dns.TypeSOA)
	m.SetEdns0(1232, false)
	opt := m.IsEdns0()
	opt.Option = append(opt.Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID})
	c := &dns.Client{Net: "udp", Timeout: timeout}
	r, _, err := c.Exchange(m, server)
	if err != nil {
		return result{err: shortErr(err)}
	}
	if r.Rcode != dns.RcodeSuccess || !r.Authoritative {
		return result{err: fmt.Sprintf("rcode %s aa %v", dns.RcodeToString[r.Rcode], r.Authoritative)}
	}
	var res result
	for _, rr := range r.Answer {
		if soa, ok := rr.(*dns.SOA); ok {
			res.soa = soa.Serial
		}
	}
	if res.soa == 0 {
		return result{err: "no SOA in the answer"}
	}
	if o := r.IsEdns0(); o != nil {
		for _, e := range o.Option {
			if n, ok := e.(*dns.EDNS0_NSID); ok {
				b, err := hex.DecodeString(n.Nsid)
				if err == nil {
					res.id = string(b)
				}
			}
		}
	}
	if res.id == "" || strings.ContainsAny(res.id, " \n") {
		return result{err: fmt.Sprintf("NSID %q", res.id)}
	}
	return res
}

func shortErr(err error) string {
	s := err.Error()
	if strings.Contains(s, "timeout") {
		return "timeout"
	}
	return strings.ReplaceAll(s, "\n", " ")
}

// summarize prints the summary lines the lab reads:
//
//	summary: queries 312 answered 300 failed 12
//	summary: answered by ns-a 120 ns-b 180
//	switch: ns-a -> ns-b gap 243 ms failed 12 (last ns-a sent +2.200s, first ns-b sent +2.443s)
//	mark: +2.210s failed-after 12 moved 233 ms (first answer not from ns-a)
//	summary: longest gap between answers 243 ms
func summarize(rs []result, mark time.Duration, reason string) {
	slices.SortFunc(rs, func(a, b result) int { return a.seq - b.seq })
	count := map[string]int{}
	var ids []string
	failed := 0
	for _, r := range rs {
		if r.err != "" {
			failed++
			continue
		}
		if count[r.id] == 0 {
			ids = append(ids, r.id)
		}
		count[r.id]++
	}
	slices.Sort(ids)
	fmt.Printf("summary: queries %d answered %d failed %d (stopped by %s)\n", len(rs), len(rs)-failed, failed, reason)
	var by []string
	for _, id := range ids {
		by = append(by, fmt.Sprintf("%s %d", id, count[id]))
	}
	fmt.Printf("summary: answered by %s\n", strings.Join(by, " "))

	// Switches between instances, and the longest time without an answer.
	type sw struct {
		from, to      result
		failedBetween int
	}
	var (
		sws     []sw
		last    *result
		fails   int
		longest time.Duration
	)
	for i := range rs {
		r := &rs[i]
		if r.err != "" {
			fails++
			continue
		}
		if last != nil {
			if g := r.sent - last.sent; g > longest {
				longest = g
			}
			if r.id != last.id {
				sws = append(sws, sw{from: *last, to: *r, failedBetween: fails})
			}
		}
		last, fails = r, 0
	}
	if len(sws) <= 10 {
		for _, s := range sws {
			fmt.Printf("switch: %s -> %s gap %d ms failed %d (last %s sent +%.3fs, first %s sent +%.3fs)\n",
				s.from.id, s.to.id, (s.to.sent - s.from.sent).Milliseconds(), s.failedBetween,
				s.from.id, s.from.sent.Seconds(), s.to.id, s.to.sent.Seconds())
		}
	} else {
		fmt.Printf("switch: %d switches (answers spread across instances)\n", len(sws))
	}
	fmt.Printf("summary: longest gap between answers %d ms\n", longest.Milliseconds())

	if mark < 0 {
		return
	}
	// What happened after the mark: failures, and how long until the
	// first answer from another instance than the one answering at the mark.
	before, after := map[string]int{}, map[string]int{}
	var at string
	failedAfter := 0
	for _, r := range rs {
		switch {
		case r.sent < mark && r.err == "":
			before[r.id]++
			at = r.id
		case r.sent >= mark && r.err != "":
			failedAfter++
		case r.sent >= mark:
			after[r.id]++
		}
	}
	moved := "no"
	for _, r := range rs {
		if r.sent >= mark && r.err == "" && r.id != at {
			moved = fmt.Sprintf("%d ms", (r.sent - mark).Milliseconds())
			break
		}
	}
	fmt.Printf("mark: +%.3fs failed-after %d of %d moved %s (first answer not from %s)\n",
		mark.Seconds(), failedAfter, countSince(rs, mark), moved, at)
	fmt.Printf("mark: before %s; after %s\n", counts(before), counts(after))
}

func countSince(rs []result, mark time.Duration) int {
	n := 0
	for _, r := range rs {
		if r.sent >= mark {
			n++
		}
	}
	return n
}

func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var out []string
	for _, id := range ids {
		out = append(out, fmt.Sprintf("%s %d", id, m[id]))
	}
	return strings.Join(out, " ")
}
