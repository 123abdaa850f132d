// Package announce owns the embedded BGP speaker (GoBGP v3): the BGP
// sessions with the routers and the announcement and withdrawal of the
// service prefixes.
//
// It takes desired state (a prefix up with its attributes, or down) and
// knows nothing of DNS or health checks. GoBGP stays behind this package's
// API: no GoBGP type appears in an exported signature, so a move to GoBGP v4
// touches only this package.
//
// Only prefixes given to Announce are ever sent to peers. Routes received
// from peers are kept out of the RIB by the import policy, and the export
// policy lets only locally originated routes out, so nothing learned is
// re-advertised (GoBGP has no FIB: nothing is installed either). There is
// no graceful restart: when the process dies, its sessions and routes go
// with it.
//
// Call order: New, Start, then Announce and Withdraw as often as needed
// (also before Start: the desired state is applied when Start runs), then
// Close. Every method is safe from any goroutine.
package announce

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"go.uber.org/zap"
)

// ErrClosed is returned by Start, Announce and Withdraw after Close.
var ErrClosed = errors.New("announce: speaker closed")

const (
	// callTimeout bounds every call into GoBGP: they ignore their context
	// and block if GoBGP's main loop is stuck.
	callTimeout = 5 * time.Second
	// retryInterval is how often a failed announce or withdraw is retried.
	retryInterval = time.Second
	// connectRetry is the time between connection attempts to a peer
	// (GoBGP's default is 120s).
	connectRetry = 5 * time.Second
)

// PeerStatus is a snapshot of one BGP session.
type PeerStatus struct {
	Address netip.Addr
	ASN     uint32
	// State is the session state in lower case: "idle", "connect",
	// "active", "opensent", "openconfirm" or "established".
	State string
	// Since is when State was entered (zero before Start).
	Since time.Time
	// Announced is the number of prefixes GoBGP has sent on the session
	// (its adj-RIB-out), 0 when unknown.
	Announced int
}

type peerState struct {
	asn   uint32
	state string
	since time.Time
}

// Speaker is an embedded BGP speaker. Create it with New.
type Speaker struct {
	cfg Config
	log *zap.Logger

	callTimeout   atomic.Int64 // a time.Duration; settable by tests
	retryInterval time.Duration

	// opMu serialises every change made to GoBGP and guards bgp and stopped.
	opMu    sync.Mutex
	bgp     *server.BgpServer
	stopped bool

	// mu guards the fields below; never held across a GoBGP call.
	mu      sync.Mutex
	desired map[netip.Prefix]route
	applied map[netip.Prefix]route
	peers   map[netip.Addr]*peerState
	order   []netip.Addr // neighbors in config order
	started bool
	closed  bool

	stopWatch context.CancelFunc
	done      chan struct{}
	wg        sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// New validates cfg and returns a Speaker that has started nothing. Every
// problem in cfg is reported, joined.
func New(cfg Config, log *zap.Logger) (*Speaker, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	cfg.Neighbors = slices.Clone(cfg.Neighbors)
	s := &Speaker{
		cfg:           cfg,
		log:           log.Named("announce"),
		retryInterval: retryInterval,
		desired:       make(map[netip.Prefix]route),
		applied:       make(map[netip.Prefix]route),
		peers:         make(map[netip.Addr]*peerState),
		done:          make(chan struct{}),
	}
	s.callTimeout.Store(int64(callTimeout))
	for i := range s.cfg.Neighbors {
		n := &s.cfg.Neighbors[i]
		n.Address = n.Address.Unmap()
		n.LocalAddress = n.LocalAddress.Unmap()
		s.peers[n.Address] = &peerState{asn: n.ASN, state: "idle"}
		s.order = append(s.order, n.Address)
	}
	return s, nil
}

// Start starts GoBGP, installs the import and export policies, adds the
// neighbors and applies the desired state. It returns once BGP runs; the
// sessions come up in the background (see Peers). Start may be called once.
// GoBGP cannot be restarted in a process: after an error from Start, the
// Speaker is unusable.
func (s *Speaker) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.started {
		s.mu.Unlock()
		return errors.New("announce: already started")
	}
	s.started = true
	s.mu.Unlock()

	s.opMu.Lock()
	defer s.opMu.Unlock()

	bgp := server.NewBgpServer(server.LoggerOption(newGoBGPLogger(s.log.Named("gobgp"))))
	go bgp.Serve() // v3: never returns; the server lives as long as the process

	err := s.call(ctx, "start bgp", func(ctx context.Context) error {
		return bgp.StartBgp(ctx, startRequest(&s.cfg))
	})
	if err != nil {
		return err
	}
	fail := func(err error) error {
		// Best effort: the caller is about to give up on BGP.
		_ = s.call(context.WithoutCancel(ctx), "stop bgp", func(ctx context.Context) error {
			return bgp.StopBgp(ctx, &api.StopBgpRequest{})
		})
		return err
	}
	for _, p := range policies() {
		err := s.call(ctx, "add policy", func(ctx context.Context) error {
			return bgp.AddPolicy(ctx, &api.AddPolicyRequest{Policy: p, ReferExistingStatements: false})
		})
		if err != nil {
			return fail(err)
		}
	}
	for _, a := range policyAssignments() {
		err := s.call(ctx, "set policy assignment", func(ctx context.Context) error {
			return bgp.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: a})
		})
		if err != nil {
			return fail(err)
		}
	}

	wctx, cancel := context.WithCancel(context.Background())
	err = s.call(ctx, "watch peers", func(context.Context) error {
		return bgp.WatchEvent(wctx, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, s.onEvent)
	})
	if err != nil {
		cancel()
		return fail(err)
	}

	now := time.Now()
	for i := range s.cfg.Neighbors {
		n := &s.cfg.Neighbors[i]
		s.mu.Lock()
		s.peers[n.Address].since = now
		s.mu.Unlock()
		err := s.call(ctx, "add peer "+n.Address.String(), func(ctx context.Context) error {
			return bgp.AddPeer(ctx, &api.AddPeerRequest{Peer: peerConfig(&s.cfg, n)})
		})
		if err != nil {
			cancel()
			return fail(err)
		}
	}
	s.bgp = bgp
	s.stopWatch = cancel
	s.log.Info("bgp started",
		zap.Uint32("asn", s.cfg.ASN),
		zap.Stringer("router_id", s.cfg.RouterID),
		zap.Int32("listen_port", s.cfg.ListenPort),
		zap.Int("neighbors", len(s.cfg.Neighbors)))

	if err := s.reconcileLocked(ctx, nil); err != nil {
		s.log.Warn("bgp apply failed, will retry", zap.Error(err))
	}
	s.wg.Add(1)
	go s.retryLoop()
	return nil
}

