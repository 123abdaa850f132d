package main

import (
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// digAt runs dig against an anyns instance and returns its output.
func digAt(t *testing.T, addr string, args ...string) string {
	t.Helper()
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig not installed (the README's test command installs bind9-dnsutils)")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	full := append([]string{"@" + host, "-p", port, "+time=2", "+tries=1"}, args...)
	out, err := exec.Command(dig, full...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", full, err, out)
	}
	return string(out)
}

var (
	digStatus = regexp.MustCompile(`status: ([A-Z]+)`)
	digFlags  = regexp.MustCompile(`;; flags: ([a-z ]+);`)
)

func digHeader(t *testing.T, out string) (status string, flags []string) {
	t.Helper()
	s := digStatus.FindStringSubmatch(out)
	f := digFlags.FindStringSubmatch(out)
	if s == nil || f == nil {
		t.Fatalf("no header in dig output:\n%s", out)
	}
	return s[1], strings.Fields(f[1])
}

func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if x == f {
			return true
		}
	}
	return false
}

// TestDigShippedZones starts the built binary on the shipped zones and
// checks what dig, the operator's tool, shows.
func TestDigShippedZones(t *testing.T) {
	in := startAnyns(t, "--listen", "127.0.0.1:0", "--zones", shippedZones(t), "--id", "e2e-ns1")

	out := digAt(t, in.addr, "+nsid", "example.com", "SOA")
	status, flags := digHeader(t, out)
	if status != "NOERROR" || !hasFlag(flags, "aa") || hasFlag(flags, "ra") {
		t.Errorf("SOA: status %s flags %v, want NOERROR with aa and without ra\n%s", status, flags, out)
	}
	if !regexp.MustCompile(`; NSID: .*"e2e-ns1"`).MatchString(out) {
		t.Errorf("dig +nsid does not show the identity e2e-ns1:\n%s", out)
	}
	if !regexp.MustCompile(`example\.com\.\s+3600\s+IN\s+SOA\s+ns1\.example\.com\. hostmaster\.example\.com\. 2026112201 `).MatchString(out) {
		t.Errorf("SOA answer missing:\n%s", out)
	}

	out = digAt(t, in.addr, "CH", "TXT", "id.server")
	if !strings.Contains(out, `"e2e-ns1"`) {
		t.Errorf("CH TXT id.server does not answer the identity:\n%s", out)
	}

	out = digAt(t, in.addr, "+norec", "nosuchname.example.com", "A")
	if status, flags := digHeader(t, out); status != "NXDOMAIN" || !hasFlag(flags, "aa") || hasFlag(flags, "rd") {
		t.Errorf("NXDOMAIN case: status %s flags %v\n%s", status, flags, out)
	}

	out = digAt(t, in.addr, "www.example.com", "A")
	for _, want := range []string{"www.example.com.", "CNAME", "web.example.com.", "host1.example.com.", "192.0.2.10"} {
		if !strings.Contains(out, want) {
			t.Errorf("CNAME chain answer lacks %q:\n%s", want, out)
		}
	}

	out = digAt(t, in.addr, "+tcp", "www.sub.example.com", "A")
	status, flags = digHeader(t, out)
	if status != "NOERROR" || hasFlag(flags, "aa") || !strings.Contains(out, "ns1.sub.example.com.") || !strings.Contains(out, "192.0.2.101") {
		t.Errorf("referral over TCP: status %s flags %v\n%s", status, flags, out)
	}

	out = digAt(t, in.addr, "example.org", "A")
	if status, _ := digHeader(t, out); status != "REFUSED" {
		t.Errorf("out-of-zone name: status %s, want REFUSED\n%s", status, out)
	}

	in.stop(t)
}

// TestKdigShippedZones cross-checks with Knot's kdig, a second client.
func TestKdigShippedZones(t *testing.T) {
	kdig, err := exec.LookPath("kdig")
	if err != nil {
		t.Skip("kdig not installed (the README's test command installs knot-dnsutils)")
	}
	in := startAnyns(t, "--listen", "127.0.0.1:0", "--zones", shippedZones(t), "--id", "e2e-kdig")
	host, port, _ := net.SplitHostPort(in.addr)
	for _, proto := range []string{"+notcp", "+tcp"} {
		out, err := exec.Command(kdig, "@"+host, "-p", port, proto, "+nsid", "+time=2", "+retry=0", "mail.example.net", "A").CombinedOutput()
		if err != nil {
			t.Fatalf("kdig %s: %v\n%s", proto, err, out)
		}
		s := string(out)
		if !strings.Contains(s, "NOERROR") || !strings.Contains(s, "198.51.100.25") || !strings.Contains(s, "e2e-kdig") {
			t.Errorf("kdig %s: want NOERROR, 198.51.100.25 and NSID e2e-kdig:\n%s", proto, s)
		}
	}
	in.stop(t)
}

// TestSystemdNotify checks the Type=notify handshake: READY=1 once the
// server answers, STOPPING=1 on SIGTERM.
func TestSystemdNotify(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	in := startAnyns(t, "--listen", "127.0.0.1:0", "--zones", shippedZones(t), "--id", "notify")
	read := func() string {
		buf := make([]byte, 512)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no sd_notify message: %v", err)
		}
		return string(buf[:n])
	}
	if got := read(); got != "READY=1" {
		t.Errorf("first notification %q, want READY=1", got)
	}
	in.cmd.Process.Signal(syscall.SIGTERM)
	if got := read(); got != "STOPPING=1" {
		t.Errorf("notification on SIGTERM %q, want STOPPING=1", got)
	}
	in.stop(t)
}

// TestWildcardListenerReusePort: the binary on 0.0.0.0 opens one UDP socket
// per core (SO_REUSEPORT) and still answers from the address each query was
// sent to, whichever socket the kernel picks.
func TestWildcardListenerReusePort(t *testing.T) {
	in := startAnyns(t, "--listen", "0.0.0.0:0", "--zones", shippedZones(t), "--id", "wild")
	_, port, _ := net.SplitHostPort(in.addr)
	for _, ip := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"} {
		for i := 0; i < 20; i++ { // different source ports land on different sockets
			c := &dns.Client{Timeout: time.Second} // connected UDP: rejects replies from another source
			m := new(dns.Msg)
			m.SetQuestion("example.com.", dns.TypeSOA)
			r, _, err := c.Exchange(m, net.JoinHostPort(ip, port))
			if err != nil || r.Rcode != dns.RcodeSuccess {
				t.Fatalf("query to %s (try %d): %v %v", ip, i, r, err)
			}
		}
	}
	in.stop(t)
}
