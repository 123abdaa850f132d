package announce

// Everything that builds GoBGP API values lives here.

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Policy names. The global RIB's policy assignment is named "global".
const (
	globalTable  = "global"
	importPolicy = "anyns-import"
	exportPolicy = "anyns-export"
)

var (
	familyV4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	familyV6 = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
)

func startRequest(c *Config) *api.StartBgpRequest {
	return &api.StartBgpRequest{Global: &api.Global{
		Asn:        c.ASN,
		RouterId:   c.RouterID.Unmap().String(),
		ListenPort: c.ListenPort,
	}}
}

// policies returns the import and export policies. Both accept only
// locally originated routes (route-type local); their assignments reject
// everything else by default.
//
// In GoBGP v3 the global import policy also applies to paths added with
// AddPath, so a plain "reject all" import policy would withdraw our own
// routes: the explicit accept of local routes is what keeps them.
func policies() []*api.Policy {
	local := func(name string) *api.Policy {
		return &api.Policy{
			Name: name,
			Statements: []*api.Statement{{
				Name:       name + "-local",
				Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
				Actions:    &api.Actions{RouteAction: api.RouteAction_ACCEPT},
			}},
		}
	}
	return []*api.Policy{local(importPolicy), local(exportPolicy)}
}

func policyAssignments() []*api.PolicyAssignment {
	return []*api.PolicyAssignment{
		{
			Name:          globalTable,
			Direction:     api.PolicyDirection_IMPORT,
			Policies:      []*api.Policy{{Name: importPolicy}},
			DefaultAction: api.RouteAction_REJECT,
		},
		{
			Name:          globalTable,
			Direction:     api.PolicyDirection_EXPORT,
			Policies:      []*api.Policy{{Name: exportPolicy}},
			DefaultAction: api.RouteAction_REJECT,
		},
	}
}

func peerConfig(c *Config, n *Neighbor) *api.Peer {
	hold := n.HoldTime
	if hold == 0 {
		hold = DefaultHoldTime
	}
	keep := n.Keepalive
	if keep == 0 {
		keep = hold / 3
	}
	p := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: n.Address.String(),
			PeerAsn:         n.ASN,
			LocalAsn:        c.ASN,
			AuthPassword:    n.Password,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:          uint64(hold.Seconds()),
			KeepaliveInterval: uint64(keep.Seconds()),
			ConnectRetry:      uint64(connectRetry.Seconds()),
		}},
		Transport: &api.Transport{
			RemotePort:  uint32(n.Port),
			PassiveMode: n.Passive,
		},
		// No GracefulRestart: after a crash the routes must go with the
		// session.
		AfiSafis: []*api.AfiSafi{
			{Config: &api.AfiSafiConfig{Family: familyV4, Enabled: true}},
			{Config: &api.AfiSafiConfig{Family: familyV6, Enabled: true}},
		},
	}
	if n.LocalAddress.IsValid() {
		p.Transport.LocalAddress = n.LocalAddress.String()
	}
	if n.Multihop > 0 {
		p.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(n.Multihop)}
	}
	return p
}

// toPath builds the GoBGP path for r. A zero next hop is sent as 0.0.0.0 or
// ::, which GoBGP replaces with the session's local address (for an IPv6
// prefix on an IPv4 session: the IPv4-mapped form of it).
func toPath(r *route, asn uint32) (*api.Path, error) {
	addr := r.prefix.Addr()
	family, unspec := familyV4, netip.IPv4Unspecified()
	if addr.Is6() {
		family, unspec = familyV6, netip.IPv6Unspecified()
	}
	nlri, err := anypb.New(&api.IPAddressPrefix{Prefix: addr.String(), PrefixLen: uint32(r.prefix.Bits())})
	if err != nil {
		return nil, err
	}
	nh := r.nextHop
	if !nh.IsValid() {
		nh = unspec
	}
	attrs := []proto.Message{&api.OriginAttribute{Origin: 0}} // IGP
	if r.prepend > 0 {
		attrs = append(attrs, &api.AsPathAttribute{Segments: []*api.AsSegment{{
			Type:    api.AsSegment_AS_SEQUENCE,
			Numbers: slices.Repeat([]uint32{asn}, r.prepend),
		}}})
	}
	if addr.Is4() && nh.Is4() {
		attrs = append(attrs, &api.NextHopAttribute{NextHop: nh.String()})
	} else {
		attrs = append(attrs, &api.MpReachNLRIAttribute{Family: family, NextHops: []string{nh.String()}, Nlris: []*anypb.Any{nlri}})
	}
	if r.med != nil {
		attrs = append(attrs, &api.MultiExitDiscAttribute{Med: *r.med})
	}
	if len(r.communities) > 0 {
		attrs = append(attrs, &api.CommunitiesAttribute{Communities: slices.Clone(r.communities)})
	}
	if len(r.large) > 0 {
		lc := make([]*api.LargeCommunity, 0, len(r.large))
		for _, c := range r.large {
			lc = append(lc, &api.LargeCommunity{GlobalAdmin: c.global, LocalData1: c.local1, LocalData2: c.local2})
		}
		attrs = append(attrs, &api.LargeCommunitiesAttribute{Communities: lc})
	}
	pattrs := make([]*anypb.Any, 0, len(attrs))
	for _, a := range attrs {
		x, err := anypb.New(a)
		if err != nil {
			return nil, fmt.Errorf("marshal %T: %w", a, err)
		}
		pattrs = append(pattrs, x)
	}
	return &api.Path{Family: family, Nlri: nlri, Pattrs: pattrs}, nil
}

