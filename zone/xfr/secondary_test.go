package xfr

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/anyns/anyns/zone"
)

const org = "example.org."

var localhost = netip.MustParseAddr("127.0.0.1")

// running is a Secondary running for one test.
type running struct {
	*Secondary
	dir     string
	changes chan struct{}
	stop    func()
}

// testConfig is a config for one zone (or catalog, when catalog is set)
// served by p, with short timers.
func testConfig(dir string, p *fakePrimary, name string, catalog bool, key string) Config {
	src := Source{Zone: name, Primaries: []netip.AddrPort{p.addr}, TSIG: key}
	if catalog {
		src = Source{Catalog: name, Primaries: []netip.AddrPort{p.addr}, TSIG: key}
	}
	return Config{
		Dir:         dir,
		Keys:        []Key{{Name: testKeyName, Algorithm: "hmac-sha256", Secret: testSecret}},
		Sources:     []Source{src},
		MinInterval: time.Hour, // no timer fires during a test unless it says so
		Timeout:     2 * time.Second,
		Attempts:    1,
	}
}

func start(t *testing.T, cfg Config) *running {
	t.Helper()
	s, err := New(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	r := &running{Secondary: s, dir: cfg.Dir, changes: make(chan struct{}, 100)}
	s.OnChange = func() {
		select {
		case r.changes <- struct{}{}:
		default:
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once bool
	r.stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	}
	t.Cleanup(r.stop)
	return r
}

// status returns the status of one zone.
func (r *running) status(t *testing.T, name string) ZoneStatus {
	t.Helper()
	for _, st := range r.Status() {
		if st.Zone == name {
			return st
		}
	}
	return ZoneStatus{}
}

// waitFor polls cond every 5ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	begin := time.Now()
	for deadline := begin.Add(timeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return time.Since(begin)
		}
	}
	t.Fatalf("timed out after %v waiting for %s", timeout, what)
	return 0
}

func (r *running) waitSerial(t *testing.T, name string, serial uint32, timeout time.Duration) time.Duration {
	t.Helper()
	begin := time.Now()
	for deadline := begin.Add(timeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if st := r.status(t, name); st.HaveData && st.Serial == serial {
			return time.Since(begin)
		}
	}
	t.Fatalf("timed out after %v waiting for serial %d of %s; status %+v", timeout, serial, name, r.status(t, name))
	return 0
}

// served loads the state directory as the zone.Loader would and returns
// the records of zone name, sorted.
func served(t *testing.T, dir, name string) []string {
	t.Helper()
	path := filepath.Join(dir, fileBase(name)+".zone")
	z, err := zone.ParseFile(path, dir)
	if err != nil {
		t.Fatalf("zone file does not load: %v", err)
	}
	if z.Origin != name {
		t.Fatalf("file serves %s, want %s", z.Origin, name)
	}
	rs, err := readRecords(path, name)
	if err != nil {
		t.Fatal(err)
	}
	return texts(rs.records())
}

