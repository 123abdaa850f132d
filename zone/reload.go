package zone

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"hash/maphash"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// Config is how zones are loaded and kept current.
type Config struct {
	// Dir is the zones directory: every *.zone file in it is a zone.
	// Required.
	Dir string
	// Debounce is how long the directory must be quiet after a change
	// before it is read, so a file written in several chunks is read once,
	// complete. Defaults to 200ms.
	Debounce time.Duration
	// Rescan is the period of a full rescan that catches changes the
	// watcher missed (network file systems, overflowed event queues).
	// Defaults to 60s; negative disables it.
	Rescan time.Duration
	// OnPublish, if set, is called with each snapshot the loader publishes,
	// right after the swap, one call at a time (the zone-transfer journal
	// and NOTIFY sender hang here). It must not call back into the Loader.
	OnPublish func(*Snapshot)
	// ExtraDirs are more directories whose *.zone files are zones too,
	// watched like Dir (the state directory of secondary zones). $INCLUDE
	// in a file is confined to the file's own directory. A directory that
	// does not exist yet serves nothing; one that cannot be read keeps
	// the zones it served.
	ExtraDirs []string
}

const (
	defaultDebounce = 200 * time.Millisecond
	defaultRescan   = 60 * time.Second
)

// FileStatus is the state of one zone file, as the last reload left it.
type FileStatus struct {
	File     string
	Origin   string    // the zone the file serves ("" if it never loaded)
	Serial   uint32    // serial of the version serving
	Records  int       // records of the version serving
	Serving  bool      // whether this file's zone is in the published snapshot
	LoadedAt time.Time // when the serving version was loaded
	Err      error     // the last load's problem; nil when the file loaded
}

// Loader loads the zones directory into a Store and keeps it current: it
// watches the directory, reparses only the files whose content (or whose
// $INCLUDE files' content) changed, and publishes each new set of zones with
// one pointer swap. A file that fails to load keeps its previous version
// serving. Reload, ReloadServing, Trigger and Status are safe from any
// goroutine; there is one writer at a time.
//
// A reload publishes twice: first the parsed, validated zones (served
// through Snapshot.Lookup, as Snapshot.Precomputed has nothing for them
// yet), then, once built, copies of them that hold the precomputed answers
// (Zone.Precompute). No published snapshot or zone is ever written. While
// a reload runs the GC target is raised (see load.go). After the first load
// of a large set of zones (memoryReleaseRecords records or more, nothing
// served before it) the loader returns the parser's garbage to the
// operating system at once (debug.FreeOSMemory), so that the resident size
// follows the live heap rather than its peak. After a reload while zones
// serve it leaves that to the runtime's background scavenger (RSS within
// about 10% of the live heap a few seconds later), because FreeOSMemory
// holds the heap lock while it returns hundreds of megabytes, and a query
// that allocates meanwhile would wait for it (about 30ms after a 1M-record
// reload).
type Loader struct {
	cfg   Config
	store *Store
	log   *zap.Logger

	trigger chan struct{}
	bg      sync.WaitGroup // background precomputation (ReloadServing)

	mu    sync.Mutex // serialises reloads and guards files and parsed
	files map[string]*fileState
	// parsed records that a file was parsed (successfully or not) since
	// the last time a reload read it: the load made garbage to collect.
	parsed bool
	// served is set when the first load returns. The first load runs
	// before anything serves from the store (cmd/anyns opens its
	// listeners after it), so its loops do not yield (loadAlone).
	served bool
}

// memoryReleaseRecords is the number of records loaded at once from which
// the loader calls debug.FreeOSMemory once the first zones serve.
const memoryReleaseRecords = 100_000

// fileState is what the loader knows of one zone file.
type fileState struct {
	sum      contentSum // of the file and its includes, as last parsed
	includes []string   // real paths of the files $INCLUDE opened
	zone     *Zone      // last version that loaded (nil if none)
	building *Zone      // zone whose precomputed copy is being built
	loadedAt time.Time
	err      error // why the last parse failed
	conflict error // why the zone is not served although it parsed
}

