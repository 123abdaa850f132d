package health

import (
	"strings"
	"testing"
	"time"
)

// step feeds one observation at a time offset and states the expected
// verdict after it.
type step struct {
	at     time.Duration
	k      kind
	want   State
	reason string // substring of the reason; empty: not checked
}

// every returns n steps of kind k from start, spaced by gap, all expecting
// want.
func every(start, gap time.Duration, n int, k kind, want State) []step {
	out := make([]step, n)
	for i := range out {
		out[i] = step{at: start + time.Duration(i)*gap, k: k, want: want}
	}
	return out
}

// riseUp is three passes at 0s, 1s and 2s: Up at the third.
func riseUp() []step {
	return []step{{at: 0, k: pass, want: Down}, {at: time.Second, k: pass, want: Down}, {at: 2 * time.Second, k: pass, want: Up}}
}

func seq(parts ...[]step) []step {
	var out []step
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestMachine(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "rise after three passes, no hold-down at start",
			steps: []step{
				{at: 0, k: pass, want: Down, reason: "starting"},
				{at: s, k: pass, want: Down},
				{at: 2 * s, k: pass, want: Up, reason: "healthy"},
			},
		},
		{
			name: "a failure resets the rise count",
			steps: []step{
				{at: 0, k: pass, want: Down},
				{at: s, k: pass, want: Down},
				{at: 2 * s, k: fail, want: Down, reason: "boom"},
				{at: 3 * s, k: pass, want: Down},
				{at: 4 * s, k: pass, want: Down},
				{at: 5 * s, k: pass, want: Up},
			},
		},
		{
			name: "fall after two failures",
			steps: seq(riseUp(), []step{
				{at: 3 * s, k: fail, want: Up},
				{at: 4 * s, k: fail, want: Down, reason: "boom"},
			}),
		},
		{
			name: "isolated failures do not fall",
			steps: seq(riseUp(), []step{
				{at: 3 * s, k: fail, want: Up},
				{at: 4 * s, k: pass, want: Up},
				{at: 5 * s, k: fail, want: Up},
				{at: 6 * s, k: pass, want: Up},
			}),
		},
		{
			name: "hold-down delays the next up",
			steps: seq(riseUp(), []step{
				{at: 3 * s, k: fail, want: Up},
				{at: 4 * s, k: fail, want: Down}, // hold-down until 14s
				{at: 5 * s, k: pass, want: Down},
				{at: 6 * s, k: pass, want: Down},
				{at: 7 * s, k: pass, want: Down, reason: "hold-down"},
				{at: 13900 * time.Millisecond, k: pass, want: Down, reason: "hold-down"},
				{at: 14 * s, k: pass, want: Up},
			}),
		},
		{
			name: "failure during hold-down restarts the rise count",
			steps: seq(riseUp(), []step{
				{at: 3 * s, k: fail, want: Up},
				{at: 4 * s, k: fail, want: Down},
				{at: 5 * s, k: pass, want: Down},
				{at: 13 * s, k: fail, want: Down},
				{at: 14 * s, k: pass, want: Down},
				{at: 15 * s, k: pass, want: Down},
				{at: 16 * s, k: pass, want: Up},
			}),
		},
		{
			name: "busy degrades instead of withdrawing",
			steps: seq(riseUp(), []step{
				{at: 3 * s, k: busy, want: Up},
				{at: 4 * s, k: busy, want: Degraded, reason: "busy"},
				{at: 5 * s, k: busy, want: Degraded, reason: "busy"},
				{at: 6 * s, k: pass, want: Degraded},
				{at: 7 * s, k: pass, want: Degraded},
				{at: 8 * s, k: pass, want: Up, reason: "healthy"},
			}),
		},
		{
			name:  "busy while down does not announce",
			steps: every(0, s, 5, busy, Down),
		},
		{
			name: "one failure and one busy round degrade",
			steps: seq(riseUp(), []step{
				{at: 3 * s, k: fail, want: Up},
				{at: 4 * s, k: busy, want: Degraded},
			}),
		},
		{
			name: "degraded falls on failures",
			steps: seq(riseUp(), []step{
				{at: 3 * s, k: busy, want: Up},
				{at: 4 * s, k: busy, want: Degraded},
				{at: 5 * s, k: fail, want: Degraded},
				{at: 6 * s, k: fail, want: Down, reason: "boom"},
			}),
		},
		{
			name: "partial listeners degrade under the degraded policy",
			steps: seq(riseUp(), []step{
				{at: 3 * s, k: partial, want: Up},
				{at: 4 * s, k: partial, want: Degraded, reason: "some listeners"},
				{at: 5 * s, k: partial, want: Degraded},
				{at: 6 * s, k: pass, want: Degraded},
				{at: 7 * s, k: pass, want: Degraded},
				{at: 8 * s, k: pass, want: Up},
			}),
		},
		{
			name: "partial listeners from the start announce degraded",
			steps: []step{
				{at: 0, k: partial, want: Down},
				{at: s, k: pass, want: Down},
				{at: 2 * s, k: partial, want: Degraded, reason: "some listeners"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			m := newMachine(3, 2, 10*time.Second, 5*time.Minute, t0)
			prev := m.state
			for i, st := range tc.steps {
				o := observation{kind: st.k}
				switch st.k {
				case fail:
					o.reason = "boom"
				case busy:
					o.reason = "busy"
				case partial:
					o.reason = "some listeners failing: x"
				}
				changed := m.observe(t0.Add(st.at), o)
				if m.state != st.want {
					t.Fatalf("step %d (%v at %s): state %v, want %v (reason %q)", i, st.k, st.at, m.state, st.want, m.reason)
				}
				if changed != (m.state != prev) {
					t.Errorf("step %d: observe reported change %v, state %v -> %v", i, changed, prev, m.state)
				}
				if changed && !m.since.Equal(t0.Add(st.at)) {
					t.Errorf("step %d: since %v, want %v", i, m.since, t0.Add(st.at))
				}
				if st.reason != "" && !strings.Contains(m.reason, st.reason) {
					t.Errorf("step %d: reason %q, want it to contain %q", i, m.reason, st.reason)
				}
				prev = m.state
			}
		})
	}
}