// Announce makes r part of the desired state: the prefix is announced, or
// re-announced if its attributes changed. It returns once GoBGP took the
// route (or immediately before Start), not when peers received it. On error
// the route stays desired and is retried in the background.
func (s *Speaker) Announce(ctx context.Context, r Route) error {
	rt, err := parseRoute(r)
	if err != nil {
		return fmt.Errorf("announce %s: %w", r.Prefix, err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.desired[rt.prefix] = rt
	s.mu.Unlock()
	return s.reconcile(ctx, &rt.prefix)
}

// Withdraw removes p from the desired state and withdraws it from every
// peer. Withdrawing a prefix that is not announced is not an error.
func (s *Speaker) Withdraw(ctx context.Context, p netip.Prefix) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	delete(s.desired, p)
	s.mu.Unlock()
	return s.reconcile(ctx, &p)
}

// Announced returns the prefixes currently given to GoBGP (applied, not
// merely desired), sorted.
func (s *Speaker) Announced() []netip.Prefix {
	s.mu.Lock()
	ps := slices.Collect(maps.Keys(s.applied))
	s.mu.Unlock()
	slices.SortFunc(ps, comparePrefix)
	return ps
}

// Peers returns the state of every configured session, in config order.
func (s *Speaker) Peers() []PeerStatus {
	s.mu.Lock()
	out := make([]PeerStatus, 0, len(s.order))
	for _, a := range s.order {
		p := s.peers[a]
		out = append(out, PeerStatus{Address: a, ASN: p.asn, State: p.state, Since: p.since})
	}
	s.mu.Unlock()

	s.opMu.Lock()
	bgp := s.bgp
	if s.stopped {
		bgp = nil
	}
	s.opMu.Unlock()
	if bgp == nil {
		return out
	}
	counts := make(map[netip.Addr]int)
	err := s.call(context.Background(), "list peers", func(ctx context.Context) error {
		return bgp.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
			a, err := netip.ParseAddr(p.GetConf().GetNeighborAddress())
			if err != nil {
				return
			}
			n := 0
			for _, af := range p.GetAfiSafis() {
				n += int(af.GetState().GetAdvertised())
			}
			counts[a.Unmap()] = n
		})
	})
	if err != nil {
		return out
	}
	for i := range out {
		out[i].Announced = counts[out[i].Address]
	}
	return out
}

// Close withdraws every prefix, then stops BGP, which closes the sessions
// with a Cease notification. ctx bounds the whole operation. Close is safe
// to call twice; the second call returns nil. Note that the withdrawals may
// not reach a peer before its session closes: to drain gracefully, call
// Withdraw for each prefix and wait before Close.
func (s *Speaker) Close(ctx context.Context) error {
	first := false
	s.closeOnce.Do(func() {
		first = true
		s.mu.Lock()
		s.closed = true
		clear(s.desired)
		s.mu.Unlock()
		close(s.done)
		s.wg.Wait()

		s.opMu.Lock()
		defer s.opMu.Unlock()
		if s.bgp == nil || s.stopped {
			return
		}
		var errs []error
		if err := s.reconcileLocked(ctx, nil); err != nil {
			errs = append(errs, err)
		}
		bgp := s.bgp
		if err := s.call(ctx, "stop bgp", func(ctx context.Context) error {
			return bgp.StopBgp(ctx, &api.StopBgpRequest{})
		}); err != nil {
			errs = append(errs, err)
		}
		s.stopWatch()
		s.stopped = true
		s.mu.Lock()
		clear(s.applied)
		for _, p := range s.peers {
			p.state = "idle"
			p.since = time.Now()
		}
		s.mu.Unlock()
		s.log.Info("bgp stopped")
		s.closeErr = errors.Join(errs...)
	})
	if !first {
		return nil
	}
	return s.closeErr
}

