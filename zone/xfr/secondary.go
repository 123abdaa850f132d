package xfr

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"

	"github.com/anyns/anyns/zone"
)

// ZoneStatus is the state of one secondary zone (or catalog zone).
type ZoneStatus struct {
	Zone      string // canonical
	Catalog   string // the catalog that lists the zone; "" if configured
	IsCatalog bool   // whether the zone is a catalog (not served)
	File      string // where its versions are written
	// HaveData reports whether a version is on disk; Serial is its serial.
	HaveData bool
	Serial   uint32
	// Primary is the primary of the last successful check.
	Primary     netip.AddrPort
	LastSuccess time.Time // last check that found the zone current
	LastAttempt time.Time // last check, successful or not
	LastError   error     // of the last check; nil after a success
	// Expired reports whether expire passed since LastSuccess: the zone
	// must not be served.
	Expired     bool
	NextRefresh time.Time
}

// Secondary keeps the secondary zones of a Config current in its state
// directory. Notify, Status and Expired are safe from any goroutine; Run is
// called once.
type Secondary struct {
	// OnChange is called after a new version of a zone is written, a zone
	// file is removed (a catalog dropped the zone), or a zone expires or
	// stops being expired. cmd/anyns sets it to Loader.Trigger. It is
	// called from the zones' goroutines, possibly concurrently, and must
	// not block. Set it before Run.
	OnChange func()

	cfg  Config
	log  *zap.Logger
	keys map[string]*tsigKey
	x    exchanger
	now  func() time.Time

	mu    sync.Mutex
	zones map[string]*zoneState // by canonical name; guarded by mu

	expired atomic.Pointer[map[string]bool]
}

// zoneState is one zone the Secondary keeps. Fields below mu are guarded
// by Secondary.mu; the others are set before the zone's goroutine starts.
type zoneState struct {
	name      string // canonical
	catalog   string // listing catalog for a member, "" otherwise
	isCatalog bool
	primaries []netip.AddrPort
	key       *tsigKey
	path      string
	notify    chan struct{} // capacity 1: NOTIFYs coalesce
	cancel    context.CancelFunc
	done      chan struct{} // closed when the goroutine ends

	// guarded by mu
	soa     *dns.SOA // of the version on disk; nil if none
	st      ZoneStatus
	members map[string]string // a catalog's members: zone -> unique ID
}

// New returns a Secondary for cfg, which must be valid (Validate). It
// starts nothing and touches no file until Run.
func New(cfg Config, log *zap.Logger) (*Secondary, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = zap.NewNop()
	}
	s := &Secondary{
		cfg:   cfg,
		log:   log.Named("xfr"),
		keys:  make(map[string]*tsigKey),
		x:     exchanger{timeout: cfg.Timeout},
		now:   time.Now,
		zones: make(map[string]*zoneState),
	}
	for _, k := range cfg.Keys {
		n := dns.CanonicalName(k.Name)
		s.keys[n] = &tsigKey{name: n, alg: algorithms[strings.ToLower(strings.TrimSuffix(k.Algorithm, "."))], secret: k.Secret}
	}
	for _, src := range cfg.Sources {
		var key *tsigKey
		if src.TSIG != "" {
			key = s.keys[dns.CanonicalName(src.TSIG)]
		}
		if src.Catalog != "" {
			s.addState(dns.CanonicalName(src.Catalog), "", true, src.Primaries, key)
		} else {
			s.addState(dns.CanonicalName(src.Zone), "", false, src.Primaries, key)
		}
	}
	s.publishExpired()
	return s, nil
}

