//go:build linux

package main

// End-to-end anycast test with BIRD 2 as the router (issue 4's third test).
//
// The test builds a small lab out of network namespaces it creates and
// deletes itself:
//
//	  a (site-a, AS 65001)         b (site-b, AS 65002, prepend 2)
//	  192.0.2.53/32 on lo          192.0.2.53/32 on lo
//	  198.51.100.2/30              198.51.100.6/30
//	           \                   /
//	 198.51.100.1/30   r (BIRD 2, AS 65000)   198.51.100.5/30
//	                       203.0.113.1/24
//	                          |
//	                   c (client) 203.0.113.2/24
//
// BIRD imports only 192.0.2.53/32 from both instances, prefers the shorter
// AS path (site-a) and installs the best route into r's kernel table, so
// the client's queries to 192.0.2.53 reach the nearer instance. A prober
// in c (this test binary re-executed as TestBIRDProberHelper) sends a query
// with NSID every 20 ms and reports which instance answered.
//
// Every address is a documentation prefix inside namespaces the test owns;
// nothing leaves them.

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const (
	labService = "192.0.2.53"
	labPrefix  = "192.0.2.53/32"

	// Environment of the prober helper process.
	proberTargetEnv = "ANYNS_BIRD_PROBER_TARGET"
	proberMaxEnv    = "ANYNS_BIRD_PROBER_MAX"

	probeInterval = 20 * time.Millisecond
	probeTimeout  = 500 * time.Millisecond

	// nsPrefix starts the name of every namespace this test creates:
	// anynsbird-<pid>-<run>-<role>.
	nsPrefix = "anynsbird-"
)

var labRun atomic.Int32

