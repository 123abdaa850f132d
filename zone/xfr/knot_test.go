package xfr

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
)

// knot is a knotd started for one test, as the hidden primary.
type knot struct {
	t    *testing.T
	dir  string
	conf string
	addr netip.AddrPort
	log  string
	// members are the zones assigned to the generated catalog.
	members []string
}

func (k *knot) writeConf() {
	k.t.Helper()
	var zones strings.Builder
	zones.WriteString("  - domain: example.org.\n  - domain: catalog.invalid.\n    catalog-role: generate\n")
	for _, m := range k.members {
		fmt.Fprintf(&zones, "  - domain: %s\n    catalog-role: member\n    catalog-zone: catalog.invalid.\n", m)
	}
	conf := fmt.Sprintf(`server:
    listen: %s
    rundir: %[2]s
    user: root
log:
  - target: %[2]s/knot.log
    any: info
database:
    storage: %[2]s/db
control:
    listen: %[2]s/knot.sock
key:
  - id: %[3]s
    algorithm: hmac-sha256
    secret: %[4]s
acl:
  - id: xfr
    address: 127.0.0.1
    key: %[3]s
    action: transfer
template:
  - id: default
    storage: %[2]s/zones
    file: %%s.zone
    journal-content: changes
    zonefile-load: difference
    zonefile-sync: -1
    acl: xfr
zone:
%[5]s`, strings.Replace(k.addr.String(), ":", "@", 1), k.dir, testKeyName, testSecret, zones.String())
	if err := os.WriteFile(k.conf, []byte(conf), 0o644); err != nil {
		k.t.Fatal(err)
	}
}

