package health

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

const identity = "ns1.test-instance"

// behaviour is how the test responder answers.
type behaviour struct {
	nsid  string // NSID to put in answers; empty: no NSID option
	noAA  bool
	rcode int
	drop  bool // never answer
}

// responder is a tiny authoritative DNS server on 127.0.0.1, UDP and TCP on
// the same port.
type responder struct {
	addr     netip.AddrPort
	mu       sync.Mutex
	b        behaviour
	udp, tcp *dns.Server
}

func (r *responder) set(b behaviour) {
	r.mu.Lock()
	r.b = b
	r.mu.Unlock()
}

func (r *responder) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	r.mu.Lock()
	b := r.b
	r.mu.Unlock()
	if b.drop || len(q.Question) != 1 {
		return
	}
	m := new(dns.Msg)
	m.SetRcode(q, b.rcode)
	m.Authoritative = !b.noAA
	if b.rcode == dns.RcodeSuccess {
		soa, err := dns.NewRR(q.Question[0].Name + " 3600 IN SOA ns1.example. hostmaster.example. 1 7200 3600 1209600 300")
		if err != nil {
			panic(err) // impossible: fixed record text
		}
		m.Answer = append(m.Answer, soa)
	}
	if opt := q.IsEdns0(); opt != nil {
		m.SetEdns0(1232, false)
		asked := false
		for _, o := range opt.Option {
			if o.Option() == dns.EDNS0NSID {
				asked = true
			}
		}
		if asked && b.nsid != "" {
			ro := m.IsEdns0()
			ro.Option = append(ro.Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID, Nsid: hex.EncodeToString([]byte(b.nsid))})
		}
	}
	w.WriteMsg(m)
}

// startResponder binds TCP on 127.0.0.1:0, then UDP on the same port
// (retrying with a new port if taken), and waits until both serve.
func startResponder(t *testing.T, b behaviour) *responder {
	t.Helper()
	r := &responder{b: b}
	var l net.Listener
	var pc net.PacketConn
	for try := 0; ; try++ {
		var err error
		l, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		pc, err = net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			r.addr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
			break
		}
		l.Close()
		if try == 10 {
			t.Fatalf("no port free for both UDP and TCP: %v", err)
		}
	}
	udpUp, tcpUp := make(chan struct{}), make(chan struct{})
	r.udp = &dns.Server{PacketConn: pc, Handler: r, NotifyStartedFunc: func() { close(udpUp) }}
	r.tcp = &dns.Server{Listener: l, Handler: r, NotifyStartedFunc: func() { close(tcpUp) }}
	go r.udp.ActivateAndServe()
	go r.tcp.ActivateAndServe()
	for _, ch := range []chan struct{}{udpUp, tcpUp} {
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatal("responder did not start")
		}
	}
	t.Cleanup(r.close)
	return r
}

func (r *responder) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	r.udp.ShutdownContext(ctx)
	r.tcp.ShutdownContext(ctx)
}

func names() []string { return []string{"example.com.", "example.net"} }

