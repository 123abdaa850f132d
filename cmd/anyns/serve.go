package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/anyns/anyns/announce"
	"github.com/anyns/anyns/health"
	"github.com/anyns/anyns/server"
	"github.com/anyns/anyns/zone"
	"github.com/anyns/anyns/zone/xfr"
)

// geteuid is os.Geteuid; a variable so tests can play root.
var geteuid = os.Geteuid

// shutdownTimeout bounds how long in-flight queries may take to finish
// once a stop signal arrives.
const shutdownTimeout = 5 * time.Second

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// parseServeFlags builds the configuration: defaults, then --config, then
// the other flags, then validation.
func parseServeFlags(args []string, stderr io.Writer) (cfg Config, check bool, err error) {
	fs := flag.NewFlagSet("anyns serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		configFile = fs.String("config", "", "YAML configuration `file`")
		listen     listFlag
		zonesDir   = fs.String("zones", "", "zones `directory` (overrides the config)")
		id         = fs.String("id", "", "instance identity for NSID and id.server (overrides the config)")
	)
	fs.Var(&listen, "listen", "listen `address` host:port, repeatable (overrides the config)")
	fs.BoolVar(&check, "check", false, "validate the config and zones, print what would be served, and exit")
	allowRoot := fs.Bool("allow-root", false, "run even as root (by default anyns refuses; use CAP_NET_BIND_SERVICE)")
	if err := fs.Parse(args); err != nil {
		return cfg, false, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "anyns serve: unexpected argument %q\n", fs.Arg(0))
		return cfg, false, errUsage
	}
	cfg = defaultConfig()
	if *configFile != "" {
		if err := loadConfigFile(&cfg, *configFile); err != nil {
			return cfg, check, err
		}
	}
	if len(listen) > 0 {
		cfg.Listen, cfg.defaultListen = listen, false
	}
	if *zonesDir != "" {
		cfg.Zones = *zonesDir
	}
	if *id != "" {
		cfg.Identity = *id
	}
	if *allowRoot {
		cfg.AllowRoot = true
	}
	if err := cfg.Validate(); err != nil {
		if *configFile != "" {
			return cfg, check, fmt.Errorf("invalid config %s:\n%w", *configFile, err)
		}
		return cfg, check, fmt.Errorf("invalid config:\n%w", err)
	}
	return cfg, check, nil
}

func serveCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, check, err := parseServeFlags(args, stderr)
	if err != nil {
		return err
	}
	if check {
		return checkCmd(cfg, stdout, stderr)
	}
	log, err := newLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	if geteuid() == 0 {
		if !cfg.AllowRoot {
			log.Error("refusing to run as root", zap.String("hint", "run as an unprivileged user with CAP_NET_BIND_SERVICE (deploy/systemd/anyns.service), or set allow_root: true / --allow-root"))
			return errors.New("refusing to run as root: run as an unprivileged user with CAP_NET_BIND_SERVICE, or set allow_root: true (--allow-root)")
		}
		log.Warn("running as root (allow_root is set); an unprivileged user with CAP_NET_BIND_SERVICE is safer")
	}

	store := zone.NewStore(nil)
	zcfg := zone.Config{Dir: cfg.Zones, Debounce: cfg.Reload.Debounce, Rescan: cfg.Reload.Rescan}
	if len(cfg.Secondary) > 0 {
		zcfg.ExtraDirs = []string{cfg.SecondaryDir}
	}
	srvCfg, err := cfg.serverConfig()
	if err != nil {
		return err
	}
	// Zone distribution out: a journal of the differences between loaded
	// versions (IXFR) and NOTIFY when a reload raises a serial.
	var prim *primary
	if len(cfg.Transfer) > 0 {
		prim = newPrimary(&cfg, cfg.transfer, log.Named("notify"))
		defer prim.close()
		zcfg.OnPublish = prim.observe
		srvCfg.IXFR = prim.journal.IXFR
	}
	// Zone distribution in: secondary zones transferred into the state
	// directory the loader watches.
	var sec *xfr.Secondary
	if len(cfg.Secondary) > 0 {
		if sec, err = xfr.New(cfg.xfrConfig(), log.Named("xfr")); err != nil {
			return err
		}
		srvCfg.Notify = sec.Notify
		srvCfg.Expired = sec.Expired
	}
	loader, err := zone.NewLoader(zcfg, store, log.Named("zone"))
	if err != nil {
		return err
	}
	// Problems are logged by the loader with file and line; the zones that
	// load serve.
	_, _ = loader.ReloadServing()
	snap := store.Load()

	srv, err := server.New(srvCfg, store, log.Named("server"))
	if err != nil {
		return err
	}

	ls, err := openListeners(cfg.Listen, cfg.UDPSize, cfg.defaultListen, log)
	if err != nil {
		return err
	}

	var wg sync.WaitGroup
	serveErr := make(chan error, (zone.Procs()+1)*len(ls))
	for _, l := range ls {
		for _, pc := range l.udps() {
			wg.Add(1)
			go func() { defer wg.Done(); serveErr <- srv.ServeUDP(pc) }()
		}
		wg.Add(1)
		go func() { defer wg.Done(); serveErr <- srv.ServeTCP(l.tcp) }()
	}
	closeListeners := func() {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("shutdown did not finish in-flight queries", zap.Error(err))
		}
		for _, l := range ls {
			for _, pc := range l.udps() {
				pc.Close()
			}
		}
		wg.Wait()
	}

	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	var bgWG sync.WaitGroup
	bgWG.Add(1)
	go func() { defer bgWG.Done(); _ = loader.Run(runCtx) }()
	// Secondary zones: transferred into the state directory the loader
	// watches; a new version is published at once through Trigger.
	if sec != nil {
		sec.OnChange = loader.Trigger
		bgWG.Add(1)
		go func() { defer bgWG.Done(); _ = sec.Run(runCtx) }()
	}
	// SIGHUP reloads every zone now, through the watcher's reload path.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	bgWG.Add(1)
	go func() {
		defer bgWG.Done()
		for {
			select {
			case <-hup:
				log.Info("reloading zones", zap.String("reason", "SIGHUP"))
				loader.Trigger()
			case <-runCtx.Done():
				return
			}
		}
	}()

	// The metrics endpoint opens before BGP starts, so a bad address stops
	// the start before anything is announced.
	var ctlp atomic.Pointer[controller]
	metricsAt := ""
	if cfg.Metrics.Listen != "" {
		addr := metricsAddr(cfg.Metrics.Listen)
		col := newCollector(srv, loader, ctlp.Load)
		ms, err := startMetrics(addr, cfg.Identity, col, func() (bool, string) { return readiness(loader, ctlp.Load()) }, log.Named("metrics"))
		if err != nil {
			cancelRun()
			bgWG.Wait()
			closeListeners()
			return fmt.Errorf("metrics.listen %s: %w", addr, err)
		}
		defer ms.Close()
		metricsAt = ms.ln.Addr().String()
	}

	// BGP starts only once listeners are open and zones loaded; health
	// announces a prefix after its first rise passes.
	var ctl *controller
	if cfg.anycast != nil {
		ctl, err = startAnycast(runCtx, &bgWG, cfg, ls, loader, sec, srv, log)
		ctlp.Store(ctl)
		if err != nil {
			cancelRun()
			bgWG.Wait()
			closeListeners()
			return err
		}
	}

	socket := cfg.Control.Socket
	if socket == "" {
		socket = defaultSocket()
	}
	if socket != "-" && socket != "off" {
		cs, err := listenControl(socket, func() status { return buildStatus(cfg, loader, ctl) }, func(d bool) error {
			if ctl == nil {
				return errors.New("no bgp section configured: nothing to drain")
			}
			return ctl.setDrained(d)
		}, log.Named("control"))
		if err != nil {
			log.Warn("control socket unavailable", zap.String("socket", socket), zap.Error(err))
		} else {
			defer cs.Close()
		}
	}

	log.Info("anyns started",
		zap.String("identity", cfg.Identity),
		zap.String("version", versionString()),
		zap.Strings("listeners", listenerAddrs(ls)),
		zap.Array("zones", zoneList(snap.Zones())),
		zap.String("control", socket),
		zap.String("metrics", metricsAt),
	)
	// systemd Type=notify: ready once zones are loaded and listeners open.
	// Without NOTIFY_SOCKET this does nothing.
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		log.Warn("sd_notify failed", zap.Error(err))
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("stopping", zap.String("reason", "signal"))
	case err := <-serveErr:
		runErr = fmt.Errorf("listener failed: %w", err)
		log.Error("listener failed, stopping", zap.Error(err))
	}
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	// Stop order: withdraw every prefix, keep serving for bgp.drain, shut
	// the server down, stop BGP.
	if ctl != nil {
		ctl.stop(context.Background())
	}
	closeListeners()
	cancelRun()
	bgWG.Wait()
	if ctl != nil {
		cctx, cancel := context.WithTimeout(context.Background(), bgpCallTimeout)
		if err := ctl.speaker.Close(cctx); err != nil {
			log.Warn("bgp did not stop cleanly", zap.Error(err))
		}
		cancel()
	}
	log.Info("stopped")
	return runErr
}

