package main

// The soak test of issue 7 ("Faults"): anyns in-process under sustained
// query load while everything around it fails and recovers.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	api "github.com/osrg/gobgp/v3/api"
	"go.uber.org/goleak"

	"github.com/anyns/anyns/server"
	"github.com/anyns/anyns/zone"
)

// soakDuration is how long the load and the faults run: ANYNS_SOAK_DURATION
// when set (any time.ParseDuration string), else 10s under -short and 90s
// otherwise (the whole suite runs in CI, under -race).
func soakDuration(t *testing.T) time.Duration {
	if s := os.Getenv("ANYNS_SOAK_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("ANYNS_SOAK_DURATION=%q: want a positive duration such as 10m", s)
		}
		return d
	}
	if testing.Short() {
		return 10 * time.Second
	}
	return 90 * time.Second
}

// soakGoBGPLeaks are the goroutines a GoBGP v3 server leaves behind once
// StopBgp has returned: BgpServer.Serve never returns in v3 (announce keeps
// one BgpServer per process for that reason), and the router of the test
// is a second BgpServer. Both sit in Serve's select, waiting on the
// management channel, for the life of the process. Nothing else of GoBGP
// (FSM handlers, the BGP listener, watchers, the infinite channels behind
// them) may outlive StopBgp.
var soakGoBGPLeaks = []goleak.Option{
	// The stack is reflect.Select under Serve: Serve selects over a
	// dynamic set of channels.
	goleak.IgnoreAnyFunction("github.com/osrg/gobgp/v3/pkg/server.(*BgpServer).Serve"),
}