// TestBIRDAnycast is the end-to-end anycast test: two anyns instances
// announce 192.0.2.53/32 to BIRD; the client follows the route through a
// listener failure, a recovery, a drain and a SIGTERM.
func TestBIRDAnycast(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end BIRD test skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	for _, tool := range []string{"ip", "bird", "birdc", "nft", "dig"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (.ci/deps installs iproute2, bird2, nftables and bind9-dnsutils)", tool)
		}
	}
	bin := anynsBinary(t)
	lab := newLab(t)
	lab.startBIRD()
	a := lab.startSite(bin, "site-a", lab.a, 65001, "198.51.100.2", "198.51.100.1", 0)
	b := lab.startSite(bin, "site-b", lab.b, 65002, "198.51.100.6", "198.51.100.5", 2)

	// (1) Both routes reach BIRD, site-a's preferred; the client's dig
	// shows site-a.
	start := time.Now()
	lab.awaitRoutes(t, map[string]bool{"site_a": true, "site_b": false}, 30*time.Second)
	t.Logf("routes established in BIRD %v after both instances started", time.Since(start).Round(time.Millisecond))
	lab.awaitKernelRoute(t, "198.51.100.2", 5*time.Second)
	if id := lab.digNSID(t); id != "site-a" {
		t.Fatalf("dig +nsid from the client: answered by %q, want site-a", id)
	}
	out := a.ctl(t, "status")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^identity\s+site-a$`),
		regexp.MustCompile(`(?m)^drained\s+false$`),
		regexp.MustCompile(`(?m)^192\.0\.2\.53/32\s+up\s+true\s`),
		regexp.MustCompile(`(?m)^198\.51\.100\.1\s+65000\s+established\s`),
	} {
		if !want.MatchString(out) {
			t.Errorf("anyns ctl status on site-a: no line matching %q in\n%s", want, out)
		}
	}
	st := a.status(t)
	if len(st.Prefixes) != 1 || st.Prefixes[0].Prefix != labPrefix || !st.Prefixes[0].Announced || st.Prefixes[0].Health != "up" {
		t.Errorf("ctl status --json on site-a: prefixes %+v, want %s up and announced", st.Prefixes, labPrefix)
	}
	if len(st.Neighbors) != 1 || st.Neighbors[0].Address != "198.51.100.1" || st.Neighbors[0].ASN != 65000 || st.Neighbors[0].State != "established" {
		t.Errorf("ctl status --json on site-a: neighbors %+v, want 198.51.100.1 AS65000 established", st.Neighbors)
	}
	// site-b announces too, only with a longer AS path.
	if st := b.status(t); len(st.Prefixes) != 1 || !st.Prefixes[0].Announced || len(st.Neighbors) != 1 || st.Neighbors[0].State != "established" {
		t.Errorf("ctl status --json on site-b: prefixes %+v neighbors %+v, want announced and established", st.Prefixes, st.Neighbors)
	}
	if t.Failed() {
		t.FailNow()
	}

	// (2) Stop site-a's DNS listener (drop port 53 in its namespace): its
	// own probes fail, it withdraws, answers move to site-b within 2 s.
	t.Run("listener failure", func(t *testing.T) {
		p := lab.startProber(t, 20*time.Second)
		p.awaitRun(t, "site-a", 10, time.Time{}, 5*time.Second)
		dropped := time.Now()
		lab.nft(t, lab.a, "add table inet anyns_test\n"+
			"add chain inet anyns_test input { type filter hook input priority 0; policy accept; }\n"+
			"add rule inet anyns_test input udp dport 53 drop\n"+
			"add rule inet anyns_test input tcp dport 53 drop\n")
		firstB := p.awaitRun(t, "site-b", 10, dropped, 10*time.Second)
		// While site-a is dark its status shows the prefix down and withdrawn.
		sa := a.status(t)
		if len(sa.Prefixes) != 1 || sa.Prefixes[0].Announced || sa.Prefixes[0].Health == "up" {
			t.Errorf("ctl status on site-a with its listener dropped: prefixes %+v, want not up and not announced", sa.Prefixes)
		}
		rs := p.stop(t)
		lastA := lastSent(rs, "site-a")
		failed := failures(rs, dropped)
		failover := firstB.Sub(dropped)
		t.Logf("listener failure: first site-b answer %v after dropping site-a's listener; gap between last site-a and first site-b answer %v; %d of %d queries sent after the drop failed",
			failover.Round(time.Millisecond), firstB.Sub(lastA).Round(time.Millisecond), len(failed), countSince(rs, dropped))
		if failover >= 2*time.Second {
			t.Errorf("answers moved to site-b %v after site-a's listener stopped, want < 2s", failover)
		}
		if n := countAfter(rs, "site-a", firstB); n > 0 {
			t.Errorf("%d site-a answers after the first site-b answer while site-a's listener was dropped", n)
		}
		lab.awaitRoutes(t, map[string]bool{"site_b": true}, 5*time.Second)
	})
	if t.Failed() {
		t.FailNow()
	}

	// (3) Restore the listener: after hold-down and rise, site-a announces
	// again and takes the traffic back.
	t.Run("recovery", func(t *testing.T) {
		p := lab.startProber(t, 20*time.Second)
		p.awaitRun(t, "site-b", 5, time.Time{}, 5*time.Second)
		restored := time.Now()
		lab.nft(t, lab.a, "delete table inet anyns_test\n")
		firstA := p.awaitRun(t, "site-a", 10, restored, 15*time.Second)
		rs := p.stop(t)
		t.Logf("recovery: first site-a answer %v after restoring its listener (hold-down 1s, counted from the withdrawal, then rise 2 x 200ms); %d failed queries",
			firstA.Sub(restored).Round(time.Millisecond), len(failures(rs, time.Time{})))
		if f := failures(rs, time.Time{}); len(f) > 0 {
			t.Errorf("%d queries failed while traffic moved back to site-a: %v", len(f), f)
		}
		lab.awaitRoutes(t, map[string]bool{"site_a": true, "site_b": false}, 5*time.Second)
	})
	if t.Failed() {
		t.FailNow()
	}

	// (4) anyns ctl drain: site-a withdraws but keeps serving, so the
	// move to site-b loses nothing; undrain brings the traffic back.
	t.Run("drain", func(t *testing.T) {
		p := lab.startProber(t, 20*time.Second)
		p.awaitRun(t, "site-a", 10, time.Time{}, 5*time.Second)
		drained := time.Now()
		a.ctl(t, "drain")
		firstB := p.awaitRun(t, "site-b", 10, drained, 10*time.Second)
		st := a.status(t)
		if !st.Drained || len(st.Prefixes) != 1 || st.Prefixes[0].Announced {
			t.Errorf("ctl status --json on drained site-a: drained %v, prefixes %+v; want drained and %s not announced", st.Drained, st.Prefixes, labPrefix)
		}
		if len(st.Neighbors) != 1 || st.Neighbors[0].State != "established" {
			t.Errorf("ctl status --json on drained site-a: neighbors %+v, want the session kept established", st.Neighbors)
		}
		lab.awaitRoutes(t, map[string]bool{"site_b": true}, 5*time.Second)
		undrained := time.Now()
		a.ctl(t, "undrain")
		firstA := p.awaitRun(t, "site-a", 10, undrained, 10*time.Second)
		rs := p.stop(t)
		f := failures(rs, time.Time{})
		t.Logf("drain: first site-b answer %v after ctl drain, first site-a answer %v after ctl undrain; %d of %d queries failed",
			firstB.Sub(drained).Round(time.Millisecond), firstA.Sub(undrained).Round(time.Millisecond), len(f), len(rs))
		if len(f) > 0 {
			t.Errorf("%d queries failed across drain and undrain, want 0: %v", len(f), f)
		}
		if st := a.status(t); st.Drained || len(st.Prefixes) != 1 || !st.Prefixes[0].Announced {
			t.Errorf("ctl status --json on undrained site-a: drained %v, prefixes %+v; want announced", st.Drained, st.Prefixes)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	// (5) SIGTERM on site-a while the client queries every 20 ms: zero
	// lost queries, exit 0, answers end at site-b.
	t.Run("sigterm", func(t *testing.T) {
		lab.awaitRoutes(t, map[string]bool{"site_a": true, "site_b": false}, 5*time.Second)
		p := lab.startProber(t, 20*time.Second)
		p.awaitRun(t, "site-a", 10, time.Time{}, 5*time.Second)
		termed := time.Now()
		if err := a.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		firstB := p.awaitRun(t, "site-b", 5, termed, 10*time.Second)
		if err := a.proc.wait(15 * time.Second); err != nil {
			t.Fatalf("site-a after SIGTERM: %v\n%s", err, a.proc.logs.String())
		}
		exited := time.Now()
		p.awaitRun(t, "site-b", 10, exited, 5*time.Second)
		rs := p.stop(t)
		f := failures(rs, time.Time{})
		t.Logf("sigterm: first site-b answer %v after SIGTERM, site-a exited 0 after %v; %d of %d queries failed (%d sent after SIGTERM)",
			firstB.Sub(termed).Round(time.Millisecond), exited.Sub(termed).Round(time.Millisecond), len(f), len(rs), countSince(rs, termed))
		if len(f) > 0 {
			t.Errorf("%d queries failed across site-a's graceful stop, want 0: %v", len(f), f)
		}
		if n := countAfter(rs, "site-a", exited); n > 0 {
			t.Errorf("%d site-a answers to queries sent after site-a exited", n)
		}
		if last := rs[len(rs)-1]; last.nsid != "site-b" {
			t.Errorf("last answer from %q, want site-b", last.nsid)
		}
		// The graceful-shutdown announcement (RFC 8326; BIRD's import
		// filter turns it into local-pref 0) moves the traffic before the
		// withdrawal, which follows it by min(drain/5, 1s) = 400ms.
		withdrawn := logTime(t, a.proc.logs.String(), "prefix state changed", "stopping")
		t.Logf("sigterm: site-a withdrew %v after SIGTERM; traffic had moved %v before that",
			withdrawn.Sub(termed).Round(time.Millisecond), withdrawn.Sub(firstB).Round(time.Millisecond))
		if !firstB.Before(withdrawn) {
			t.Errorf("first site-b answer at %s, not before site-a's withdrawal at %s: the graceful-shutdown announcement did not move the traffic",
				firstB.Format("15:04:05.000"), withdrawn.Format("15:04:05.000"))
		}
		lab.awaitRoutes(t, map[string]bool{"site_b": true}, 5*time.Second)
		if id := lab.digNSID(t); id != "site-b" {
			t.Errorf("dig +nsid from the client after site-a stopped: answered by %q, want site-b", id)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	// The remaining instance stops cleanly too.
	b.proc.cmd.Process.Signal(syscall.SIGTERM)
	if err := b.proc.wait(15 * time.Second); err != nil {
		t.Fatalf("site-b after SIGTERM: %v\n%s", err, b.proc.logs.String())
	}
}

// lab is the set of namespaces of one run with the processes started in
// them.
type lab struct {
	t          *testing.T
	dir        string
	r, a, b, c string // namespace names
	birdSock   string
	bird       *labProc
	procs      []*labProc
}

// labProc is a process started by the test inside a namespace through
// `ip netns exec`, which execs: the process's PID is the command's own.
type labProc struct {
	name string
	cmd  *exec.Cmd
	logs *safeBuffer
	done chan struct{}
	err  error // set before done is closed
}

func (p *labProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to d for the process to exit and returns its exit error.
func (p *labProc) wait(d time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		return fmt.Errorf("%s still running after %v", p.name, d)
	}
}

// newLab creates the namespaces, links, addresses and routes. Everything
// is deleted at cleanup, also when the test fails midway.
func newLab(t *testing.T) *lab {
	t.Helper()
	removeStaleLabs(t)
	base := fmt.Sprintf("%s%d-%d-", nsPrefix, os.Getpid(), labRun.Add(1))
	l := &lab{t: t, dir: t.TempDir(), r: base + "r", a: base + "a", b: base + "b", c: base + "c"}
	for _, ns := range []string{l.r, l.a, l.b, l.c} {
		l.must(t, "ip", "netns", "add", ns)
		// Registered first, so it runs after every process is stopped.
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Logf("ip netns del %s: %v %s", ns, err, out)
			}
		})
		l.must(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	t.Cleanup(l.stopAll)
	type side struct {
		ns, rIf, rAddr, addr, gw string
	}
	for _, s := range []side{
		{l.a, "to-a", "198.51.100.1/30", "198.51.100.2/30", "198.51.100.1"},
		{l.b, "to-b", "198.51.100.5/30", "198.51.100.6/30", "198.51.100.5"},
		{l.c, "to-c", "203.0.113.1/24", "203.0.113.2/24", "203.0.113.1"},
	} {
		l.must(t, "ip", "-n", l.r, "link", "add", s.rIf, "type", "veth", "peer", "name", "to-r", "netns", s.ns)
		l.must(t, "ip", "-n", l.r, "addr", "add", s.rAddr, "dev", s.rIf)
		l.must(t, "ip", "-n", l.r, "link", "set", s.rIf, "up")
		l.must(t, "ip", "-n", s.ns, "addr", "add", s.addr, "dev", "to-r")
		l.must(t, "ip", "-n", s.ns, "link", "set", "to-r", "up")
		l.must(t, "ip", "-n", s.ns, "route", "add", "default", "via", s.gw)
	}
	for _, ns := range []string{l.a, l.b} {
		l.must(t, "ip", "-n", ns, "addr", "add", labPrefix, "dev", "lo")
	}
	l.must(t, "ip", "netns", "exec", l.r, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	return l
}

// childEnv is the environment of the processes the test starts: without a
// GORACE of the caller's, race-enabled binaries exit at once instead of
// sleeping the race detector's default second at exit.
func childEnv() []string {
	env := os.Environ()
	if os.Getenv("GORACE") == "" {
		env = append(env, "GORACE=atexit_sleep_ms=0")
	}
	return env
}

// logTime returns the time of the first JSON log line with msg whose
// reason is reason.
func logTime(t *testing.T, logs, msg, reason string) time.Time {
	t.Helper()
	for _, line := range strings.Split(logs, "\n") {
		var m struct {
			TS     string `json:"ts"`
			Msg    string `json:"msg"`
			Reason string `json:"reason"`
		}
		if json.Unmarshal([]byte(line), &m) != nil || m.Msg != msg || m.Reason != reason {
			continue
		}
		ts, err := time.Parse("2006-01-02T15:04:05.000Z0700", m.TS)
		if err != nil {
			t.Fatalf("log line with a bad time: %v\n%s", err, line)
		}
		return ts
	}
	t.Fatalf("no log line %q with reason %q in\n%s", msg, reason, logs)
	return time.Time{}
}

// removeStaleLabs deletes namespaces left by an earlier run of this test
// whose process is gone (a crash or a kill -9 skips cleanup).
func removeStaleLabs(t *testing.T) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], nsPrefix) {
			continue
		}
		parts := strings.Split(strings.TrimPrefix(f[0], nsPrefix), "-")
		pid, err := strconv.Atoi(parts[0])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || err == syscall.EPERM {
			continue // its test is still running
		}
		if err := exec.Command("ip", "netns", "del", f[0]).Run(); err == nil {
			t.Logf("deleted namespace %s left by an earlier run", f[0])
		}
	}
}

// must runs a command and fails the test on error.
func (l *lab) must(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// start runs argv inside namespace ns with its output collected.
func (l *lab) start(name, ns string, argv ...string) *labProc {
	l.t.Helper()
	p := &labProc{name: name, logs: &safeBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	p.cmd.Env = childEnv()
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		l.t.Fatalf("start %s: %v", name, err)
	}
	l.procs = append(l.procs, p)
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	return p
}

// stopAll stops every process still running, by PID, and dumps the logs
// when the test failed.
func (l *lab) stopAll() {
	for _, p := range slices.Backward(l.procs) {
		if !p.exited() {
			sig := syscall.SIGKILL // anyns: clean stops are tested in the body
			if p == l.bird {
				sig = syscall.SIGTERM // removes its kernel routes and socket
			}
			_ = p.cmd.Process.Signal(sig)
			if p.wait(5*time.Second) != nil {
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		if l.t.Failed() {
			logs := p.logs.String()
			if len(logs) > 30000 {
				logs = "[...]" + logs[len(logs)-30000:]
			}
			l.t.Logf("--- %s log ---\n%s", p.name, logs)
		}
	}
}

const birdConf = `log stderr all;
router id 198.51.100.1;
debug protocols { states, routes };