// startAnycast starts the BGP speaker and the health checker that drives
// it. Background goroutines are tracked by wg and end with ctx.
func startAnycast(ctx context.Context, wg *sync.WaitGroup, cfg Config, ls []listener, loader *zone.Loader, sec *xfr.Secondary, srv *server.Server, log *zap.Logger) (*controller, error) {
	a := cfg.anycast
	sp, err := announce.New(a.speaker, log.Named("bgp"))
	if err != nil {
		return nil, err
	}
	ctl := newController(a, sp, log.Named("anycast"))
	bound := make(map[netip.AddrPort]netip.AddrPort)
	for _, l := range ls {
		got, _ := netip.ParseAddrPort(l.tcp.Addr().String())
		bound[l.want] = netip.AddrPortFrom(got.Addr().Unmap(), got.Port())
	}
	names := func() []string {
		if len(a.queries) > 0 {
			return a.queries
		}
		zs := loader.Store().Load().Zones()
		out := make([]string, 0, len(zs))
		for _, z := range zs {
			out = append(out, z.Origin)
		}
		return out
	}
	hc, err := health.New(a.health, healthTargets(a, bound, ctl.degPre > 0), health.Probe{
		Identity: cfg.Identity,
		Names:    names,
		Ready:    func() bool { return zonesReady(loader, a.allZone) && (a.expiredDegrades || !anyExpired(sec)) },
		Degraded: func() string {
			if a.expiredDegrades && anyExpired(sec) {
				return "secondary zone expired"
			}
			return ""
		},
		QPS: newQPSMeter(srv).rate,
	}, ctl.notify, log.Named("health"))
	if err != nil {
		return nil, err
	}
	ctl.mu.Lock()
	ctl.verdicts = hc.Verdicts
	ctl.mu.Unlock()
	if err := sp.Start(ctx); err != nil {
		return nil, err
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = hc.Run(ctx) }()
	return ctl, nil
}

// zonesReady is the zone readiness check: at least one zone serving, and
// with all, every zone file with a version serving.
func zonesReady(loader *zone.Loader, all bool) bool {
	st := loader.Status()
	serving := 0
	for _, f := range st {
		if f.Serving {
			serving++
		}
	}
	return serving > 0 && (!all || serving == len(st))
}

// anyExpired reports whether a secondary zone is past its SOA expire: stale
// data must not be announced, so the zone readiness check fails.
func anyExpired(sec *xfr.Secondary) bool {
	if sec == nil {
		return false
	}
	for _, z := range sec.Status() {
		if z.Expired {
			return true
		}
	}
	return false
}

// buildStatus assembles `anyns ctl status`.
func buildStatus(cfg Config, loader *zone.Loader, ctl *controller) status {
	st := status{Identity: cfg.Identity, Version: versionString()}
	for _, f := range loader.Status() {
		zs := zoneStatus{Zone: f.Origin, Serial: f.Serial, Records: f.Records, File: f.File, Serving: f.Serving}
		if f.Err != nil {
			zs.Error = f.Err.Error()
		}
		st.Zones = append(st.Zones, zs)
	}
	if ctl != nil {
		st.Prefixes, st.Drained = ctl.status()
		for _, p := range ctl.speaker.Peers() {
			st.Neighbors = append(st.Neighbors, peerStatus{Address: p.Address.String(), ASN: p.ASN, State: p.State, Since: p.Since})
		}
	}
	return st
}

// qpsMeter turns the server's query counters into a rate, measured between
// successive calls (one per health round).
type qpsMeter struct {
	srv  *server.Server
	mu   sync.Mutex
	last uint64
	at   time.Time
}

func newQPSMeter(srv *server.Server) *qpsMeter {
	st := srv.Stats()
	return &qpsMeter{srv: srv, last: st.QueriesUDP + st.QueriesTCP, at: time.Now()}
}

func (m *qpsMeter) rate() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.srv.Stats()
	n, now := st.QueriesUDP+st.QueriesTCP, time.Now()
	dt := now.Sub(m.at).Seconds()
	if dt <= 0 {
		return 0
	}
	r := float64(n-m.last) / dt
	m.last, m.at = n, now
	return r
}