// TestSoak runs anyns in-process (server, zone.Loader.Run, startAnycast with
// an in-process GoBGP router as its peer) under sustained UDP and TCP query
// load for soakDuration, while:
//   - v.test. is replaced every 100 ms, alternating two versions: every
//     answer must come whole from one version, and each replacement must
//     be published;
//   - broken.test. is broken and fixed every few seconds: its last good
//     version keeps answering;
//   - the BGP session is dropped (the router deletes the neighbor) and
//     restored: the route comes back;
//   - the listener the health checks probe (127.0.0.54, not the one the
//     load uses) is closed and rebound: the prefix is withdrawn and
//     re-announced.
//
// Pass: no unexpected query failure (REFUSED only outside the zones, TC
// only for an RRset too big for a plain UDP answer), no withdrawal outside
// the fault windows, and no growth of goroutines, file descriptors or heap
// once everything is stopped.
func TestSoak(t *testing.T) {
	duration := soakDuration(t)
	const (
		ourAddr      = "127.0.0.5"
		identity     = "soak"
		reloadPeriod = 100 * time.Millisecond
		brokenPeriod = 3 * time.Second
		faultWait    = 30 * time.Second // a BGP reconnect takes GoBGP 6-12 s
	)

	// Baseline: netpoll initialised (its epoll fds stay), garbage
	// collected, goroutines of earlier tests ignored.
	if c, err := net.ListenPacket("udp", "127.0.0.1:0"); err == nil {
		c.Close()
	}
	leakOpts := append([]goleak.Option{goleak.IgnoreCurrent()}, soakGoBGPLeaks...)
	before := soakMeasure(t)

	var fig soakFigures
	// Registered first, so it runs last: after every cleanup below (the
	// router's included) has stopped what it owns.
	t.Cleanup(func() {
		after := before
		settle := time.Now().Add(15 * time.Second)
		for {
			after = soakMeasure(t)
			if (after.goroutines <= before.goroutines+2 && after.fds <= before.fds && after.heap <= 2*before.heap+10<<20) ||
				time.Now().After(settle) {
				break
			}
			time.Sleep(50 * time.Millisecond) // polling interval, not an outcome
		}
		logFigures(t, fmt.Sprintf("soak: duration=%v queries=%d udp=%d tcp=%d failures=%d refused=%d truncated=%d reloads=%d reload_max=%v broken_cycles=%d bgp_flaps=%d withdraw_announce_cycles=%d unexpected_withdrawals=%d goroutines=%d->%d fds=%d->%d heap_inuse=%.1fMB->%.1fMB",
			fig.elapsed.Round(time.Second), fig.queries.Load(), fig.udp.Load(), fig.tcp.Load(), fig.failures.Load(),
			fig.refused.Load(), fig.truncated.Load(), fig.reloads.Load(), fig.reloadMax.Round(time.Millisecond),
			fig.brokenCycles.Load(), fig.bgpFlaps, fig.healthCycles, fig.unexpectedWithdrawals,
			before.goroutines, after.goroutines, before.fds, after.fds, mb(before.heap), mb(after.heap)))
		if after.fds > before.fds {
			t.Errorf("file descriptors grew from %d to %d:\n%s", before.fds, after.fds, soakFDs())
		}
		if after.heap > 2*before.heap+10<<20 {
			t.Errorf("heap in use %.1f MB after the soak, baseline %.1f MB", mb(after.heap), mb(before.heap))
		}
		goleak.VerifyNone(t, leakOpts...)
	})

	log := anycastLogger(t)
	router := newTestRouter(t, ourAddr)
	prefix := netip.MustParsePrefix("127.0.0.54/32")

	dir := t.TempDir()
	zones := filepath.Join(dir, "zones")
	if err := os.Mkdir(zones, 0o755); err != nil {
		t.Fatal(err)
	}
	vPath := filepath.Join(zones, "v.test.zone")
	bPath := filepath.Join(zones, "broken.test.zone")
	soakWrite(t, vPath, versionZone("A", 1))
	soakWrite(t, bPath, brokenTestZone(1, false))
	soakWrite(t, filepath.Join(zones, "s.test.zone"), bigTestZone())

	// The load listener and the health listener. startAnycast reads only
	// their addresses; the config names the health listener's port.
	loadL, err := bindPair("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	healthL, err := bindPair("127.0.0.54:0")
	if err != nil {
		loadL.udp.Close()
		loadL.tcp.Close()
		t.Fatal(err)
	}
	loadAddr, healthAddr := loadL.tcp.Addr().String(), healthL.tcp.Addr().String()
	loadL.want = netip.MustParseAddrPort("127.0.0.1:0")
	healthL.want = netip.MustParseAddrPort(healthAddr)

	cfgFile := filepath.Join(dir, "anyns.yaml")
	soakWrite(t, cfgFile, fmt.Sprintf(`
identity: %s
listen: ["127.0.0.1:0", %q]
zones: %s
reload: {debounce: 10ms, rescan: -1s}
control: {socket: "-"}
bgp:
  asn: %d
  router_id: 192.0.2.5
  drain: 0s
  neighbors:
    - {address: 127.0.0.1, asn: %d, port: %d, local_address: %s}
  announce:
    - {prefix: %s, checks: [%q]}
health:
  interval: 100ms
  timeout: 1s
  rise: 2
  fall: 3
  hold_down: 200ms
  max_hold_down: 1s
`, identity, healthAddr, zones, anycastOurASN, anycastRouterASN, router.port, ourAddr, prefix, healthAddr))
	var stderr bytes.Buffer
	cfg, _, err := parseServeFlags([]string{"--config", cfgFile}, &stderr)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}

	store := zone.NewStore(nil)
	loader, err := zone.NewLoader(zone.Config{Dir: cfg.Zones, Debounce: cfg.Reload.Debounce, Rescan: cfg.Reload.Rescan}, store, log.Named("zone"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loader.Reload(); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Identity: cfg.Identity}, store, log.Named("server"))
	if err != nil {
		t.Fatal(err)
	}

	// serve runs the server on l until l is closed; stop closes it and
	// waits for both serve loops.
	serve := func(l listener) (stop func()) {
		done := make(chan struct{}, 2)
		go func() { _ = srv.ServeUDP(l.udp); done <- struct{}{} }()
		go func() { _ = srv.ServeTCP(l.tcp); done <- struct{}{} }()
		var once sync.Once
		return func() {
			once.Do(func() {
				l.udp.Close()
				l.tcp.Close()
				<-done
				<-done
			})
		}
	}
	stopLoad := serve(loadL)
	stopHealth := serve(healthL)
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			t.Errorf("server Shutdown: %v", err)
		}
		stopLoad()
		stopHealth()
	})

	runCtx, cancelRun := context.WithCancel(context.Background())
	var bgWG sync.WaitGroup
	bgWG.Add(1)
	go func() { defer bgWG.Done(); _ = loader.Run(runCtx) }()
	ctl, err := startAnycast(runCtx, &bgWG, cfg, []listener{loadL, healthL}, loader, nil, srv, log)
	if err != nil {
		cancelRun()
		bgWG.Wait()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancelRun()
		bgWG.Wait()
		cctx, cancel := context.WithTimeout(context.Background(), bgpCallTimeout)
		defer cancel()
		if err := ctl.speaker.Close(cctx); err != nil {
			t.Errorf("speaker Close: %v", err)
		}
		// The router's own cleanup stops it too; stopping it here as well
		// is harmless, and the measurement above must not depend on
		// cleanup order within newTestRouter.
		_ = router.s.StopBgp(context.Background(), &api.StopBgpRequest{})
	})
	router.waitRoute(t, prefix)

	// The load: UDP and TCP clients, each cycling through the cases, until
	// stop (and never beyond a hard bound).
	var stop atomic.Bool
	hardStop := time.Now().Add(duration + 5*time.Minute)
	var loadWG sync.WaitGroup
	for i, netw := range []string{"udp", "udp", "udp", "tcp", "tcp"} {
		loadWG.Add(1)
		go func() {
			defer loadWG.Done()
			soakClient(&fig, netw, loadAddr, i, func() bool { return stop.Load() || time.Now().After(hardStop) })
		}()
	}

	// v.test.: a new version every 100 ms, each awaited until published.
	var bgLoad sync.WaitGroup
	// On an early t.Fatal, stop the load before the server goes.
	t.Cleanup(func() { stop.Store(true); loadWG.Wait(); bgLoad.Wait() })
	bgLoad.Add(2)
	go func() {
		defer bgLoad.Done()
		for serial := 2; !stop.Load() && time.Now().Before(hardStop); serial++ {
			next := time.Now().Add(reloadPeriod)
			v := "A"
			if serial%2 == 0 {
				v = "B"
			}
			if err := soakReplace(vPath, versionZone(v, serial)); err != nil {
				fig.fail(err)
				return
			}
			start := time.Now()
			for z := store.Load().Zone("v.test."); z == nil || z.Serial != uint32(serial); z = store.Load().Zone("v.test.") {
				if time.Since(start) > faultWait {
					fig.fail(fmt.Errorf("v.test. serial %d not published after %v", serial, faultWait))
					return
				}
				time.Sleep(2 * time.Millisecond) // polling interval
			}
			fig.reloaded(time.Since(start))
			time.Sleep(time.Until(next)) // the reload period itself
		}
	}()
	// broken.test.: broken, then fixed with a new serial, every few
	// seconds; the old version keeps answering (soakClient checks).
	go func() {
		defer bgLoad.Done()
		for serial := uint32(2); !stop.Load() && time.Now().Before(hardStop); serial++ {
			next := time.Now().Add(brokenPeriod)
			if err := soakReplace(bPath, brokenTestZone(serial, true)); err != nil {
				fig.fail(err)
				return
			}
			if err := soakAwaitFile(loader, bPath, func(f zone.FileStatus) bool { return f.Err != nil && f.Serving }); err != nil {
				fig.fail(fmt.Errorf("broken.test. broken: %w", err))
				return
			}
			time.Sleep(brokenPeriod / 3) // broken for a while, under load
			if err := soakReplace(bPath, brokenTestZone(serial, false)); err != nil {
				fig.fail(err)
				return
			}
			if err := soakAwaitFile(loader, bPath, func(f zone.FileStatus) bool { return f.Err == nil && f.Serving && f.Serial == serial }); err != nil {
				fig.fail(fmt.Errorf("broken.test. fixed: %w", err))
				return
			}
			fig.brokenCycles.Add(1)
			time.Sleep(time.Until(next))
		}
	}()

	// The faults, one at a time so each outcome is seen at the router:
	// health fails and recovers, then the BGP session drops and comes
	// back; repeated until the duration is over, each at least once.
	start := time.Now()
	var windows [][2]int // router event indexes during which a withdrawal is designed
	stopHealthNow := stopHealth
	for round := 0; round == 0 || time.Since(start) < duration; round++ {
		// Health: close the probed listener; the prefix must go.
		from := router.eventCount()
		stopHealthNow()
		soakWait(t, "withdrawal after the health listener closed", func() bool { return !router.has(t, prefix) })
		l, err := soakRebind(healthAddr)
		if err != nil {
			t.Fatal(err)
		}
		stopHealthNow = serve(l)
		h := stopHealthNow
		t.Cleanup(func() { h() })
		soakWait(t, "re-announcement after the health listener came back", func() bool { return router.has(t, prefix) })
		windows = append(windows, [2]int{from, router.eventCount()})
		fig.healthCycles++

		// BGP: the router drops the session and forgets the neighbor,
		// then takes it back; the route must return.
		from = router.eventCount()
		if err := router.s.DeletePeer(context.Background(), &api.DeletePeerRequest{Address: ourAddr}); err != nil {
			t.Fatalf("router DeletePeer: %v", err)
		}
		soakWait(t, "session down at our side", func() bool { return ctl.speaker.Peers()[0].State != "established" })
		soakWait(t, "route gone from the router with the session", func() bool { return !router.has(t, prefix) })
		if err := router.s.AddPeer(context.Background(), soakRouterPeer(ourAddr)); err != nil {
			t.Fatalf("router AddPeer: %v", err)
		}
		soakWait(t, "route back after the session came back", func() bool { return router.has(t, prefix) })
		windows = append(windows, [2]int{from, router.eventCount()})
		fig.bgpFlaps++
	}
	for time.Since(start) < duration {
		time.Sleep(100 * time.Millisecond) // the load runs on for the rest of the duration
	}
	stop.Store(true)
	loadWG.Wait()
	bgLoad.Wait()
	fig.elapsed = time.Since(start)

	// Withdrawals seen by the router outside the fault windows: a health
	// probe failing under load, or a session reset we did not cause.
	router.mu.Lock()
	for i, e := range router.events {
		designed := false
		for _, w := range windows {
			designed = designed || (i >= w[0] && i < w[1])
		}
		if e.prefix == prefix && e.withdraw && !designed {
			fig.unexpectedWithdrawals++
		}
	}
	router.mu.Unlock()

	if n := fig.failures.Load(); n > 0 {
		t.Errorf("%d unexpected failures of %d queries; first ones:\n%s", n, fig.queries.Load(), strings.Join(fig.firstErrors(), "\n"))
	}
	if fig.unexpectedWithdrawals > 0 {
		t.Errorf("%d withdrawals of %s outside the fault windows", fig.unexpectedWithdrawals, prefix)
	}
	if fig.udp.Load() == 0 || fig.tcp.Load() == 0 || fig.refused.Load() == 0 || fig.truncated.Load() == 0 {
		t.Errorf("load did not cover every case: udp %d tcp %d refused %d truncated %d", fig.udp.Load(), fig.tcp.Load(), fig.refused.Load(), fig.truncated.Load())
	}
	if fig.reloads.Load() == 0 || fig.brokenCycles.Load() == 0 {
		t.Errorf("reloads %d, broken/fixed cycles %d: the zone faults did not run", fig.reloads.Load(), fig.brokenCycles.Load())
	}
	if st := srv.Stats(); st.Panics > 0 || st.ServFail > 0 {
		t.Errorf("server stats: %d panics, %d SERVFAIL", st.Panics, st.ServFail)
	}
}

