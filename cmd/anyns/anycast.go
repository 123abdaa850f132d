package main

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/anyns/anyns/announce"
	"github.com/anyns/anyns/health"
)

// bgpCallTimeout bounds each announce or withdraw made by the controller.
const bgpCallTimeout = 5 * time.Second

// controller joins health verdicts, the operator's drain switch and the
// shutdown sequence into the desired state of each prefix, and hands it to
// the BGP speaker. A prefix is announced while its verdict is Up or
// Degraded, the instance is not drained and not stopping.
type controller struct {
	log     *zap.Logger
	speaker *announce.Speaker
	drain   time.Duration
	degPre  int

	mu          sync.Mutex
	prefixes    []*prefixState
	drained     bool
	stopping    bool // graceful-shutdown community on every announcement
	final       bool // withdrawn for good: the process is stopping
	transitions map[transitionKey]uint64
	// verdicts, once set, gives the health checker's current verdicts:
	// status shows their reason and time even when the state has not
	// changed (a prefix down since start, a hold-down).
	verdicts func() []health.Verdict
}

// transitionKey counts health state changes for metrics; reason is a
// bounded class (reasonClass), not the free text.
type transitionKey struct{ prefix, state, reason string }

// reasonClass maps a health reason to a small fixed set, for metric labels.
func reasonClass(reason string) string {
	switch {
	case reason == "healthy", reason == "hold-down", reason == "busy", reason == "starting":
		return reason
	case strings.HasPrefix(reason, "some listeners failing"):
		return "partial"
	case strings.Contains(reason, "command"):
		return "command"
	case strings.Contains(reason, "zone"), strings.Contains(reason, "no names"):
		return "zones"
	default:
		return "listener"
	}
}

// prefixState is one service prefix: its route, verdict and what we last
// asked the speaker for.
type prefixState struct {
	route     announce.Route
	verdict   health.Verdict
	announced bool
}

func newController(a *anycast, sp *announce.Speaker, log *zap.Logger) *controller {
	c := &controller{log: log, speaker: sp, drain: a.drain, degPre: a.degPre, transitions: make(map[transitionKey]uint64)}
	for _, r := range a.routes {
		c.prefixes = append(c.prefixes, &prefixState{route: r, verdict: health.Verdict{Prefix: r.Prefix, State: health.Down, Reason: "starting", Since: time.Now()}})
	}
	return c
}

// notify is the health checker's callback.
func (c *controller) notify(v health.Verdict) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.prefixes {
		if p.route.Prefix == v.Prefix {
			if v.State != p.verdict.State {
				c.transitions[transitionKey{v.Prefix.String(), v.State.String(), reasonClass(v.Reason)}]++
			}
			p.verdict = v
			c.applyLocked(p, "health: "+v.Reason)
		}
	}
}

// setDrained withdraws every prefix and keeps it withdrawn (true), or
// resumes following health (false). It is refused once the process is
// stopping: an undrain must not re-announce a prefix about to go.
func (c *controller) setDrained(d bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping {
		return errors.New("anyns is stopping: the prefixes stay withdrawn")
	}
	if c.drained == d {
		return nil
	}
	c.drained = d
	reason := "undrain"
	if d {
		reason = "drain"
	}
	c.log.Info("drain state changed", zap.Bool("drained", d))
	for _, p := range c.prefixes {
		c.applyLocked(p, reason)
	}
	return nil
}

// applyLocked brings one prefix's announcement in line with its desired
// state. Errors are logged; the speaker retries on its own.
func (c *controller) applyLocked(p *prefixState, reason string) {
	want := !c.drained && !c.final && (p.verdict.State == health.Up || p.verdict.State == health.Degraded)
	route := p.route
	if p.verdict.State == health.Degraded {
		route.Prepend += c.degPre
	}
	if c.stopping {
		route.Communities = append(slices.Clip(route.Communities), "graceful-shutdown")
	}
	ctx, cancel := context.WithTimeout(context.Background(), bgpCallTimeout)
	defer cancel()
	var err error
	if want {
		// Config validation runs the same check, so this only guards
		// against a route the speaker would drop without retrying.
		if verr := route.Validate(); verr != nil {
			c.log.Error("route not announced: invalid", zap.String("prefix", route.Prefix.String()), zap.Error(verr))
			return
		}
		err = c.speaker.Announce(ctx, route)
	} else if p.announced {
		err = c.speaker.Withdraw(ctx, route.Prefix)
	}
	if want != p.announced {
		state := "withdrawn"
		if want {
			state = "announced"
		}
		c.log.Info("prefix state changed", zap.String("prefix", route.Prefix.String()), zap.String("state", state), zap.String("reason", reason))
	}
	if err != nil {
		c.log.Warn("bgp update failed, will retry", zap.String("prefix", route.Prefix.String()), zap.Error(err))
	}
	p.announced = want
}

