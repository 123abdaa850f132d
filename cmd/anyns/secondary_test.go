package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyns/anyns/zone/xfr"
)

// soaSerial asks addr for zone's SOA and returns the serial, or 0.
func soaSerial(addr, zone string) uint32 {
	c := &dns.Client{Timeout: 500 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion(zone, dns.TypeSOA)
	r, _, err := c.Exchange(m, addr)
	if err != nil || r.Rcode != dns.RcodeSuccess || !r.Authoritative || len(r.Answer) == 0 {
		return 0
	}
	if soa, ok := r.Answer[0].(*dns.SOA); ok {
		return soa.Serial
	}
	return 0
}

// TestSecondaryFromKnot runs the binary as a secondary of example.net. with
// Knot DNS as the hidden primary: the zone is transferred and served, and a
// restart without the primary serves it from the state directory at once.
func TestSecondaryFromKnot(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Knot DNS")
	}
	if _, err := exec.LookPath("knotd"); err != nil {
		t.Skip("knotd not installed (the README's test command installs knot)")
	}
	knotDir := t.TempDir()
	expandZone(t, filepath.Join(shippedZones(t), "example.net.zone"), filepath.Join(knotDir, "example.net.zone"))
	knot := startKnot(t, []string{"example.net"}, knotDir)

	dir := t.TempDir()
	zones := filepath.Join(dir, "zones")
	if err := os.Mkdir(zones, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(shippedZones(t), "example.com.zone"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, zones, "example.com.zone", string(data))
	state := filepath.Join(dir, "secondary")
	cfg := writeFile(t, dir, "anyns.yaml", "secondary_dir: "+state+"\nsecondary:\n  - zone: example.net.\n    primaries: [\""+knot+"\"]\n")

	in := startAnyns(t, "--config", cfg, "--listen", "127.0.0.1:0", "--zones", zones, "--id", "sec-1")
	deadline := time.Now().Add(10 * time.Second)
	for soaSerial(in.addr, "example.net.") != 2026112201 {
		if time.Now().After(deadline) {
			t.Fatalf("example.net. not transferred from Knot and served within 10s\n%s", in.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if soaSerial(in.addr, "example.com.") != 2026112201 {
		t.Error("the zones directory's example.com. is not served beside the secondary")
	}
	if _, err := os.Stat(filepath.Join(state, "example.net.zone")); err != nil {
		t.Errorf("transferred zone not written to the state directory: %v", err)
	}
	in.stop(t)

	// Restart with the primary unreachable: served from disk at once.
	cfg2 := writeFile(t, dir, "anyns2.yaml", "secondary_dir: "+state+"\nsecondary:\n  - zone: example.net.\n    primaries: [\"127.0.0.1:9\"]\n")
	in2 := startAnyns(t, "--config", cfg2, "--listen", "127.0.0.1:0", "--zones", zones, "--id", "sec-2")
	if got := soaSerial(in2.addr, "example.net."); got != 2026112201 {
		t.Errorf("after restart without the primary: serial %d, want 2026112201 served from disk", got)
	}
	in2.stop(t)
}

// TestPrimaryToKnot runs the binary as the primary of example.com. with
// Knot DNS as its secondary: Knot transfers the zone with TSIG, and an edit
// of the zone file reaches Knot through NOTIFY and IXFR.
func TestPrimaryToKnot(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Knot DNS")
	}
	if _, err := exec.LookPath("knotd"); err != nil {
		t.Skip("knotd not installed (the README's test command installs knot)")
	}
	const secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTAxMjM0NTY3ODk=" // test key only
	dir := t.TempDir()
	zones := filepath.Join(dir, "zones")
	if err := os.Mkdir(zones, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(shippedZones(t), "example.com.zone"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, zones, "example.com.zone", string(data))
	anynsPort, knotPort := freePort(t), freePort(t)
	cfg := writeFile(t, dir, "anyns.yaml", fmt.Sprintf(`tsig_keys:
  - {name: xfr-key., algorithm: hmac-sha256, secret: %s}
transfer:
  - zone: example.com.
    allow: ["key:xfr-key."]
    notify: ["127.0.0.1:%d"]
`, secret, knotPort))
	in := startAnyns(t, "--config", cfg, "--listen", fmt.Sprintf("127.0.0.1:%d", anynsPort), "--zones", zones, "--id", "primary-1")

	knotDir := t.TempDir()
	conf := fmt.Sprintf(`server:
  rundir: %[1]s
  listen: 127.0.0.1@%[2]d
  user: root
database:
  storage: %[1]s
log:
  - target: stderr
    any: info
key:
  - id: xfr-key.
    algorithm: hmac-sha256
    secret: %[3]s
remote:
  - id: anyns
    address: 127.0.0.1@%[4]d
    key: xfr-key.
acl:
  - id: notify-from-anyns
    address: 127.0.0.1
    key: xfr-key.
    action: notify
zone:
  - domain: example.com
    storage: %[1]s
    file: example.com.zone
    master: anyns
    acl: notify-from-anyns
    zonefile-sync: -1
`, knotDir, knotPort, secret, anynsPort)
	cf := filepath.Join(knotDir, "knot.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	startRef(t, "knotd", "-c", cf)
	knot := fmt.Sprintf("127.0.0.1:%d", knotPort)
	waitSerial := func(want uint32, within time.Duration) time.Duration {
		start := time.Now()
		for soaSerial(knot, "example.com.") != want {
			if time.Since(start) > within {
				t.Fatalf("Knot does not serve example.com. serial %d within %v (has %d)\n%s", want, within, soaSerial(knot, "example.com."), in.logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		return time.Since(start)
	}
	d := waitSerial(2026112201, 10*time.Second)
	t.Logf("Knot transferred example.com. from anyns (TSIG) %v after it started", d.Round(time.Millisecond))

	// Edit the zone: anyns reloads, records the difference, and NOTIFYs Knot,
	// which fetches it by IXFR.
	edited := strings.Replace(string(data), "2026112201 ; serial", "2026112202 ; serial", 1)
	edited += "new-host IN A 192.0.2.200\n"
	writeFile(t, zones, "example.com.zone.tmp", edited)
	if err := os.Rename(filepath.Join(zones, "example.com.zone.tmp"), filepath.Join(zones, "example.com.zone")); err != nil {
		t.Fatal(err)
	}
	d = waitSerial(2026112202, 5*time.Second)
	t.Logf("edit to serial 2026112202 served by Knot %v after the rename (reload debounce 200 ms + NOTIFY + IXFR)", d.Round(time.Millisecond))

	c := &dns.Client{Timeout: time.Second}
	m := new(dns.Msg)
	m.SetQuestion("new-host.example.com.", dns.TypeA)
	if r, _, err := c.Exchange(m, knot); err != nil || len(r.Answer) != 1 {
		t.Errorf("the new record did not reach Knot: %v %v", r, err)
	}
	// Without the key, AXFR is refused.
	tr := &dns.Transfer{}
	am := new(dns.Msg)
	am.SetAxfr("example.com.")
	env, err := tr.In(am, in.addr)
	if err == nil {
		for e := range env {
			if e.Error == nil {
				t.Error("AXFR without the key was answered")
			}
		}
	}
	in.stop(t)
}

// TestExpiredSecondaryFailsReadiness: a secondary zone last refreshed
// longer ago than its SOA expire (here: a file 30 days old, expire 14 days)
// is expired, and the health readiness check that gates the anycast
// announcement fails.
func TestExpiredSecondaryFailsReadiness(t *testing.T) {
	state := t.TempDir()
	data, err := os.ReadFile(filepath.Join(shippedZones(t), "example.net.zone"))
	if err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, state, "example.net.zone", string(data))
	old := time.Now().Add(-30 * 24 * time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{
		SecondaryDir: state,
		Secondary:    []xfr.Source{{Zone: "example.net.", Primaries: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")}}},
	}
	// run starts a Secondary and waits until it has read its state directory.
	run := func() *xfr.Secondary {
		sec, err := xfr.New(cfg.xfrConfig(), nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = sec.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		deadline := time.Now().Add(5 * time.Second)
		for !sec.Status()[0].HaveData {
			if time.Now().After(deadline) {
				t.Fatalf("the state directory was not read: %+v", sec.Status())
			}
			time.Sleep(5 * time.Millisecond)
		}
		return sec
	}
	sec := run()
	if !sec.Expired("example.net.") || !anyExpired(sec) {
		t.Fatalf("a zone 30 days past its refresh with expire 14 days is not expired: %+v", sec.Status())
	}
	if anyExpired(nil) {
		t.Error("no secondary: nothing expired")
	}
	// A fresh file is not expired.
	if err := os.Chtimes(path, time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if anyExpired(run()) {
		t.Error("a fresh secondary zone is reported expired")
	}
}