func wantServed(t *testing.T, dir, name string, lines ...string) {
	t.Helper()
	if got, want := served(t, dir, name), texts(rrs(t, lines...)); !slices.Equal(got, want) {
		t.Errorf("zone file of %s:\n%s\nwant:\n%s", name, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestInitialAXFR(t *testing.T) {
	p := newFakePrimary(t, "")
	v1 := zoneLines(org, 1, 86400, "www.example.org. 300 IN A 192.0.2.10", "www.example.org. 300 IN AAAA 2001:db8::10")
	p.set(v1...)
	r := start(t, testConfig(t.TempDir(), p, org, false, ""))
	took := r.waitSerial(t, org, 1, 10*time.Second)
	t.Logf("initial AXFR in %v", took)
	wantServed(t, r.dir, org, v1...)
	st := r.status(t, org)
	if st.Primary != p.addr || st.LastError != nil || st.Expired || st.LastSuccess.IsZero() || !st.NextRefresh.After(time.Now()) {
		t.Errorf("status %+v", st)
	}
	if got := p.requests(); !slices.Equal(got, []string{"SOA example.org. unsigned", "AXFR example.org. unsigned"}) {
		t.Errorf("requests %q, want a SOA query then an AXFR", got)
	}
	select {
	case <-r.changes:
	default:
		t.Error("OnChange not called")
	}
	if ents, _ := os.ReadDir(filepath.Join(r.dir, ".tmp")); len(ents) != 0 {
		t.Errorf("temporary files left: %v", ents)
	}
}

func TestNotifyIXFR(t *testing.T) {
	p := newFakePrimary(t, "")
	p.set(zoneLines(org, 1, 86400, "www.example.org. 300 IN A 192.0.2.10")...)
	r := start(t, testConfig(t.TempDir(), p, org, false, ""))
	r.waitSerial(t, org, 1, 10*time.Second)

	if r.Notify(org, netip.MustParseAddr("127.0.0.2")) {
		t.Error("Notify from a stranger accepted")
	}
	if r.Notify("example.com.", localhost) {
		t.Error("Notify for a zone we do not keep accepted")
	}
	// Two versions at once: the IXFR carries two deltas.
	p.set(zoneLines(org, 2, 86400, "www.example.org. 300 IN A 192.0.2.11", "mail.example.org. 300 IN A 192.0.2.25")...)
	v3 := zoneLines(org, 3, 86400, "www.example.org. 300 IN A 192.0.2.11", "www.example.org. 300 IN A 192.0.2.12")
	p.set(v3...)
	if !r.Notify("EXAMPLE.org", netip.MustParseAddr("::ffff:127.0.0.1")) {
		t.Fatal("Notify from the primary refused")
	}
	took := r.waitSerial(t, org, 3, 10*time.Second)
	t.Logf("NOTIFY to IXFR applied in %v", took)
	wantServed(t, r.dir, org, v3...)
	reqs := p.requests()
	if countPrefix(reqs, "IXFR") != 1 || countPrefix(reqs, "AXFR") != 1 {
		t.Errorf("requests %q: want one AXFR (initial) and one IXFR", reqs)
	}
}

func TestIXFRFallback(t *testing.T) {
	tests := []struct {
		name     string
		knob     func(p *fakePrimary)
		wantAXFR int // AXFRs after the initial one
	}{
		{"refused", func(p *fakePrimary) { p.refuse = true }, 1},
		{"whole zone in the IXFR", func(p *fakePrimary) { p.asAXFR = true }, 0},
		{"delta that does not apply", func(p *fakePrimary) { p.badDelta = true }, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newFakePrimary(t, "")
			p.set(zoneLines(org, 1, 86400, "www.example.org. 300 IN A 192.0.2.10")...)
			r := start(t, testConfig(t.TempDir(), p, org, false, ""))
			r.waitSerial(t, org, 1, 10*time.Second)
			v2 := zoneLines(org, 2, 86400, "www.example.org. 300 IN A 192.0.2.11")
			p.set(v2...)
			p.with(tt.knob)
			r.Notify(org, localhost)
			r.waitSerial(t, org, 2, 10*time.Second)
			wantServed(t, r.dir, org, v2...)
			reqs := p.requests()
			if countPrefix(reqs, "IXFR") != 1 || countPrefix(reqs, "AXFR") != 1+tt.wantAXFR {
				t.Errorf("requests %q: want one IXFR and %d AXFR after the first", reqs, tt.wantAXFR)
			}
		})
	}
}

func TestTSIG(t *testing.T) {
	t.Run("good key", func(t *testing.T) {
		p := newFakePrimary(t, testKeyName)
		p.set(zoneLines(org, 1, 86400)...)
		r := start(t, testConfig(t.TempDir(), p, org, false, testKeyName))
		r.waitSerial(t, org, 1, 10*time.Second)
		p.set(zoneLines(org, 2, 86400, "www.example.org. 300 IN A 192.0.2.11")...)
		r.Notify(org, localhost)
		r.waitSerial(t, org, 2, 10*time.Second)
		for _, q := range p.requests() {
			if !strings.HasSuffix(q, " signed") {
				t.Errorf("request %q not signed", q)
			}
		}
	})
	t.Run("bad key", func(t *testing.T) {
		p := newFakePrimary(t, testKeyName)
		p.set(zoneLines(org, 1, 86400)...)
		cfg := testConfig(t.TempDir(), p, org, false, testKeyName)
		cfg.Keys[0].Secret = "d3Jvbmcgc2VjcmV0"
		r := start(t, cfg)
		waitFor(t, 10*time.Second, "a failed check", func() bool { return r.status(t, org).LastError != nil })
		st := r.status(t, org)
		t.Logf("error: %v", st.LastError)
		if st.HaveData {
			t.Error("zone transferred with a bad key")
		}
		if _, err := os.Stat(filepath.Join(r.dir, "example.org.zone")); !os.IsNotExist(err) {
			t.Errorf("zone file written: %v", err)
		}
	})
	t.Run("primary without the key", func(t *testing.T) {
		// The primary answers unsigned: a forged answer would look so.
		p := newFakePrimary(t, "")
		p.unsigned = true
		p.set(zoneLines(org, 1, 86400)...)
		r := start(t, testConfig(t.TempDir(), p, org, false, testKeyName))
		waitFor(t, 10*time.Second, "a failed check", func() bool { return r.status(t, org).LastError != nil })
		if st := r.status(t, org); st.HaveData {
			t.Errorf("zone accepted from unsigned answers: %+v", st)
		}
	})
}

func TestExpire(t *testing.T) {
	p := newFakePrimary(t, "")
	p.set(zoneLines(org, 1, 1)...) // expire: 1 second
	cfg := testConfig(t.TempDir(), p, org, false, "")
	cfg.MinInterval = 20 * time.Millisecond // refresh 3600 is capped by MaxInterval below
	cfg.MaxInterval = 100 * time.Millisecond
	r := start(t, cfg)
	r.waitSerial(t, org, 1, 10*time.Second)
	if r.Expired(org) {
		t.Fatal("expired at once")
	}
	// Refreshes keep it current while the primary answers.
	before := r.status(t, org).LastSuccess
	waitFor(t, 10*time.Second, "a refresh", func() bool { return r.status(t, org).LastSuccess.After(before) })

	p.with(func(p *fakePrimary) { p.down = true })
	took := waitFor(t, 10*time.Second, "expiry", func() bool { return r.Expired(org) })
	t.Logf("expired %v after the primary went down", took)
	st := r.status(t, org)
	if !st.Expired || st.LastError == nil {
		t.Errorf("status %+v", st)
	}
	if _, err := os.Stat(filepath.Join(r.dir, "example.org.zone")); err != nil {
		t.Errorf("the zone file must stay: %v", err)
	}
	p.with(func(p *fakePrimary) { p.down = false })
	waitFor(t, 10*time.Second, "recovery", func() bool { return !r.Expired(org) })
	if st := r.status(t, org); st.Expired || st.LastError != nil {
		t.Errorf("status after recovery %+v", st)
	}
}

func TestBrokenTransferKeepsFile(t *testing.T) {
	tests := []struct {
		name   string
		broken []string
	}{
		{"zone without NS does not load", []string{
			"example.org. 300 IN SOA ns.example.org. host.example.org. 2 3600 600 86400 60",
			"www.example.org. 300 IN A 192.0.2.11",
			"example.org. 300 IN SOA ns.example.org. host.example.org. 2 3600 600 86400 60"}},
		{"record outside the zone", []string{
			"example.org. 300 IN SOA ns.example.org. host.example.org. 2 3600 600 86400 60",
			"example.org. 300 IN NS ns.example.org.",
			"www.example.com. 300 IN A 192.0.2.11",
			"example.org. 300 IN SOA ns.example.org. host.example.org. 2 3600 600 86400 60"}},
		{"final SOA of another serial", []string{
			"example.org. 300 IN SOA ns.example.org. host.example.org. 2 3600 600 86400 60",
			"example.org. 300 IN NS ns.example.org.",
			"example.org. 300 IN SOA ns.example.org. host.example.org. 3 3600 600 86400 60"}},
		{"CNAME beside other data", []string{
			"example.org. 300 IN SOA ns.example.org. host.example.org. 2 3600 600 86400 60",
			"example.org. 300 IN NS ns.example.org.",
			"www.example.org. 300 IN A 192.0.2.11",
			"www.example.org. 300 IN CNAME example.org.",
			"example.org. 300 IN SOA ns.example.org. host.example.org. 2 3600 600 86400 60"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newFakePrimary(t, "")
			p.set(zoneLines(org, 1, 86400, "www.example.org. 300 IN A 192.0.2.10")...)
			r := start(t, testConfig(t.TempDir(), p, org, false, ""))
			r.waitSerial(t, org, 1, 10*time.Second)
			path := filepath.Join(r.dir, "example.org.zone")
			good, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			p.set(zoneLines(org, 2, 86400, "www.example.org. 300 IN A 192.0.2.11")...)
			p.with(func(p *fakePrimary) { p.refuse, p.broken = true, rrs(t, tt.broken...) })
			<-r.changes // the initial version
			r.Notify(org, localhost)
			waitFor(t, 10*time.Second, "the failed transfer", func() bool { return r.status(t, org).LastError != nil })
			t.Logf("error: %v", r.status(t, org).LastError)
			if now, _ := os.ReadFile(path); string(now) != string(good) {
				t.Errorf("zone file changed:\n%s", now)
			}
			if st := r.status(t, org); st.Serial != 1 {
				t.Errorf("serial %d, want 1", st.Serial)
			}
			select {
			case <-r.changes:
				t.Error("OnChange called for a failed transfer")
			default:
			}
			if ents, _ := os.ReadDir(filepath.Join(r.dir, ".tmp")); len(ents) != 0 {
				t.Errorf("temporary files left: %v", ents)
			}
		})
	}
}

func TestRestartFromDisk(t *testing.T) {
	dir := t.TempDir()
	p := newFakePrimary(t, "")
	v1 := zoneLines(org, 7, 86400, "www.example.org. 300 IN A 192.0.2.10")
	p.set(v1...)
	cfg := testConfig(dir, p, org, false, "")
	r := start(t, cfg)
	r.waitSerial(t, org, 7, 10*time.Second)
	r.stop()
	p.srv.Shutdown() // the primary is gone

	r2 := start(t, cfg)
	// Loaded from disk before any exchange with the primary.
	r2.waitSerial(t, org, 7, 5*time.Second)
	if r2.Expired(org) {
		t.Error("expired after a restart")
	}
	zs, err := zone.LoadDir(dir)
	if err != nil || len(zs) != 1 || zs[0].Origin != org || zs[0].Serial != 7 {
		t.Fatalf("the zone.Loader's view of the state directory: %v, %v", zs, err)
	}
	waitFor(t, 10*time.Second, "the failed check", func() bool { return r2.status(t, org).LastError != nil })
	if st := r2.status(t, org); !st.HaveData || st.Serial != 7 || st.Expired {
		t.Errorf("status %+v", st)
	}
	wantServed(t, dir, org, v1...)
}

func TestRestartExpired(t *testing.T) {
	dir := t.TempDir()
	p := newFakePrimary(t, "")
	p.set(zoneLines(org, 7, 3600)...)
	cfg := testConfig(dir, p, org, false, "")
	cfg.MinInterval = time.Second
	r := start(t, cfg)
	r.waitSerial(t, org, 7, 10*time.Second)
	r.stop()
	p.with(func(p *fakePrimary) { p.down = true })
	// The last success was two hours ago: past the expire of an hour.
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "example.org.zone"), old, old); err != nil {
		t.Fatal(err)
	}
	r2 := start(t, cfg)
	waitFor(t, 5*time.Second, "expired at start", func() bool { return r2.Expired(org) })
}