// stop runs the graceful part of the stop order: re-announce what is
// announced with the graceful-shutdown community (RFC 8326), withdraw every
// prefix, then wait for the drain time while the listeners keep serving.
func (c *controller) stop(ctx context.Context) {
	c.mu.Lock()
	c.stopping = true
	any := false
	for _, p := range c.prefixes {
		if p.announced {
			any = true
			c.applyLocked(p, "stopping: graceful-shutdown")
		}
	}
	c.mu.Unlock()
	if any {
		// Let routers lower the route's preference before it goes.
		sleepCtx(ctx, min(c.drain/5, time.Second))
	}
	c.mu.Lock()
	c.final = true
	for _, p := range c.prefixes {
		c.applyLocked(p, "stopping")
	}
	c.mu.Unlock()
	if any {
		c.log.Info("withdrawn, draining", zap.Duration("drain", c.drain))
		sleepCtx(ctx, c.drain)
	}
}

// sleepCtx waits for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// transitionCounts returns a copy of the health transition counters.
func (c *controller) transitionCounts() map[transitionKey]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[transitionKey]uint64, len(c.transitions))
	for k, n := range c.transitions {
		out[k] = n
	}
	return out
}

// prefixStatus is one prefix in `anyns ctl status`.
type prefixStatus struct {
	Prefix    string    `json:"prefix"`
	Health    string    `json:"health"`
	Reason    string    `json:"reason"`
	Since     time.Time `json:"since"`
	Announced bool      `json:"announced"`
}

func (c *controller) status() (ps []prefixStatus, drained bool) {
	c.mu.Lock()
	verdicts := c.verdicts
	c.mu.Unlock()
	current := make(map[netip.Prefix]health.Verdict)
	if verdicts != nil {
		for _, v := range verdicts() {
			current[v.Prefix] = v
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.prefixes {
		v := p.verdict
		if cv, ok := current[p.route.Prefix]; ok {
			v = cv
		}
		ps = append(ps, prefixStatus{
			Prefix: p.route.Prefix.String(), Health: v.State.String(), Reason: v.Reason,
			Since: v.Since, Announced: p.announced,
		})
	}
	return ps, c.drained || c.final
}

// healthTargets pairs each route with the listeners that back it: the
// configured checks, else every bound listener inside the prefix (or a
// wildcard listener of its family, probed at a host prefix's address).
// bound maps each configured listen address to the address it got.
func healthTargets(a *anycast, bound map[netip.AddrPort]netip.AddrPort, degradedPolicy bool) []health.Target {
	var ts []health.Target
	for i, r := range a.routes {
		var ls []netip.AddrPort
		if len(a.checks[i]) > 0 {
			for _, c := range a.checks[i] {
				ls = append(ls, bound[c])
			}
		} else {
			for _, b := range bound {
				switch {
				case r.Prefix.Contains(b.Addr()):
					ls = append(ls, b)
				case b.Addr().IsUnspecified() && r.Prefix.IsSingleIP() && b.Addr().Is4() == r.Prefix.Addr().Is4():
					ls = append(ls, netip.AddrPortFrom(r.Prefix.Addr(), b.Port()))
				}
			}
		}
		slices.SortFunc(ls, func(x, y netip.AddrPort) int { return x.Compare(y) })
		ts = append(ts, health.Target{Prefix: r.Prefix, Listeners: slices.Compact(ls), DegradedPolicy: degradedPolicy})
	}
	return ts
}
