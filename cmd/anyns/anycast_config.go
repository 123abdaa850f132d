package main

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/anyns/anyns/announce"
	"github.com/anyns/anyns/health"
)

// BGPConfig is the `bgp` section: the embedded speaker, its neighbors and
// the service prefixes it announces while they are healthy.
type BGPConfig struct {
	ASN        uint32 `yaml:"asn"`
	RouterID   string `yaml:"router_id"`
	ListenPort *int32 `yaml:"listen_port"` // default -1: no passive listener
	// Drain is how long we keep serving after withdrawing on SIGTERM, while
	// routers converge. Defaults to 5s.
	Drain     *time.Duration   `yaml:"drain"`
	Neighbors []NeighborConfig `yaml:"neighbors"`
	Announce  []PrefixConfig   `yaml:"announce"`
}

// NeighborConfig is one entry of bgp.neighbors.
type NeighborConfig struct {
	Address      string        `yaml:"address"`
	ASN          uint32        `yaml:"asn"`
	Port         uint16        `yaml:"port"`      // default 179
	Password     string        `yaml:"password"`  // TCP MD5
	Multihop     uint8         `yaml:"multihop"`  // eBGP multihop TTL; 0 = off
	HoldTime     time.Duration `yaml:"hold_time"` // default 9s
	Keepalive    time.Duration `yaml:"keepalive"` // default hold_time/3
	Passive      bool          `yaml:"passive"`
	LocalAddress string        `yaml:"local_address"`
}

// PrefixConfig is one entry of bgp.announce: a service prefix.
type PrefixConfig struct {
	Prefix           string   `yaml:"prefix"`
	NextHop          string   `yaml:"next_hop"` // default: our address on each session
	Communities      []string `yaml:"communities"`
	LargeCommunities []string `yaml:"large_communities"`
	MED              *uint32  `yaml:"med"`
	Prepend          int      `yaml:"prepend"`
	// Checks lists the listeners (host:port) whose health backs the
	// prefix; default: every listener on an address inside the prefix.
	Checks []string `yaml:"checks"`
}

// HealthConfig is the `health` section.
type HealthConfig struct {
	Interval       time.Duration `yaml:"interval"`        // default 500ms
	Timeout        time.Duration `yaml:"timeout"`         // default 300ms
	Rise           int           `yaml:"rise"`            // default 3
	Fall           int           `yaml:"fall"`            // default 2
	HoldDown       time.Duration `yaml:"hold_down"`       // default 10s, grows with flapping
	MaxHoldDown    time.Duration `yaml:"max_hold_down"`   // default 5m
	Queries        []string      `yaml:"queries"`         // default: every served zone's SOA
	Command        string        `yaml:"command"`         // optional extra check
	CommandTimeout time.Duration `yaml:"command_timeout"` // default 1s
	BusyQPS        float64       `yaml:"busy_qps"`        // 0 = off
	// RequireAllZones makes zone readiness a check: every zone file must
	// have a version serving (a file that never loaded fails the check).
	// Default false: ready as soon as one zone serves.
	RequireAllZones bool `yaml:"require_all_zones"`
	// Expired says what a secondary zone past its SOA expire does to the
	// prefixes: "down" (the default) withdraws them, "degraded" keeps them
	// announced with degraded_prepend extra prepends.
	Expired string `yaml:"expired"`
	// DegradedPrepend, when positive, keeps a prefix announced with this
	// many extra prepends while some but not all of its listeners fail, or
	// while it is busy.
	DegradedPrepend int `yaml:"degraded_prepend"`
}

// ControlConfig is the `control` section.
type ControlConfig struct {
	// Socket is the unix socket of `anyns ctl`. Defaults to
	// /run/anyns/anyns.sock as root and ./anyns.sock otherwise; "-" or
	// "off" disables it.
	Socket string `yaml:"socket"`
}

// anycast is the validated, converted form of the bgp and health sections.
type anycast struct {
	speaker announce.Config
	routes  []announce.Route
	checks  [][]netip.AddrPort // per route; empty: derived from the listeners
	drain   time.Duration
	health  health.Config
	queries []string
	degPre  int
	allZone bool
	// expiredDegrades: an expired secondary zone degrades the prefixes
	// instead of withdrawing them.
	expiredDegrades bool
}

