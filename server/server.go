// Package server owns the DNS listeners of anyns: it reads queries from UDP
// sockets and TCP connections the caller opened, parses them, applies EDNS
// (RFC 6891), NSID (RFC 5001), CHAOS identity and edns-tcp-keepalive
// (RFC 7828), answers from the current zone.Snapshot and writes the
// response, truncated over UDP without ever splitting an RRset.
//
// Call order: New, then ServeUDP and ServeTCP (each blocks, usually in its
// own goroutine, once per socket), then Shutdown. Respond is the pure
// request handler used by both transports; it is safe from any goroutine.
package server

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"

	"github.com/anyns/anyns/zone"
)

// ErrServerClosed is returned by ServeUDP and ServeTCP after Shutdown.
var ErrServerClosed = errors.New("server: closed")

// Defaults for the zero values of Config.
const (
	DefaultUDPSize           = 1232
	DefaultTCPIdleTimeout    = 10 * time.Second
	DefaultTCPMaxConnections = 1000

	DefaultTCPMaxConnectionsPerPrefix = 64
	DefaultTCPReadTimeout             = 2 * time.Second
)

// Limits of the TCP transport.
const (
	// maxTCPQuery is the largest query accepted over TCP: a longer length
	// prefix closes the connection (no query we answer comes near it).
	maxTCPQuery = 16 << 10
)

// Config is the configuration of a Server.
type Config struct {
	// Identity is the NSID payload (RFC 5001) and the CH TXT answer for
	// id.server. and hostname.bind. At most 255 bytes. "" means no NSID is
	// sent and those CHAOS names are REFUSED.
	Identity string
	// Version is the CH TXT answer for version.bind. and version.server.
	// At most 255 bytes. "" means REFUSED.
	Version string
	// Whoami is a diagnostic name under a served zone
	// ("whoami.example.com."): its TXT, A and AAAA queries are answered
	// with what this instance sees of the query (whoami.go). "" (the
	// default) turns it off.
	Whoami string
	// QueryLog is the fraction of queries logged (zap, Info, message
	// "query"), 0 to 1: 0 (the default) logs none, 1 every one.
	QueryLog float64
	// Dnstap is where dnstap messages (AUTH_QUERY, AUTH_RESPONSE) go:
	// "unix:/path" for a Frame Streams socket (reconnected on failure),
	// anything else a file, created or truncated by New. "" (the
	// default) turns dnstap off.
	Dnstap string
	// UDPSize is the EDNS payload size we advertise and the largest UDP
	// response we send, in bytes: 512 to 65535, defaults to 1232 when 0.
	UDPSize int
	// TCPIdleTimeout closes a TCP connection that sends no query for this
	// long; it is also the edns-tcp-keepalive value we signal. Defaults to
	// 10s when 0; at most 6553.5s (the option's range).
	TCPIdleTimeout time.Duration
	// TCPMaxConnections bounds the open TCP connections; beyond it a new
	// connection is accepted and closed at once. Defaults to 1000 when 0.
	TCPMaxConnections int
	// TCPMaxConnectionsPerPrefix bounds the open TCP connections from one
	// client prefix (RRL.IPv4PrefixLen and RRL.IPv6PrefixLen: /24 and /56
	// by default, whether RRL is on or not); beyond it a new connection
	// from that prefix is closed at once (Stats.TCPPrefixRefused). Exempt
	// prefixes of RRL are exempt here too. Defaults to 64 when 0; -1
	// means no per-prefix cap.
	TCPMaxConnectionsPerPrefix int
	// TCPReadTimeout is the time a client has to send a whole message once
	// its first byte has arrived (length prefix included): a client that
	// trickles a message (slowloris) is cut off (Stats.TCPReadTimeouts).
	// It is separate from TCPIdleTimeout, which runs between messages.
	// Defaults to 2s when 0.
	TCPReadTimeout time.Duration
	// RRL configures Response Rate Limiting of UDP responses (see
	// RRLConfig); off by default.
	RRL RRLConfig

	// The primary side of zone distribution (xfr.go). All of it is off
	// by default: AXFR and IXFR are REFUSED, NOTIFY is NOTIMP and a TSIG
	// in a query is ignored, as without these fields.

	// Transfer lists who may transfer which zone (AXFR, IXFR); nil:
	// nobody.
	Transfer []TransferRule
	// TSIGKeys are the TSIG keys (RFC 8945) by name ("xfr-key."): signed
	// requests are verified and their responses signed; a request signed
	// with another key is answered NOTAUTH/BADKEY.
	TSIGKeys map[string]TSIGKey
	// IXFR returns the body of an incremental transfer of z from serial
	// from (xfr.Journal.IXFR); ok false or a nil IXFR: a full zone is
	// sent in IXFR form (RFC 1995 section 4).
	IXFR func(z *zone.Zone, from uint32) (body []dns.RR, ok bool)
	// Notify handles a NOTIFY (RFC 1996) for zone from a client and
	// reports whether it was accepted (NOERROR) or not (REFUSED)
	// (xfr.Secondary.Notify). nil: NOTIFY is answered NOTIMP.
	Notify func(zone string, from netip.Addr) bool
	// Expired reports whether zone (an origin) is past its SOA expire:
	// its queries are answered SERVFAIL (xfr.Secondary.Expired). nil:
	// never.
	Expired func(zone string) bool
}

