package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/anyns/anyns/server"
	"github.com/anyns/anyns/zone/xfr"
)

// Config is the whole configuration of one anyns instance: built-in
// defaults, then the YAML file (--config), then flags, then Validate.
type Config struct {
	// Identity names this instance in NSID and CH TXT id.server answers.
	// Defaults to the host name.
	Identity string `yaml:"identity"`
	// Listen is the list of host:port addresses to serve on, each over UDP
	// and TCP. Defaults to 127.0.0.1:5300 and [::1]:5300.
	Listen []string `yaml:"listen"`
	// Zones is the directory whose *.zone files are served. Defaults to
	// "zones".
	Zones string `yaml:"zones"`
	// Version is the answer to CH TXT version.bind; nil refuses to tell.
	Version *string `yaml:"version"`
	// UDPSize is the largest UDP payload we send and advertise in EDNS.
	// Defaults to 1232 bytes.
	UDPSize int       `yaml:"udp_size"`
	TCP     TCPConfig `yaml:"tcp"`
	RRL     RRLConfig `yaml:"rrl"`
	Log     LogConfig `yaml:"log"`

	// AllowRoot lets `anyns serve` run as root. By default it refuses:
	// run it as an unprivileged user with CAP_NET_BIND_SERVICE instead
	// (deploy/systemd/anyns.service).
	AllowRoot bool          `yaml:"allow_root"`
	Reload    ReloadConfig  `yaml:"reload"`
	BGP       *BGPConfig    `yaml:"bgp"`
	Health    HealthConfig  `yaml:"health"`
	Control   ControlConfig `yaml:"control"`

	Metrics MetricsConfig `yaml:"metrics"`
	// Diagnostics configures the whoami name.
	Diagnostics DiagnosticsConfig `yaml:"diagnostics"`
	// Dnstap configures dnstap output of queries and responses.
	Dnstap DnstapConfig `yaml:"dnstap"`

	// TSIGKeys, Secondary and SecondaryDir configure secondary zones
	// (zone/xfr): transferred zones are written to SecondaryDir and served
	// from there like the files of Zones.
	TSIGKeys     []xfr.Key    `yaml:"tsig_keys"`
	Secondary    []xfr.Source `yaml:"secondary"`
	SecondaryDir string       `yaml:"secondary_dir"`

	// Transfer allows AXFR/IXFR out and lists NOTIFY targets, per zone.
	Transfer []TransferConfig `yaml:"transfer"`

	// anycast is the converted bgp and health sections, set by Validate
	// (nil without a bgp section).
	anycast *anycast
	// transfer is the parsed transfer section, set by serverConfig.
	transfer primarySide

	// defaultListen reports whether Listen is the embedded default, on which
	// an address family the host lacks (no ::1) is skipped, not fatal.
	defaultListen bool
}

// TCPConfig tunes DNS over TCP (RFC 7766).
type TCPConfig struct {
	// IdleTimeout closes a connection with no query for this long.
	// Defaults to 10s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxConnections caps open TCP connections; beyond it new ones are
	// closed at once. Defaults to 1000.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerPrefix caps open TCP connections from one client
	// prefix (rrl.ipv4_prefix, rrl.ipv6_prefix). Defaults to 64; -1 = none.
	MaxConnectionsPerPrefix int `yaml:"max_connections_per_prefix"`
	// ReadTimeout is how long a client has to finish a message once its
	// first byte arrived (slowloris). Defaults to 2s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
}

// DiagnosticsConfig is the `diagnostics` section.
type DiagnosticsConfig struct {
	// Whoami is a name under a served zone ("whoami.example.com.") that
	// answers TXT with the identity, the client address as seen here, the
	// EDNS Client Subnet and the transport, and A/AAAA with the client
	// address, TTL 0. Empty (the default) turns it off.
	Whoami string `yaml:"whoami"`
}

// DnstapConfig is the `dnstap` section.
type DnstapConfig struct {
	// Output is "unix:/path/to/socket" (Frame Streams, reconnected when it
	// fails) or a file path. Empty (the default) turns dnstap off.
	Output string `yaml:"output"`
}

// RRLConfig is the `rrl` section: Response Rate Limiting of UDP answers.
type RRLConfig struct {
	// ResponsesPerSecond per account; 0 (the default) turns RRL off.
	ResponsesPerSecond int `yaml:"responses_per_second"`
	// Window is how far an account may go into debt. Defaults to 15s.
	Window time.Duration `yaml:"window"`
	// Slip: every Nth limited response goes out truncated (TC=1) so real
	// clients retry over TCP. Defaults to 2; 0 never slips (BIND's spelling),
	// 1 slips every one.
	Slip *int `yaml:"slip"`
	// IPv4Prefix and IPv6Prefix group clients. Default 24 and 56.
	IPv4Prefix int `yaml:"ipv4_prefix"`
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// Exempt prefixes are never limited.
	Exempt []string `yaml:"exempt"`
}