// validateBGP converts and checks the bgp and health sections; bad reports
// a problem under a key path. Values are checked by the announce and health
// packages' own validation (the same the running speaker applies), with
// their keys placed under bgp. and health.; only what they cannot see (text
// that does not parse, listeners) is checked here.
func (c *Config) validateBGP(bad func(key, format string, args ...any)) *anycast {
	b := c.BGP
	if b == nil {
		return nil
	}
	reported := make(map[string]bool)
	badKey := func(key, format string, args ...any) {
		reported[key] = true
		bad(key, format, args...)
	}
	// pass reports the errors of another package's validation under
	// prefix, skipping keys already reported.
	pass := func(prefix string, err error) {
		for _, e := range unjoin(err) {
			key, msg, ok := strings.Cut(e.Error(), ": ")
			if !ok {
				key, msg = "", e.Error()
			}
			full := strings.TrimSuffix(prefix+key, ".")
			if !reported[full] {
				badKey(full, "%s", msg)
			}
		}
	}

	a := &anycast{drain: 5 * time.Second}
	a.speaker.ASN = b.ASN
	if b.RouterID != "" {
		if rid, err := netip.ParseAddr(b.RouterID); err != nil {
			badKey("bgp.router_id", "must be an IPv4 address, got %q", b.RouterID)
		} else {
			a.speaker.RouterID = rid
		}
	}
	a.speaker.ListenPort = -1
	if b.ListenPort != nil {
		a.speaker.ListenPort = *b.ListenPort
	}
	if b.Drain != nil {
		if *b.Drain < 0 {
			badKey("bgp.drain", "must not be negative, got %v", *b.Drain)
		}
		a.drain = *b.Drain
	}
	if len(b.Neighbors) == 0 {
		badKey("bgp.neighbors", "needs at least one neighbor")
	}
	for i, n := range b.Neighbors {
		key := fmt.Sprintf("bgp.neighbors[%d]", i)
		addr, err := netip.ParseAddr(n.Address)
		if err != nil {
			badKey(key+".address", "must be an IP address, got %q", n.Address)
		}
		nb := announce.Neighbor{
			Address: addr, ASN: n.ASN, Port: n.Port, Password: n.Password, Multihop: n.Multihop,
			HoldTime: n.HoldTime, Keepalive: n.Keepalive, Passive: n.Passive,
		}
		if n.LocalAddress != "" {
			la, err := netip.ParseAddr(n.LocalAddress)
			if err != nil {
				badKey(key+".local_address", "must be an IP address, got %q", n.LocalAddress)
			}
			nb.LocalAddress = la
		}
		a.speaker.Neighbors = append(a.speaker.Neighbors, nb)
	}
	if _, err := announce.New(a.speaker, nil); err != nil {
		pass("bgp.", err)
	}
	if len(b.Announce) == 0 {
		badKey("bgp.announce", "needs at least one prefix")
	}
	for i, p := range b.Announce {
		key := fmt.Sprintf("bgp.announce[%d]", i)
		r := announce.Route{Communities: p.Communities, LargeCommunities: p.LargeCommunities, MED: p.MED, Prepend: p.Prepend}
		pfx, perr := netip.ParsePrefix(p.Prefix)
		if perr != nil {
			badKey(key+".prefix", "must be a prefix such as 192.0.2.53/32, got %q", p.Prefix)
		}
		r.Prefix = pfx
		if p.NextHop != "" {
			nh, err := netip.ParseAddr(p.NextHop)
			if err != nil {
				badKey(key+".next_hop", "must be an IP address, got %q", p.NextHop)
			}
			r.NextHop = nh
		}
		pass(key+".", r.Validate())
		var checks []netip.AddrPort
		for j, s := range p.Checks {
			ap, err := parseListen(s)
			if err != nil {
				badKey(fmt.Sprintf("%s.checks[%d]", key, j), "%v", err)
				continue
			}
			if !c.listens(ap) {
				badKey(fmt.Sprintf("%s.checks[%d]", key, j), "%s is not one of the listen addresses", s)
			}
			checks = append(checks, ap)
		}
		if len(p.Checks) == 0 && perr == nil && len(c.backing(pfx)) == 0 {
			badKey(key+".checks", "no listener is on an address inside %s: listen on the service address or list the checks", pfx)
		}
		a.routes = append(a.routes, r)
		a.checks = append(a.checks, checks)
	}
	h := c.Health
	a.health = health.Config{
		Interval: h.Interval, Timeout: h.Timeout, Rise: h.Rise, Fall: h.Fall, HoldDown: h.HoldDown,
		MaxHoldDown: h.MaxHoldDown, BusyQPS: h.BusyQPS, Command: h.Command, CommandTimeout: h.CommandTimeout,
	}
	pass("health.", a.health.Validate())
	a.queries = h.Queries
	a.allZone = h.RequireAllZones
	switch h.Expired {
	case "", "down":
		a.expiredDegrades = false
	case "degraded":
		a.expiredDegrades = true
	default:
		badKey("health.expired", "must be down or degraded, got %q", h.Expired)
	}
	if h.DegradedPrepend < 0 || h.DegradedPrepend > announce.MaxPrepend {
		badKey("health.degraded_prepend", "must be between 0 and %d, got %d", announce.MaxPrepend, h.DegradedPrepend)
	}
	a.degPre = h.DegradedPrepend
	return a
}

// listens reports whether ap is one of the configured listen addresses.
func (c *Config) listens(ap netip.AddrPort) bool {
	for _, s := range c.Listen {
		if l, err := parseListen(s); err == nil && l == ap {
			return true
		}
	}
	return false
}

// backing returns the default health checks of prefix p: every listen
// address inside p, and for a host prefix (/32, /128) every wildcard
// listener of its family, probed at the prefix's address.
func (c *Config) backing(p netip.Prefix) []netip.AddrPort {
	var out []netip.AddrPort
	for _, s := range c.Listen {
		l, err := parseListen(s)
		if err != nil {
			continue
		}
		switch {
		case p.Contains(l.Addr()):
			out = append(out, l)
		case l.Addr().IsUnspecified() && p.IsSingleIP() && l.Addr().Is4() == p.Addr().Is4():
			out = append(out, netip.AddrPortFrom(p.Addr(), l.Port()))
		}
	}
	return out
}
