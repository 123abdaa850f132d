package announce

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults applied by New to zero fields.
const (
	// DefaultHoldTime is the hold time proposed to peers when Neighbor.HoldTime
	// is zero: short, so that a dead peer is noticed within seconds.
	DefaultHoldTime = 9 * time.Second
	// MaxPrepend bounds Route.Prepend.
	MaxPrepend = 16
	// maxPasswordLen is TCP_MD5SIG_MAXKEYLEN on Linux.
	maxPasswordLen = 80
)

// Config is the BGP speaker's configuration. It is copied by New; later
// changes by the caller have no effect.
type Config struct {
	// ASN is our autonomous system number (4-byte ASNs are supported).
	// Required.
	ASN uint32
	// RouterID is the BGP identifier, an IPv4 address. Required.
	RouterID netip.Addr
	// ListenPort is the TCP port of the passive BGP listener. -1 means no
	// listener (anyns only dials out; cmd/anyns passes -1 by default); 0 means
	// GoBGP's default, port 179 on every address. A Passive neighbor needs a
	// listener.
	ListenPort int32
	// Neighbors are the BGP peers. Every session carries IPv4 and IPv6
	// unicast (MP-BGP), whatever the session's own address family.
	Neighbors []Neighbor
}

// Neighbor is one BGP peer.
type Neighbor struct {
	// Address is the peer's address. Required, unique among neighbors.
	Address netip.Addr
	// ASN is the peer's AS. Equal to Config.ASN makes an iBGP session.
	ASN uint32
	// Port is the peer's TCP port; 0 means 179.
	Port uint16
	// Password enables TCP MD5 signatures (RFC 2385) on the session; at most
	// 80 bytes. Empty means none.
	Password string
	// Multihop is the eBGP multihop TTL; 0 means off (directly connected).
	Multihop uint8
	// HoldTime is the hold time we propose, in whole seconds, at least 3s;
	// 0 means DefaultHoldTime (9s).
	HoldTime time.Duration
	// Keepalive is the keepalive interval, in whole seconds, shorter than
	// HoldTime; 0 means HoldTime/3.
	Keepalive time.Duration
	// Passive makes us wait for the peer to connect instead of dialling.
	// Requires Config.ListenPort != -1.
	Passive bool
	// LocalAddress is the source address of the session; zero lets the
	// kernel choose. Same address family as Address.
	LocalAddress netip.Addr
}

// Route is one prefix to announce with its attributes.
type Route struct {
	// Prefix is the announced prefix: IPv4 or IPv6, any length, with no bits
	// set past its length (192.0.2.1/32, 2001:db8::/48).
	Prefix netip.Prefix
	// NextHop is the next hop sent with the route. Zero means our own address
	// on each session (next-hop-self). For an IPv6 prefix on an IPv4 session
	// that address is sent IPv4-mapped (::ffff:192.0.2.10), and an IPv4
	// prefix on an IPv6 session gets an IPv6 next hop (RFC 8950): routers
	// that accept neither need a session of the prefix's own family or an
	// explicit NextHop. An explicit NextHop must be of the prefix's family
	// (write an IPv4-mapped IPv6 address for an IPv6 prefix if needed).
	NextHop netip.Addr
	// Communities are RFC 1997 communities: "65000:1", or a well-known name
	// (see ParseCommunity).
	Communities []string
	// LargeCommunities are RFC 8092 large communities, "a:b:c".
	LargeCommunities []string
	// MED is the multi-exit discriminator; nil sends none.
	MED *uint32
	// Prepend is the number of extra copies of our ASN in the AS path, 0 to
	// MaxPrepend. Meaningful on eBGP sessions only: an iBGP peer would see
	// its own AS in the path.
	Prepend int
}

