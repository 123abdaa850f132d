package server

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// dialFrom opens a TCP connection to addr from the local address from.
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// answers reports whether c answers a query (it fails the test on a
// timeout: a closed connection is a false).
func answers(t *testing.T, c net.Conn, id uint16) bool {
	t.Helper()
	q := question("host1.example.com.", dns.TypeA)
	q.Id = id
	if _, err := c.Write(tcpQuery(t, q)); err != nil {
		return false
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var l [2]byte
	if _, err := readFull(c, l[:]); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("no answer and not closed")
		}
		return false
	}
	b := make([]byte, int(l[0])<<8|int(l[1]))
	if _, err := readFull(c, b); err != nil {
		return false
	}
	return unpack(t, b).Id == id
}

// TestTCPPrefixCap checks the per-prefix connection cap: the third
// connection from one /24 is closed at once and counted, another /24 and
// an exempt prefix are not affected, and a slot freed is usable again.
func TestTCPPrefixCap(t *testing.T) {
	cfg := testConfig()
	cfg.TCPMaxConnectionsPerPrefix = 2
	cfg.RRL.Exempt = nil
	s := newServer(t, cfg, nil)
	addr := start(t, s)

	a := dialFrom(t, "127.0.0.1", addr)
	b := dialFrom(t, "127.0.0.7", addr)
	if !answers(t, a, 1) || !answers(t, b, 2) {
		t.Fatal("the first two connections of the prefix are not served")
	}
	over := dialFrom(t, "127.0.0.9", addr)
	waitClosed(t, over)
	if st := s.Stats(); st.TCPPrefixRefused != 1 || st.TCPRefused != 0 {
		t.Errorf("TCPPrefixRefused %d TCPRefused %d, want 1 and 0", st.TCPPrefixRefused, st.TCPRefused)
	}
	other := dialFrom(t, "127.0.1.1", addr)
	if !answers(t, other, 3) {
		t.Error("another /24 is refused")
	}
	a.Close()
	waitFor(t, "slot freed", func() bool { return s.Stats().TCPConns == 2 })
	again := dialFrom(t, "127.0.0.1", addr)
	if !answers(t, again, 4) {
		t.Error("a freed slot is not usable")
	}

	t.Run("exempt", func(t *testing.T) {
		cfg := testConfig()
		cfg.TCPMaxConnectionsPerPrefix = 1
		cfg.RRL.Exempt = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/24")}
		s := newServer(t, cfg, nil)
		addr := start(t, s)
		for i := range 3 {
			if c := dialFrom(t, "127.0.0.1", addr); !answers(t, c, uint16(i)) {
				t.Fatalf("exempt connection %d refused", i)
			}
		}
		if st := s.Stats(); st.TCPPrefixRefused != 0 {
			t.Errorf("TCPPrefixRefused %d, want 0", st.TCPPrefixRefused)
		}
	})
}

// TestTCPSlowloris checks that a client trickling a message, one byte at
// a time well within the idle timeout, is cut off TCPReadTimeout after its
// first byte, and counted; a client that sends its message in two parts
// within the read timeout is answered.
func TestTCPSlowloris(t *testing.T) {
	cfg := testConfig()
	cfg.TCPIdleTimeout = 20 * time.Second
	cfg.TCPReadTimeout = 300 * time.Millisecond
	s := newServer(t, cfg, nil)
	addr := start(t, s)

	c := dialFrom(t, "127.0.0.1", addr)
	c.(*net.TCPConn).SetNoDelay(true)
	frame := tcpQuery(t, question("host1.example.com.", dns.TypeA))
	first := time.Now()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for _, b := range frame { // bounded: one frame, about 2s
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
			select {
			case <-tick.C:
			case <-stop:
				return
			}
		}
	}()
	waitClosed(t, c)
	if d := time.Since(first); d > 2*time.Second {
		t.Errorf("cut off after %v, want about 300ms", d)
	}
	waitFor(t, "TCPReadTimeouts", func() bool { return s.Stats().TCPReadTimeouts == 1 })

	t.Run("two parts in time", func(t *testing.T) {
		c := dialFrom(t, "127.0.0.1", addr)
		c.(*net.TCPConn).SetNoDelay(true)
		if _, err := c.Write(frame[:5]); err != nil {
			t.Fatal(err)
		}
		// Let the first part be read alone (not an outcome: the answer is).
		time.Sleep(20 * time.Millisecond)
		if _, err := c.Write(frame[5:]); err != nil {
			t.Fatal(err)
		}
		if r := readFrame(t, c); len(r.Answer) != 1 {
			t.Fatalf("answer %v", r)
		}
	})
	t.Run("idle between messages is not a read timeout", func(t *testing.T) {
		c := dialFrom(t, "127.0.0.1", addr)
		if !answers(t, c, 1) {
			t.Fatal("no answer")
		}
		// Idle for longer than TCPReadTimeout, shorter than the idle
		// timeout: the connection must still be open.
		time.Sleep(2 * cfg.TCPReadTimeout)
		if !answers(t, c, 2) {
			t.Fatal("closed while idle, before TCPIdleTimeout")
		}
	})
}