func TestCatalog(t *testing.T) {
	const cat = "catalog.invalid."
	catalog := func(serial uint32, members ...string) []string {
		lines := []string{
			cat + " 0 IN SOA invalid. invalid. " + itoa(serial) + " 3600 600 86400 0",
			cat + " 0 IN NS invalid.",
			`version.catalog.invalid. 0 IN TXT "2"`,
		}
		for i, m := range members {
			lines = append(lines, "m"+itoa(uint32(i))+m[:3]+".zones."+cat+" 0 IN PTR "+m)
		}
		return lines
	}
	p := newFakePrimary(t, testKeyName)
	p.set(catalog(1, "example.org.", "example.net.")...)
	p.set(zoneLines("example.org.", 1, 86400)...)
	p.set(zoneLines("example.net.", 1, 86400)...)
	p.set(zoneLines("example.com.", 1, 86400)...)
	dir := t.TempDir()
	r := start(t, testConfig(dir, p, cat, true, testKeyName))
	r.waitSerial(t, "example.org.", 1, 10*time.Second)
	r.waitSerial(t, "example.net.", 1, 10*time.Second)
	if _, err := os.Stat(filepath.Join(dir, "catalog.invalid.catalog")); err != nil {
		t.Errorf("catalog file: %v", err)
	}
	zs, err := zone.LoadDir(dir)
	if err != nil || len(zs) != 2 {
		t.Fatalf("the Loader would serve %v (%v), want the two members and not the catalog", zs, err)
	}
	if st := r.status(t, "example.org."); st.Catalog != cat {
		t.Errorf("member status %+v", st)
	}

	// Members inherit the catalog's primaries and key: NOTIFY works for them.
	p.set(zoneLines("example.net.", 2, 86400)...)
	if !r.Notify("example.net.", localhost) {
		t.Error("Notify for a member refused")
	}
	r.waitSerial(t, "example.net.", 2, 10*time.Second)

	// example.org. leaves, example.com. joins.
	p.set(catalog(2, "example.net.", "example.com.")...)
	r.Notify(cat, localhost)
	r.waitSerial(t, "example.com.", 1, 10*time.Second)
	waitFor(t, 10*time.Second, "example.org. removed", func() bool {
		_, err := os.Stat(filepath.Join(dir, "example.org.zone"))
		return os.IsNotExist(err) && r.status(t, "example.org.").Zone == ""
	})
	if r.Notify("example.org.", localhost) {
		t.Error("Notify for a removed member accepted")
	}

	// A catalog of another version is not processed: members stay, and
	// the catalog file keeps the last version that was.
	bad := catalog(3)
	bad[2] = `version.catalog.invalid. 0 IN TXT "3"`
	p.set(bad...)
	r.Notify(cat, localhost)
	waitFor(t, 10*time.Second, "the catalog refused", func() bool { return r.status(t, cat).LastError != nil })
	if st := r.status(t, cat); st.Serial != 2 {
		t.Errorf("catalog serial %d, want 2", st.Serial)
	}
	if r.status(t, "example.com.").Zone == "" {
		t.Error("a catalog of version 3 removed its members")
	}
	for _, q := range p.requests() {
		if !strings.HasSuffix(q, " signed") {
			t.Errorf("request %q not signed", q)
		}
	}

	// A restart serves the members from disk at once.
	r.stop()
	p.srv.Shutdown()
	r2 := start(t, testConfig(dir, p, cat, true, testKeyName))
	r2.waitSerial(t, "example.com.", 1, 5*time.Second)
	r2.waitSerial(t, "example.net.", 2, 5*time.Second)
}