// soakFigures are the counters of one soak run.
type soakFigures struct {
	queries, udp, tcp, failures, refused, truncated atomic.Int64
	reloads, brokenCycles                           atomic.Int64

	mu        sync.Mutex
	errs      []string
	reloadMax time.Duration

	bgpFlaps, healthCycles, unexpectedWithdrawals int
	elapsed                                       time.Duration
}

func (f *soakFigures) fail(err error) {
	f.failures.Add(1)
	f.mu.Lock()
	if len(f.errs) < 10 {
		f.errs = append(f.errs, time.Now().Format("15:04:05.000 ")+err.Error())
	}
	f.mu.Unlock()
}

func (f *soakFigures) firstErrors() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.errs...)
}

func (f *soakFigures) reloaded(took time.Duration) {
	f.reloads.Add(1)
	f.mu.Lock()
	f.reloadMax = max(f.reloadMax, took)
	f.mu.Unlock()
}

// soakCase is one query of the load and how its answer is checked.
type soakCase struct {
	qname string
	qtype uint16
	edns  bool
	check func(r *dns.Msg, netw string) (designed string, err error)
}

var soakCases = []soakCase{
	{"alias.v.test.", dns.TypeTXT, true, func(r *dns.Msg, _ string) (string, error) { _, err := versionOf(r); return "", err }},
	{"alias.v.test.", dns.TypeA, false, func(r *dns.Msg, _ string) (string, error) { _, err := versionOf(r); return "", err }},
	{"www.broken.test.", dns.TypeA, true, func(r *dns.Msg, _ string) (string, error) {
		if r.Rcode != dns.RcodeSuccess || !r.Authoritative || len(r.Answer) != 1 {
			return "", fmt.Errorf("www.broken.test. A: rcode %s aa=%v answer %v", dns.RcodeToString[r.Rcode], r.Authoritative, r.Answer)
		}
		if a, ok := r.Answer[0].(*dns.A); !ok || a.A.String() != "192.0.2.7" {
			return "", fmt.Errorf("www.broken.test. A: answer %v", r.Answer)
		}
		return "", nil
	}},
	// Outside every zone: REFUSED by design.
	{"www.example.org.", dns.TypeA, true, func(r *dns.Msg, _ string) (string, error) {
		if r.Rcode != dns.RcodeRefused {
			return "", fmt.Errorf("www.example.org. A: rcode %s, want REFUSED", dns.RcodeToString[r.Rcode])
		}
		return "refused", nil
	}},
	// 20 TXT records, about 1.5 KB: TC over UDP without EDNS by design,
	// whole over TCP.
	{"big.s.test.", dns.TypeTXT, false, func(r *dns.Msg, netw string) (string, error) {
		if r.Rcode != dns.RcodeSuccess || !r.Authoritative {
			return "", fmt.Errorf("big.s.test. TXT over %s: rcode %s aa=%v", netw, dns.RcodeToString[r.Rcode], r.Authoritative)
		}
		if netw == "udp" {
			if !r.Truncated || r.Len() > dns.MinMsgSize {
				return "", fmt.Errorf("big.s.test. TXT over UDP: TC=%v, %d bytes, want TC within 512", r.Truncated, r.Len())
			}
			return "truncated", nil
		}
		if r.Truncated || len(r.Answer) != 20 {
			return "", fmt.Errorf("big.s.test. TXT over TCP: TC=%v, %d records, want 20", r.Truncated, len(r.Answer))
		}
		return "", nil
	}},
}

