package announce

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

const (
	ourASN    = 65001
	routerASN = 65000
	waitLimit = 20 * time.Second
)

func TestParseCommunity(t *testing.T) {
	tests := []struct {
		in   string
		want uint32
		err  bool
	}{
		{in: "65000:1", want: 65000<<16 | 1},
		{in: "0:0", want: 0},
		{in: "65535:65535", want: 0xFFFFFFFF},
		{in: "no-export", want: 0xFFFFFF01},
		{in: "NO-EXPORT", want: 0xFFFFFF01},
		{in: "no-advertise", want: 0xFFFFFF02},
		{in: "no-export-subconfed", want: 0xFFFFFF03},
		{in: "graceful-shutdown", want: 65535 << 16},
		{in: "65535:0", want: CommunityGracefulShutdown},
		{in: "blackhole", want: 65535<<16 | 666},
		{in: "65536:1", err: true},
		{in: "1:65536", err: true},
		{in: "-1:1", err: true},
		{in: "1", err: true},
		{in: "1:2:3", err: true},
		{in: "", err: true},
		{in: "no-such-name", err: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseCommunity(tc.in)
			if (err != nil) != tc.err {
				t.Fatalf("ParseCommunity(%q) error = %v, want error %v", tc.in, err, tc.err)
			}
			if !tc.err && got != tc.want {
				t.Errorf("ParseCommunity(%q) = %#x, want %#x", tc.in, got, tc.want)
			}
		})
	}
}

func validConfig() Config {
	return Config{
		ASN:        ourASN,
		RouterID:   netip.MustParseAddr("192.0.2.1"),
		ListenPort: -1,
		Neighbors: []Neighbor{{
			Address: netip.MustParseAddr("192.0.2.254"),
			ASN:     routerASN,
		}},
	}
}