// NewLoader returns a Loader that publishes into store. It loads nothing
// until Reload or Run.
func NewLoader(cfg Config, store *Store, log *zap.Logger) (*Loader, error) {
	if cfg.Dir == "" {
		return nil, errors.New("zone loader: no zones directory")
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = defaultDebounce
	}
	if cfg.Rescan == 0 {
		cfg.Rescan = defaultRescan
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Loader{
		cfg: cfg, store: store, log: log,
		trigger: make(chan struct{}, 1),
		files:   make(map[string]*fileState),
	}, nil
}

// Reload reads the zones directory now: new files are loaded, changed ones
// reparsed, removed ones dropped, unchanged ones (same content hash, includes
// too) skipped. Problems are logged and kept for Status; the previous version
// of a zone that fails keeps serving. It reports whether the published
// snapshot changed and returns the problems of this pass, joined. It
// returns once the new zones serve with their precomputed answers.
func (l *Loader) Reload() (changed bool, err error) {
	end := beginLoad()
	l.mu.Lock()
	first := l.first()
	changed, loaded, err := l.reloadLocked()
	l.served = true
	how := l.endOf(first, loaded)
	todo := l.unprecomputed()
	l.mu.Unlock()
	l.precompute(todo)
	end(how)
	return changed, err
}

// ReloadServing is Reload, but it returns as soon as the new zones serve:
// their precomputed answers are built in the background and published
// when ready (unless a newer version of the zone replaced them meanwhile).
// Until then queries for them are answered through Snapshot.Lookup.
func (l *Loader) ReloadServing() (changed bool, err error) {
	end := beginLoad()
	l.mu.Lock()
	defer l.mu.Unlock()
	first := l.first()
	changed, loaded, err := l.reloadLocked()
	l.served = true
	how := l.endOf(first, loaded)
	if todo := l.unprecomputed(); len(todo) > 0 {
		l.bg.Go(func() {
			l.precompute(todo)
			end(how)
		})
	} else {
		end(how)
	}
	return changed, err
}

// pace returns how the loops of a load share the cores now: the first
// load runs alone (see served). l.mu must be held.
func (l *Loader) pace() pacing {
	if l.served {
		return yieldToListeners
	}
	return loadAlone
}

// first reports whether no zone is served yet (the first load).
func (l *Loader) first() bool {
	return len(l.store.Load().Zones()) == 0
}

// workers is the number of goroutines a load may keep busy: every core
// (Procs: GOMAXPROCS without the Ps a load adds) while nothing serves
// yet, one less once zones serve, so that the listeners always find a
// free core during a reload.
func (l *Loader) workers() int {
	n := Procs()
	if len(l.store.Load().Zones()) > 0 {
		n--
	}
	return max(1, n)
}

// pendingZone is a zone that serves without its precomputed answers.
type pendingZone struct {
	st *fileState
	z  *Zone
}

// unprecomputed returns the zones without precomputed answers that are not
// being built already, and marks them as being built. l.mu must be held.
func (l *Loader) unprecomputed() []pendingZone {
	var out []pendingZone
	for _, st := range l.files {
		if z := st.zone; z != nil && !z.Precomputed() && st.building != z {
			st.building = z
			out = append(out, pendingZone{st, z})
		}
	}
	return out
}

// precompute builds the precomputed copies of todo's zones (without
// holding l.mu: the zones are immutable) and publishes the ones still
// current.
func (l *Loader) precompute(todo []pendingZone) {
	if len(todo) > 0 {
		done := make([]*Zone, len(todo))
		for i, p := range todo {
			done[i] = p.z.precompute(l.workers())
		}
		l.mu.Lock()
		n := 0
		for i, p := range todo {
			if p.st.building == p.z {
				p.st.building = nil
			}
			if p.st.zone == p.z {
				p.st.zone = done[i]
				n++
			}
		}
		if n > 0 {
			next, _ := l.build() // conflicts were logged by the reload
			if !sameZones(l.store.Load(), next) {
				l.publish(next)
			}
		}
		l.mu.Unlock()
	}
}

// endOf returns how the load that just loaded records ends: with no
// collection if it parsed nothing (a rescan that found every file
// unchanged), and returning the free memory to the operating system at
// once after the first load (nothing served before it) of
// memoryReleaseRecords records or more. l.mu must be held.
func (l *Loader) endOf(first bool, loaded int) loadEnd {
	parsed := l.parsed
	l.parsed = false
	switch {
	case !parsed:
		return endNothing
	case first && loaded >= memoryReleaseRecords:
		return endRelease
	}
	return endCollect
}

// reloadLocked reloads and publishes the zones; it returns whether the
// snapshot changed and the number of records parsed.
func (l *Loader) reloadLocked() (bool, int, error) {
	var errs []error
	paths, _, derr := zoneFiles(l.cfg.Dir)
	if derr != nil {
		// Keep serving what we have: an unreadable directory is more likely
		// a passing fault than an order to drop every zone.
		l.log.Error("zones directory unreadable, keeping the zones served", zap.String("dir", l.cfg.Dir), zap.Error(derr))
		return false, 0, derr
	}
	seen := make(map[string]bool, len(paths))
	for _, d := range l.cfg.ExtraDirs {
		more, _, err := zoneFiles(d)
		switch {
		case err == nil:
			paths = append(paths, more...)
		case errors.Is(err, os.ErrNotExist):
		default:
			l.log.Error("zones directory unreadable, keeping the zones served", zap.String("dir", d), zap.Error(err))
			for path := range l.files {
				if filepath.Dir(path) == filepath.Clean(d) {
					seen[path] = true
				}
			}
		}
	}
	loaded := 0
	for _, path := range paths {
		seen[path] = true
		n, err := l.loadFile(path)
		if err != nil {
			errs = append(errs, err)
		}
		loaded += n
	}
	for path, st := range l.files {
		if !seen[path] {
			if st.zone != nil {
				l.log.Info("zone file removed, zone no longer served", zap.String("file", path), zap.String("zone", st.zone.Origin))
			}
			delete(l.files, path)
		}
	}
	next, dupErrs := l.build()
	errs = append(errs, dupErrs...)
	cur := l.store.Load()
	if sameZones(cur, next) {
		return false, loaded, errors.Join(errs...)
	}
	l.publish(next)
	return true, loaded, errors.Join(errs...)
}

// loadFile reparses path if its content or an include's changed; it
// returns the number of records it parsed (0 if it did not).
func (l *Loader) loadFile(path string) (int, error) {
	st := l.files[path]
	if st == nil {
		st = &fileState{}
		l.files[path] = st
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			// Removed between listing and reading: the next pass drops it.
			return 0, nil
		}
		e := &Error{File: path, Reason: errReason(err), Err: err}
		if st.err == nil || st.err.Error() != e.Error() {
			l.logFailure(e, st)
		}
		st.err = e
		return 0, e
	}
	pace := l.pace()
	var dataSum contentSum
	var hashed sync.WaitGroup
	if st.zone == nil && st.err == nil {
		// Never read: parsed whatever its content, while its hash (for
		// the next reload to compare) is taken beside.
		hashed.Go(func() { dataSum = hashData(data, pace) })
	} else {
		dataSum = hashData(data, pace)
		if st.sum == fingerprint(dataSum, st.includes, pace) {
			return 0, st.err // unchanged: neither reparsed nor logged again
		}
	}
	l.parsed = true
	z, includes, perr := parseData(data, path, filepath.Dir(path), 0, l.workers(), pace)
	hashed.Wait()
	st.includes = includes
	st.sum = fingerprint(dataSum, includes, pace)
	if perr != nil {
		st.err = perr
		l.logFailure(perr, st)
		return 0, perr
	}
	st.err = nil
	if old := st.zone; old != nil && old.Origin == z.Origin && serialLess(z.Serial, old.Serial) {
		l.log.Warn("zone serial went backwards", zap.String("zone", z.Origin), zap.String("file", path),
			zap.Uint32("serial", z.Serial), zap.Uint32("previous_serial", old.Serial))
	}
	st.zone, st.loadedAt = z, time.Now()
	l.log.Info("zone loaded", zap.String("zone", z.Origin), zap.String("file", path),
		zap.Uint32("serial", z.Serial), zap.Int("records", z.Records))
	return z.Records, nil
}