protocol device {
	scan time 1;
}

# The best route to the service address goes into r's own kernel table,
# so r forwards the client's queries to the nearest instance.
protocol kernel {
	ipv4 { import none; export where source = RTS_BGP; };
}

# Only the service prefix is accepted; a route carrying graceful-shutdown
# (RFC 8326) drops to the lowest preference at once.
filter anycast_in {
	if net != 192.0.2.53/32 then reject;
	if (65535, 0) ~ bgp_community then bgp_local_pref = 0;
	accept;
}

template bgp anycast {
	local as 65000;
	passive on;
	hold time 3;
	ipv4 { import filter anycast_in; export none; };
}

protocol bgp site_a from anycast { neighbor 198.51.100.2 as 65001; }
protocol bgp site_b from anycast { neighbor 198.51.100.6 as 65002; }
`

// startBIRD starts BIRD 2 in r and waits for its control socket.
func (l *lab) startBIRD() {
	l.t.Helper()
	conf := filepath.Join(l.dir, "bird.conf")
	if err := os.WriteFile(conf, []byte(birdConf), 0o644); err != nil {
		l.t.Fatal(err)
	}
	l.birdSock = filepath.Join(l.dir, "bird.ctl")
	l.bird = l.start("bird", l.r, "bird", "-f", "-c", conf, "-s", l.birdSock, "-P", filepath.Join(l.dir, "bird.pid"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if exec.Command("birdc", "-s", l.birdSock, "show", "status").Run() == nil {
			return
		}
		if l.bird.exited() || time.Now().After(deadline) {
			l.t.Fatalf("BIRD did not come up: %v\n%s", l.bird.err, l.bird.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// birdRoute matches one route of `birdc show route`:
// "192.0.2.53/32 unicast [site_a 12:00:00.000] * (100) [AS65001i]".
var birdRoute = regexp.MustCompile(`unicast \[(\w+) [^\]]*\] (\*)? ?\(`)

// routes returns BIRD's routes for the service prefix: protocol name ->
// whether it is the best route.
func (l *lab) routes() (map[string]bool, string) {
	out, _ := exec.Command("birdc", "-s", l.birdSock, "show", "route", "for", labPrefix).CombinedOutput()
	got := make(map[string]bool)
	for _, m := range birdRoute.FindAllStringSubmatch(string(out), -1) {
		got[m[1]] = m[2] == "*"
	}
	return got, string(out)
}

// awaitRoutes polls BIRD until its routes for the service prefix are
// exactly want (protocol -> best).
func (l *lab) awaitRoutes(t *testing.T, want map[string]bool, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got, out := l.routes()
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		if time.Now().After(deadline) {
			proto, _ := exec.Command("birdc", "-s", l.birdSock, "show", "protocols").CombinedOutput()
			t.Fatalf("BIRD routes for %s: %v, want %v within %v\n%s\n%s", labPrefix, got, want, d, out, proto)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// awaitKernelRoute polls r's kernel table until the service prefix goes
// via gw.
func (l *lab) awaitKernelRoute(t *testing.T, gw string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		out, _ := exec.Command("ip", "-n", l.r, "route", "show", labPrefix).CombinedOutput()
		if strings.Contains(string(out), "via "+gw+" ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("r's kernel route for %s: %q, want via %s", labPrefix, out, gw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// nft loads an nftables script inside namespace ns.
func (l *lab) nft(t *testing.T, ns, script string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v\n%s\n%s", ns, err, script, out)
	}
}

var nsidLine = regexp.MustCompile(`; NSID: [0-9a-f ]*\("([^"]*)"\)`)