// addState registers a zone; s.mu must be held or s not yet shared.
func (s *Secondary) addState(name, catalog string, isCatalog bool, primaries []netip.AddrPort, key *tsigKey) *zoneState {
	suffix := ".zone"
	if isCatalog {
		suffix = ".catalog"
	}
	z := &zoneState{
		name: name, catalog: catalog, isCatalog: isCatalog,
		primaries: slices.Clone(primaries), key: key,
		path:   filepath.Join(s.cfg.Dir, fileBase(name)+suffix),
		notify: make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	z.st = ZoneStatus{Zone: name, Catalog: catalog, IsCatalog: isCatalog, File: z.path}
	s.zones[name] = z
	return z
}

// Notify handles a NOTIFY (RFC 1996) for zone from the address from: if
// zone is a secondary zone (or catalog) of this Secondary and from is one
// of its primaries, the zone's SOA is checked now and Notify reports true
// (the server then answers NOERROR); otherwise it reports false (REFUSED
// or NOTAUTH). It never blocks.
func (s *Secondary) Notify(zoneName string, from netip.Addr) bool {
	s.mu.Lock()
	z := s.zones[dns.CanonicalName(zoneName)]
	s.mu.Unlock()
	if z == nil {
		return false
	}
	from = from.Unmap()
	for _, p := range z.primaries {
		if p.Addr().Unmap() == from {
			select {
			case z.notify <- struct{}{}:
			default:
			}
			return true
		}
	}
	return false
}

// Expired reports whether zoneName (canonical, as zone.Zone.Origin) is a
// secondary zone whose SOA expire passed without a successful refresh: the
// server answers SERVFAIL for it. It takes no lock and does not allocate.
func (s *Secondary) Expired(zoneName string) bool {
	return (*s.expired.Load())[zoneName]
}

// Status returns the state of every zone, sorted by name.
func (s *Secondary) Status() []ZoneStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ZoneStatus, 0, len(s.zones))
	for _, z := range s.zones {
		out = append(out, z.st)
	}
	slices.SortFunc(out, func(a, b ZoneStatus) int { return strings.Compare(a.Zone, b.Zone) })
	return out
}

// publishExpired rebuilds the map Expired reads; s.mu must be held or s
// not yet shared.
func (s *Secondary) publishExpired() {
	m := make(map[string]bool)
	for n, z := range s.zones {
		if z.st.Expired && !z.isCatalog {
			m[n] = true
		}
	}
	s.expired.Store(&m)
}

func (s *Secondary) changed() {
	if s.OnChange != nil {
		s.OnChange()
	}
}

// Run keeps every zone current until ctx is done, then waits for the
// zones' goroutines and returns ctx.Err(). It first loads what the state
// directory holds (zone files, catalogs and their members), removes zone
// files no configuration or catalog names any more, and calls OnChange
// once if it removed any. It returns an error without running only if the
// state directory cannot be created.
func (s *Secondary) Run(ctx context.Context) error {
	if len(s.zones) == 0 {
		<-ctx.Done()
		return ctx.Err()
	}
	if err := os.MkdirAll(s.tmpDir(), 0o755); err != nil {
		return fmt.Errorf("secondary state directory: %w", err)
	}
	s.mu.Lock()
	configured := make([]*zoneState, 0, len(s.zones))
	for _, z := range s.zones {
		configured = append(configured, z)
	}
	allCatalogs := true
	for _, z := range configured {
		s.loadLocked(z)
		if z.isCatalog {
			if z.soa == nil {
				allCatalogs = false
			} else if rs, err := readRecords(z.path, z.name); err == nil {
				if members, err := parseCatalog(z.name, rs.records()); err == nil {
					s.addMembersLocked(z, members)
				} else {
					s.log.Warn("catalog on disk not usable", zap.String("zone", z.name), zap.Error(err))
					allCatalogs = false
				}
			}
		}
	}
	// Every zone gets its context before any goroutine starts, so that a
	// catalog removing a member always finds it cancellable.
	zs := make([]*zoneState, 0, len(s.zones))
	ctxs := make([]context.Context, 0, len(s.zones))
	for _, z := range s.zones {
		zs = append(zs, z)
		ctxs = append(ctxs, s.prepareLocked(ctx, z))
	}
	s.publishExpired()
	s.mu.Unlock()
	if allCatalogs && s.removeOrphans() {
		s.changed()
	}

	var wg sync.WaitGroup
	for i, z := range zs {
		s.launch(ctxs[i], &wg, z)
	}
	<-ctx.Done()
	wg.Wait()
	return ctx.Err()
}

func (s *Secondary) tmpDir() string { return filepath.Join(s.cfg.Dir, ".tmp") }

// prepareLocked gives z a context of its own, so that a catalog can stop
// a member; s.mu is held.
func (s *Secondary) prepareLocked(ctx context.Context, z *zoneState) context.Context {
	zctx, cancel := context.WithCancel(ctx)
	z.cancel = cancel
	return zctx
}

// launch runs z's goroutine under zctx (from prepareLocked).
func (s *Secondary) launch(zctx context.Context, wg *sync.WaitGroup, z *zoneState) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(z.done)
		s.runZone(zctx, wg, z)
	}()
}

