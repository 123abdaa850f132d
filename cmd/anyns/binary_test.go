package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// anynsBinary builds ./cmd/anyns once per test binary (with -race when the
// tests run with it) and returns its path.
func anynsBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "anyns-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "anyns")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
		if err != nil {
			buildErr = errors.New("go build: " + err.Error() + "\n" + string(out))
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// instance is a running anyns process started by a test.
type instance struct {
	cmd     *exec.Cmd
	addr    string // first listener, host:port
	start   map[string]any
	logs    *safeBuffer
	waitErr chan error
}

type safeBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// shippedZones is the absolute path of the zones/ folder.
func shippedZones(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("../../zones")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startAnyns runs `anyns serve args...`, waits for the JSON startup line and
// returns the instance. The process is stopped with SIGTERM at cleanup if
// the test has not stopped it.
func startAnyns(t *testing.T, args ...string) *instance {
	t.Helper()
	if os.Geteuid() == 0 {
		args = append([]string{"--allow-root"}, args...) // CI runs as root
	}
	cmd := exec.Command(anynsBinary(t), append([]string{"serve"}, args...)...)
	// Run in a directory of its own, so the default control socket
	// (./anyns.sock) of one instance does not meet another's.
	cmd.Dir = t.TempDir()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	in := &instance{cmd: cmd, logs: &safeBuffer{}, waitErr: make(chan error, 1)}
	started := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			in.logs.Write([]byte(line + "\n"))
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "anyns started" {
				started <- m
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		in.waitErr <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-in.waitErr:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
			}
		}
	})
	select {
	case m := <-started:
		in.start = m
		ls, _ := m["listeners"].([]any)
		if len(ls) == 0 {
			t.Fatalf("startup line has no listeners: %v", m)
		}
		in.addr = ls[0].(string)
	case err := <-in.waitErr:
		t.Fatalf("anyns exited before starting: %v\n%s", err, in.logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("anyns did not start within 30s\n%s", in.logs.String())
	}
	awaitResponding(t, in.addr)
	return in
}

// awaitResponding polls addr until it answers a CH TXT id.server query.
func awaitResponding(t *testing.T, addr string) {
	t.Helper()
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion("id.server.", dns.TypeTXT)
	m.Question[0].Qclass = dns.ClassCHAOS
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if r, _, err := c.Exchange(m, addr); err == nil && r.Rcode == dns.RcodeSuccess {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("anyns at %s did not answer within 10s", addr)
}

// stop sends SIGTERM and requires a clean exit 0.
func (in *instance) stop(t *testing.T) {
	t.Helper()
	if err := in.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
	select {
	case err := <-in.waitErr:
		if err != nil {
			t.Fatalf("anyns exited with %v after SIGTERM\n%s", err, in.logs.String())
		}
	case <-time.After(15 * time.Second):
		_ = in.cmd.Process.Kill()
		t.Fatalf("anyns did not exit within 15s of SIGTERM\n%s", in.logs.String())
	}
}