// withDefaults returns c with zero values replaced by defaults.
func (c Config) withDefaults() Config {
	if c.UDPSize == 0 {
		c.UDPSize = DefaultUDPSize
	}
	if c.TCPIdleTimeout == 0 {
		c.TCPIdleTimeout = DefaultTCPIdleTimeout
	}
	if c.TCPMaxConnections == 0 {
		c.TCPMaxConnections = DefaultTCPMaxConnections
	}
	if c.TCPMaxConnectionsPerPrefix == 0 {
		c.TCPMaxConnectionsPerPrefix = DefaultTCPMaxConnectionsPerPrefix
	}
	if c.TCPReadTimeout == 0 {
		c.TCPReadTimeout = DefaultTCPReadTimeout
	}
	c.RRL = c.RRL.withDefaults()
	return c
}

// Validate reports every problem of c (after defaults), joined.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if len(c.Identity) > 255 {
		errs = append(errs, fmt.Errorf("identity: %d bytes, at most 255", len(c.Identity)))
	}
	if len(c.Version) > 255 {
		errs = append(errs, fmt.Errorf("version: %d bytes, at most 255", len(c.Version)))
	}
	if c.UDPSize < dns.MinMsgSize || c.UDPSize > dns.MaxMsgSize {
		errs = append(errs, fmt.Errorf("udp_size: %d, must be between %d and %d", c.UDPSize, dns.MinMsgSize, dns.MaxMsgSize))
	}
	if c.TCPIdleTimeout < 0 || c.TCPIdleTimeout > 65535*100*time.Millisecond {
		errs = append(errs, fmt.Errorf("tcp.idle_timeout: %s, must be between 0 and 6553.5s", c.TCPIdleTimeout))
	}
	if c.TCPMaxConnections < 0 {
		errs = append(errs, fmt.Errorf("tcp.max_connections: %d, must not be negative", c.TCPMaxConnections))
	}
	if c.TCPMaxConnectionsPerPrefix < -1 {
		errs = append(errs, fmt.Errorf("tcp.max_connections_per_prefix: %d, must be -1 (no cap) or more", c.TCPMaxConnectionsPerPrefix))
	}
	if c.TCPReadTimeout < 0 {
		errs = append(errs, fmt.Errorf("tcp.read_timeout: %s, must not be negative", c.TCPReadTimeout))
	}
	if err := c.RRL.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.validateVisibility(); err != nil {
		errs = append(errs, err)
	}
	if _, err := newXFRState(c); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Stats is a snapshot of the server's counters.