// loadLocked reads the version of z on disk, if any; s.mu is held.
func (s *Secondary) loadLocked(z *zoneState) {
	fi, err := os.Stat(z.path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("zone file unreadable, transferring it again", zap.String("zone", z.name), zap.String("file", z.path), zap.Error(err))
		}
		return
	}
	zz, err := zone.ParseFile(z.path, s.cfg.Dir)
	if err == nil && zz.Origin != z.name {
		err = fmt.Errorf("file holds zone %s", zz.Origin)
	}
	if err != nil {
		s.log.Warn("zone file not loadable, transferring it again", zap.String("zone", z.name), zap.String("file", z.path), zap.Error(err))
		return
	}
	z.soa = zz.SOA()
	z.st.HaveData, z.st.Serial = true, zz.Serial
	// The file's modification time is the last successful check.
	z.st.LastSuccess = fi.ModTime()
	if s.now().After(fi.ModTime().Add(s.expireOf(z.soa))) {
		z.st.Expired = true
		s.log.Error("zone expired while we were down", zap.String("zone", z.name), zap.Uint32("serial", zz.Serial))
	}
	s.log.Info("zone loaded from the state directory", zap.String("zone", z.name), zap.Uint32("serial", zz.Serial))
}

// addMembersLocked registers the members of catalog c not yet known;
// s.mu is held. It returns those it added.
func (s *Secondary) addMembersLocked(c *zoneState, members map[string]string) []*zoneState {
	var added []*zoneState
	names := make([]string, 0, len(members))
	for m := range members {
		names = append(names, m)
	}
	slices.Sort(names)
	for _, m := range names {
		if other := s.zones[m]; other != nil {
			if other.catalog != c.name {
				s.log.Warn("catalog member ignored: already a secondary zone", zap.String("zone", m), zap.String("catalog", c.name))
			}
			continue
		}
		z := s.addState(m, c.name, false, c.primaries, c.key)
		s.loadLocked(z)
		added = append(added, z)
	}
	c.members = members
	return added
}

// removeOrphans removes the zone files of the state directory that belong
// to no zone, and reports whether it removed any.
func (s *Secondary) removeOrphans() bool {
	s.mu.Lock()
	keep := make(map[string]bool, len(s.zones))
	for _, z := range s.zones {
		keep[z.path] = true
	}
	s.mu.Unlock()
	ents, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return false
	}
	removed := false
	for _, e := range ents {
		p := filepath.Join(s.cfg.Dir, e.Name())
		if strings.HasPrefix(e.Name(), ".") || keep[p] || !e.Type().IsRegular() ||
			!(strings.HasSuffix(e.Name(), ".zone") || strings.HasSuffix(e.Name(), ".catalog")) {
			continue
		}
		if err := os.Remove(p); err == nil {
			removed = true
			s.log.Info("zone file of a zone no longer configured removed", zap.String("file", p))
		}
	}
	return removed
}

// expireOf, refreshOf and retryOf are the SOA timers clamped to the
// configured bounds.
func (s *Secondary) expireOf(soa *dns.SOA) time.Duration {
	return max(time.Duration(soa.Expire)*time.Second, s.cfg.MinInterval)
}

func (s *Secondary) clamp(d time.Duration) time.Duration {
	return min(max(d, s.cfg.MinInterval), s.cfg.MaxInterval)
}

// jitter takes up to a tenth off d, so secondaries of one primary spread
// their checks, without going below the minimum.
func (s *Secondary) jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return max(d-rand.N(d/10+1), min(d, s.cfg.MinInterval))
}

// runZone is the life of one zone: a check at start, then at each refresh
// (retry after a failure) or NOTIFY; expiry when no check succeeded for
// expire.
func (s *Secondary) runZone(ctx context.Context, wg *sync.WaitGroup, z *zoneState) {
	log := s.log.With(zap.String("zone", z.name))
	check := time.NewTimer(0)
	defer check.Stop()
	expire := time.NewTimer(time.Hour)
	expire.Stop()
	defer expire.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-expire.C:
			s.checkExpire(z, log)
			continue
		case <-z.notify:
			log.Debug("notify received, checking the serial")
		case <-check.C:
		}
		ok := s.refresh(ctx, wg, z, log)
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		var next time.Duration
		switch {
		case z.soa == nil:
			next = s.cfg.MinInterval
		case ok:
			next = s.clamp(time.Duration(z.soa.Refresh) * time.Second)
		default:
			next = s.clamp(time.Duration(z.soa.Retry) * time.Second)
		}
		next = s.jitter(next)
		z.st.NextRefresh = s.now().Add(next)
		var untilExpire time.Duration
		armExpire := z.soa != nil && !z.st.Expired
		if armExpire {
			untilExpire = max(z.st.LastSuccess.Add(s.expireOf(z.soa)).Sub(s.now()), 0)
		}
		s.mu.Unlock()
		check.Stop()
		check.Reset(next)
		expire.Stop()
		if armExpire {
			expire.Reset(untilExpire)
		}
	}
}