// soakClient queries addr over netw until done, checking every answer.
// TCP clients keep one connection open, as resolvers do.
func soakClient(fig *soakFigures, netw, addr string, seed int, done func() bool) {
	c := &dns.Client{Net: netw, Timeout: 3 * time.Second, UDPSize: dns.MinMsgSize}
	var conn *dns.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for q := seed; !done(); q++ {
		sc := soakCases[q%len(soakCases)]
		m := new(dns.Msg)
		m.SetQuestion(sc.qname, sc.qtype)
		m.RecursionDesired = false
		if sc.edns {
			m.SetEdns0(1232, false)
		}
		var r *dns.Msg
		var err error
		if netw == "tcp" {
			if conn == nil {
				if conn, err = c.Dial(addr); err != nil {
					fig.fail(fmt.Errorf("tcp dial: %w", err))
					conn = nil
					continue
				}
			}
			r, _, err = c.ExchangeWithConn(m, conn)
			if err != nil {
				conn.Close()
				conn = nil
			}
			fig.tcp.Add(1)
		} else {
			r, _, err = c.Exchange(m, addr)
			fig.udp.Add(1)
		}
		fig.queries.Add(1)
		if err != nil {
			fig.fail(fmt.Errorf("%s %s %s: %w", netw, sc.qname, dns.TypeToString[sc.qtype], err))
			continue
		}
		switch designed, err := sc.check(r, netw); {
		case err != nil:
			fig.fail(err)
		case designed == "refused":
			fig.refused.Add(1)
		case designed == "truncated":
			fig.truncated.Add(1)
		}
	}
}