// sessionState names a BGP FSM state in lower case.
func sessionState(s api.PeerState_SessionState) string {
	switch s {
	case api.PeerState_IDLE:
		return "idle"
	case api.PeerState_CONNECT:
		return "connect"
	case api.PeerState_ACTIVE:
		return "active"
	case api.PeerState_OPENSENT:
		return "opensent"
	case api.PeerState_OPENCONFIRM:
		return "openconfirm"
	case api.PeerState_ESTABLISHED:
		return "established"
	}
	return "unknown"
}

// gobgpLogger adapts zap to GoBGP's log.Logger. GoBGP's Fields become zap
// fields with lower-case keys. Fatal stays fatal and Panic panics, as GoBGP
// expects.
type gobgpLogger struct {
	z     *zap.Logger
	level atomic.Uint32 // a gobgplog.LogLevel
}

func newGoBGPLogger(z *zap.Logger) *gobgpLogger {
	l := &gobgpLogger{z: z}
	lvl := gobgplog.ErrorLevel
	switch {
	case z.Core().Enabled(zapcore.DebugLevel):
		lvl = gobgplog.DebugLevel
	case z.Core().Enabled(zapcore.InfoLevel):
		lvl = gobgplog.InfoLevel
	case z.Core().Enabled(zapcore.WarnLevel):
		lvl = gobgplog.WarnLevel
	}
	l.level.Store(uint32(lvl))
	return l
}

func (l *gobgpLogger) fields(f gobgplog.Fields) []zap.Field {
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]zap.Field, 0, len(keys))
	for _, k := range keys {
		name := strings.ToLower(k)
		if name == "key" && f["Topic"] == "Peer" {
			name = "peer" // the stable key for a peer address
		}
		out = append(out, zap.Any(name, f[k]))
	}
	return out
}

func (l *gobgpLogger) enabled(lvl gobgplog.LogLevel) bool {
	return lvl <= gobgplog.LogLevel(l.level.Load())
}

func (l *gobgpLogger) Panic(msg string, f gobgplog.Fields) { l.z.Panic(msg, l.fields(f)...) }
func (l *gobgpLogger) Fatal(msg string, f gobgplog.Fields) { l.z.Fatal(msg, l.fields(f)...) }

func (l *gobgpLogger) Error(msg string, f gobgplog.Fields) {
	if l.enabled(gobgplog.ErrorLevel) {
		l.z.Error(msg, l.fields(f)...)
	}
}

func (l *gobgpLogger) Warn(msg string, f gobgplog.Fields) {
	if l.enabled(gobgplog.WarnLevel) {
		l.z.Warn(msg, l.fields(f)...)
	}
}

func (l *gobgpLogger) Info(msg string, f gobgplog.Fields) {
	if l.enabled(gobgplog.InfoLevel) {
		l.z.Info(msg, l.fields(f)...)
	}
}

func (l *gobgpLogger) Debug(msg string, f gobgplog.Fields) {
	if l.enabled(gobgplog.DebugLevel) {
		l.z.Debug(msg, l.fields(f)...)
	}
}

func (l *gobgpLogger) SetLevel(lvl gobgplog.LogLevel) { l.level.Store(uint32(lvl)) }
func (l *gobgpLogger) GetLevel() gobgplog.LogLevel    { return gobgplog.LogLevel(l.level.Load()) }
