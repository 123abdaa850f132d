package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/anyns/anyns/server"
	"github.com/anyns/anyns/zone"
)

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
	if err := cfg.Validate(); err != nil {
		if *configFile != "" {
			return cfg, check, fmt.Errorf("invalid config %s:\n%w", *configFile, err)
		}
		return cfg, check, fmt.Errorf("invalid config:\n%w", err)
	}
	return cfg, check, nil
}

// loadZones loads every zone in dir into a snapshot. Zones that fail to
// load are left out and their problems returned; the others still serve.
func loadZones(dir string) (*zone.Snapshot, error) {
	zs, err := zone.LoadDir(dir)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	snap, serr := zone.NewSnapshot()
	if serr != nil {
		return nil, serr
	}
	for _, z := range zs {
		if prev := snap.Zone(z.Origin); prev != nil {
			errs = append(errs, fmt.Errorf("%s: zone %s is already loaded from %s; ignoring this file", z.File, z.Origin, prev.File))
			continue
		}
		snap = snap.With(z)
	}
	return snap, errors.Join(errs...)
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

	snap, zerr := loadZones(cfg.Zones)
	if snap == nil {
		return zerr
	}
	for _, e := range unjoin(zerr) {
		log.Error("zone not loaded", zap.Error(e))
	}
	store := zone.NewStore(snap)

	srvCfg := server.Config{
		Identity:          cfg.Identity,
		UDPSize:           cfg.UDPSize,
		TCPIdleTimeout:    cfg.TCP.IdleTimeout,
		TCPMaxConnections: cfg.TCP.MaxConnections,
	}
	if cfg.Version != nil {
		srvCfg.Version = *cfg.Version
	}
	srv, err := server.New(srvCfg, store, log.Named("server"))
	if err != nil {
		return err
	}

	ls, err := openListeners(cfg.Listen, cfg.defaultListen, log)
	if err != nil {
		return err
	}

	var wg sync.WaitGroup
	serveErr := make(chan error, 2*len(ls))
	for _, l := range ls {
		wg.Add(2)
		go func() { defer wg.Done(); serveErr <- srv.ServeUDP(l.udp) }()
		go func() { defer wg.Done(); serveErr <- srv.ServeTCP(l.tcp) }()
	}
	log.Info("anyns started",
		zap.String("identity", cfg.Identity),
		zap.String("version", versionString()),
		zap.Strings("listeners", listenerAddrs(ls)),
		zap.Array("zones", zoneList(snap.Zones())),
	)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("stopping", zap.String("reason", "signal"))
	case err := <-serveErr:
		runErr = fmt.Errorf("listener failed: %w", err)
		log.Error("listener failed, stopping", zap.Error(err))
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown did not finish in-flight queries", zap.Error(err))
	}
	wg.Wait()
	log.Info("stopped")
	return runErr
}

// checkCmd implements serve --check: it loads everything serve would load,
// prints what would be served, and fails listing every problem.
func checkCmd(cfg Config, stdout, stderr io.Writer) error {
	snap, err := loadZones(cfg.Zones)
	fmt.Fprintf(stdout, "identity %s\n", cfg.Identity)
	for _, a := range cfg.Listen {
		fmt.Fprintf(stdout, "listen %s (udp, tcp)\n", a)
	}
	if snap != nil {
		for _, z := range snap.Zones() {
			fmt.Fprintf(stdout, "zone %s serial %d records %d file %s\n", z.Origin, z.Serial, z.Records, z.File)
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
	tcp net.Listener
}

// openListeners binds every address over TCP and UDP. Port 0 binds TCP
// first and then UDP on the port TCP got, retrying on a collision. On the
// embedded default, an address the host cannot bind (no IPv6) is skipped.
func openListeners(addrs []string, skipUnavailable bool, log *zap.Logger) ([]listener, error) {
	var ls []listener
	closeAll := func() {
		for _, l := range ls {
			l.udp.Close()
			l.tcp.Close()
		}
	}
	for _, a := range addrs {
		l, err := bindPair(a)
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

func bindPair(addr string) (listener, error) {
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
		udp, err := net.ListenPacket("udp", udpAddr)
		if err == nil {
			return listener{udp: udp, tcp: tcp}, nil
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