// ReloadConfig tunes how zone changes are picked up.
type ReloadConfig struct {
	// Debounce is how long the zones directory must be quiet after a change
	// before it is read. Defaults to 200ms.
	Debounce time.Duration `yaml:"debounce"`
	// Rescan is the period of a full rescan that catches changes the
	// watcher missed. Defaults to 60s; 0 in the file means the default, a
	// negative value turns it off.
	Rescan time.Duration `yaml:"rescan"`
}

// LogConfig selects the zap logger.
type LogConfig struct {
	// Level is debug, info, warn or error. Defaults to info.
	Level string `yaml:"level"`
	// Queries is the fraction of queries logged (0.0-1.0), at info level,
	// with client, qname, qtype, rcode, size, transport and duration.
	// Defaults to 0: no query logging.
	Queries float64 `yaml:"queries"`
	// Format is json or console. Defaults to json.
	Format string `yaml:"format"`
}

const (
	defaultPort    = "5300"
	defaultUDPSize = 1232
)

// defaultConfig returns the embedded default: the zones in ./zones on
// 127.0.0.1:5300 and [::1]:5300, named after the host.
func defaultConfig() Config {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "anyns"
	}
	return Config{
		Identity:      host,
		Listen:        []string{"127.0.0.1:" + defaultPort, "[::1]:" + defaultPort},
		Zones:         "zones",
		UDPSize:       defaultUDPSize,
		TCP:           TCPConfig{IdleTimeout: 10 * time.Second, MaxConnections: 1000, MaxConnectionsPerPrefix: 64, ReadTimeout: 2 * time.Second},
		Reload:        ReloadConfig{Debounce: 200 * time.Millisecond, Rescan: 60 * time.Second},
		Log:           LogConfig{Level: "info", Format: "json"},
		defaultListen: true,
	}
}

// loadConfigFile decodes path over c strictly: an unknown key is an error
// naming the key and its line.
func loadConfigFile(c *Config, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	listen := c.Listen
	c.Listen = nil
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %s", path, yamlError(err))
	}
	if c.Listen == nil {
		c.Listen = listen
	} else {
		c.defaultListen = false
	}
	return nil
}

// Validate checks every key and returns all problems, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	reported := make(map[string]bool)
	bad := func(key, format string, args ...any) {
		reported[key] = true
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	for i, k := range c.TSIGKeys {
		if k.SecretFile == "" {
			continue
		}
		key := fmt.Sprintf("tsig_keys[%d].secret_file", i)
		if k.Secret != "" {
			bad(key, "set either secret or secret_file, not both")
			continue
		}
		b, err := os.ReadFile(k.SecretFile)
		if err != nil {
			bad(key, "%v", err)
			continue
		}
		c.TSIGKeys[i].Secret = strings.TrimSpace(string(b))
	}
	if c.Identity == "" {
		bad("identity", "must not be empty")
	} else if len(c.Identity) > 255 {
		bad("identity", "must be at most 255 bytes (one TXT string)")
	}
	if len(c.Listen) == 0 {
		bad("listen", "needs at least one address")
	}
	for i, a := range c.Listen {
		if _, err := parseListen(a); err != nil {
			bad(fmt.Sprintf("listen[%d]", i), "%v", err)
		}
	}
	if c.Zones == "" {
		bad("zones", "must name a directory")
	} else if fi, err := os.Stat(c.Zones); err != nil {
		bad("zones", "%v", err)
	} else if !fi.IsDir() {
		bad("zones", "%s is not a directory", c.Zones)
	}
	if c.Version != nil && len(*c.Version) > 255 {
		bad("version", "must be at most 255 bytes")
	}
	if c.UDPSize < 512 || c.UDPSize > 65535 {
		bad("udp_size", "must be between 512 and 65535, got %d", c.UDPSize)
	}
	if c.TCP.IdleTimeout <= 0 || c.TCP.IdleTimeout > 6553500*time.Millisecond {
		// The upper bound is what edns-tcp-keepalive (RFC 7828) can signal.
		bad("tcp.idle_timeout", "must be between 0 and 6553.5s, got %v", c.TCP.IdleTimeout)
	}
	if c.TCP.MaxConnections < 1 {
		bad("tcp.max_connections", "must be at least 1, got %d", c.TCP.MaxConnections)
	}
	if _, err := c.serverConfig(); err != nil {
		for _, e := range unjoin(err) {
			// server.Config.Validate names the same keys ("rrl.window: …").
			key, msg, _ := strings.Cut(e.Error(), ": ")
			if !reported[key] {
				bad(key, "%s", msg)
			}
		}
	}
	if c.Reload.Debounce <= 0 {
		bad("reload.debounce", "must be positive, got %v", c.Reload.Debounce)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		bad("log.format", "must be json or console, got %q", c.Log.Format)
	}
	c.anycast = c.validateBGP(bad)
	if c.Metrics.Listen != "" {
		if _, err := netip.ParseAddrPort(metricsAddr(c.Metrics.Listen)); err != nil {
			bad("metrics.listen", "must be host:port with an IP address, or a port, got %q", c.Metrics.Listen)
		}
	}
	if len(c.Secondary) > 0 {
		xc := c.xfrConfig()
		for _, e := range unjoin(xc.Validate()) {
			key, msg, _ := strings.Cut(e.Error(), ": ")
			if !reported[key] {
				bad(key, "%s", msg)
			}
		}
		if xc.Dir != "" && filepath.Clean(xc.Dir) == filepath.Clean(c.Zones) {
			bad("secondary_dir", "must not be the zones directory: the secondary removes files it does not own")
		}
	}

	return errors.Join(errs...)
}