// digNSID runs dig +nsid from the client namespace and returns the
// identity of the instance that answered.
func (l *lab) digNSID(t *testing.T) string {
	t.Helper()
	out := l.must(t, "ip", "netns", "exec", l.c, "dig", "+nsid", "+time=1", "+tries=2", "@"+labService, "example.com", "SOA")
	status, flags := digHeader(t, out)
	if status != "NOERROR" || !hasFlag(flags, "aa") {
		t.Fatalf("dig from the client: status %s flags %v, want NOERROR with aa\n%s", status, flags, out)
	}
	m := nsidLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("dig from the client shows no NSID:\n%s", out)
	}
	return m[1]
}

// site is one anyns instance of the lab.
type site struct {
	id     string
	socket string
	bin    string
	proc   *labProc
}

// startSite starts an anyns instance in namespace ns, announcing the
// service prefix to r (at address neighbor), and waits for its startup
// line.
func (l *lab) startSite(bin, id, ns string, asn uint32, routerID, neighbor string, prepend int) *site {
	l.t.Helper()
	s := &site{id: id, bin: bin, socket: filepath.Join(l.dir, id+".sock")}
	conf := fmt.Sprintf(`identity: %s
allow_root: true # the lab runs as root
listen: ["%s:53"]
zones: %s
log: {level: info, format: json}
bgp:
  asn: %d
  router_id: %s
  drain: 2s
  neighbors:
    - address: %s
      asn: 65000
      hold_time: 3s
  announce:
    - prefix: %s
      prepend: %d
health:
  interval: 200ms
  timeout: 150ms
  rise: 2
  fall: 2
  hold_down: 1s
control:
  socket: %s
`, id, labService, shippedZones(l.t), asn, routerID, neighbor, labPrefix, prepend, s.socket)
	file := filepath.Join(l.dir, id+".yaml")
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		l.t.Fatal(err)
	}
	s.proc = l.start(id, ns, bin, "serve", "--config", file)
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, line := range strings.Split(s.proc.logs.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "anyns started" {
				if m["identity"] != id {
					l.t.Fatalf("%s started with identity %v", id, m["identity"])
				}
				return s
			}
		}
		if s.proc.exited() || time.Now().After(deadline) {
			l.t.Fatalf("%s did not start: %v\n%s", id, s.proc.err, s.proc.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ctl runs `anyns ctl --socket S args...` and returns its output.
func (s *site) ctl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(s.bin, append([]string{"ctl", "--socket", s.socket}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("anyns ctl %s on %s: %v\n%s", strings.Join(args, " "), s.id, err, out)
	}
	return string(out)
}

// ctlStatus is the part of `anyns ctl status --json` the test reads.
type ctlStatus struct {
	Identity string `json:"identity"`
	Drained  bool   `json:"drained"`
	Prefixes []struct {
		Prefix    string `json:"prefix"`
		Health    string `json:"health"`
		Reason    string `json:"reason"`
		Announced bool   `json:"announced"`
	} `json:"prefixes"`
	Neighbors []struct {
		Address string `json:"address"`
		ASN     uint32 `json:"asn"`
		State   string `json:"state"`
	} `json:"neighbors"`
}

func (s *site) status(t *testing.T) ctlStatus {
	t.Helper()
	out := s.ctl(t, "status", "--json")
	var st ctlStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("anyns ctl status --json on %s: %v\n%s", s.id, err, out)
	}
	if st.Identity != s.id {
		t.Fatalf("anyns ctl status --json on %s: identity %q", s.id, st.Identity)
	}
	return st
}

// probeResult is one query of the prober.
type probeResult struct {
	seq  int
	sent time.Time
	rtt  time.Duration
	nsid string // the instance that answered; empty on failure
	err  string // why the query failed
}

func (r probeResult) String() string {
	if r.err != "" {
		return fmt.Sprintf("#%d@%s:FAIL(%s)", r.seq, r.sent.Format("15:04:05.000"), r.err)
	}
	return fmt.Sprintf("#%d@%s:%s", r.seq, r.sent.Format("15:04:05.000"), r.nsid)
}

// prober is a TestBIRDProberHelper process running in the client
// namespace.
type prober struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	proc  *labProc
	mu    sync.Mutex
	res   []probeResult
	eof   chan struct{}
}