func newChecker(t *testing.T, cfg Config, targets []Target, p Probe) (*Checker, <-chan Verdict) {
	t.Helper()
	if p.Identity == "" {
		p.Identity = identity
	}
	if p.Names == nil {
		p.Names = names
	}
	ch := make(chan Verdict, 100)
	c, err := New(cfg, targets, p, func(v Verdict) { ch <- v }, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return c, ch
}

func TestCheckDNS(t *testing.T) {
	tests := []struct {
		name string
		b    behaviour
		want string // substring of the error; empty: pass
	}{
		{name: "pass", b: behaviour{nsid: identity}},
		{name: "wrong NSID", b: behaviour{nsid: "ns2.other-instance"}, want: "not ours"},
		{name: "no NSID", b: behaviour{}, want: "no NSID"},
		{name: "no AA", b: behaviour{nsid: identity, noAA: true}, want: "not authoritative"},
		{name: "SERVFAIL", b: behaviour{nsid: identity, rcode: dns.RcodeServerFailure}, want: "SERVFAIL"},
		{name: "REFUSED", b: behaviour{nsid: identity, rcode: dns.RcodeRefused}, want: "REFUSED"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := startResponder(t, tc.b)
			c, _ := newChecker(t, Config{}, []Target{{Prefix: netip.MustParsePrefix("127.0.0.1/32"), Listeners: []netip.AddrPort{r.addr}}}, Probe{})
			err := c.checkDNS(t.Context(), r.addr, names())
			if tc.want == "" {
				if err != nil {
					t.Fatalf("checkDNS: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("checkDNS = %v, want an error containing %q", err, tc.want)
			}
			if isTimeout(err) {
				t.Errorf("checkDNS error %v counts as a timeout", err)
			}
		})
	}
}

// TestCheckDNSTCPOnly checks that both transports are probed: a server
// answering only over UDP fails.
func TestCheckDNSTCPOnly(t *testing.T) {
	r := startResponder(t, behaviour{nsid: identity})
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	r.tcp.ShutdownContext(ctx)
	c, _ := newChecker(t, Config{}, []Target{{Prefix: netip.MustParsePrefix("127.0.0.1/32"), Listeners: []netip.AddrPort{r.addr}}}, Probe{})
	err := c.checkDNS(t.Context(), r.addr, names())
	if err == nil || !strings.HasPrefix(err.Error(), "tcp ") {
		t.Fatalf("checkDNS = %v, want a TCP failure", err)
	}
}

// TestChecker drives real probe rounds against the responder.
func TestChecker(t *testing.T) {
	script := func(t *testing.T, code int) string {
		p := filepath.Join(t.TempDir(), "check.sh")
		if err := os.WriteFile(p, fmt.Appendf(nil, "#!/bin/sh\nexit %d\n", code), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	type tcase struct {
		name    string
		b       behaviour // after the instance is up
		closed  bool      // close the responder after it is up
		command int       // exit code of the command after it is up; -1: no command
		ready   bool
		qps     float64
		deg     string // Probe.Degraded's reason after the instance is up
		want    State
		reason  string
	}
	tests := []tcase{
		{name: "stays up", b: behaviour{nsid: identity}, command: -1, ready: true, want: Up, reason: "healthy"},
		{name: "wrong NSID", b: behaviour{nsid: "other"}, command: -1, ready: true, want: Down, reason: "not ours"},
		{name: "no AA", b: behaviour{nsid: identity, noAA: true}, command: -1, ready: true, want: Down, reason: "not authoritative"},
		{name: "listener closed", closed: true, command: -1, ready: true, want: Down, reason: "udp example.com."},
		{name: "listener closed while loaded", closed: true, command: -1, ready: true, qps: 1e6, want: Down},
		{name: "command fails", b: behaviour{nsid: identity}, command: 1, ready: true, want: Down, reason: "command: exit status 1"},
		{name: "command passes", b: behaviour{nsid: identity}, command: 0, ready: true, want: Up},
		{name: "zones not ready", b: behaviour{nsid: identity}, command: -1, ready: false, want: Down, reason: "zones not ready"},
		{name: "timeout unloaded is down", b: behaviour{drop: true}, command: -1, ready: true, qps: 10, want: Down, reason: "udp example.com."},
		{name: "timeout loaded is busy", b: behaviour{drop: true}, command: -1, ready: true, qps: 1e6, want: Degraded, reason: "busy"},
		{name: "degraded by the probe", b: behaviour{nsid: identity}, command: -1, ready: true, deg: "secondary zone expired", want: Degraded, reason: "secondary zone expired"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := startResponder(t, behaviour{nsid: identity})
			var mu sync.Mutex
			ready, qps, deg := true, 0.0, ""
			p := Probe{
				Ready:    func() bool { mu.Lock(); defer mu.Unlock(); return ready },
				QPS:      func() float64 { mu.Lock(); defer mu.Unlock(); return qps },
				Degraded: func() string { mu.Lock(); defer mu.Unlock(); return deg },
			}
			cfg := Config{Rise: 1, Fall: 2, Timeout: 100 * time.Millisecond, BusyQPS: 1000}
			if tc.command >= 0 {
				cfg.Command = script(t, 0)
			}
			prefix := netip.MustParsePrefix("127.0.0.1/32")
			c, ch := newChecker(t, cfg, []Target{{Prefix: prefix, Listeners: []netip.AddrPort{r.addr}}}, p)
			c.round(t.Context())
			if v := <-ch; v.State != Up || v.Prefix != prefix {
				t.Fatalf("first verdict %+v, want up", v)
			}

			r.set(tc.b)
			if tc.closed {
				r.close()
			}
			if tc.command >= 0 {
				c.cfg.Command = script(t, tc.command)
			}
			mu.Lock()
			ready, qps, deg = tc.ready, tc.qps, tc.deg
			mu.Unlock()
			c.round(t.Context())
			c.round(t.Context())

			v := c.Verdicts()[0]
			if v.State != tc.want || !strings.Contains(v.Reason, tc.reason) {
				t.Fatalf("verdict %v %q, want %v with reason containing %q", v.State, v.Reason, tc.want, tc.reason)
			}
			if tc.want != Up {
				select {
				case n := <-ch:
					if n.State != tc.want {
						t.Errorf("notified %v, want %v", n.State, tc.want)
					}
				default:
					t.Error("state change not notified")
				}
			}
			if len(ch) != 0 {
				t.Errorf("%d extra notifications", len(ch))
			}
		})
	}
}

func TestClassify(t *testing.T) {
	a := netip.MustParseAddrPort("192.0.2.1:53")
	b := netip.MustParseAddrPort("192.0.2.2:53")
	dead := errors.New("connection refused")
	slow := fmt.Errorf("udp x: %w", os.ErrDeadlineExceeded)
	tests := []struct {
		name     string
		degraded bool
		results  map[netip.AddrPort]error
		loaded   bool
		want     kind
	}{
		{name: "all pass", results: map[netip.AddrPort]error{a: nil, b: nil}, want: pass},
		{name: "one dead", results: map[netip.AddrPort]error{a: nil, b: dead}, want: fail},
		{name: "one dead, degraded policy", degraded: true, results: map[netip.AddrPort]error{a: nil, b: dead}, want: partial},
		{name: "all dead, degraded policy", degraded: true, results: map[netip.AddrPort]error{a: dead, b: dead}, want: fail},
		{name: "slow unloaded", results: map[netip.AddrPort]error{a: nil, b: slow}, want: fail},
		{name: "slow loaded", loaded: true, results: map[netip.AddrPort]error{a: slow, b: slow}, want: busy},
		{name: "one slow loaded", loaded: true, results: map[netip.AddrPort]error{a: nil, b: slow}, want: busy},
		{name: "dead and slow loaded", loaded: true, results: map[netip.AddrPort]error{a: dead, b: slow}, want: fail},
		{name: "dead and slow loaded, degraded policy", degraded: true, loaded: true, results: map[netip.AddrPort]error{a: dead, b: slow}, want: partial},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := classify(Target{Listeners: []netip.AddrPort{a, b}, DegradedPolicy: tc.degraded}, tc.results, tc.loaded)
			if o.kind != tc.want {
				t.Fatalf("classify = %v (%q), want %v", o.kind, o.reason, tc.want)
			}
			if o.kind != pass && o.reason == "" {
				t.Error("no reason given")
			}
		})
	}
}

// TestRun checks the loop: it reports Up through notify and logs, and
// returns when ctx is cancelled.
func TestRun(t *testing.T) {
	r := startResponder(t, behaviour{nsid: identity})
	core, logs := observer.New(zap.InfoLevel)
	ch := make(chan Verdict, 10)
	prefix := netip.MustParsePrefix("127.0.0.1/32")
	c, err := New(Config{Interval: 10 * time.Millisecond, Rise: 2},
		[]Target{{Prefix: prefix, Listeners: []netip.AddrPort{r.addr}}},
		Probe{Identity: identity, Names: names}, func(v Verdict) { ch <- v }, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case v := <-ch:
		if v.State != Up || v.Prefix != prefix || v.Reason != "healthy" || v.Since.IsZero() {
			t.Errorf("verdict %+v", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no verdict")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	entries := logs.FilterMessage("health state changed").AllUntimed()
	if len(entries) != 1 {
		t.Fatalf("%d state change logs, want 1", len(entries))
	}
	f := entries[0].ContextMap()
	if f["prefix"] != "127.0.0.1/32" || f["state"] != "up" || f["reason"] != "healthy" {
		t.Errorf("log fields %v", f)
	}
	if v := c.Verdicts(); len(v) != 1 || v[0].State != Up {
		t.Errorf("Verdicts = %+v", v)
	}
}

func TestNew(t *testing.T) {
	good := Target{Prefix: netip.MustParsePrefix("192.0.2.53/32"), Listeners: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53")}}
	p := Probe{Identity: identity, Names: names}
	tests := []struct {
		name    string
		cfg     Config
		targets []Target
		p       Probe
		want    []string
	}{
		{name: "valid", targets: []Target{good}, p: p},
		{name: "no identity", targets: []Target{good}, p: Probe{Names: names}, want: []string{"identity"}},
		{name: "no names", targets: []Target{good}, p: Probe{Identity: identity}, want: []string{"names"}},
		{name: "negative", cfg: Config{Interval: -1, Rise: -1, Fall: -2, BusyQPS: -1}, targets: []Target{good}, p: p,
			want: []string{"interval", "rise", "fall", "busy_qps"}},
		{name: "max hold-down", cfg: Config{HoldDown: time.Hour}, targets: []Target{good}, p: p, want: []string{"max_hold_down"}},
		{name: "no listeners", targets: []Target{{Prefix: good.Prefix}}, p: p, want: []string{"targets[0].listeners"}},
		{name: "bad listener", targets: []Target{{Prefix: good.Prefix, Listeners: []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("192.0.2.53"), 0)}}}, p: p,
			want: []string{"targets[0].listeners[0]"}},
		{name: "duplicate prefix", targets: []Target{good, good}, p: p, want: []string{"targets[1].prefix"}},
		{name: "no prefix", targets: []Target{{Listeners: good.Listeners}}, p: p, want: []string{"targets[0].prefix"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.cfg, tc.targets, tc.p, nil, nil)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if c.cfg.Interval != 500*time.Millisecond || c.cfg.Timeout != 300*time.Millisecond || c.cfg.Rise != 3 ||
					c.cfg.Fall != 2 || c.cfg.HoldDown != 10*time.Second {
					t.Errorf("defaults not applied: %+v", c.cfg)
				}
				if v := c.Verdicts(); len(v) != 1 || v[0].State != Down {
					t.Errorf("initial verdicts %+v, want one down", v)
				}
				return
			}
			if err == nil {
				t.Fatalf("New succeeded, want errors %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