// Well-known communities (RFC 1997, RFC 8326, RFC 7999).
const (
	CommunityGracefulShutdown  uint32 = 0xFFFF0000
	CommunityBlackhole         uint32 = 0xFFFF029A
	CommunityNoExport          uint32 = 0xFFFFFF01
	CommunityNoAdvertise       uint32 = 0xFFFFFF02
	CommunityNoExportSubconfed uint32 = 0xFFFFFF03
)

var wellKnown = map[string]uint32{
	"graceful-shutdown":   CommunityGracefulShutdown,
	"blackhole":           CommunityBlackhole,
	"no-export":           CommunityNoExport,
	"no-advertise":        CommunityNoAdvertise,
	"no-export-subconfed": CommunityNoExportSubconfed,
}

// ParseCommunity parses an RFC 1997 community: "asn:value" with both halves
// in 0-65535, or one of the names no-export, no-advertise,
// no-export-subconfed, graceful-shutdown (65535:0, RFC 8326) and blackhole
// (65535:666, RFC 7999), case-insensitive.
func ParseCommunity(s string) (uint32, error) {
	if c, ok := wellKnown[strings.ToLower(s)]; ok {
		return c, nil
	}
	hi, lo, ok := strings.Cut(s, ":")
	if !ok {
		return 0, fmt.Errorf("community %q: want asn:value or a well-known name", s)
	}
	h, err1 := strconv.ParseUint(hi, 10, 16)
	l, err2 := strconv.ParseUint(lo, 10, 16)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("community %q: both halves must be numbers in 0-65535", s)
	}
	return uint32(h)<<16 | uint32(l), nil
}

// largeCommunity is an RFC 8092 large community.
type largeCommunity struct{ global, local1, local2 uint32 }

// parseLargeCommunity parses "a:b:c" with each part in 0-4294967295.
func parseLargeCommunity(s string) (largeCommunity, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return largeCommunity{}, fmt.Errorf("large community %q: want a:b:c", s)
	}
	var v [3]uint32
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return largeCommunity{}, fmt.Errorf("large community %q: parts must be numbers in 0-4294967295", s)
		}
		v[i] = uint32(n)
	}
	return largeCommunity{v[0], v[1], v[2]}, nil
}

// validate checks the whole config and returns every problem found.
func (c *Config) validate() error {
	var errs []error
	if c.ASN == 0 {
		errs = append(errs, errors.New("asn: must be between 1 and 4294967295"))
	}
	if !c.RouterID.IsValid() || !c.RouterID.Unmap().Is4() || c.RouterID.IsUnspecified() {
		errs = append(errs, errors.New("router_id: must be a non-zero IPv4 address"))
	}
	if c.ListenPort < -1 || c.ListenPort > 65535 {
		errs = append(errs, fmt.Errorf("listen_port: %d: must be -1 (no listener) or 0-65535", c.ListenPort))
	}
	seen := make(map[netip.Addr]int)
	for i, n := range c.Neighbors {
		key := fmt.Sprintf("neighbors[%d]", i)
		if !n.Address.IsValid() || n.Address.IsUnspecified() {
			errs = append(errs, fmt.Errorf("%s.address: must be a unicast address", key))
		} else if j, dup := seen[n.Address.Unmap()]; dup {
			errs = append(errs, fmt.Errorf("%s.address: %s duplicates neighbors[%d]", key, n.Address, j))
		} else {
			seen[n.Address.Unmap()] = i
		}
		if n.ASN == 0 {
			errs = append(errs, fmt.Errorf("%s.asn: must be between 1 and 4294967295", key))
		}
		if len(n.Password) > maxPasswordLen {
			errs = append(errs, fmt.Errorf("%s.password: longer than %d bytes", key, maxPasswordLen))
		}
		if n.Multihop != 0 && n.ASN == c.ASN {
			errs = append(errs, fmt.Errorf("%s.multihop: only for eBGP sessions", key))
		}
		hold := n.HoldTime
		if hold == 0 {
			hold = DefaultHoldTime
		}
		if hold < 3*time.Second || hold%time.Second != 0 || hold > 65535*time.Second {
			errs = append(errs, fmt.Errorf("%s.hold_time: %s: must be whole seconds between 3s and 65535s", key, n.HoldTime))
		}
		if n.Keepalive != 0 && (n.Keepalive < time.Second || n.Keepalive%time.Second != 0 || n.Keepalive >= hold) {
			errs = append(errs, fmt.Errorf("%s.keepalive: %s: must be whole seconds, at least 1s and shorter than the hold time", key, n.Keepalive))
		}
		if n.Passive && c.ListenPort == -1 {
			errs = append(errs, fmt.Errorf("%s.passive: needs a listener (listen_port is -1)", key))
		}
		if n.LocalAddress.IsValid() && n.Address.IsValid() && n.LocalAddress.Unmap().Is4() != n.Address.Unmap().Is4() {
			errs = append(errs, fmt.Errorf("%s.local_address: %s: not the address family of %s", key, n.LocalAddress, n.Address))
		}
	}
	return errors.Join(errs...)
}