// startProber starts a prober in c that queries the service address every
// 20 ms for at most max, or until stop.
func (l *lab) startProber(t *testing.T, max time.Duration) *prober {
	t.Helper()
	pr := &prober{eof: make(chan struct{})}
	p := &labProc{name: "prober", logs: &safeBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command("ip", "netns", "exec", l.c, os.Args[0], "-test.run=^TestBIRDProberHelper$", "-test.count=1")
	p.cmd.Env = append(childEnv(), proberTargetEnv+"="+labService+":53", proberMaxEnv+"="+max.String())
	p.cmd.Stderr = p.logs
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if pr.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l.procs = append(l.procs, p)
	pr.proc = p
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			p.logs.Write([]byte(line + "\n"))
			if r, ok := parseProbe(line); ok {
				pr.mu.Lock()
				pr.res = append(pr.res, r)
				pr.mu.Unlock()
			}
		}
		close(pr.eof)
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return pr
}

// parseProbe parses "PROBE seq sentMicros rttMicros OK id" or
// "PROBE seq sentMicros rttMicros FAIL reason".
func parseProbe(line string) (probeResult, bool) {
	f := strings.SplitN(line, " ", 6)
	if len(f) < 5 || f[0] != "PROBE" {
		return probeResult{}, false
	}
	seq, err1 := strconv.Atoi(f[1])
	sent, err2 := strconv.ParseInt(f[2], 10, 64)
	rtt, err3 := strconv.ParseInt(f[3], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return probeResult{}, false
	}
	r := probeResult{seq: seq, sent: time.UnixMicro(sent), rtt: time.Duration(rtt) * time.Microsecond}
	rest := ""
	if len(f) == 6 {
		rest = f[5]
	}
	switch f[4] {
	case "OK":
		r.nsid = rest
	case "FAIL":
		r.err = rest
	default:
		return probeResult{}, false
	}
	return r, true
}