// xfrConfig is the secondary-zone part of the config.
func (c *Config) xfrConfig() xfr.Config {
	return xfr.Config{Keys: c.TSIGKeys, Sources: c.Secondary, Dir: c.SecondaryDir}
}

// serverConfig converts the server's part of the config and validates it
// with the server package's own rules.
func (c *Config) serverConfig() (server.Config, error) {
	sc := server.Config{
		Whoami:                     c.Diagnostics.Whoami,
		QueryLog:                   c.Log.Queries,
		Dnstap:                     c.Dnstap.Output,
		Identity:                   c.Identity,
		UDPSize:                    c.UDPSize,
		TCPIdleTimeout:             c.TCP.IdleTimeout,
		TCPMaxConnections:          c.TCP.MaxConnections,
		TCPMaxConnectionsPerPrefix: c.TCP.MaxConnectionsPerPrefix,
		TCPReadTimeout:             c.TCP.ReadTimeout,
		RRL: server.RRLConfig{
			ResponsesPerSecond: c.RRL.ResponsesPerSecond,
			Window:             c.RRL.Window,
			IPv4PrefixLen:      c.RRL.IPv4Prefix,
			IPv6PrefixLen:      c.RRL.IPv6Prefix,
		},
	}
	if c.Version != nil {
		sc.Version = *c.Version
	}
	var errs []error
	if s := c.RRL.Slip; s != nil {
		switch {
		case *s == 0:
			sc.RRL.Slip = -1 // BIND: slip 0 never slips
		default:
			sc.RRL.Slip = *s
		}
		if *s < 0 {
			errs = append(errs, fmt.Errorf("rrl.slip: %d, must be between 0 (never) and 10", *s))
		}
	}
	for i, e := range c.RRL.Exempt {
		p, err := netip.ParsePrefix(e)
		if err != nil {
			if a, aerr := netip.ParseAddr(e); aerr == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			} else {
				errs = append(errs, fmt.Errorf("rrl.exempt[%d]: %q is not a prefix or address", i, e))
				continue
			}
		}
		sc.RRL.Exempt = append(sc.RRL.Exempt, p.Masked())
	}
	if len(c.TSIGKeys) > 0 {
		sc.TSIGKeys = make(map[string]server.TSIGKey, len(c.TSIGKeys))
		for _, k := range c.TSIGKeys {
			sc.TSIGKeys[strings.ToLower(dnsFqdn(k.Name))] = server.TSIGKey{Algorithm: k.Algorithm, Secret: k.Secret}
		}
	}
	side, terrs := c.parseTransfer()
	errs = append(errs, terrs...)
	sc.Transfer = side.rules
	c.transfer = side
	if err := sc.Validate(); err != nil {
		errs = append(errs, err)
	}
	return sc, errors.Join(errs...)
}

// parseListen checks a host:port listen address: the host must be an IP
// address (a name would make the service address ambiguous).
func parseListen(s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: %v", s, err)
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: host must be an IP address", s)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: port must be 0-65535", s)
	}
	return netip.AddrPortFrom(addr, uint16(p)), nil
}

var unknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)

// yamlError rewrites yaml.v3's messages into one line per problem that names
// the key: "line 3: unknown key \"udpsize\"".
func yamlError(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n")
	var lines []string
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, unknownField.ReplaceAllString(l, `unknown key "$1"`))
		}
	}
	return strings.Join(lines, "; ")
}
