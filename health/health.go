// Package health owns the self-checks of this instance: it probes our own
// DNS listeners as a resolver would (by address, over UDP and TCP), runs the
// optional extra checks, and turns the results into a verdict per service
// prefix with rise/fall hysteresis and a hold-down.
//
// A listener passes a round only if, over both UDP and TCP, the SOA query
// for every name is answered NOERROR with AA set and with our own NSID
// (RFC 5001), so an answer from another instance or a stale process does
// not count. A listener that does not answer is a failure; one that times
// out while the query rate is above Config.BusyQPS is busy, which degrades
// the prefix instead of withdrawing it (RFC 7094 4.4).
//
// health knows nothing of BGP: it reports verdicts through the notify func
// cmd/anyns hands to New.
package health

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// Config holds the check parameters. Zero fields take the documented
// defaults.
type Config struct {
	// Interval is the time between probe rounds; defaults to 500ms. A round
	// that takes longer delays the next one.
	Interval time.Duration
	// Timeout bounds each DNS query of a probe; defaults to 300ms.
	Timeout time.Duration
	// Rise is the number of consecutive passing rounds that make a prefix
	// Up; defaults to 3.
	Rise int
	// Fall is the number of consecutive failing rounds that make a prefix
	// Down; defaults to 2.
	Fall int
	// HoldDown is the minimum time between a prefix going Down and its next
	// Up; defaults to 10s. It doubles with each withdrawal, up to
	// MaxHoldDown, and halves for every MaxHoldDown spent announced.
	HoldDown time.Duration
	// MaxHoldDown caps the growing hold-down; defaults to 5 minutes.
	MaxHoldDown time.Duration
	// BusyQPS is the query rate (Probe.QPS) above which a listener that
	// times out counts as busy, not failed; 0 disables busy detection.
	BusyQPS float64
	// Command is an optional executable run each round without arguments;
	// exit status 0 passes. Empty means none.
	Command string
	// CommandTimeout bounds Command; defaults to 1s. A command that runs
	// out of time fails.
	CommandTimeout time.Duration
}

// Target is a service prefix and the listeners that back it.
type Target struct {
	Prefix netip.Prefix
	// Listeners are the service addresses probed, over UDP and TCP. At
	// least one.
	Listeners []netip.AddrPort
	// DegradedPolicy makes some-but-not-all listeners failing Degraded
	// instead of Down.
	DegradedPolicy bool
}

// Probe is what the checks need from the rest of the process.
type Probe struct {
	// Identity is our NSID; an answer without exactly this NSID fails.
	// Required.
	Identity string
	// Names returns the names to ask SOA for (the zone origins, or the
	// configured health queries). Required; called once per round. No names
	// fails the round.
	Names func() []string
	// Ready reports whether every zone is loaded; nil means always ready.
	Ready func() bool
	// Degraded, if set, returns a reason when the instance should stay
	// announced but less attractive although its listeners pass (for
	// example a secondary zone past its SOA expire, with health.expired:
	// degraded); "" means no. Such rounds count as Degraded rounds.
	Degraded func() string
	// QPS returns the current query rate, for busy detection; nil disables
	// busy detection.
	QPS func() float64
}

// Verdict is a prefix's current state.
type Verdict struct {
	Prefix netip.Prefix
	State  State
	// Reason says why, in a few words: "healthy", "hold-down", "busy", or
	// the failing check.
	Reason string
	// Since is when State was entered.
	Since time.Time
}

// Checker probes the targets and keeps a verdict per prefix.
type Checker struct {
	cfg     Config
	targets []Target
	probe   Probe
	notify  func(Verdict)
	log     *zap.Logger

	// now is the clock; a test seam.
	now func() time.Time
	// checkListener probes one listener; a test seam.
	checkListener func(ctx context.Context, ap netip.AddrPort, names []string) error

	mu       sync.Mutex
	machines []*machine // parallel to targets
}

// New validates cfg, targets and p and returns a Checker; it starts
// nothing. notify, if not nil, is called with each state change, from the
// goroutine running Run, one at a time. Every target starts Down.
func New(cfg Config, targets []Target, p Probe, notify func(Verdict), log *zap.Logger) (*Checker, error) {
	cfg = withDefaults(cfg)
	if err := validate(&cfg, targets, &p); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	c := &Checker{
		cfg:     cfg,
		targets: make([]Target, len(targets)),
		probe:   p,
		notify:  notify,
		log:     log.Named("health"),
		now:     time.Now,
	}
	for i, t := range targets {
		t.Listeners = slices.Clone(t.Listeners)
		c.targets[i] = t
	}
	c.checkListener = c.checkDNS
	now := c.now()
	for range c.targets {
		c.machines = append(c.machines, newMachine(cfg.Rise, cfg.Fall, cfg.HoldDown, cfg.MaxHoldDown, now))
	}
	return c, nil
}