// logFailure logs every problem of a failed load with file and line.
func (l *Loader) logFailure(err error, st *fileState) {
	keeping := zap.Skip()
	if st.zone != nil {
		keeping = zap.Uint32("serving_serial", st.zone.Serial)
	}
	for _, e := range unjoin(err) {
		var ze *Error
		if errors.As(e, &ze) {
			l.log.Error("zone not loaded", zap.String("file", ze.File), zap.Int("line", ze.Line),
				zap.String("reason", ze.Reason), keeping)
		} else {
			l.log.Error("zone not loaded", zap.Error(e), keeping)
		}
	}
}

// build assembles the snapshot from the files' last good zones. Two files
// with one origin: the one already serving stays, else the first by name;
// the other is an error naming both.
func (l *Loader) build() (*Snapshot, []error) {
	cur := l.store.Load()
	paths := make([]string, 0, len(l.files))
	for p := range l.files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	owner := make(map[string]string) // origin -> path
	for _, p := range paths {
		z := l.files[p].zone
		if z == nil {
			continue
		}
		if prev, ok := owner[z.Origin]; ok {
			// Prefer the file whose zone is serving now.
			if cz := cur.Zone(z.Origin); cz != nil && cz.File == p && cz.File != prev {
				owner[z.Origin] = p
			}
			continue
		}
		owner[z.Origin] = p
	}
	var (
		zs   []*Zone
		errs []error
	)
	for _, p := range paths {
		st := l.files[p]
		if st.zone == nil {
			continue
		}
		if w := owner[st.zone.Origin]; w != p {
			e := &Error{File: p, Reason: "zone " + st.zone.Origin + " is already served from " + w + "; this file is ignored"}
			if st.conflict == nil || st.conflict.Error() != e.Error() {
				l.log.Error("zone not loaded", zap.String("file", p), zap.String("zone", st.zone.Origin), zap.String("reason", e.Reason))
			}
			st.conflict = e
			errs = append(errs, e)
			continue
		}
		st.conflict = nil
		zs = append(zs, st.zone)
	}
	s, _ := NewSnapshot(zs...) // origins are unique by construction
	return s, errs
}