// brokenTestZone is broken.test.: broken, it has a record out of the zone
// (an error the loader reports with file and line); fixed, it serves
// www.broken.test. A 192.0.2.7 at the given serial.
func brokenTestZone(serial uint32, broken bool) string {
	z := fmt.Sprintf(`$ORIGIN broken.test.
$TTL 60
@    IN SOA ns1 hm %d 7200 3600 1209600 60
     IN NS  ns1
ns1  IN A   192.0.2.53
www  IN A   192.0.2.7
`, serial)
	if broken {
		z += "elsewhere.example. IN A 192.0.2.8\n"
	}
	return z
}

// bigTestZone is s.test., whose big.s.test. TXT RRset does not fit in 512
// bytes.
func bigTestZone() string {
	var b strings.Builder
	b.WriteString("$ORIGIN s.test.\n$TTL 60\n@ IN SOA ns1 hm 1 7200 3600 1209600 60\n  IN NS ns1\nns1 IN A 192.0.2.53\n")
	for i := range 20 {
		fmt.Fprintf(&b, "big IN TXT \"%02d-%s\"\n", i, strings.Repeat("x", 60))
	}
	return b.String()
}

func soakWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// soakReplace replaces path atomically (write aside, rename), as operators
// and config management do.
func soakReplace(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// soakAwaitFile polls the loader's status of path until cond holds.
func soakAwaitFile(loader *zone.Loader, path string, cond func(zone.FileStatus) bool) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, f := range loader.Status() {
			if f.File == path && cond(f) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("status of %s: %+v", path, loader.Status())
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
}

// soakWait polls cond for up to 30 s: a BGP session that the router reset
// takes GoBGP's idle hold time (5 s) plus a connect delay (1-2 s) to
// return.
func soakWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 30s waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

// soakRebind binds addr again (UDP and TCP), retrying briefly: the port was
// ours a moment ago and nothing else binds 127.0.0.54.
func soakRebind(addr string) (listener, error) {
	var err error
	for range 50 {
		var l listener
		if l, err = bindPair(addr); err == nil {
			return l, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
		time.Sleep(20 * time.Millisecond) // retry interval
	}
	return listener{}, fmt.Errorf("rebind %s: %w", addr, err)
}

// soakRouterPeer is the router's neighbor entry for our speaker, as
// newTestRouter configures it.
func soakRouterPeer(peer string) *api.AddPeerRequest {
	return &api.AddPeerRequest{Peer: &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: peer, PeerAsn: anycastOurASN},
		Transport: &api.Transport{PassiveMode: true},
		Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: 9, KeepaliveInterval: 3}},
		AfiSafis:  []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: anycastV4, Enabled: true}}},
	}}
}

// soakMeasures is the process state compared before and after.
type soakMeasures struct {
	goroutines int
	fds        int
	heap       uint64 // HeapInuse after a GC
}

func soakMeasure(t *testing.T) soakMeasures {
	t.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting file descriptors: %v", err)
	}
	return soakMeasures{goroutines: runtime.NumGoroutine(), fds: len(ents), heap: ms.HeapInuse}
}

// soakFDs lists the open file descriptors, for a failure message.
func soakFDs() string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var b strings.Builder
	for _, e := range ents {
		target, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		fmt.Fprintf(&b, "%s -> %s\n", e.Name(), target)
	}
	return b.String()
}

func mb(n uint64) float64 { return float64(n) / (1 << 20) }

// logFigures logs a figures line ("soak: ...", "overload: ...") and also
// writes it to stdout unindented, so `go test -v | grep '^soak:'` finds it.
func logFigures(t *testing.T, line string) {
	t.Helper()
	t.Log(line)
	fmt.Println(line)
}