type Stats struct {
	QueriesUDP uint64 // messages received over UDP (dropped ones included)
	QueriesTCP uint64 // messages received over TCP (dropped ones included)
	Dropped    uint64 // no reply: shorter than a header, or QR=1
	FormErr    uint64 // answered FORMERR
	NotImp     uint64 // answered NOTIMP
	Refused    uint64 // answered REFUSED
	ServFail   uint64 // answered SERVFAIL (panics included)
	Panics     uint64 // panics recovered while answering
	Truncated  uint64 // answered with TC=1
	TCPRefused uint64 // TCP connections closed at once (over TCPMaxConnections)
	TCPConns   int64  // TCP connections open now

	// TCPPrefixRefused counts TCP connections closed at once because their
	// client prefix had TCPMaxConnectionsPerPrefix open.
	TCPPrefixRefused uint64
	// TCPReadTimeouts counts TCP connections cut off because a message did
	// not arrive whole within TCPReadTimeout of its first byte.
	TCPReadTimeouts uint64

	// RRLDropped counts UDP responses dropped by RRL (not in Dropped).
	RRLDropped uint64
	// RRLSlipped counts UDP responses sent as a slip (TC=1, no records)
	// by RRL; they are not in Truncated.
	RRLSlipped uint64

	// DnstapDropped counts queries not sent to dnstap because its queue
	// was full (or the server was shut down).
	DnstapDropped uint64
}

type counters struct {
	queriesUDP, queriesTCP, dropped, formErr, notImp, refused, servFail,
	panics, truncated, tcpRefused, tcpPrefixRefused, tcpReadTimeouts,
	rrlDropped, rrlSlipped atomic.Uint64
	tcpConns atomic.Int64
}

// Server answers DNS queries from a zone.Store. Create it with New.
type Server struct {
	cfg   Config
	store *zone.Store
	log   *zap.Logger

	nsidHex   string // Identity, hex encoded as dns.EDNS0_NSID wants
	keepalive uint16 // TCPIdleTimeout in units of 100 ms

	queries sync.Pool // *query

	// opts holds our OPT RR in wire format for each fast-path variant.
	opts [optVariants][]byte

	metrics       metrics // query metrics (metrics.go)
	tap           *tap    // nil: dnstap off
	qlogThreshold uint64  // sampled query log (querylog.go); 0: off
	whoami        string  // canonical Config.Whoami; "": off

	stats counters
	rrl   *rrl      // nil: RRL off
	xfr   *xfrState // nil: no primary side (xfr.go)

	prefixMu    sync.Mutex
	prefixConns map[netip.Prefix]int // open TCP connections per client prefix

	mu        sync.Mutex
	closing   bool
	udpConns  map[net.PacketConn]struct{}
	listeners map[net.Listener]struct{}
	tcpConns  map[net.Conn]struct{}
	wg        sync.WaitGroup // serve loops, UDP readers, TCP connections and queries
	done      chan struct{}  // closed by the first Shutdown

	// testHookRespond, when set, is called for every parsed query before it
	// is answered (tests use it to inject a panic).
	testHookRespond func(req *dns.Msg)
}

// New returns a server answering from store. It starts nothing but the
// dnstap writer (with Config.Dnstap; Shutdown stops it). log is
// used as given (the caller names it, e.g. log.Named("server")); nil means
// no logging.
func New(cfg Config, store *zone.Store, log *zap.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("server config: %w", err)
	}
	if store == nil {
		return nil, errors.New("server config: nil zone store")
	}
	if log == nil {
		log = zap.NewNop()
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:       cfg,
		store:     store,
		log:       log,
		nsidHex:   hexString(cfg.Identity),
		keepalive: uint16(cfg.TCPIdleTimeout / (100 * time.Millisecond)),
		udpConns:  make(map[net.PacketConn]struct{}),
		listeners: make(map[net.Listener]struct{}),
		tcpConns:  make(map[net.Conn]struct{}),
		done:      make(chan struct{}),

		rrl:         newRRL(cfg.RRL),
		prefixConns: make(map[netip.Prefix]int),
	}
	s.xfr, _ = newXFRState(cfg) // validated above
	s.queries.New = func() any { return &query{cm: make(map[string]int, 16), shard: s.metrics.shard()} }
	s.qlogThreshold = sampleThreshold(cfg.QueryLog)
	if cfg.Whoami != "" {
		s.whoami = asciiLower(dns.Fqdn(cfg.Whoami))
	}
	if err := s.initOPTs(); err != nil {
		return nil, fmt.Errorf("server config: %w", err)
	}
	if cfg.Dnstap != "" {
		// Last: nothing can fail after the writer starts.
		t, err := newTap(cfg.Dnstap, cfg.Identity, dnstapVersion(cfg.Version), log)
		if err != nil {
			return nil, fmt.Errorf("server config: %w", err)
		}
		s.tap = t
	}
	return s, nil
}