// sameZones reports whether a and b serve the very same zone versions.
func sameZones(a, b *Snapshot) bool {
	az, bz := a.Zones(), b.Zones()
	return len(az) == len(bz) && slices.Equal(az, bz)
}

// Status returns every zone file's state, sorted by file.
func (l *Loader) Status() []FileStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := l.store.Load()
	out := make([]FileStatus, 0, len(l.files))
	for p, st := range l.files {
		fs := FileStatus{File: p, Err: cmp.Or(st.err, st.conflict), LoadedAt: st.loadedAt}
		if z := st.zone; z != nil {
			fs.Origin, fs.Serial, fs.Records = z.Origin, z.Serial, z.Records
			fs.Serving = cur.Zone(z.Origin) == z
		}
		out = append(out, fs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].File < out[j].File })
	return out
}

// publish swaps next in and tells OnPublish. Called with l.mu held.
func (l *Loader) publish(next *Snapshot) {
	l.store.Store(next)
	if l.cfg.OnPublish != nil {
		l.cfg.OnPublish(next)
	}
}

// Store returns the store the loader publishes into.
func (l *Loader) Store() *Store { return l.store }

// Trigger asks Run to reload now (as SIGHUP does). It never blocks.
func (l *Loader) Trigger() {
	select {
	case l.trigger <- struct{}{}:
	default:
	}
}

// Run keeps the zones current until ctx is done: it watches the zones
// directory (and the directories of $INCLUDE files), reloads once the
// directory has been quiet for Debounce, on Trigger, and every Rescan, as
// ReloadServing does; before returning it waits for the precomputation
// those reloads started.
// Watcher errors are logged and never stop it; if the watcher cannot start
// at all, the periodic rescan still runs. It returns ctx.Err().
func (l *Loader) Run(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		l.log.Error("cannot watch the zones directory, relying on the periodic rescan", zap.Error(err))
		w = nil
	} else {
		defer w.Close()
	}
	watched := make(map[string]bool)
	watch := func() {
		if w == nil {
			return
		}
		for _, d := range l.watchDirs() {
			if watched[d] {
				continue
			}
			if _, err := os.Stat(d); errors.Is(err, os.ErrNotExist) {
				continue // an extra directory not made yet: the rescan and Trigger cover it
			}
			if err := w.Add(d); err != nil {
				l.log.Warn("cannot watch directory", zap.String("dir", d), zap.Error(err))
				continue
			}
			watched[d] = true
		}
	}
	watch()

	var events <-chan fsnotify.Event
	var werrs <-chan error
	if w != nil {
		events, werrs = w.Events, w.Errors
	}
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	var rescan <-chan time.Time
	if l.cfg.Rescan > 0 {
		t := time.NewTicker(l.cfg.Rescan)
		defer t.Stop()
		rescan = t.C
	}
	reload := func(why string) {
		changed, _ := l.ReloadServing()
		if changed {
			l.log.Info("zones published", zap.String("reason", why), zap.Int("zones", len(l.store.Load().Zones())))
		}
		watch()
	}
	// Catch what changed between the caller's first Reload and the watch.
	reload("start")
	for {
		select {
		case <-ctx.Done():
			debounce.Stop()
			l.bg.Wait()
			return ctx.Err()
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			// Every other event, whatever the file (a zone, an include, the
			// ConfigMap ..data link), restarts the quiet period; the reload
			// itself decides by content hash what changed.
			debounce.Reset(l.cfg.Debounce)
		case err, ok := <-werrs:
			if !ok {
				werrs = nil
				continue
			}
			l.log.Warn("zone watcher error, rescanning", zap.Error(err))
			debounce.Reset(l.cfg.Debounce)
		case <-debounce.C:
			reload("change")
		case <-l.trigger:
			reload("signal")
		case <-rescan:
			reload("rescan")
		}
	}
}