func TestNewValidation(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want []string // substrings of the error; none = valid
	}{
		{name: "valid", mod: func(*Config) {}},
		{name: "valid full", mod: func(c *Config) {
			c.ListenPort = 1179
			c.Neighbors[0] = Neighbor{
				Address: netip.MustParseAddr("2001:db8::1"), ASN: 64512, Port: 1179,
				Password: "secret", Multihop: 2, HoldTime: 30 * time.Second, Keepalive: 10 * time.Second,
				Passive: true, LocalAddress: netip.MustParseAddr("2001:db8::2"),
			}
		}},
		{name: "no asn", mod: func(c *Config) { c.ASN = 0 }, want: []string{"asn:"}},
		{name: "router id v6", mod: func(c *Config) { c.RouterID = netip.MustParseAddr("2001:db8::1") }, want: []string{"router_id"}},
		{name: "router id missing", mod: func(c *Config) { c.RouterID = netip.Addr{} }, want: []string{"router_id"}},
		{name: "listen port", mod: func(c *Config) { c.ListenPort = -2 }, want: []string{"listen_port"}},
		{name: "neighbor address", mod: func(c *Config) { c.Neighbors[0].Address = netip.Addr{} }, want: []string{"neighbors[0].address"}},
		{name: "duplicate neighbor", mod: func(c *Config) { c.Neighbors = append(c.Neighbors, c.Neighbors[0]) }, want: []string{"neighbors[1].address", "duplicates neighbors[0]"}},
		{name: "neighbor asn", mod: func(c *Config) { c.Neighbors[0].ASN = 0 }, want: []string{"neighbors[0].asn"}},
		{name: "password too long", mod: func(c *Config) { c.Neighbors[0].Password = strings.Repeat("x", 81) }, want: []string{"neighbors[0].password"}},
		{name: "password max", mod: func(c *Config) { c.Neighbors[0].Password = strings.Repeat("x", 80) }},
		{name: "multihop ibgp", mod: func(c *Config) { c.Neighbors[0].ASN = ourASN; c.Neighbors[0].Multihop = 2 }, want: []string{"neighbors[0].multihop"}},
		{name: "hold time short", mod: func(c *Config) { c.Neighbors[0].HoldTime = 2 * time.Second }, want: []string{"neighbors[0].hold_time"}},
		{name: "hold time fraction", mod: func(c *Config) { c.Neighbors[0].HoldTime = 3500 * time.Millisecond }, want: []string{"neighbors[0].hold_time"}},
		{name: "keepalive too long", mod: func(c *Config) { c.Neighbors[0].Keepalive = 9 * time.Second }, want: []string{"neighbors[0].keepalive"}},
		{name: "passive without listener", mod: func(c *Config) { c.Neighbors[0].Passive = true }, want: []string{"neighbors[0].passive"}},
		{name: "local address family", mod: func(c *Config) { c.Neighbors[0].LocalAddress = netip.MustParseAddr("2001:db8::2") }, want: []string{"neighbors[0].local_address"}},
		{name: "all reported", mod: func(c *Config) { c.ASN = 0; c.Neighbors[0].ASN = 0 }, want: []string{"asn:", "neighbors[0].asn"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := validConfig()
			tc.mod(&cfg)
			_, err := New(cfg, zap.NewNop())
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("New succeeded, want error containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestAnnounceValidation(t *testing.T) {
	med := uint32(5)
	tests := []struct {
		name string
		r    Route
		want string // substring of the error; empty = valid
	}{
		{name: "v4 host", r: Route{Prefix: netip.MustParsePrefix("192.0.2.53/32")}},
		{name: "v6 wider", r: Route{Prefix: netip.MustParsePrefix("2001:db8::/48"), NextHop: netip.MustParseAddr("2001:db8::1")}},
		{name: "full", r: Route{Prefix: netip.MustParsePrefix("192.0.2.0/24"), NextHop: netip.MustParseAddr("192.0.2.1"),
			Communities: []string{"65000:1", "no-export"}, LargeCommunities: []string{"65001:1:2"}, MED: &med, Prepend: 3}},
		{name: "no prefix", r: Route{}, want: "prefix"},
		{name: "host bits", r: Route{Prefix: netip.MustParsePrefix("192.0.2.1/24")}, want: "192.0.2.0/24"},
		{name: "mapped", r: Route{Prefix: netip.MustParsePrefix("::ffff:192.0.2.1/128")}, want: "IPv4-mapped"},
		{name: "next hop family", r: Route{Prefix: netip.MustParsePrefix("192.0.2.53/32"), NextHop: netip.MustParseAddr("2001:db8::1")}, want: "next_hop"},
		{name: "bad community", r: Route{Prefix: netip.MustParsePrefix("192.0.2.53/32"), Communities: []string{"1:70000"}}, want: "communities"},
		{name: "bad large", r: Route{Prefix: netip.MustParsePrefix("192.0.2.53/32"), LargeCommunities: []string{"1:2"}}, want: "large_communities"},
		{name: "prepend", r: Route{Prefix: netip.MustParsePrefix("192.0.2.53/32"), Prepend: MaxPrepend + 1}, want: "prepend"},
		{name: "negative prepend", r: Route{Prefix: netip.MustParsePrefix("192.0.2.53/32"), Prepend: -1}, want: "prepend"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(validConfig(), zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			err = s.Announce(t.Context(), tc.r)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Announce: %v", err)
				}
				// Before Start nothing is applied.
				if got := s.Announced(); len(got) != 0 {
					t.Errorf("Announced before Start = %v, want none", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Announce error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestClosedSpeaker(t *testing.T) {
	s, err := New(validConfig(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	p := netip.MustParsePrefix("192.0.2.53/32")
	if err := s.Announce(t.Context(), Route{Prefix: p}); !errors.Is(err, ErrClosed) {
		t.Errorf("Announce after Close = %v, want ErrClosed", err)
	}
	if err := s.Withdraw(t.Context(), p); !errors.Is(err, ErrClosed) {
		t.Errorf("Withdraw after Close = %v, want ErrClosed", err)
	}
	if err := s.Start(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close = %v, want ErrClosed", err)
	}
}

func TestCallTimeout(t *testing.T) {
	s, err := New(validConfig(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	s.callTimeout.Store(int64(10 * time.Millisecond))
	release := make(chan struct{})
	defer close(release)
	err = s.call(t.Context(), "stuck", func(context.Context) error {
		<-release // a GoBGP call that ignores its context
		return nil
	})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "stuck") {
		t.Fatalf("call = %v, want a deadline error naming the call", err)
	}
	want := errors.New("boom")
	if err := s.call(t.Context(), "fails", func(context.Context) error { return want }); !errors.Is(err, want) {
		t.Fatalf("call = %v, want %v", err, want)
	}
}

func TestGoBGPLogger(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	l := newGoBGPLogger(zap.New(core))
	if got := l.GetLevel(); got != gobgplog.InfoLevel {
		t.Errorf("GetLevel = %v, want info", got)
	}
	l.Info("Peer Up", gobgplog.Fields{"Topic": "Peer", "Key": "192.0.2.254", "State": 6})
	l.Debug("not logged", gobgplog.Fields{})
	l.SetLevel(gobgplog.ErrorLevel)
	l.Warn("filtered by SetLevel", nil)
	l.Error("failed", gobgplog.Fields{"Error": errors.New("boom")})

	entries := logs.AllUntimed()
	if len(entries) != 2 {
		t.Fatalf("got %d entries, want 2: %v", len(entries), entries)
	}
	if e := entries[0]; e.Message != "Peer Up" || e.Level != zapcore.InfoLevel {
		t.Errorf("entry 0 = %v", e)
	}
	m := entries[0].ContextMap()
	if m["topic"] != "Peer" || m["peer"] != "192.0.2.254" || m["state"] != int64(6) {
		t.Errorf("fields = %v, want lower-case topic, peer, state", m)
	}
	if e := entries[1]; e.Level != zapcore.ErrorLevel || e.ContextMap()["error"] != "boom" {
		t.Errorf("entry 1 = %v %v", e, e.ContextMap())
	}
}

// TestPolicies checks the import pitfall on a lone GoBGP server: a blanket
// reject import policy drops our own AddPath routes, our policies keep them.
func TestPolicies(t *testing.T) {
	tests := []struct {
		name     string
		policies []*api.Policy
		assign   *api.PolicyAssignment
		wantKept bool
	}{
		{
			name:     "blanket reject drops local routes",
			assign:   &api.PolicyAssignment{Name: globalTable, Direction: api.PolicyDirection_IMPORT, DefaultAction: api.RouteAction_REJECT},
			wantKept: false,
		},
		{
			name:     "ours keeps local routes",
			policies: policies(),
			assign:   policyAssignments()[0],
			wantKept: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			s := newRouterServer(t, 65010, "192.0.2.10", "", 0)
			for _, p := range tc.policies {
				if err := s.AddPolicy(ctx, &api.AddPolicyRequest{Policy: p}); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: tc.assign}); err != nil {
				t.Fatal(err)
			}
			p := netip.MustParsePrefix("192.0.2.53/32")
			path, err := toPath(&route{prefix: p}, 65010)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: path}); err != nil {
				t.Fatal(err)
			}
			_, kept := ribPaths(t, s, api.TableType_GLOBAL, "", familyV4)[p]
			if kept != tc.wantKept {
				t.Errorf("route in global RIB = %v, want %v", kept, tc.wantKept)
			}
		})
	}
}

// TestSpeaker runs our speaker against two in-process GoBGP routers on
// loopback: router A (127.0.0.1, AS 65000) and router B (127.0.0.2,
// AS 65002, reached from our source address 127.0.0.3).
func TestSpeaker(t *testing.T) {
	ctx := t.Context()
	portA := freePort(t, "127.0.0.1")
	portB := freePort(t, "127.0.0.2")
	routerA := newRouterServer(t, routerASN, "192.0.2.254", "127.0.0.1", portA,
		routerPeer("127.0.0.1", ourASN, ""))
	routerB := newRouterServer(t, 65002, "192.0.2.253", "127.0.0.2", portB,
		routerPeer("127.0.0.3", ourASN, ""))

	cfg := Config{
		ASN:        ourASN,
		RouterID:   netip.MustParseAddr("192.0.2.1"),
		ListenPort: -1,
		Neighbors: []Neighbor{
			{Address: netip.MustParseAddr("127.0.0.1"), ASN: routerASN, Port: uint16(portA)},
			{Address: netip.MustParseAddr("127.0.0.2"), ASN: 65002, Port: uint16(portB),
				LocalAddress: netip.MustParseAddr("127.0.0.3"), HoldTime: 30 * time.Second},
		},
	}
	s, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })

	v4 := netip.MustParsePrefix("192.0.2.53/32")
	v6 := netip.MustParsePrefix("2001:db8:53::/48")
	med := uint32(42)
	full := Route{
		Prefix:           v4,
		Communities:      []string{"65001:100", "no-export", "graceful-shutdown"},
		LargeCommunities: []string{"65001:1:2"},
		MED:              &med,
		Prepend:          2,
	}
	// Desired before Start: applied by Start.
	if err := s.Announce(ctx, full); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err == nil {
		t.Error("second Start succeeded")
	}
	waitFor(t, "both sessions established", func() bool {
		for _, p := range s.Peers() {
			if p.State != "established" || p.Since.IsZero() {
				return false
			}
		}
		return true
	})

	t.Run("attributes", func(t *testing.T) {
		p := waitRoute(t, routerA, familyV4, v4)
		a := attrs(t, p)
		if got := a.communities; !slices.Equal(got, []uint32{65001<<16 | 100, CommunityNoExport, CommunityGracefulShutdown}) {
			t.Errorf("communities = %#x", got)
		}
		if got := a.large; !slices.Equal(got, []string{"65001:1:2"}) {
			t.Errorf("large communities = %v", got)
		}
		if a.med == nil || *a.med != 42 {
			t.Errorf("MED = %v, want 42", a.med)
		}
		// One prepend by eBGP export plus two extra.
		if got := a.asPath; !slices.Equal(got, []uint32{ourASN, ourASN, ourASN}) {
			t.Errorf("AS path = %v, want three times %d", got, ourASN)
		}
		if got := a.nextHop; got != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("next hop = %v, want our session address 127.0.0.1", got)
		}
		if got := s.Announced(); !slices.Equal(got, []netip.Prefix{v4}) {
			t.Errorf("Announced = %v", got)
		}
	})

	t.Run("v6 over v4 session", func(t *testing.T) {
		if err := s.Announce(ctx, Route{Prefix: v6}); err != nil {
			t.Fatal(err)
		}
		for _, r := range []struct {
			s       *server.BgpServer
			nextHop string
		}{{routerA, "::ffff:127.0.0.1"}, {routerB, "::ffff:127.0.0.3"}} {
			a := attrs(t, waitRoute(t, r.s, familyV6, v6))
			if a.nextHop != netip.MustParseAddr(r.nextHop) {
				t.Errorf("v6 next hop = %v, want %s", a.nextHop, r.nextHop)
			}
			if !slices.Equal(a.asPath, []uint32{ourASN}) {
				t.Errorf("v6 AS path = %v", a.asPath)
			}
		}
	})

	t.Run("re-announce with new attributes", func(t *testing.T) {
		med2 := uint32(7)
		r := Route{Prefix: v4, NextHop: netip.MustParseAddr("192.0.2.99"), MED: &med2}
		if err := s.Announce(ctx, r); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "new attributes at router A", func() bool {
			p, ok := ribPaths(t, routerA, api.TableType_GLOBAL, "", familyV4)[v4]
			if !ok {
				return false
			}
			a := attrs(t, p)
			return a.med != nil && *a.med == 7 && len(a.communities) == 0 && len(a.asPath) == 1 &&
				a.nextHop == netip.MustParseAddr("192.0.2.99")
		})
	})

	t.Run("received routes are not re-advertised", func(t *testing.T) {
		foreign := netip.MustParsePrefix("198.51.100.0/24")
		fp, err := toPath(&route{prefix: foreign, nextHop: netip.MustParseAddr("127.0.0.1")}, routerASN)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := routerA.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: fp}); err != nil {
			t.Fatal(err)
		}
		// We receive it...
		waitFor(t, "foreign route in our adj-RIB-in", func() bool {
			_, ok := ribPaths(t, s.bgp, api.TableType_ADJ_IN, "127.0.0.1", familyV4)[foreign]
			return ok
		})
		// ...and announce a new prefix after it: once that reached router B,
		// any re-advertisement of the foreign route would have too.
		marker := netip.MustParsePrefix("192.0.2.54/32")
		if err := s.Announce(ctx, Route{Prefix: marker}); err != nil {
			t.Fatal(err)
		}
		waitRoute(t, routerB, familyV4, marker)
		if _, ok := ribPaths(t, routerB, api.TableType_GLOBAL, "", familyV4)[foreign]; ok {
			t.Error("router B got the route learned from router A")
		}
		if _, ok := ribPaths(t, s.bgp, api.TableType_ADJ_OUT, "127.0.0.2", familyV4)[foreign]; ok {
			t.Error("foreign route in our adj-RIB-out to router B")
		}
		if _, ok := ribPaths(t, s.bgp, api.TableType_GLOBAL, "", familyV4)[foreign]; ok {
			t.Error("foreign route in our global RIB")
		}
		// Our own routes survive the reject-by-default import policy.
		for _, p := range []netip.Prefix{v4, marker} {
			if _, ok := ribPaths(t, s.bgp, api.TableType_GLOBAL, "", familyV4)[p]; !ok {
				t.Errorf("our %s missing from our global RIB", p)
			}
		}
		var def api.RouteAction
		err = s.bgp.ListPolicyAssignment(ctx, &api.ListPolicyAssignmentRequest{Name: globalTable, Direction: api.PolicyDirection_IMPORT},
			func(a *api.PolicyAssignment) { def = a.DefaultAction })
		if err != nil || def != api.RouteAction_REJECT {
			t.Errorf("import default action = %v (%v), want REJECT", def, err)
		}
		waitFor(t, "peer status counts", func() bool {
			for _, p := range s.Peers() {
				if p.Announced != 3 { // v4, marker, v6
					return false
				}
			}
			return true
		})
		if err := s.Withdraw(ctx, marker); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("withdraw", func(t *testing.T) {
		if err := s.Withdraw(ctx, v4); err != nil {
			t.Fatal(err)
		}
		waitGone(t, routerA, familyV4, v4)
		waitGone(t, routerB, familyV4, v4)
		if got := s.Announced(); !slices.Equal(got, []netip.Prefix{v6}) {
			t.Errorf("Announced = %v, want only %s", got, v6)
		}
		// Withdrawing again is a no-op.
		if err := s.Withdraw(ctx, v4); err != nil {
			t.Errorf("second Withdraw: %v", err)
		}
		if _, ok := ribPaths(t, routerA, api.TableType_GLOBAL, "", familyV6)[v6]; !ok {
			t.Error("withdrawing v4 removed v6 too")
		}
		if err := s.Announce(ctx, Route{Prefix: v4}); err != nil {
			t.Fatal(err)
		}
		waitRoute(t, routerA, familyV4, v4)
	})

	t.Run("close", func(t *testing.T) {
		if err := s.Close(ctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
		waitGone(t, routerA, familyV4, v4)
		waitGone(t, routerA, familyV6, v6)
		waitGone(t, routerB, familyV6, v6)
		if got := s.Announced(); len(got) != 0 {
			t.Errorf("Announced after Close = %v", got)
		}
		if err := s.Close(ctx); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

// TestRetry checks that a failed announce or withdraw leaves the applied
// state alone and is retried in the background.
func TestRetry(t *testing.T) {
	ctx := t.Context()
	cfg := validConfig()
	cfg.Neighbors = nil
	s, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	s.retryInterval = 10 * time.Millisecond
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	inRIB := func(p netip.Prefix) bool {
		_, ok := ribPaths(t, s.bgp, api.TableType_GLOBAL, "", familyV4)[p]
		return ok
	}
	p := netip.MustParsePrefix("192.0.2.53/32")

	s.callTimeout.Store(0) // every GoBGP call fails at once
	if err := s.Announce(ctx, Route{Prefix: p}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Announce = %v, want a deadline error", err)
	}
	if got := s.Announced(); len(got) != 0 || inRIB(p) {
		t.Fatalf("failed announce applied: Announced = %v, in RIB %v", got, inRIB(p))
	}
	s.callTimeout.Store(int64(callTimeout))
	waitFor(t, "retried announce", func() bool { return len(s.Announced()) == 1 && inRIB(p) })

	s.callTimeout.Store(0)
	if err := s.Withdraw(ctx, p); err == nil {
		t.Fatal("Withdraw succeeded with failing calls")
	}
	if got := s.Announced(); len(got) != 1 || !inRIB(p) {
		t.Fatalf("failed withdraw applied: Announced = %v, in RIB %v", got, inRIB(p))
	}
	s.callTimeout.Store(int64(callTimeout))
	waitFor(t, "retried withdraw", func() bool { return len(s.Announced()) == 0 && !inRIB(p) })
}

// TestSpeakerMD5 brings a session up with TCP MD5 on both sides, and checks
// that a wrong password keeps it down.
func TestSpeakerMD5(t *testing.T) {
	if !md5Supported() {
		t.Skip("TCP MD5 signatures not supported by this kernel")
	}
	ctx := t.Context()
	port := freePort(t, "127.0.0.1")
	router := newRouterServer(t, routerASN, "192.0.2.254", "127.0.0.1", port,
		routerPeer("127.0.0.1", ourASN, "right"), routerPeer("127.0.0.4", ourASN, "right"))

	good, err := New(Config{ASN: ourASN, RouterID: netip.MustParseAddr("192.0.2.1"), ListenPort: -1,
		Neighbors: []Neighbor{{Address: netip.MustParseAddr("127.0.0.1"), ASN: routerASN, Port: uint16(port), Password: "right"}}},
		testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { good.Close(context.Background()) })
	bad, err := New(Config{ASN: ourASN, RouterID: netip.MustParseAddr("192.0.2.4"), ListenPort: -1,
		Neighbors: []Neighbor{{Address: netip.MustParseAddr("127.0.0.1"), ASN: routerASN, Port: uint16(port), Password: "wrong",
			LocalAddress: netip.MustParseAddr("127.0.0.4")}}},
		testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bad.Close(context.Background()) })
	for _, s := range []*Speaker{bad, good} {
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "MD5 session established", func() bool { return good.Peers()[0].State == "established" })
	if err := good.Announce(ctx, Route{Prefix: netip.MustParsePrefix("192.0.2.53/32")}); err != nil {
		t.Fatal(err)
	}
	waitRoute(t, router, familyV4, netip.MustParsePrefix("192.0.2.53/32"))
	// The router would long have accepted the bad speaker's connection
	// (both dial at once) if the password were not checked.
	var st api.PeerState_SessionState
	err = router.ListPeer(ctx, &api.ListPeerRequest{Address: "127.0.0.4"}, func(p *api.Peer) { st = p.GetState().GetSessionState() })
	if err != nil {
		t.Fatal(err)
	}
	if st == api.PeerState_ESTABLISHED || bad.Peers()[0].State == "established" {
		t.Error("session with the wrong password established")
	}
}

// md5Supported reports whether the kernel accepts TCP_MD5SIG on a socket.
func md5Supported() bool {
	return tryMD5() == nil
}

// --- helpers ---

// testLogger logs to t until the test ends; GoBGP goroutines may outlive
// the test and must not call t.Log then.
func testLogger(t *testing.T) *zap.Logger {
	var done atomic.Bool
	t.Cleanup(func() { done.Store(true) })
	w := zapcore.AddSync(writerFunc(func(p []byte) (int, error) {
		if !done.Load() {
			t.Log(strings.TrimRight(string(p), "\n"))
		}
		return len(p), nil
	}))
	enc := zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	return zap.New(zapcore.NewCore(enc, w, zapcore.InfoLevel))
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// freePort returns a TCP port that was free on host a moment ago (GoBGP
// opens its own listener, so it cannot be handed one).
func freePort(t *testing.T, host string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// routerPeer is a router's passive neighbor entry for our speaker.
func routerPeer(addr string, asn uint32, password string) *api.Peer {
	return &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: addr, PeerAsn: asn, AuthPassword: password},
		Transport: &api.Transport{PassiveMode: true},
		Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: 9, KeepaliveInterval: 3}},
		AfiSafis: []*api.AfiSafi{
			{Config: &api.AfiSafiConfig{Family: familyV4, Enabled: true}},
			{Config: &api.AfiSafiConfig{Family: familyV6, Enabled: true}},
		},
	}
}

// newRouterServer starts a GoBGP server playing a router, listening on
// addr:port (no listener if port is 0), stopped when the test ends.
func newRouterServer(t *testing.T, asn uint32, id, addr string, port int, peers ...*api.Peer) *server.BgpServer {
	t.Helper()
	s := server.NewBgpServer(server.LoggerOption(newGoBGPLogger(zap.NewNop())))
	go s.Serve()
	g := &api.Global{Asn: asn, RouterId: id, ListenPort: -1}
	if port != 0 {
		g.ListenPort = int32(port)
		g.ListenAddresses = []string{addr}
	}
	if err := s.StartBgp(t.Context(), &api.StartBgpRequest{Global: g}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.StopBgp(context.Background(), &api.StopBgpRequest{}) })
	for _, p := range peers {
		if err := s.AddPeer(t.Context(), &api.AddPeerRequest{Peer: p}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// ribPaths returns the best path per prefix in a table of s.
func ribPaths(t *testing.T, s *server.BgpServer, tt api.TableType, name string, fam *api.Family) map[netip.Prefix]*api.Path {
	t.Helper()
	out := make(map[netip.Prefix]*api.Path)
	err := s.ListPath(context.Background(), &api.ListPathRequest{TableType: tt, Name: name, Family: fam}, func(d *api.Destination) {
		p, err := netip.ParsePrefix(d.Prefix)
		if err != nil || len(d.Paths) == 0 {
			return
		}
		out[p] = d.Paths[0]
		for _, x := range d.Paths {
			if x.Best {
				out[p] = x
			}
		}
	})
	if err != nil {
		t.Fatalf("list %v %s: %v", tt, name, err)
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not an outcome
	}
}

func waitRoute(t *testing.T, s *server.BgpServer, fam *api.Family, p netip.Prefix) *api.Path {
	t.Helper()
	var path *api.Path
	waitFor(t, fmt.Sprintf("%s in the router's RIB", p), func() bool {
		var ok bool
		path, ok = ribPaths(t, s, api.TableType_GLOBAL, "", fam)[p]
		return ok
	})
	return path
}

func waitGone(t *testing.T, s *server.BgpServer, fam *api.Family, p netip.Prefix) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s gone from the router's RIB", p), func() bool {
		_, ok := ribPaths(t, s, api.TableType_GLOBAL, "", fam)[p]
		return !ok
	})
}

type pathAttrs struct {
	nextHop     netip.Addr
	asPath      []uint32
	communities []uint32
	large       []string
	med         *uint32
}

func attrs(t *testing.T, p *api.Path) pathAttrs {
	t.Helper()
	native, err := apiutil.GetNativePathAttributes(p)
	if err != nil {
		t.Fatal(err)
	}
	var a pathAttrs
	for _, x := range native {
		switch v := x.(type) {
		case *bgp.PathAttributeNextHop:
			a.nextHop, _ = netip.AddrFromSlice(v.Value)
			a.nextHop = a.nextHop.Unmap()
		case *bgp.PathAttributeMpReachNLRI:
			a.nextHop, _ = netip.AddrFromSlice(v.Nexthop.To16())
			if p.Family.Afi == api.Family_AFI_IP {
				a.nextHop = a.nextHop.Unmap()
			}
		case *bgp.PathAttributeAsPath:
			for _, seg := range v.Value {
				a.asPath = append(a.asPath, seg.GetAS()...)
			}
		case *bgp.PathAttributeCommunities:
			a.communities = v.Value
		case *bgp.PathAttributeLargeCommunities:
			for _, c := range v.Values {
				a.large = append(a.large, c.String())
			}
		case *bgp.PathAttributeMultiExitDisc:
			m := v.Value
			a.med = &m
		}
	}
	return a
}