func withDefaults(c Config) Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Interval, 500*time.Millisecond)
	def(&c.Timeout, 300*time.Millisecond)
	def(&c.HoldDown, 10*time.Second)
	def(&c.MaxHoldDown, 5*time.Minute)
	def(&c.CommandTimeout, time.Second)
	if c.Rise == 0 {
		c.Rise = 3
	}
	if c.Fall == 0 {
		c.Fall = 2
	}
	return c
}

// Validate reports every problem of c (with the defaults applied), each
// starting with the key at fault ("interval: …", "max_hold_down: …").
func (c Config) Validate() error {
	c = withDefaults(c)
	return errors.Join(c.validate()...)
}

func validate(c *Config, targets []Target, p *Probe) error {
	errs := c.validate()
	if p.Identity == "" {
		errs = append(errs, errors.New("identity: required: answers are matched by NSID"))
	}
	if p.Names == nil {
		errs = append(errs, errors.New("names: required"))
	}
	return validateTargets(errs, targets)
}

// validate checks the configuration values alone.
func (c *Config) validate() []error {
	var errs []error
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"interval", c.Interval}, {"timeout", c.Timeout}, {"hold_down", c.HoldDown}, {"max_hold_down", c.MaxHoldDown}, {"command_timeout", c.CommandTimeout}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s: %s: must not be negative", d.key, d.v))
		}
	}
	if c.MaxHoldDown < c.HoldDown {
		errs = append(errs, fmt.Errorf("max_hold_down: %s: shorter than hold_down %s", c.MaxHoldDown, c.HoldDown))
	}
	if c.Rise < 0 {
		errs = append(errs, fmt.Errorf("rise: %d: must be positive", c.Rise))
	}
	if c.Fall < 0 {
		errs = append(errs, fmt.Errorf("fall: %d: must be positive", c.Fall))
	}
	if c.BusyQPS < 0 {
		errs = append(errs, fmt.Errorf("busy_qps: %g: must not be negative", c.BusyQPS))
	}
	return errs
}

// validateTargets adds the problems of targets to errs and joins them.
func validateTargets(errs []error, targets []Target) error {
	seen := make(map[netip.Prefix]bool)
	for i, t := range targets {
		if !t.Prefix.IsValid() {
			errs = append(errs, fmt.Errorf("targets[%d].prefix: missing or invalid", i))
		} else if seen[t.Prefix] {
			errs = append(errs, fmt.Errorf("targets[%d].prefix: %s listed twice", i, t.Prefix))
		}
		seen[t.Prefix] = true
		if len(t.Listeners) == 0 {
			errs = append(errs, fmt.Errorf("targets[%d].listeners: none", i))
		}
		for j, l := range t.Listeners {
			if !l.IsValid() || l.Port() == 0 {
				errs = append(errs, fmt.Errorf("targets[%d].listeners[%d]: %s: want address and port", i, j, l))
			}
		}
	}
	return errors.Join(errs...)
}

// Run probes every Interval, starting at once, until ctx is done; it then
// returns ctx.Err(). Call it once.
func (c *Checker) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		c.round(ctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Verdicts returns every target's current verdict, in target order. Safe
// from any goroutine.
func (c *Checker) Verdicts() []Verdict {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Verdict, len(c.targets))
	for i, m := range c.machines {
		out[i] = Verdict{Prefix: c.targets[i].Prefix, State: m.state, Reason: m.reason, Since: m.since}
	}
	return out
}

