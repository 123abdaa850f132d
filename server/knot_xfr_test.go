package server

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap/zaptest"

	"github.com/anyns/anyns/zone/xfr"
)

// TestKnotSecondary runs Knot DNS as a secondary of an in-process anyns:
// AXFR with TSIG hmac-sha256, then a new version, NOTIFY from
// xfr.Notifier, and an IXFR from the journal.
func TestKnotSecondary(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	if _, err := exec.LookPath("knotd"); err != nil {
		t.Skip("knotd not installed")
	}
	e := startXFR(t, Config{Transfer: []TransferRule{{Zone: "*", Keys: []string{xfrKey}}}}, xfrZone(t, 1, 500))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	knotAddr := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	primary := netip.MustParseAddrPort(e.addr)

	dir := t.TempDir()
	conf := fmt.Sprintf(`server:
    listen: 127.0.0.1@%d
    rundir: %[2]s
    user: root
log:
  - target: %[2]s/knot.log
    any: debug
database:
    storage: %[2]s/db
key:
  - id: %[3]s
    algorithm: hmac-sha256
    secret: %[4]s
remote:
  - id: anyns
    address: 127.0.0.1@%[5]d
    key: %[3]s
acl:
  - id: notify
    address: 127.0.0.1
    key: %[3]s
    action: notify
zone:
  - domain: example.net.
    storage: %[2]s
    master: anyns
    acl: notify
    zonefile-sync: -1
`, knotAddr.Port(), dir, xfrKey, xfrSecret, primary.Port())
	cf := filepath.Join(dir, "knot.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command("knotd", "-c", cf)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // the process we started, by PID
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "knot.log"))
			t.Logf("knotd:\n%s\n%s", out.String(), log)
		}
	})
	serial := func() uint32 {
		c := &dns.Client{Timeout: 500 * time.Millisecond}
		r, _, err := c.Exchange(question("example.net.", dns.TypeSOA), knotAddr.String())
		if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
			return 0
		}
		soa, _ := r.Answer[0].(*dns.SOA)
		if soa == nil {
			return 0
		}
		return soa.Serial
	}
	wait := func(want uint32) time.Duration {
		t.Helper()
		start := time.Now()
		for serial() != want {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("knot does not serve serial %d (has %d)", want, serial())
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Since(start)
	}
	d := wait(1)
	t.Logf("knot has serial 1 after %s (AXFR)", d)

	n, err := xfr.NewNotifier(xfr.NotifierConfig{Key: &xfr.Key{Name: xfrKey, Algorithm: "hmac-sha256", Secret: xfrSecret}}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	e.publish(t, xfrZone(t, 2, 500, "new A 192.0.2.77"))
	n.Notify("example.net.", 2, []netip.AddrPort{knotAddr})
	d = wait(2)
	t.Logf("knot has serial 2 after %s (NOTIFY, IXFR)", d)
	log, _ := os.ReadFile(filepath.Join(dir, "knot.log"))
	if !strings.Contains(string(log), "IXFR") {
		t.Errorf("knot did not use IXFR:\n%s", log)
	}
}