// checkExpire marks z expired if expire passed since its last success.
func (s *Secondary) checkExpire(z *zoneState, log *zap.Logger) {
	s.mu.Lock()
	if z.soa == nil || z.st.Expired || s.now().Before(z.st.LastSuccess.Add(s.expireOf(z.soa))) {
		s.mu.Unlock()
		return
	}
	z.st.Expired = true
	s.publishExpired()
	serial := z.st.Serial
	s.mu.Unlock()
	log.Error("zone expired: no successful refresh within the SOA expire, not serving it",
		zap.Uint32("serial", serial), zap.Uint32("expire", z.soa.Expire))
	s.changed()
}

// refresh checks z with its primaries, in order, each up to Attempts
// times, and transfers a newer version. It reports whether the zone is
// now current.
func (s *Secondary) refresh(ctx context.Context, wg *sync.WaitGroup, z *zoneState, log *zap.Logger) bool {
	s.mu.Lock()
	cur := z.soa
	z.st.LastAttempt = s.now()
	s.mu.Unlock()
	var errs []error
	for _, p := range z.primaries {
		plog := log.With(zap.Stringer("peer", p))
		for range s.cfg.Attempts {
			if ctx.Err() != nil {
				return false
			}
			soa, err := s.x.querySOA(ctx, p, z.name, z.key)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p, err))
				continue
			}
			if cur != nil && !serialNewer(soa.Serial, cur.Serial) {
				if soa.Serial == cur.Serial {
					s.succeeded(z, p, nil, plog)
					return true
				}
				errs = append(errs, fmt.Errorf("%s: serial %d is older than ours, %d", p, soa.Serial, cur.Serial))
				break // the next primary may be current
			}
			began := time.Now()
			rs, err := s.fetch(ctx, p, z, cur, plog)
			fetched := time.Now()
			var members map[string]string
			if err == nil && z.isCatalog {
				// A catalog that cannot be processed is not installed, so
				// a restart finds the last one that could.
				members, err = parseCatalog(z.name, rs.records())
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p, err))
				continue
			}
			if err := s.install(z, rs, p); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p, err))
				continue
			}
			plog.Info("zone transferred", zap.Uint32("serial", rs.soa.Serial), zap.Int("records", rs.len()),
				zap.Duration("transfer", fetched.Sub(began)), zap.Duration("write", time.Since(fetched)))
			s.succeeded(z, p, rs, plog)
			s.changed()
			if z.isCatalog {
				s.reconcile(ctx, wg, z, members, plog)
			}
			return true
		}
	}
	err := errors.Join(errs...)
	s.mu.Lock()
	z.st.LastError = err
	s.mu.Unlock()
	log.Warn("zone refresh failed", zap.Error(err))
	return false
}

// succeeded records a successful check of z (with the version rs, if
// new) and stamps the zone file with the time, for expiry after a restart.
func (s *Secondary) succeeded(z *zoneState, p netip.AddrPort, rs *recordSet, log *zap.Logger) {
	now := s.now()
	if rs == nil {
		if err := os.Chtimes(z.path, now, now); err != nil {
			log.Warn("cannot stamp the zone file", zap.String("file", z.path), zap.Error(err))
		}
	}
	s.mu.Lock()
	if rs != nil {
		z.soa = rs.soa
		z.st.HaveData, z.st.Serial = true, rs.soa.Serial
	}
	z.st.LastSuccess, z.st.Primary, z.st.LastError = now, p, nil
	wasExpired, serial := z.st.Expired, z.st.Serial
	z.st.Expired = false
	if wasExpired {
		s.publishExpired()
	}
	s.mu.Unlock()
	if wasExpired {
		log.Info("zone no longer expired", zap.Uint32("serial", serial))
		if rs == nil {
			s.changed()
		}
	}
}

