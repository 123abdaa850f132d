package health

import "time"

// State is a prefix's health verdict.
type State int

const (
	// Down: withdraw the prefix. Every prefix starts Down.
	Down State = iota
	// Up: announce the prefix.
	Up
	// Degraded: keep the prefix announced but less attractive (for example
	// with extra AS-path prepends). Reported for a busy instance (RFC 7094
	// 4.4) and, with Target.DegradedPolicy, when some but not all listeners
	// fail.
	Degraded
)

// String returns "down", "up" or "degraded".
func (s State) String() string {
	switch s {
	case Down:
		return "down"
	case Up:
		return "up"
	case Degraded:
		return "degraded"
	}
	return "unknown"
}

// kind classifies one probe round of a target.
type kind int

const (
	pass    kind = iota // every check passed
	partial             // some listeners failed, the rest passed; only with DegradedPolicy
	busy                // listeners timed out under load, none failed otherwise
	fail                // anything else
)

// observation is the outcome of one probe round of a target.
type observation struct {
	kind   kind
	reason string // why it did not pass; empty for pass
}

// machine is the rise/fall state machine of one target. It is pure: it is
// fed observations with their time and reports transitions, so it is tested
// with a fake clock. Not safe for concurrent use.
//
//   - Down -> Up after rise consecutive passes, once the hold-down expired;
//     Down -> Degraded likewise when the last of those rounds was partial.
//   - Up -> Down after fall consecutive failures (fail).
//   - Up -> Degraded after fall consecutive rounds that did not pass, not all
//     of them failures (busy or partial).
//   - Degraded -> Up after rise consecutive passes; Degraded -> Down after
//     fall consecutive failures.
//
// Every transition to Down starts a hold-down: no Up or Degraded before it
// expires (RFC 4786 4.4.1). It starts at holdDown and doubles with each
// withdrawal, up to maxHoldDown; each maxHoldDown spent announced halves it
// again, down to holdDown.
type machine struct {
	rise, fall            int
	holdDown, maxHoldDown time.Duration

	state  State
	reason string
	since  time.Time

	riseStreak int // consecutive pass or partial
	passStreak int // consecutive pass
	badStreak  int // consecutive non-pass
	failStreak int // consecutive fail

	holdUntil time.Time     // no Up or Degraded before this
	penalty   time.Duration // hold-down started by the next withdrawal
	decayFrom time.Time     // start of the current stable period
}

func newMachine(rise, fall int, holdDown, maxHoldDown time.Duration, now time.Time) *machine {
	return &machine{
		rise: rise, fall: fall,
		holdDown: holdDown, maxHoldDown: maxHoldDown,
		state: Down, reason: "starting", since: now,
		penalty: holdDown,
	}
}

// observe feeds one round's outcome at time now and reports whether the
// state changed. The reason may change without a state change (for example
// while a hold-down delays Up).
func (m *machine) observe(now time.Time, o observation) bool {
	switch o.kind {
	case pass:
		m.riseStreak++
		m.passStreak++
		m.badStreak, m.failStreak = 0, 0
	case partial:
		m.riseStreak++
		m.passStreak = 0
		m.badStreak++
		m.failStreak = 0
	case busy:
		m.riseStreak, m.passStreak = 0, 0
		m.badStreak++
		m.failStreak = 0
	case fail:
		m.riseStreak, m.passStreak = 0, 0
		m.badStreak++
		m.failStreak++
	}
	m.decay(now)

	switch m.state {
	case Down:
		if m.riseStreak < m.rise {
			if o.kind != pass && o.kind != partial {
				m.reason = o.reason
			}
			return false
		}
		if now.Before(m.holdUntil) {
			m.reason = "hold-down"
			return false
		}
		if o.kind == pass {
			return m.set(now, Up, "healthy")
		}
		return m.set(now, Degraded, o.reason)
	case Up:
		if m.failStreak >= m.fall {
			return m.down(now, o.reason)
		}
		if m.badStreak >= m.fall {
			return m.set(now, Degraded, o.reason)
		}
	case Degraded:
		if m.failStreak >= m.fall {
			return m.down(now, o.reason)
		}
		if m.passStreak >= m.rise {
			return m.set(now, Up, "healthy")
		}
		if o.kind != pass && o.kind != fail {
			m.reason = o.reason // busy <-> partial
		}
	}
	return false
}

// down moves to Down and starts the hold-down.
func (m *machine) down(now time.Time, reason string) bool {
	m.holdUntil = now.Add(m.penalty)
	m.penalty = min(2*m.penalty, m.maxHoldDown)
	return m.set(now, Down, reason)
}

func (m *machine) set(now time.Time, s State, reason string) bool {
	if s != Down && m.state == Down {
		m.decayFrom = now
	}
	m.state, m.reason, m.since = s, reason, now
	return true
}

// decay halves the penalty for each maxHoldDown spent announced.
func (m *machine) decay(now time.Time) {
	if m.state == Down || m.maxHoldDown <= 0 {
		return
	}
	for m.penalty > m.holdDown && now.Sub(m.decayFrom) >= m.maxHoldDown {
		m.penalty = max(m.penalty/2, m.holdDown)
		m.decayFrom = m.decayFrom.Add(m.maxHoldDown)
	}
	if m.penalty <= m.holdDown {
		m.decayFrom = now
	}
}

// holdDownFor returns the hold-down the next withdrawal would start.
func (m *machine) holdDownFor() time.Duration { return m.penalty }