// watchDirs is the zones directory and every directory holding an include.
func (l *Loader) watchDirs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	dirs := append([]string{l.cfg.Dir}, l.cfg.ExtraDirs...)
	for _, st := range l.files {
		for _, inc := range st.includes {
			dirs = append(dirs, filepath.Dir(inc))
		}
	}
	slices.Sort(dirs[1:])
	return slices.Compact(dirs)
}

// zoneFiles lists the *.zone files of dir in name order, skipping hidden
// files and anything that is not (a link to) a regular file; entries that
// cannot be examined (a dangling link) are returned as problems.
func zoneFiles(dir string) (paths []string, problems []error, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, &Error{File: dir, Reason: errReason(err), Err: err}
	}
	for _, ent := range ents { // ReadDir sorts by name
		name := ent.Name()
		if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".zone") {
			continue
		}
		path := filepath.Join(dir, name)
		st, err := os.Stat(path)
		if err != nil {
			problems = append(problems, &Error{File: path, Reason: errReason(err), Err: err})
			continue
		}
		if st.Mode().IsRegular() {
			paths = append(paths, path)
		}
	}
	return paths, problems, nil
}

// contentSum identifies the content of a zone file (and its includes'), to
// tell whether it changed since it was parsed: a 64-bit hash/maphash with
// a seed made when the process starts (contentSeed), so sums are compared
// within one process only. hash/maphash reads a 25 MB file in about 2 ms,
// SHA-256 in 13. A change that keeps the sum (1 in 2^64, and not
// predictable without the seed) would be picked up at the next one.
type contentSum uint64

var contentSeed = maphash.MakeSeed()

// fingerprint is the sum of a zone file's content (dataSum, its hashData)
// and its includes' content (an include that cannot be read hashes as
// empty, which differs from any earlier successful read only if it had
// content), its loops paced by p.
func fingerprint(dataSum contentSum, includes []string, p pacing) contentSum {
	var h maphash.Hash
	h.SetSeed(contentSeed)
	var b8 [8]byte
	h.Write(binary.BigEndian.AppendUint64(b8[:0], uint64(dataSum)))
	for _, inc := range includes {
		h.WriteByte(0)
		h.WriteString(inc)
		if b, err := os.ReadFile(inc); err == nil {
			h.Write(binary.BigEndian.AppendUint64(b8[:0], uint64(hashData(b, p))))
		}
	}
	return contentSum(h.Sum64())
}

// hashChunk is how much of a file hashData hashes between two yields
// (about 0.1ms).
const hashChunk = 1 << 20

// hashData returns the sum of data, yielding the core (p.yield) between
// chunks.
func hashData(data []byte, p pacing) contentSum {
	var h maphash.Hash
	h.SetSeed(contentSeed)
	for len(data) > 0 {
		n := min(len(data), hashChunk)
		h.Write(data[:n])
		data = data[n:]
		if len(data) > 0 {
			p.yield()
		}
	}
	return contentSum(h.Sum64())
}

// serialLess reports whether serial a is older than b in RFC 1982 serial
// number arithmetic.
func serialLess(a, b uint32) bool {
	return a != b && int32(a-b) < 0
}

// unjoin flattens errors.Join trees into their leaves.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}