// checkCmd implements serve --check: it loads everything serve would load,
// prints what would be served, and fails listing every problem.
func checkCmd(cfg Config, stdout, stderr io.Writer) error {
	zs, err := zone.LoadDir(cfg.Zones)
	fmt.Fprintf(stdout, "identity %s\n", cfg.Identity)
	for _, a := range cfg.Listen {
		fmt.Fprintf(stdout, "listen %s (udp, tcp)\n", a)
	}
	for _, z := range zs {
		fmt.Fprintf(stdout, "zone %s serial %d records %d file %s\n", z.Origin, z.Serial, z.Records, z.File)
	}
	if a := cfg.anycast; a != nil {
		for _, r := range a.routes {
			fmt.Fprintf(stdout, "announce %s\n", r.Prefix)
		}
		for _, n := range a.speaker.Neighbors {
			fmt.Fprintf(stdout, "bgp neighbor %s as %d\n", n.Address, n.ASN)
		}
	}
	if err != nil {
		for _, e := range unjoin(err) {
			fmt.Fprintln(stderr, e)
		}
		return errFailed
	}
	return nil
}

// unjoin flattens errors.Join trees into their leaves.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

// listener is one service address, bound over UDP and TCP on the same port.
type listener struct {
	udp net.PacketConn
	// more are further UDP sockets on the same address and port
	// (SO_REUSEPORT): the kernel spreads queries over one socket per core.
	more []net.PacketConn
	tcp  net.Listener
	want netip.AddrPort // the configured address (port 0 before binding)
}

// udps returns every UDP socket of l.
func (l listener) udps() []net.PacketConn { return append([]net.PacketConn{l.udp}, l.more...) }

// openListeners binds every address over TCP and UDP (udpSize: the
// udp_size key, see server.ListenUDP). Port 0 binds TCP first and then UDP
// on the port TCP got, retrying on a collision. On the embedded default, an
// address the host cannot bind (no IPv6) is skipped.
func openListeners(addrs []string, udpSize int, skipUnavailable bool, log *zap.Logger) ([]listener, error) {
	var ls []listener
	closeAll := func() {
		for _, l := range ls {
			for _, pc := range l.udps() {
				pc.Close()
			}
			l.tcp.Close()
		}
	}
	for _, a := range addrs {
		l, err := bindPairN(a, zone.Procs(), udpSize)
		if err != nil {
			if skipUnavailable && errors.Is(err, syscall.EADDRNOTAVAIL) {
				log.Warn("skipping unavailable default listener", zap.String("listener", a), zap.Error(err))
				continue
			}
			closeAll()
			return nil, err
		}
		ls = append(ls, l)
	}
	if len(ls) == 0 {
		return nil, errors.New("no listener could be opened")
	}
	return ls, nil
}

func bindPair(addr string) (listener, error) { return bindPairN(addr, 1, 0) }

// bindPairN binds addr over TCP and over n UDP sockets sharing the port
// (SO_REUSEPORT, one per core, so no one socket's queue is the bottleneck).
func bindPairN(addr string, n, udpSize int) (listener, error) {
	ap, err := parseListen(addr)
	if err != nil {
		return listener{}, err
	}
	const attempts = 20
	for i := 0; ; i++ {
		tcp, err := net.Listen("tcp", ap.String())
		if err != nil {
			return listener{}, fmt.Errorf("listen tcp %s: %w", addr, err)
		}
		udpAddr := ap.String()
		if ap.Port() == 0 {
			udpAddr = tcp.Addr().String()
		}
		pcs, err := server.ListenUDP(udpAddr, n, udpSize)
		if err == nil {
			return listener{udp: pcs[0], more: pcs[1:], tcp: tcp, want: ap}, nil
		}
		tcp.Close()
		if ap.Port() != 0 || i == attempts-1 {
			return listener{}, fmt.Errorf("listen udp %s: %w", udpAddr, err)
		}
	}
}

func listenerAddrs(ls []listener) []string {
	out := make([]string, 0, len(ls))
	for _, l := range ls {
		out = append(out, l.tcp.Addr().String())
	}
	return out
}

// zoneList logs zones as objects with origin, serial, records and file.
type zoneList []*zone.Zone

func (zl zoneList) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	for _, z := range zl {
		if err := enc.AppendObject(zapcore.ObjectMarshalerFunc(func(o zapcore.ObjectEncoder) error {
			o.AddString("zone", z.Origin)
			o.AddUint32("serial", z.Serial)
			o.AddInt("records", z.Records)
			o.AddString("file", z.File)
			return nil
		})); err != nil {
			return err
		}
	}
	return nil
}
