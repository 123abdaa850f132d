package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"
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