// TestMachineBackoff checks that the hold-down doubles for a flapping
// instance up to the cap, and decays while it stays healthy.
func TestMachineBackoff(t *testing.T) {
	const (
		base = 10 * time.Second
		cap_ = 40 * time.Second
	)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	m := newMachine(1, 1, base, cap_, t0)
	tick := func(k kind) {
		now = now.Add(time.Second)
		m.observe(now, observation{kind: k, reason: "r"})
	}
	// upAfter reports how long after going Down the machine came back Up,
	// probing every second.
	upAfter := func() time.Duration {
		t.Helper()
		tick(fail)
		if m.state != Down {
			t.Fatalf("state %v after a failure, want down", m.state)
		}
		downAt := m.since
		for range 1000 {
			tick(pass)
			if m.state == Up {
				return m.since.Sub(downAt)
			}
		}
		t.Fatal("never came back up")
		return 0
	}

	tick(pass)
	if m.state != Up {
		t.Fatalf("state %v, want up", m.state)
	}
	for i, want := range []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 40 * time.Second} {
		if got := upAfter(); got != want {
			t.Errorf("flap %d: up again after %s, want %s", i, got, want)
		}
	}
	if got := m.holdDownFor(); got != cap_ {
		t.Fatalf("hold-down after flapping = %s, want the cap %s", got, cap_)
	}
	// Stable for one cap period: halves; two more: back to base, no lower.
	for _, want := range []time.Duration{20 * time.Second, 10 * time.Second, 10 * time.Second} {
		stop := now.Add(cap_)
		for now.Before(stop) {
			tick(pass)
		}
		if got := m.holdDownFor(); got != want {
			t.Errorf("after stable until %s: hold-down %s, want %s", now.Sub(t0), got, want)
		}
	}
	if got := upAfter(); got != base {
		t.Errorf("after decay: up again after %s, want %s", got, base)
	}
	// Down time does not count as stable.
	m2 := newMachine(1, 1, base, cap_, t0)
	m2.observe(t0, observation{kind: pass})
	m2.observe(t0.Add(time.Second), observation{kind: fail})
	m2.observe(t0.Add(10*time.Minute), observation{kind: fail})
	if got := m2.holdDownFor(); got != 2*base {
		t.Errorf("hold-down after a long down period = %s, want %s", got, 2*base)
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{Down: "down", Up: "up", Degraded: "degraded", State(9): "unknown"} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", int(s), got, want)
		}
	}
}

// TestDegradedProbe: listeners that pass while Probe.Degraded gives a
// reason make the prefix Degraded (kept announced), and Up again after.
func TestDegradedProbe(t *testing.T) {
	now := time.Unix(0, 0)
	m := newMachine(2, 2, time.Second, time.Minute, now)
	feed := func(o observation) {
		now = now.Add(100 * time.Millisecond)
		m.observe(now, o)
	}
	feed(observation{kind: pass})
	feed(observation{kind: pass})
	now = now.Add(2 * time.Second)
	feed(observation{kind: pass})
	if m.state != Up {
		t.Fatalf("state %v, want up", m.state)
	}
	feed(observation{kind: partial, reason: "secondary zone expired"})
	feed(observation{kind: partial, reason: "secondary zone expired"})
	if m.state != Degraded || m.reason != "secondary zone expired" {
		t.Fatalf("state %v (%s), want degraded", m.state, m.reason)
	}
	feed(observation{kind: pass})
	feed(observation{kind: pass})
	if m.state != Up {
		t.Fatalf("state %v, want up again", m.state)
	}
}
