package server

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap/zaptest"

	"github.com/anyns/anyns/zone"
)

// loadStore loads the zone files of dirs into a store.
func loadStore(t testing.TB, dirs ...string) *zone.Store {
	t.Helper()
	var all []*zone.Zone
	for _, dir := range dirs {
		zs, err := zone.LoadDir(dir)
		if err != nil {
			t.Fatalf("load %s: %v", dir, err)
		}
		all = append(all, zs...)
	}
	snap, err := zone.NewSnapshot(all...)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return zone.NewStore(snap)
}

// testStore is the shipped example zones plus testdata.
var (
	testStoreOnce sync.Once
	testStoreVal  *zone.Store
)

func testStore(t testing.TB) *zone.Store {
	testStoreOnce.Do(func() { testStoreVal = loadStore(t, "../zones", "testdata") })
	return testStoreVal
}

func testConfig() Config {
	return Config{Identity: "anyns-test-1", Version: "anyns 0.0-test"}
}

func newServer(t testing.TB, cfg Config, store *zone.Store) *Server {
	t.Helper()
	if store == nil {
		store = testStore(t)
	}
	s, err := New(cfg, store, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// listenBoth binds TCP on host:0 and then UDP on the same port, retrying on
// a collision.
func listenBoth(t testing.TB, host string) (net.Listener, net.PacketConn) {
	t.Helper()
	var lastErr error
	for range 20 {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatalf("listen tcp: %v", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err == nil {
			return ln, pc
		}
		lastErr = err
		ln.Close()
	}
	t.Fatalf("listen udp: %v", lastErr)
	return nil, nil
}

// start serves s on 127.0.0.1 (UDP and TCP, same port) and returns the
// address. Cleanup shuts the server down and checks that both Serve calls
// returned ErrServerClosed.
func start(t testing.TB, s *Server) string {
	t.Helper()
	ln, pc := listenBoth(t, "127.0.0.1")
	serve(t, s, ln, pc)
	return ln.Addr().String()
}

func serve(t testing.TB, s *Server, ln net.Listener, pc net.PacketConn) {
	t.Helper()
	errc := make(chan error, 2)
	n := 0
	if pc != nil {
		n++
		go func() { errc <- s.ServeUDP(pc) }()
	}
	if ln != nil {
		n++
		go func() { errc <- s.ServeTCP(ln) }()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		for range n {
			if err := <-errc; !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		}
		if pc != nil {
			pc.Close()
		}
	})
}

// exchange sends m to addr over network ("udp" or "tcp") with dns.Client.
func exchange(t testing.TB, network, addr string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 5 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("exchange %s %v: %v", network, m.Question, err)
	}
	if r.Id != m.Id {
		t.Fatalf("reply ID %d, want %d", r.Id, m.Id)
	}
	return r
}

// rawUDP sends wire to addr and returns the reply, or nil if none arrived
// within wait.
func rawUDP(t testing.TB, addr string, wire []byte, wait time.Duration) []byte {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(wire); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		t.Fatal(err)
	}
	return buf[:n]
}

func question(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	return m
}

func withEDNS(m *dns.Msg, size uint16, do bool, opts ...dns.EDNS0) *dns.Msg {
	m.SetEdns0(size, do)
	o := m.IsEdns0()
	o.Option = append(o.Option, opts...)
	return m
}

func pack(t testing.TB, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatalf("pack: %v", err)
	}
	return b
}

func unpack(t testing.TB, b []byte) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		t.Fatalf("unpack response: %v", err)
	}
	return m
}

// respond runs Respond directly on a packed message.
func respond(t testing.TB, s *Server, m *dns.Msg, tr Transport) *dns.Msg {
	t.Helper()
	out, ok := s.Respond(pack(t, m), make([]byte, 65535), tr)
	if !ok {
		t.Fatalf("Respond dropped %v", m.Question)
	}
	return unpack(t, out)
}

func rr(t testing.TB, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("rr %q: %v", s, err)
	}
	return r
}

// sameRRs reports whether got and want hold the same records in any order.
func sameRRs(got []dns.RR, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	seen := make(map[string]int)
	for _, w := range want {
		r, err := dns.NewRR(w)
		if err != nil {
			return false
		}
		seen[r.String()]++
	}
	for _, g := range got {
		seen[g.String()]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
