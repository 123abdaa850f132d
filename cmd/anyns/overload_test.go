package main

// The overload test of issue 7 ("Faults"): twice the measured capacity,
// offered over UDP, while a health-probe-like client asks for the SOA.

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap/zaptest"

	"github.com/anyns/anyns/server"
	"github.com/anyns/anyns/zone"
)

// TestOverload measures the in-process server's UDP capacity, then offers
// twice that rate for a few seconds from paced senders that do not wait for
// replies, while a probe sends one UDP and one TCP SOA query every 100 ms,
// as the health checker does. It requires that:
//   - every TCP probe is answered (TCP has its own accept queue and
//     connection, which a UDP flood does not fill);
//   - UDP probes are lost at most at the rate the flood itself is lost, plus
//     a margin: a probe shares the socket's receive queue with the flood, the
//     kernel drops whatever arrives while that queue is full, and nothing in
//     a single socket can put a probe ahead of the flood. A server that
//     queued without bound (or stalled) would instead lose every probe or
//     answer it seconds late;
//   - goroutines and heap stay bounded during the flood (no queue grows
//     with the load: the UDP readers are a fixed set);
//   - within 1 s of the flood stopping, queries are answered normally.
func TestOverload(t *testing.T) {
	const (
		capacityFor = 2 * time.Second
		floodFor    = 5 * time.Second
		clients     = 4  // capacity measurement: tight loops...
		window      = 16 // ...each with this many queries outstanding
		senders     = 2  // flood: paced senders, each with a reader
		probeEvery  = 100 * time.Millisecond
		// udpProbeWait is the health checker's default timeout; TCP
		// probes get longer, so that a slow (not lost) answer on two
		// shared cores under -race is not counted as a failure.
		udpProbeWait = 300 * time.Millisecond
		tcpProbeWait = time.Second
	)
	log := zaptest.NewLogger(t).Named("server")
	store := zone.NewStore(nil)
	loader, err := zone.NewLoader(zone.Config{Dir: shippedZones(t), Rescan: -1}, store, log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loader.Reload(); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Identity: "overload"}, store, log)
	if err != nil {
		t.Fatal(err)
	}
	l, err := bindPair("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var serveWG sync.WaitGroup
	serveWG.Add(2)
	go func() { defer serveWG.Done(); _ = srv.ServeUDP(l.udp) }()
	go func() { defer serveWG.Done(); _ = srv.ServeTCP(l.tcp) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		l.udp.Close()
		serveWG.Wait()
	})
	addr := l.tcp.Addr().String()
	awaitResponding(t, addr)

	q := new(dns.Msg)
	q.SetQuestion("www.example.com.", dns.TypeA)
	q.RecursionDesired = false
	query, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}

	// Capacity: answers per second to tight-loop clients keeping a window
	// of queries outstanding, so the server, not the round trip, is the
	// limit.
	var answered atomic.Int64
	capStart := time.Now()
	capEnd := capStart.Add(capacityFor)
	var capWG sync.WaitGroup
	for range clients {
		c, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		capWG.Add(1)
		go func() {
			defer capWG.Done()
			defer c.Close()
			buf := make([]byte, 1500)
			pkt := slices.Clone(query)
			var id uint16
			send := func() { id++; binary.BigEndian.PutUint16(pkt, id); _, _ = c.Write(pkt) }
			for range window {
				send()
			}
			for time.Now().Before(capEnd) {
				_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				if _, err := c.Read(buf); err != nil {
					for range window { // lost: refill the window
						send()
					}
					continue
				}
				answered.Add(1)
				send()
			}
		}()
	}
	capWG.Wait()
	capacity := float64(answered.Load()) / time.Since(capStart).Seconds()
	if capacity < 100 {
		t.Fatalf("capacity %.0f queries/s: the server hardly answers", capacity)
	}
	offered := 2 * capacity

	// Baseline for the bounds, with the server idle again.
	drainUntil := time.Now().Add(time.Second)
	for srv.Stats().TCPConns > 0 && time.Now().Before(drainUntil) {
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	baseHeap, baseG := ms.HeapInuse, runtime.NumGoroutine()
	baseRecv := srv.Stats().QueriesUDP

	// The flood: paced senders on connected sockets; readers count what
	// comes back and never hold a sender up.
	var (
		floodSent, floodAnswered atomic.Int64
		stop                     atomic.Bool
		floodWG                  sync.WaitGroup
	)
	floodStart := time.Now()
	floodEnd := floodStart.Add(floodFor)
	for i := range senders {
		c, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.(*net.UDPConn).SetReadBuffer(4 << 20)
		floodWG.Add(2)
		go func() { // reader
			defer floodWG.Done()
			buf := make([]byte, 1500)
			for !stop.Load() {
				_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				if _, err := c.Read(buf); err == nil {
					floodAnswered.Add(1)
				}
			}
		}()
		go func() { // paced sender
			defer floodWG.Done()
			defer func() {
				for !stop.Load() { // the reader stops at stop, then closes
					time.Sleep(10 * time.Millisecond)
				}
				c.Close()
			}()
			rate := offered / senders
			pkt := slices.Clone(query)
			id := uint16(i << 14)
			sent := 0
			for now := time.Now(); now.Before(floodEnd); now = time.Now() {
				due := int(rate * now.Sub(floodStart).Seconds())
				for n := 0; sent < due && n < 1000; n++ { // bounded burst
					sent++
					id++
					binary.BigEndian.PutUint16(pkt, id)
					_, _ = c.Write(pkt)
					floodSent.Add(1)
				}
				time.Sleep(500 * time.Microsecond) // pacing
			}
		}()
	}

	// The probes: one UDP and one TCP SOA query every 100 ms, each in its
	// own loop so a lost UDP probe does not delay the TCP one.
	type probeResult struct {
		lat []time.Duration
		err []error
	}
	var probes [2]probeResult // udp, tcp
	var probeWG sync.WaitGroup
	for i, netw := range []string{"udp", "tcp"} {
		probeWG.Add(1)
		go func() {
			defer probeWG.Done()
			c := &dns.Client{Net: netw, Timeout: udpProbeWait}
			if netw == "tcp" {
				c.Timeout = tcpProbeWait
			}
			tick := time.NewTicker(probeEvery)
			defer tick.Stop()
			for time.Now().Before(floodEnd) {
				m := new(dns.Msg)
				m.SetQuestion("example.com.", dns.TypeSOA)
				m.RecursionDesired = false
				m.SetEdns0(1232, false)
				start := time.Now()
				r, _, err := c.Exchange(m, addr)
				if err == nil && (r.Rcode != dns.RcodeSuccess || !r.Authoritative || len(r.Answer) != 1) {
					err = fmt.Errorf("rcode %s aa=%v answer %v", dns.RcodeToString[r.Rcode], r.Authoritative, r.Answer)
				}
				if err != nil {
					probes[i].err = append(probes[i].err, err)
				} else {
					probes[i].lat = append(probes[i].lat, time.Since(start))
				}
				<-tick.C
			}
		}()
	}

	// Bounds during the flood.
	maxG, maxHeap := 0, uint64(0)
	for time.Now().Before(floodEnd) {
		runtime.ReadMemStats(&ms)
		maxG, maxHeap = max(maxG, runtime.NumGoroutine()), max(maxHeap, ms.HeapInuse)
		time.Sleep(100 * time.Millisecond) // sampling interval
	}
	probeWG.Wait()
	floodDur := time.Since(floodStart)
	recv := srv.Stats().QueriesUDP - baseRecv
	stop.Store(true)
	floodWG.Wait()
	stopped := time.Now()

	// Recovery: the first answer within 1 s of the flood stopping, then
	// 50 queries in a row, each answered within 250 ms.
	rc := &dns.Client{Timeout: 100 * time.Millisecond}
	var recovery time.Duration
	for {
		m := new(dns.Msg)
		m.SetQuestion("example.com.", dns.TypeSOA)
		if r, _, err := rc.Exchange(m, addr); err == nil && r.Rcode == dns.RcodeSuccess {
			recovery = time.Since(stopped)
			break
		}
		if time.Since(stopped) > 5*time.Second {
			recovery = -1
			break
		}
	}
	rc.Timeout = 250 * time.Millisecond
	var after []time.Duration
	afterFailed := 0
	for range 50 {
		m := new(dns.Msg)
		m.SetQuestion("www.example.com.", dns.TypeA)
		start := time.Now()
		if r, _, err := rc.Exchange(m, addr); err != nil || r.Rcode != dns.RcodeSuccess {
			afterFailed++
			continue
		}
		after = append(after, time.Since(start))
	}

	sent, got := floodSent.Load(), floodAnswered.Load()
	udpN, udpLost := len(probes[0].err)+len(probes[0].lat), len(probes[0].err)
	floodLoss := 1 - float64(got)/float64(max(sent, 1))
	// dropped is the share of UDP queries the kernel dropped before the
	// server read them (its socket's receive queue full).
	dropped := max(0, 1-float64(recv)/float64(max(sent+int64(udpN), 1)))
	// The bound of lost UDP probes. A probe is one datagram in the same
	// receive queue as the flood; the kernel drops whatever arrives while
	// that queue is full, whoever sent it, and a server reading one socket
	// cannot see a probe before the flood queued ahead of it. So a probe is
	// lost with the probability a flood query is (dropped), and the number
	// lost is binomial: n*p plus three standard deviations plus 2 (a false
	// alarm well under 1%). At 2x the capacity that is about half of them:
	// the health checker's busy_qps exists for this. What must not happen
	// is worse than the flood: a queue inside the server, or a stall.
	n, p := float64(udpN), dropped
	udpBound := int(n*p+3*math.Sqrt(n*p*(1-p))) + 2
	tcpSlow := 0
	for _, d := range probes[1].lat {
		if d > udpProbeWait {
			tcpSlow++
		}
	}
	logFigures(t, fmt.Sprintf("overload: capacity=%.0f/s offered=%.0f/s sent=%d (%.0f/s) answered=%d (%.0f/s) flood_loss=%.2f dropped_at_socket=%.2f "+
		"udp_probes=%d udp_failed=%d udp_bound=%d udp_p50=%v udp_p99=%v udp_max=%v "+
		"tcp_probes=%d tcp_failed=%d tcp_over_300ms=%d tcp_p50=%v tcp_p99=%v tcp_max=%v "+
		"goroutines=%d max=%d heap_inuse=%.1fMB max=%.1fMB recovery=%v after_p50=%v after_max=%v after_failed=%d",
		capacity, offered, sent, float64(sent)/floodDur.Seconds(), got, float64(got)/floodDur.Seconds(), floodLoss, dropped,
		udpN, udpLost, udpBound, pct(probes[0].lat, 50), pct(probes[0].lat, 99), pct(probes[0].lat, 100),
		len(probes[1].lat)+len(probes[1].err), len(probes[1].err), tcpSlow, pct(probes[1].lat, 50), pct(probes[1].lat, 99), pct(probes[1].lat, 100),
		baseG, maxG, mb(baseHeap), mb(maxHeap), recovery.Round(time.Millisecond), pct(after, 50), pct(after, 100), afterFailed))

	if float64(sent) < 1.2*capacity*floodFor.Seconds() {
		// On two shared cores the senders may not reach twice the
		// capacity; below 1.2x this is not an overload test.
		t.Logf("overload: offered only %.2fx the capacity", float64(sent)/floodDur.Seconds()/capacity)
	}
	if n := len(probes[1].err); n > 0 {
		t.Errorf("%d of %d TCP probes failed during the flood; first: %v", n, n+len(probes[1].lat), probes[1].err[0])
	}
	if len(probes[1].lat) < int(floodFor/probeEvery)/2 {
		t.Errorf("only %d TCP probes answered in %v: probes were held up", len(probes[1].lat), floodFor)
	}
	if udpLost > udpBound || udpLost == udpN {
		t.Errorf("%d of %d UDP probes lost, bound %d (%.2f of the queries dropped at the socket); first: %v",
			udpLost, udpN, udpBound, dropped, probes[0].err[0])
	}
	// The probes that are answered are answered at once: the only queue is
	// the socket's, bounded by its buffer.
	if d := pct(probes[0].lat, 50); d > 100*time.Millisecond {
		t.Errorf("median UDP probe answered in %v: a queue builds up under the flood", d)
	}
	// Goroutines: the server's are a fixed set; the probes' TCP
	// connections come and go one at a time.
	if maxG > baseG+senders*2+2+20 {
		t.Errorf("goroutines reached %d during the flood, from %d: something queues per packet", maxG, baseG)
	}
	if maxHeap > 2*baseHeap+64<<20 {
		t.Errorf("heap in use reached %.1f MB during the flood, from %.1f MB", mb(maxHeap), mb(baseHeap))
	}
	if recovery < 0 || recovery > time.Second {
		t.Errorf("first answer %v after the flood stopped, want within 1s", recovery)
	}
	if afterFailed > 0 {
		t.Errorf("%d of 50 queries after recovery failed", afterFailed)
	}
}

// pct returns the p-th percentile of ds (p 100 is the maximum).
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)].Round(10 * time.Microsecond)
}