// route is a validated Route in the form GoBGP needs.
type route struct {
	prefix      netip.Prefix
	nextHop     netip.Addr // zero: next-hop-self
	communities []uint32
	large       []largeCommunity
	med         *uint32
	prepend     int
}

// parseRoute validates r and returns every problem found.
func parseRoute(r Route) (route, error) {
	var errs []error
	out := route{prefix: r.Prefix, nextHop: r.NextHop, prepend: r.Prepend}
	if !r.Prefix.IsValid() {
		errs = append(errs, errors.New("prefix: missing or invalid"))
	} else if r.Prefix.Masked() != r.Prefix {
		errs = append(errs, fmt.Errorf("prefix: %s has bits set past its length (want %s)", r.Prefix, r.Prefix.Masked()))
	} else if r.Prefix.Addr().Is4In6() {
		errs = append(errs, fmt.Errorf("prefix: %s: IPv4-mapped prefixes are not announced", r.Prefix))
	}
	if r.NextHop.IsValid() {
		if r.NextHop.IsUnspecified() {
			out.nextHop = netip.Addr{}
		} else if r.Prefix.IsValid() && r.NextHop.Is4() != r.Prefix.Addr().Is4() {
			errs = append(errs, fmt.Errorf("next_hop: %s: not the address family of %s", r.NextHop, r.Prefix))
		}
	}
	for i, s := range r.Communities {
		c, err := ParseCommunity(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("communities[%d]: %w", i, err))
			continue
		}
		if !slices.Contains(out.communities, c) {
			out.communities = append(out.communities, c)
		}
	}
	for i, s := range r.LargeCommunities {
		c, err := parseLargeCommunity(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("large_communities[%d]: %w", i, err))
			continue
		}
		if !slices.Contains(out.large, c) {
			out.large = append(out.large, c)
		}
	}
	if r.MED != nil {
		m := *r.MED
		out.med = &m
	}
	if r.Prepend < 0 || r.Prepend > MaxPrepend {
		errs = append(errs, fmt.Errorf("prepend: %d: must be between 0 and %d", r.Prepend, MaxPrepend))
	}
	return out, errors.Join(errs...)
}

// equal reports whether a and b announce the same thing.
func (a *route) equal(b *route) bool {
	if (a.med == nil) != (b.med == nil) || (a.med != nil && *a.med != *b.med) {
		return false
	}
	return a.prefix == b.prefix && a.nextHop == b.nextHop && a.prepend == b.prepend &&
		slices.Equal(a.communities, b.communities) && slices.Equal(a.large, b.large)
}

// Validate reports every problem that would make Announce reject r, one
// error per problem, each starting with the key at fault ("prefix: …",
// "next_hop: …", "large_communities: …").
func (r Route) Validate() error {
	_, err := parseRoute(r)
	return err
}