// round probes every listener once, runs the extra checks, feeds each
// target's machine and reports changes.
func (c *Checker) round(ctx context.Context) {
	names := c.probe.Names()
	extra := c.extraChecks(ctx)

	// Probe each distinct listener once, concurrently.
	results := make(map[netip.AddrPort]error)
	if len(names) > 0 && extra == nil {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, t := range c.targets {
			for _, l := range t.Listeners {
				if _, ok := results[l]; ok {
					continue
				}
				results[l] = nil
				wg.Add(1)
				go func() {
					defer wg.Done()
					err := c.checkListener(ctx, l, names)
					mu.Lock()
					results[l] = err
					mu.Unlock()
				}()
			}
		}
		wg.Wait()
	}
	if ctx.Err() != nil {
		return // shutting down: a cancelled probe says nothing about health
	}
	degraded := ""
	if c.probe.Degraded != nil {
		degraded = c.probe.Degraded()
	}
	loaded := false
	if c.cfg.BusyQPS > 0 && c.probe.QPS != nil {
		loaded = c.probe.QPS() > c.cfg.BusyQPS
	}

	now := c.now()
	var changed []Verdict
	c.mu.Lock()
	for i, t := range c.targets {
		var o observation
		switch {
		case extra != nil:
			o = observation{kind: fail, reason: extra.Error()}
		case len(names) == 0:
			o = observation{kind: fail, reason: "no names to query"}
		default:
			o = classify(t, results, loaded)
			if o.kind == pass && degraded != "" {
				// Healthy listeners serving something the operator wants
				// less attractive (an expired secondary zone): keep the
				// route, with the degraded policy's prepends.
				o = observation{kind: partial, reason: degraded}
			}
		}
		m := c.machines[i]
		if m.observe(now, o) {
			changed = append(changed, Verdict{Prefix: t.Prefix, State: m.state, Reason: m.reason, Since: m.since})
		}
	}
	c.mu.Unlock()

	for _, v := range changed {
		c.log.Info("health state changed",
			zap.Stringer("prefix", v.Prefix),
			zap.Stringer("state", v.State),
			zap.String("reason", v.Reason))
		if c.notify != nil {
			c.notify(v)
		}
	}
}

// extraChecks runs the zone readiness and command checks.
func (c *Checker) extraChecks(ctx context.Context) error {
	if c.probe.Ready != nil && !c.probe.Ready() {
		return errors.New("zones not ready")
	}
	if c.cfg.Command == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.cfg.Command)
	cmd.WaitDelay = c.cfg.CommandTimeout // don't wait forever on inherited pipes
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("command: timed out after %s", c.cfg.CommandTimeout)
		}
		return fmt.Errorf("command: %w", err)
	}
	return nil
}

// classify turns one target's listener results into an observation.
func classify(t Target, results map[netip.AddrPort]error, loaded bool) observation {
	var failed, busyN int
	var reasons []string
	for _, l := range t.Listeners {
		err := results[l]
		switch {
		case err == nil:
		case loaded && isTimeout(err):
			busyN++
		default:
			failed++
			reasons = append(reasons, fmt.Sprintf("%s: %v", l, err))
		}
	}
	switch {
	case failed == 0 && busyN == 0:
		return observation{kind: pass}
	case failed == 0:
		return observation{kind: busy, reason: "busy"}
	case t.DegradedPolicy && failed < len(t.Listeners):
		// Some listeners still answer (possibly slowly, under load).
		return observation{kind: partial, reason: "some listeners failing: " + strings.Join(reasons, "; ")}
	}
	return observation{kind: fail, reason: strings.Join(reasons, "; ")}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// checkDNS asks ap for the SOA of every name over UDP and TCP and checks
// each answer: NOERROR, AA, and our NSID.
func (c *Checker) checkDNS(ctx context.Context, ap netip.AddrPort, names []string) error {
	want := []byte(c.probe.Identity)
	for _, proto := range []string{"udp", "tcp"} {
		cl := &dns.Client{Net: proto, Timeout: c.cfg.Timeout}
		for _, name := range names {
			if err := query(ctx, cl, ap, name, want); err != nil {
				return fmt.Errorf("%s %s: %w", proto, name, err)
			}
		}
	}
	return nil
}

func query(ctx context.Context, cl *dns.Client, ap netip.AddrPort, name string, nsid []byte) error {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeSOA)
	m.RecursionDesired = false
	m.SetEdns0(1232, false)
	opt := m.IsEdns0()
	opt.Option = append(opt.Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID})

	ctx, cancel := context.WithTimeout(ctx, cl.Timeout)
	defer cancel()
	r, _, err := cl.ExchangeContext(ctx, m, ap.String())
	if err != nil {
		return err
	}
	if r.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
	}
	if !r.Authoritative {
		return errors.New("answer not authoritative")
	}
	got, ok := answerNSID(r)
	if !ok {
		return errors.New("no NSID in answer")
	}
	if !bytes.Equal(got, nsid) {
		return fmt.Errorf("NSID %q is not ours", got)
	}
	return nil
}

// answerNSID returns the NSID option of r, decoded.
func answerNSID(r *dns.Msg) ([]byte, bool) {
	opt := r.IsEdns0()
	if opt == nil {
		return nil, false
	}
	for _, o := range opt.Option {
		if n, ok := o.(*dns.EDNS0_NSID); ok {
			b, err := hex.DecodeString(n.Nsid)
			return b, err == nil
		}
	}
	return nil, false
}
