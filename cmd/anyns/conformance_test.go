package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The conformance test serves the shipped zones from anyns, Knot DNS and NSD
// side by side and compares their answers to the same queries. Where the two
// reference servers agree with each other, anyns must give the same answer;
// where they disagree, the difference is only logged.

// expandZone writes the records of a shipped zone, one per line, with
// $GENERATE and friends expanded (neither Knot nor NSD read $GENERATE).
func expandZone(t *testing.T, src, dst string) {
	t.Helper()
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b strings.Builder
	zp := dns.NewZoneParser(f, "", src)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		b.WriteString(rr.String())
		b.WriteByte('\n')
	}
	if err := zp.Err(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// freePort returns a port free on 127.0.0.1 for both UDP and TCP, as far as
// one can tell without holding it.
func freePort(t *testing.T) int {
	t.Helper()
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", l.Addr().String())
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// startRef starts a reference server process and stops it by PID at cleanup.
func startRef(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	out := &safeBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
}

// awaitSOA polls addr until it answers example.com SOA authoritatively.
func awaitSOA(t *testing.T, name, addr string) {
	t.Helper()
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion("example.net.", dns.TypeSOA)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if r, _, err := c.Exchange(m, addr); err == nil && r.Rcode == dns.RcodeSuccess && r.Authoritative {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s at %s did not serve the zones within 15s", name, addr)
}

// startKnot serves dir's expanded zones with knotd and returns its address.
func startKnot(t *testing.T, zones []string, dir string) string {
	t.Helper()
	port := freePort(t)
	conf := fmt.Sprintf("server:\n  rundir: %[1]s\n  listen: 127.0.0.1@%[2]d\n  identity: knot-ref\n  nsid: knot-ref\n  user: root\n"+
		"database:\n  storage: %[1]s\nlog:\n  - target: stderr\n    any: warning\n"+
		"acl:\n  - id: local-xfr\n    address: 127.0.0.0/8\n    action: transfer\n"+
		"template:\n  - id: default\n    storage: %[1]s\n    zonefile-sync: -1\n    journal-content: none\n    semantic-checks: off\n    acl: local-xfr\nzone:\n", dir, port)
	for _, z := range zones {
		conf += fmt.Sprintf("  - domain: %s\n    file: %s.zone\n", z, z)
	}
	cf := filepath.Join(dir, "knot.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	startRef(t, "knotd", "-c", cf)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	awaitSOA(t, "knotd", addr)
	return addr
}

// startNSD serves dir's expanded zones with nsd and returns its address.
func startNSD(t *testing.T, zones []string, dir string) string {
	t.Helper()
	port := freePort(t)
	conf := fmt.Sprintf("server:\n  ip-address: 127.0.0.1\n  port: %[2]d\n  zonesdir: %[1]s\n  username: \"\"\n  chroot: \"\"\n"+
		"  pidfile: %[1]s/nsd.pid\n  database: \"\"\n  xfrdfile: %[1]s/xfrd.state\n  zonelistfile: %[1]s/zone.list\n  xfrdir: %[1]s\n"+
		"  server-count: 1\n  rrl-ratelimit: 0\n  identity: nsd-ref\n  nsid: \"ascii_nsd-ref\"\n  verbosity: 0\n  hide-version: yes\nremote-control:\n  control-enable: no\n", dir, port)
	for _, z := range zones {
		conf += fmt.Sprintf("zone:\n  name: %s\n  zonefile: %s.zone\n", z, z)
	}
	cf := filepath.Join(dir, "nsd.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	startRef(t, "nsd", "-d", "-c", cf)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	awaitSOA(t, "nsd", addr)
	return addr
}

// summary is the comparable form of a response: header bits and each
// section as a sorted list of records in presentation form.
type summary struct {
	Rcode      string
	AA, TC     bool
	Answer, NS []string
	Extra      []string
}

func summarize(r *dns.Msg) summary {
	sec := func(rrs []dns.RR) []string {
		var out []string
		for _, rr := range rrs {
			if rr.Header().Rrtype == dns.TypeOPT {
				continue
			}
			out = append(out, strings.ToLower(strings.ReplaceAll(rr.String(), "\t", " ")))
		}
		slices.Sort(out)
		return out
	}
	return summary{Rcode: dns.RcodeToString[r.Rcode], AA: r.Authoritative, TC: r.Truncated,
		Answer: sec(r.Answer), NS: sec(r.Ns), Extra: sec(r.Extra)}
}

func (s summary) String() string {
	return fmt.Sprintf("%s aa=%v tc=%v\n  answer: %v\n  authority: %v\n  additional: %v", s.Rcode, s.AA, s.TC, s.Answer, s.NS, s.Extra)
}

func equalSummary(a, b summary) bool {
	return a.Rcode == b.Rcode && a.AA == b.AA && a.TC == b.TC &&
		slices.Equal(a.Answer, b.Answer) && slices.Equal(a.NS, b.NS) && slices.Equal(a.Extra, b.Extra)
}

func TestConformanceKnotNSD(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Knot DNS and NSD")
	}
	for _, bin := range []string{"knotd", "nsd"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (the README's test command installs knot and nsd)", bin)
		}
	}
	zones := []string{"example.com", "example.net"}
	knotDir, nsdDir := t.TempDir(), t.TempDir()
	for _, z := range zones {
		src := filepath.Join(shippedZones(t), z+".zone")
		expandZone(t, src, filepath.Join(knotDir, z+".zone"))
		expandZone(t, src, filepath.Join(nsdDir, z+".zone"))
	}
	knot := startKnot(t, zones, knotDir)
	nsd := startNSD(t, zones, nsdDir)
	in := startAnyns(t, "--listen", "127.0.0.1:0", "--zones", shippedZones(t), "--id", "anyns-conf")

	names := []string{
		"example.com.", "www.example.com.", "web.example.com.", "host1.example.com.", "ns1.example.com.",
		"mail.example.com.", "ftp.example.com.", "loop1.example.com.", "_sip._udp.example.com.",
		"sip.example.com.", "x.wild.example.com.", "a.b.wild.example.com.", "explicit.wild.example.com.",
		"*.wild.example.com.", "wild.example.com.", "ent.example.com.", "b.ent.example.com.",
		"a.b.ent.example.com.", "x.ent.example.com.", "sub.example.com.", "www.sub.example.com.",
		"ns1.sub.example.com.", "old.example.com.", "www.old.example.com.", "mail.old.example.com.",
		"host-3.example.com.", "nonexistent.example.com.", "WwW.ExAmPlE.CoM.",
		"example.net.", "www.example.net.", "mail.example.net.", "ns2.example.net.", "alias.example.net.",
		"_xmpp-server._tcp.example.net.", "bob.users.example.net.", "users.example.net.", "nope.example.net.",
		"example.org.", "com.",
	}
	types := []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeMX, dns.TypeTXT, dns.TypeNS, dns.TypeSOA,
		dns.TypeCNAME, dns.TypeSRV, dns.TypeDS, dns.TypeDNAME, dns.TypePTR}

	c := &dns.Client{Timeout: 2 * time.Second}
	ask := func(addr, name string, qt uint16, edns bool) summary {
		m := new(dns.Msg)
		m.SetQuestion(name, qt)
		m.RecursionDesired = false
		if edns {
			m.SetEdns0(1232, false)
		}
		r, _, err := c.Exchange(m, addr)
		if err != nil {
			return summary{Rcode: "ERROR " + err.Error()}
		}
		return summarize(r)
	}
	var agreed, differ, refsDisagree int
	for _, edns := range []bool{false, true} {
		for _, name := range names {
			for _, qt := range types {
				k, n, a := ask(knot, name, qt, edns), ask(nsd, name, qt, edns), ask(in.addr, name, qt, edns)
				q := fmt.Sprintf("%s %s (edns %v)", name, dns.TypeToString[qt], edns)
				switch {
				case !equalSummary(k, n):
					refsDisagree++
					if !equalSummary(a, k) && !equalSummary(a, n) {
						t.Logf("%s: Knot and NSD disagree and anyns matches neither\nknot: %v\nnsd:  %v\nanyns: %v", q, k, n, a)
					}
				case equalSummary(a, k):
					agreed++
				default:
					differ++
					t.Errorf("%s: Knot and NSD agree, anyns differs\nreference: %v\nanyns:     %v", q, k, a)
				}
			}
		}
	}
	t.Logf("%d queries: %d answered as Knot and NSD both do, %d where they disagree with each other, %d where anyns differs from both",
		agreed+differ+refsDisagree, agreed, refsDisagree, differ)
}