// fetch transfers the version after cur (the zone if cur is nil) from p:
// IXFR when there is a current version, falling back to AXFR when the
// IXFR is refused, fails or does not apply.
func (s *Secondary) fetch(ctx context.Context, p netip.AddrPort, z *zoneState, cur *dns.SOA, log *zap.Logger) (*recordSet, error) {
	if cur != nil {
		rs, err := s.fetchIXFR(ctx, p, z, cur)
		if err == nil {
			return rs, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		log.Info("ixfr failed, falling back to axfr", zap.Uint32("serial", cur.Serial), zap.Error(err))
	}
	rrs, err := s.x.transfer(ctx, p, z.name, z.key, nil)
	if err != nil {
		return nil, err
	}
	rs, err := fromAXFR(z.name, rrs)
	if err != nil {
		return nil, fmt.Errorf("axfr: %w", err)
	}
	if cur != nil && !serialNewer(rs.soa.Serial, cur.Serial) {
		return nil, fmt.Errorf("axfr brought serial %d, not newer than %d", rs.soa.Serial, cur.Serial)
	}
	return rs, nil
}

func (s *Secondary) fetchIXFR(ctx context.Context, p netip.AddrPort, z *zoneState, cur *dns.SOA) (*recordSet, error) {
	rrs, err := s.x.transfer(ctx, p, z.name, z.key, cur)
	if err != nil {
		return nil, err
	}
	if !serialNewer(rrs[0].(*dns.SOA).Serial, cur.Serial) {
		return nil, fmt.Errorf("ixfr: serial %d is not newer than %d", rrs[0].(*dns.SOA).Serial, cur.Serial)
	}
	if !isIncremental(rrs) {
		// An AXFR-style response (RFC 1995 section 4): the whole zone.
		rs, err := fromAXFR(z.name, rrs)
		if err != nil {
			return nil, fmt.Errorf("ixfr: %w", err)
		}
		return rs, nil
	}
	old, err := readRecords(z.path, z.name)
	if err != nil {
		return nil, fmt.Errorf("ixfr: current version: %w", err)
	}
	if old.soa.Serial != cur.Serial {
		return nil, fmt.Errorf("ixfr: file has serial %d, expected %d", old.soa.Serial, cur.Serial)
	}
	rs, err := applyIXFR(old, rrs)
	if err != nil {
		return nil, fmt.Errorf("ixfr: %w", err)
	}
	return rs, nil
}

// install writes rs as z's file, after checking that it loads.
func (s *Secondary) install(z *zoneState, rs *recordSet, p netip.AddrPort) error {
	header := fmt.Sprintf("zone %s serial %d from %s at %s\nwritten by anyns; do not edit: the next transfer replaces this file",
		z.name, rs.soa.Serial, p, s.now().UTC().Format(time.RFC3339))
	return writeFile(z.path, s.tmpDir(), rs, header, func(tmp string) error {
		zz, err := zone.ParseFile(tmp, s.tmpDir())
		if err != nil {
			return fmt.Errorf("transferred zone does not load: %w", err)
		}
		if zz.Origin != z.name || zz.Serial != rs.soa.Serial {
			return fmt.Errorf("transferred zone loads as %s serial %d", zz.Origin, zz.Serial)
		}
		return nil
	})
}

// reconcile adds and removes the members of catalog c after a new
// version that lists members.
func (s *Secondary) reconcile(ctx context.Context, wg *sync.WaitGroup, c *zoneState, members map[string]string, log *zap.Logger) {
	s.mu.Lock()
	var gone []*zoneState
	for m := range c.members {
		if _, ok := members[m]; !ok {
			if z := s.zones[m]; z != nil && z.catalog == c.name {
				gone = append(gone, z)
				delete(s.zones, m)
			}
		}
	}
	added := s.addMembersLocked(c, members)
	ctxs := make([]context.Context, len(added))
	for i, z := range added {
		ctxs[i] = s.prepareLocked(ctx, z)
	}
	s.publishExpired()
	s.mu.Unlock()
	for i, z := range added {
		log.Info("catalog member added", zap.String("member", z.name))
		s.launch(ctxs[i], wg, z)
	}
	for _, z := range gone {
		// Every zone has its context before its catalog's goroutine runs
		// (Run, prepareLocked), and its goroutine closes done once
		// cancelled: after this no one writes its file.
		z.cancel()
		<-z.done
		if err := os.Remove(z.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Warn("cannot remove the zone file of a removed member", zap.String("file", z.path), zap.Error(err))
		}
		log.Info("catalog member removed", zap.String("member", z.name))
	}
	if len(gone) > 0 {
		s.changed()
	}
}