// retryLoop re-applies the desired state until Close, so that a failed
// announce or withdraw does not stay failed.
func (s *Speaker) retryLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.retryInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			if !s.dirty() {
				continue
			}
			if err := s.reconcile(context.Background(), nil); err != nil {
				s.log.Warn("bgp apply failed, will retry", zap.Error(err))
			}
		}
	}
}

// dirty reports whether desired and applied state differ.
func (s *Speaker) dirty() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.desired) != len(s.applied) {
		return true
	}
	for p, d := range s.desired {
		a, ok := s.applied[p]
		if !ok || !a.equal(&d) {
			return true
		}
	}
	return false
}

// reconcile applies the desired state of only (all prefixes if nil).
func (s *Speaker) reconcile(ctx context.Context, only *netip.Prefix) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	return s.reconcileLocked(ctx, only)
}

// reconcileLocked makes GoBGP's routes match the desired state, acting only
// where desired and applied differ. A failed operation leaves applied alone,
// so the retry loop tries again. Callers hold opMu.
func (s *Speaker) reconcileLocked(ctx context.Context, only *netip.Prefix) error {
	if s.bgp == nil || s.stopped {
		return nil // before Start: Start applies the desired state
	}
	type op struct {
		prefix netip.Prefix
		add    *route
	}
	var ops []op
	s.mu.Lock()
	for p, d := range s.desired {
		if only != nil && p != *only {
			continue
		}
		if a, ok := s.applied[p]; !ok || !a.equal(&d) {
			ops = append(ops, op{prefix: p, add: &d})
		}
	}
	for p := range s.applied {
		if only != nil && p != *only {
			continue
		}
		if _, ok := s.desired[p]; !ok {
			ops = append(ops, op{prefix: p})
		}
	}
	s.mu.Unlock()
	slices.SortFunc(ops, func(a, b op) int { return comparePrefix(a.prefix, b.prefix) })

	var errs []error
	for _, o := range ops {
		if o.add != nil {
			path, err := toPath(o.add, s.cfg.ASN)
			if err == nil {
				err = s.call(ctx, "add path", func(ctx context.Context) error {
					_, err := s.bgp.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: path})
					return err
				})
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("announce %s: %w", o.prefix, err))
				continue
			}
			s.mu.Lock()
			s.applied[o.prefix] = *o.add
			s.mu.Unlock()
			s.log.Info("prefix announced", zap.Stringer("prefix", o.prefix))
			continue
		}
		s.mu.Lock()
		a := s.applied[o.prefix]
		s.mu.Unlock()
		path, err := toPath(&a, s.cfg.ASN)
		if err == nil {
			err = s.call(ctx, "delete path", func(ctx context.Context) error {
				return s.bgp.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Path: path})
			})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("withdraw %s: %w", o.prefix, err))
			continue
		}
		s.mu.Lock()
		delete(s.applied, o.prefix)
		s.mu.Unlock()
		s.log.Info("prefix withdrawn", zap.Stringer("prefix", o.prefix))
	}
	return errors.Join(errs...)
}

// call runs f, a GoBGP call, bounded by ctx and the call timeout. GoBGP
// ignores contexts and blocks while its main loop is busy: on timeout f is
// left running in its goroutine and its outcome is unknown.
func (s *Speaker) call(ctx context.Context, what string, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(s.callTimeout.Load()))
	defer cancel()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
}

// onEvent records and logs peer state changes reported by GoBGP.
func (s *Speaker) onEvent(ev *api.WatchEventResponse) {
	pe := ev.GetPeer()
	if pe == nil {
		return
	}
	if t := pe.GetType(); t != api.WatchEventResponse_PeerEvent_STATE && t != api.WatchEventResponse_PeerEvent_INIT {
		return
	}
	st := pe.GetPeer().GetState()
	addr, err := netip.ParseAddr(st.GetNeighborAddress())
	if err != nil {
		return
	}
	addr = addr.Unmap()
	state := sessionState(st.GetSessionState())
	s.mu.Lock()
	p := s.peers[addr]
	if p == nil || p.state == state {
		s.mu.Unlock()
		return
	}
	old := p.state
	p.state, p.since = state, time.Now()
	s.mu.Unlock()

	lvl := zap.DebugLevel
	if state == "established" || old == "established" {
		lvl = zap.InfoLevel
	}
	if ce := s.log.Check(lvl, "bgp peer state changed"); ce != nil {
		ce.Write(zap.Stringer("peer", addr), zap.String("state", state), zap.String("previous", old))
	}
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