// results returns the results so far, ordered by sequence.
func (p *prober) results() []probeResult {
	p.mu.Lock()
	rs := slices.Clone(p.res)
	p.mu.Unlock()
	slices.SortFunc(rs, func(a, b probeResult) int { return a.seq - b.seq })
	return rs
}

// awaitRun polls until the latest n completed queries sent at or after
// `after` were all answered by id, and returns when the first of them was
// sent.
func (p *prober) awaitRun(t *testing.T, id string, n int, after time.Time, d time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		var run []probeResult
		for _, r := range p.results() {
			if r.sent.Before(after) {
				continue
			}
			if r.nsid == id {
				run = append(run, r)
			} else {
				run = run[:0]
			}
		}
		if len(run) >= n {
			return run[0].sent
		}
		if time.Now().After(deadline) || p.proc.exited() {
			rs := p.results()
			t.Fatalf("no run of %d answers from %s after %s within %v; last results: %v\n%s",
				n, id, after.Format("15:04:05.000"), d, rs[max(0, len(rs)-60):], p.proc.logs.String())
		}
		time.Sleep(probeInterval)
	}
}

// stop tells the prober to stop, waits for its last queries, and returns
// every result ordered by sequence.
func (p *prober) stop(t *testing.T) []probeResult {
	t.Helper()
	p.stdin.Close()
	if err := p.proc.wait(10 * time.Second); err != nil {
		t.Fatalf("prober: %v\n%s", err, p.proc.logs.String())
	}
	rs := p.results()
	if !strings.Contains(p.proc.logs.String(), "PROBE-END") || len(rs) == 0 {
		t.Fatalf("prober did not finish cleanly:\n%s", p.proc.logs.String())
	}
	return rs
}