func (k *knot) writeZone(name string, lines ...string) {
	k.t.Helper()
	if err := os.WriteFile(filepath.Join(k.dir, "zones", name+"zone"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		k.t.Fatal(err)
	}
}

func (k *knot) knotc(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("knotc", append([]string{"-c", k.conf, "-t", "10"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("knotc %v: %v\n%s\n%s", args, err, out, k.logText())
	}
}

func (k *knot) logText() string {
	b, _ := os.ReadFile(k.log)
	return string(b)
}

// serial asks Knot for the serial of zone (0 when it does not answer),
// signed: Knot answers queries for a catalog only to those allowed to
// transfer it.
func (k *knot) serial(zone string) uint32 {
	m := new(dns.Msg)
	m.SetQuestion(zone, dns.TypeSOA)
	m.SetTsig(testKeyName, dns.HmacSHA256, 300, time.Now().Unix())
	c := &dns.Client{Net: "tcp", Timeout: time.Second, TsigSecret: map[string]string{testKeyName: testSecret}}
	r, _, err := c.Exchange(m, k.addr.String())
	if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
		return 0
	}
	if soa, ok := r.Answer[0].(*dns.SOA); ok {
		return soa.Serial
	}
	return 0
}

func freePort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

func startKnot(t *testing.T, members ...string) *knot {
	t.Helper()
	if _, err := exec.LookPath("knotd"); err != nil {
		t.Skip("knotd not installed")
	}
	if _, err := exec.LookPath("knotc"); err != nil {
		t.Skip("knotc not installed")
	}
	dir := t.TempDir()
	k := &knot{t: t, dir: dir, conf: filepath.Join(dir, "knot.conf"), log: filepath.Join(dir, "knot.log"),
		addr: netip.AddrPortFrom(localhost, freePort(t)), members: members}
	for _, d := range []string{"zones", "db"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	k.writeConf()
	return k
}

func (k *knot) run() {
	t := k.t
	var stderr bytes.Buffer
	cmd := exec.Command("knotd", "-c", k.conf)
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM) // this very process, by PID
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("knotd output:\n%s\nknot.log:\n%s", stderr.String(), k.logText())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for k.serial("example.org.") == 0 || k.serial("catalog.invalid.") == 0 {
		select {
		case err := <-exited:
			t.Fatalf("knotd exited: %v\n%s\n%s", err, stderr.String(), k.logText())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("knotd does not answer\n%s\n%s", stderr.String(), k.logText())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitKnotSerial waits until Knot serves zone with serial.
func (k *knot) waitSerial(t *testing.T, zone string, serial uint32) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("knot serving %s serial %d", zone, serial), func() bool { return k.serial(zone) == serial })
}

func TestKnotPrimary(t *testing.T) {
	if testing.Short() {
		t.Skip("starts knotd")
	}
	k := startKnot(t, "member1.test.")
	v1 := zoneLines(org, 1, 86400, "www.example.org. 300 IN A 192.0.2.10", `example.org. 300 IN TXT "v1"`)
	k.writeZone(org, v1...)
	k.writeZone("member1.test.", zoneLines("member1.test.", 1, 86400)...)
	k.writeZone("member2.test.", zoneLines("member2.test.", 5, 86400, "www.member2.test. 300 IN A 192.0.2.2")...)
	k.run()

	dir := t.TempDir()
	cfg := Config{
		Dir:  dir,
		Keys: []Key{{Name: testKeyName, Algorithm: "hmac-sha256", Secret: testSecret}},
		Sources: []Source{
			{Zone: org, Primaries: []netip.AddrPort{k.addr}, TSIG: testKeyName},
			{Catalog: "catalog.invalid.", Primaries: []netip.AddrPort{k.addr}, TSIG: testKeyName},
		},
		MinInterval: time.Hour, // only NOTIFY triggers checks after the first
		Timeout:     2 * time.Second,
	}
	r := start(t, cfg)
	took := r.waitSerial(t, org, 1, 5*time.Second)
	t.Logf("initial AXFR from knot in %v", took)
	wantServed(t, dir, org, v1...)
	r.waitSerial(t, "member1.test.", 1, 5*time.Second)

	t.Run("IXFR after zone-reload", func(t *testing.T) {
		v2 := zoneLines(org, 2, 86400, "www.example.org. 300 IN A 192.0.2.11", `example.org. 300 IN TXT "v2"`, "new.example.org. 300 IN AAAA 2001:db8::1")
		k.writeZone(org, v2...)
		k.knotc(t, "-b", "zone-reload", org)
		k.waitSerial(t, org, 2)
		if !r.Notify(org, localhost) {
			t.Fatal("Notify refused")
		}
		took := r.waitSerial(t, org, 2, time.Second)
		t.Logf("NOTIFY to IXFR from knot applied in %v", took)
		wantServed(t, dir, org, v2...)
		waitFor(t, 2*time.Second, "knot logging the IXFR", func() bool {
			return strings.Contains(k.logText(), "IXFR, outgoing")
		})
	})

	t.Run("AXFR-style answer to an IXFR from an unknown serial", func(t *testing.T) {
		// A state directory with serial 0, which Knot's journal does not
		// know: Knot answers the IXFR with the whole zone.
		dir2 := t.TempDir()
		stale := zoneLines(org, 0, 86400, "stale.example.org. 300 IN A 192.0.2.99")
		if err := os.WriteFile(filepath.Join(dir2, "example.org.zone"), []byte(strings.Join(stale, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg2 := cfg
		cfg2.Dir, cfg2.Sources = dir2, cfg.Sources[:1]
		r2 := start(t, cfg2)
		r2.waitSerial(t, org, 2, 5*time.Second)
		if got := served(t, dir2, org); strings.Contains(strings.Join(got, "\n"), "stale") {
			t.Errorf("stale record kept:\n%s", strings.Join(got, "\n"))
		}
		wantServed(t, dir2, org, served(t, dir, org)...)
	})

	t.Run("bad TSIG key", func(t *testing.T) {
		cfg3 := cfg
		cfg3.Dir, cfg3.Sources = t.TempDir(), cfg.Sources[:1]
		cfg3.Keys = []Key{{Name: testKeyName, Algorithm: "hmac-sha256", Secret: "d3Jvbmcgc2VjcmV0"}}
		r3 := start(t, cfg3)
		waitFor(t, 5*time.Second, "a failed check", func() bool { return r3.status(t, org).LastError != nil })
		if st := r3.status(t, org); st.HaveData {
			t.Errorf("transferred with a bad key: %+v", st)
		}
	})

	t.Run("catalog adds and removes a member", func(t *testing.T) {
		before := k.serial("catalog.invalid.")
		k.members = []string{"member2.test."}
		k.writeConf()
		k.knotc(t, "reload")
		waitFor(t, 10*time.Second, "knot's catalog to change", func() bool {
			s := k.serial("catalog.invalid.")
			return s != 0 && s != before
		})
		r.Notify("catalog.invalid.", localhost)
		took := r.waitSerial(t, "member2.test.", 5, 2*time.Second)
		t.Logf("catalog change to new member served in %v", took)
		waitFor(t, 2*time.Second, "member1.test. removed", func() bool {
			_, err := os.Stat(filepath.Join(dir, "member1.test.zone"))
			return os.IsNotExist(err) && r.status(t, "member1.test.").Zone == ""
		})
	})
}
