package zone

import (
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// How a load shares the machine with the listeners.
//
// Loading a large zone is seconds of CPU-bound work in the same process as
// the listeners, and three things let it delay queries (each measured with a
// UDP prober while a 1M-record zone reloads; see deploy/bench/reload.sh):
//
//   - The Go scheduler. With GOMAXPROCS=1 (one core, as when pinned) the
//     loader holds the only P; runtime.Gosched puts it on the global run
//     queue, from where the scheduler takes it back before it polls the
//     network, so a listener woken by a packet ran only when the runtime's
//     monitor polled the network, every 10ms: latency rose in a 10ms
//     sawtooth for the whole load. So a load runs with two Ps more than
//     before (GOMAXPROCS+loadExtraProcs): one for the loader, one for the
//     GC's dedicated mark worker should a cycle start meanwhile (it holds
//     a P for its whole mark phase), so that a P is always free and its
//     thread waits in the network poller and takes a packet at once.
//   - The operating system. The loader's threads then compete with the
//     listeners' for the cores at equal priority, and a thread that wakes
//     may wait for the running one's time slice (milliseconds). So the
//     load's loops yield the core (yield: runtime.Gosched, then
//     sched_yield) every yieldEvery records or nodes, about a quarter of a
//     millisecond of work: a listener thread that became runnable meanwhile
//     runs then, and an idle machine loses nothing. (A lower priority for
//     the load's threads, nice 19, answered faster still, but the whole
//     process then waited for those threads at every stop-the-world of the
//     GC while the machine was busy: seconds under the soak test's load.)
//   - The garbage collector. Loading allocates fast while the zone it
//     replaces stays live. At the default GOGC=100 that starts a cycle at
//     each doubling of the heap, whose dedicated worker holds a P for the
//     whole mark phase, and a goroutine that allocates meanwhile must help
//     mark. Each cycle also marks the whole live heap again, which costs a
//     single-core load of 1M records about 0.4s. So while a load runs the
//     GC target is loadGCPercent (as GOGC=400): a reload of a zone as large
//     as everything else served finishes within one heap goal, with no
//     cycle during it. When the last load ends, one cycle runs (runtime.GC)
//     while the target is still high, so that the garbage is collected with
//     the heap well under its goal (nobody is asked to assist), and only
//     then is the target restored: restoring it first would leave the heap
//     far above the goal and make every allocation assist. The price is a
//     higher peak heap during a load (BenchmarkReload1M's peak-extra-MiB).
//     A GOGC above loadGCPercent, or off, is left alone, and a memory limit
//     (GOMEMLIMIT) still holds: the runtime collects before passing it
//     whatever the target.

// loadGCPercent is the GC target while zones load.
const loadGCPercent = 400

// loadExtraProcs is how many Ps a load adds (see above).
const loadExtraProcs = 2

var loads struct {
	mu      sync.Mutex
	n       int  // loads in progress
	raised  bool // GC target and Ps raised; gc restores the target
	gc      int  // GC percent before
	garbage bool // a load that ended meanwhile parsed something
	release bool // one of them asks for the memory to go back at once

	spares int // SpareProc holders: one P more while there is any
	added  int // Ps GOMAXPROCS has now beyond base (addedProcs when last set)
	base   int // GOMAXPROCS without the Ps added (valid while added > 0)
}

// loadEnd is how a load ends.
type loadEnd int

const (
	// endNothing: nothing was parsed (every file unchanged): no collection.
	endNothing loadEnd = iota
	// endCollect: collect the load's garbage.
	endCollect
	// endRelease: collect it and return the free memory to the operating
	// system at once (debug.FreeOSMemory).
	endRelease
)

// beginLoad sets the process up for a load (see above) and returns the
// function that ends it, which must be called exactly once. Loads may
// overlap: the settings return when the last one ends, which collects the
// garbage of all of them (if any parsed something) first. Safe from any
// goroutine.
func beginLoad() (end func(loadEnd)) {
	loads.mu.Lock()
	defer loads.mu.Unlock()
	if !loads.raised {
		gc := debug.SetGCPercent(loadGCPercent)
		if gc < 0 || gc > loadGCPercent {
			debug.SetGCPercent(gc)
		}
		loads.raised, loads.gc = true, gc
		setProcs()
	}
	loads.n++
	return func(how loadEnd) {
		loads.mu.Lock()
		loads.n--
		loads.garbage = loads.garbage || how != endNothing
		loads.release = loads.release || how == endRelease
		last := loads.n == 0
		garbage, release := loads.garbage, loads.release
		if last {
			loads.garbage, loads.release = false, false
		}
		loads.mu.Unlock()
		if !last {
			return
		}
		switch {
		case release:
			debug.FreeOSMemory()
		case garbage:
			runtime.GC()
		}
		loads.mu.Lock()
		defer loads.mu.Unlock()
		if loads.n == 0 && loads.raised { // else a new load has begun: it restores
			debug.SetGCPercent(loads.gc)
			loads.raised = false
			setProcs()
		}
	}
}

// SpareProc adds one P (GOMAXPROCS+1) until release is called, which must
// be called exactly once; while several hold one, there is still only one
// more. The server's blocking UDP readers ask for it (server/udp.go): a
// reader waiting in recvmmsg keeps its P, and the runtime's monitor hands
// the P of a thread that stays in a system call over 20µs to another
// thread unless some P is idle, which on a pinned core (GOMAXPROCS=1) made
// every wait for the next query a hand-off between threads. A spare P
// stays idle while the readers wait, so nothing is handed off; it costs
// nothing while idle, and other goroutines (TCP, timers) run on it
// meanwhile. Safe from any goroutine.
func SpareProc() (release func()) {
	loads.mu.Lock()
	defer loads.mu.Unlock()
	loads.spares++
	setProcs()
	var once sync.Once
	return func() {
		once.Do(func() {
			loads.mu.Lock()
			defer loads.mu.Unlock()
			loads.spares--
			setProcs()
		})
	}
}

// addedProcs is how many Ps the loads in progress and SpareProc add to the
// cores. loads.mu must be held.
func addedProcs() int {
	n := 0
	if loads.raised {
		n += loadExtraProcs
	}
	if loads.spares > 0 {
		n++
	}
	return n
}

// setProcs sets GOMAXPROCS to the cores plus addedProcs, if that changed.
// The cores are read when Ps are first added. Setting GOMAXPROCS at all stops the runtime from following
// the CPU affinity and cgroup limit (Go 1.25), so when nothing is added
// any more and the cores were the runtime's default, the default is
// restored, which follows them again. loads.mu must be held.
func setProcs() {
	before, after := loads.added, addedProcs()
	loads.added = after
	switch {
	case after == before:
	case before == 0:
		loads.base = runtime.GOMAXPROCS(0)
		runtime.GOMAXPROCS(loads.base + after)
	case after == 0:
		runtime.SetDefaultGOMAXPROCS()
		if runtime.GOMAXPROCS(0) != loads.base {
			runtime.GOMAXPROCS(loads.base)
		}
	default:
		runtime.GOMAXPROCS(loads.base + after)
	}
}

// Procs returns GOMAXPROCS without the Ps added to it: a load adds two
// while it runs (see above), SpareProc one, so code that sizes itself by
// the number of cores (one UDP socket per core) asks here rather than the
// runtime.
func Procs() int {
	loads.mu.Lock()
	defer loads.mu.Unlock()
	if loads.added > 0 {
		return loads.base
	}
	return runtime.GOMAXPROCS(0)
}

// yieldEvery is how many records or nodes the load's CPU-bound loops
// handle between two yields (about 0.25ms of work).
const yieldEvery = 256

// pacing is how a load's loops share the cores with the listeners.
type pacing uint8

const (
	// yieldToListeners: yield every yieldEvery records or nodes (see
	// above). The zero value, for whatever may run while queries are
	// answered.
	yieldToListeners pacing = iota
	// loadAlone: never yield. For a load that runs before anything is
	// served (a Loader's first), which has no listener to make way for:
	// with two cores, the yields of a parallel parse cost it a quarter
	// of its time (the first load of a 1M-record zone: 0.83 s against
	// 0.65 s), much of it in the goroutines that runtime.Gosched sends
	// to other threads.
	loadAlone
)

// yields counts the yields so far (the tests read it).
var yields atomic.Uint64

// yield lets a listener that waits for this core run (see above), unless
// p is loadAlone.
func (p pacing) yield() {
	if p == yieldToListeners {
		yields.Add(1)
		runtime.Gosched()
		osYield()
	}
}