// Stats returns a snapshot of the counters. It is safe from any goroutine.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		QueriesUDP: c.queriesUDP.Load(),
		QueriesTCP: c.queriesTCP.Load(),
		Dropped:    c.dropped.Load(),
		FormErr:    c.formErr.Load(),
		NotImp:     c.notImp.Load(),
		Refused:    c.refused.Load(),
		ServFail:   c.servFail.Load(),
		Panics:     c.panics.Load(),
		Truncated:  c.truncated.Load(),
		TCPRefused: c.tcpRefused.Load(),
		TCPConns:   c.tcpConns.Load(),

		TCPPrefixRefused: c.tcpPrefixRefused.Load(),
		TCPReadTimeouts:  c.tcpReadTimeouts.Load(),
		RRLDropped:       c.rrlDropped.Load(),
		RRLSlipped:       c.rrlSlipped.Load(),
		DnstapDropped:    s.tap.droppedCount(),
	}
}

// aLongTimeAgo is a deadline in the past: setting it unblocks reads at once.
var aLongTimeAgo = time.Unix(1, 0)

// Shutdown stops the server: UDP reads are unblocked with a deadline in the
// past, or on ListenUDP's blocking sockets by shutting their read side
// down for good (the caller still owns and closes the PacketConns), TCP
// listeners are closed, idle TCP connections are closed, and Shutdown waits until every
// in-flight query is answered or ctx is done, whichever comes first. It
// returns ctx.Err() in the latter case. With Config.Dnstap, it then waits
// for the dnstap writer to write what is queued and close (bounded by ctx
// too). It is safe to call more than once and from any goroutine.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		close(s.done)
	}
	for pc := range s.udpConns {
		if b, ok := pc.(interface{ stopReads() }); ok {
			b.stopReads() // a blockingConn: no deadlines
		} else {
			_ = pc.SetReadDeadline(aLongTimeAgo)
		}
	}
	for ln := range s.listeners {
		_ = ln.Close()
	}
	for c := range s.tcpConns {
		_ = c.SetReadDeadline(aLongTimeAgo)
	}
	s.mu.Unlock()

	finished := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
		if s.tap != nil {
			// Every query is answered: write what dnstap has queued.
			return s.tap.close(ctx)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// shuttingDown reports whether Shutdown has been called.
func (s *Server) shuttingDown() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// track registers a serve loop's resource and adds it to the wait group. It
// reports false, registering nothing, once Shutdown has been called.
func (s *Server) track(add func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	add()
	s.wg.Add(1)
	return true
}

// numReaders is the number of goroutines reading one UDP socket.
func numReaders() int {
	// One reader per usable core (GOMAXPROCS follows the CPU affinity and
	// cgroup quota since Go 1.25; zone.Procs is it without the Ps a zone
	// load adds while it runs), at most 4: for more cores, open more
	// sockets with ListenUDP.
	return max(1, min(zone.Procs(), 4))
}

// validate reports every problem of c (after defaults), joined.
func (c RRLConfig) validate() error {
	var errs []error
	if c.ResponsesPerSecond < 0 || c.ResponsesPerSecond > 1_000_000 {
		errs = append(errs, fmt.Errorf("rrl.responses_per_second: %d, must be between 0 and 1000000", c.ResponsesPerSecond))
	}
	if c.Window < time.Second || c.Window > time.Hour {
		errs = append(errs, fmt.Errorf("rrl.window: %s, must be between 1s and 1h", c.Window))
	}
	if c.Slip < -1 || c.Slip > 10 {
		errs = append(errs, fmt.Errorf("rrl.slip: %d, must be between -1 and 10", c.Slip))
	}
	if c.IPv4PrefixLen < 0 || c.IPv4PrefixLen > 32 {
		errs = append(errs, fmt.Errorf("rrl.ipv4_prefix: %d, must be between 0 and 32", c.IPv4PrefixLen))
	}
	if c.IPv6PrefixLen < 0 || c.IPv6PrefixLen > 128 {
		errs = append(errs, fmt.Errorf("rrl.ipv6_prefix: %d, must be between 0 and 128", c.IPv6PrefixLen))
	}
	for i, p := range c.Exempt {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("rrl.exempt[%d]: invalid prefix", i))
		}
	}
	return errors.Join(errs...)
}

func hexString(b string) string { return hex.EncodeToString([]byte(b)) }