func failures(rs []probeResult, since time.Time) []probeResult {
	var out []probeResult
	for _, r := range rs {
		if r.err != "" && !r.sent.Before(since) {
			out = append(out, r)
		}
	}
	return out
}

func countSince(rs []probeResult, since time.Time) int {
	n := 0
	for _, r := range rs {
		if !r.sent.Before(since) {
			n++
		}
	}
	return n
}

func countAfter(rs []probeResult, id string, after time.Time) int {
	n := 0
	for _, r := range rs {
		if r.nsid == id && r.sent.After(after) {
			n++
		}
	}
	return n
}

func lastSent(rs []probeResult, id string) time.Time {
	var last time.Time
	for _, r := range rs {
		if r.nsid == id && r.sent.After(last) {
			last = r.sent
		}
	}
	return last
}

// TestBIRDProberHelper is the client of TestBIRDAnycast, run in the client
// namespace: every 20 ms it sends an A query for example.com with an NSID
// request to $ANYNS_BIRD_PROBER_TARGET over UDP (500 ms timeout, each
// query on its own socket and goroutine so a lost one does not delay the
// next), and prints one line per query: "PROBE seq sentMicros rttMicros
// OK nsid" or "PROBE seq sentMicros rttMicros FAIL reason". It stops when
// its stdin closes or after $ANYNS_BIRD_PROBER_MAX, waits for the queries
// in flight and prints PROBE-END.
func TestBIRDProberHelper(t *testing.T) {
	target := os.Getenv(proberTargetEnv)
	if target == "" {
		t.Skip("helper process of TestBIRDAnycast; runs only with " + proberTargetEnv + " set")
	}
	limit, err := time.ParseDuration(os.Getenv(proberMaxEnv))
	if err != nil || limit <= 0 || limit > time.Minute {
		t.Fatalf("%s=%q: want a duration up to 1m", proberMaxEnv, os.Getenv(proberMaxEnv))
	}
	stop := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(stop) }()
	var (
		outMu sync.Mutex
		wg    sync.WaitGroup
	)
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	end := time.After(limit)
	maxCount := int(limit / probeInterval)
loop:
	for seq := 0; seq < maxCount; seq++ {
		wg.Add(1)
		go func(seq int, sent time.Time) {
			defer wg.Done()
			res := probeOnce(target)
			rtt := time.Since(sent)
			outMu.Lock()
			fmt.Printf("PROBE %d %d %d %s\n", seq, sent.UnixMicro(), rtt.Microseconds(), res)
			outMu.Unlock()
		}(seq, time.Now())
		select {
		case <-tick.C:
		case <-stop:
			break loop
		case <-end:
			break loop
		}
	}
	wg.Wait()
	fmt.Println("PROBE-END")
}

// probeOnce sends one query and returns "OK nsid" or "FAIL reason".
func probeOnce(target string) string {
	m := new(dns.Msg)
	m.SetQuestion("example.com.", dns.TypeA)
	m.SetEdns0(1232, false)
	opt := m.IsEdns0()
	opt.Option = append(opt.Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID})
	c := &dns.Client{Net: "udp", Timeout: probeTimeout}
	r, _, err := c.Exchange(m, target)
	if err != nil {
		return "FAIL " + strings.ReplaceAll(err.Error(), "\n", " ")
	}
	if r.Rcode != dns.RcodeSuccess || !r.Authoritative {
		return fmt.Sprintf("FAIL rcode %s aa %v", dns.RcodeToString[r.Rcode], r.Authoritative)
	}
	found := false
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok && a.A.String() == "192.0.2.1" {
			found = true
		}
	}
	if !found {
		return fmt.Sprintf("FAIL answer %v, want example.com A 192.0.2.1", r.Answer)
	}
	var nsid string
	if o := r.IsEdns0(); o != nil {
		for _, e := range o.Option {
			if n, ok := e.(*dns.EDNS0_NSID); ok {
				b, err := hex.DecodeString(n.Nsid)
				if err != nil {
					return "FAIL bad NSID " + n.Nsid
				}
				nsid = string(b)
			}
		}
	}
	if nsid == "" || strings.ContainsAny(nsid, " \n") {
		return fmt.Sprintf("FAIL NSID %q", nsid)
	}
	return "OK " + nsid
}
