package server

import (
	"context"
	"errors"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/anyns/anyns/zone"
	"github.com/miekg/dns"
)

// TestListenUDPKinds checks which addresses get blocking sockets: those
// of one host do; a name (resolved by the net package) does not.
func TestListenUDPKinds(t *testing.T) {
	for _, tc := range []struct {
		addr     string
		blocking bool
	}{
		{"127.0.0.1:0", true},
		{"[::ffff:127.0.0.1]:0", true}, // unmapped: an IPv4 socket
		{"[::1]:0", true},
		{"localhost:0", false},
	} {
		pcs, err := ListenUDP(tc.addr, 2, 0)
		if err != nil {
			if tc.addr == "[::1]:0" {
				t.Logf("%s: %v (no IPv6 here)", tc.addr, err)
				continue
			}
			t.Fatalf("%s: %v", tc.addr, err)
		}
		for _, pc := range pcs {
			if got := isBlocking(pc); got != tc.blocking {
				t.Errorf("%s: blocking %v, want %v (%T)", tc.addr, got, tc.blocking, pc)
			}
			pc.Close()
		}
		if a, b := pcs[0].LocalAddr().String(), pcs[1].LocalAddr().String(); a != b {
			t.Errorf("%s: sockets on %s and %s, want one port", tc.addr, a, b)
		}
	}
}

// TestBlockingConn checks the blocking socket as a net.PacketConn: a
// datagram read with its source, an answer written back, no deadlines, and
// Close ending a read that waits.
func TestBlockingConn(t *testing.T) {
	pcs, err := ListenUDP("127.0.0.1:0", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	c := pcs[0]
	defer c.Close()
	client, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.WriteTo([]byte("ping"), c.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, from, err := c.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "ping" || from.String() != client.LocalAddr().String() {
		t.Fatalf("ReadFrom: %q from %v, %v; want \"ping\" from %v", buf[:n], from, err, client.LocalAddr())
	}
	if _, err := c.WriteTo([]byte("pong"), from); err != nil {
		t.Fatal(err)
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := client.ReadFrom(buf); err != nil || string(buf[:n]) != "pong" {
		t.Fatalf("client read %q, %v; want \"pong\"", buf[:n], err)
	}
	if err := c.SetReadDeadline(time.Now()); err == nil {
		t.Error("SetReadDeadline: no error, but deadlines are not supported")
	}
	// A read waits past blockingWait (the socket's SO_RCVTIMEO) for as
	// long as it takes.
	late := time.AfterFunc(4*blockingWait, func() { _, _ = client.WriteTo([]byte("late"), c.LocalAddr()) })
	defer late.Stop()
	if n, _, err := c.ReadFrom(buf); err != nil || string(buf[:n]) != "late" {
		t.Fatalf("ReadFrom across timeouts: %q, %v; want \"late\"", buf[:n], err)
	}

	read := make(chan error, 1)
	go func() {
		_, _, err := c.ReadFrom(buf)
		read <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the read wait in recvfrom
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-read:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("waiting read after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a waiting read")
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v, want net.ErrClosed", err)
	}
	if _, err := c.WriteTo([]byte("x"), from); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteTo after Close: %v, want net.ErrClosed", err)
	}
}

// TestServeUDPBlocking serves blocking sockets: queries are answered, one
// P more runs while they serve (zone.SpareProc) and none after, Shutdown
// ends readers that wait in recvmmsg, and so does closing a socket.
func TestServeUDPBlocking(t *testing.T) {
	procs := zone.Procs()
	if runtime.GOMAXPROCS(0) != procs {
		t.Fatalf("GOMAXPROCS %d before serving, Procs %d", runtime.GOMAXPROCS(0), procs)
	}
	pcs, err := ListenUDP("127.0.0.1:0", 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(t, testConfig(), nil)
	done := make(chan error, len(pcs))
	for _, pc := range pcs {
		defer pc.Close()
		go func() { done <- s.ServeUDP(pc) }()
	}
	addr := pcs[0].LocalAddr().String()
	for i := range 20 {
		m := question("host1.example.com.", dns.TypeA)
		m.Id = uint16(i)
		if r := exchange(t, "udp", addr, m); r.Id != uint16(i) || len(r.Answer) != 1 {
			t.Fatalf("query %d: %v", i, r)
		}
	}
	if got := runtime.GOMAXPROCS(0); got != procs+1 {
		t.Errorf("GOMAXPROCS while serving = %d, want %d+1", got, procs)
	}
	time.Sleep(10 * blockingWait) // the readers' waits time out, again and again
	if r := exchange(t, "udp", addr, question("host1.example.com.", dns.TypeA)); len(r.Answer) != 1 {
		t.Fatalf("after idle waits: %v", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for range pcs {
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("ServeUDP after Shutdown: %v, want ErrServerClosed", err)
		}
	}
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Errorf("GOMAXPROCS after serving = %d, want %d", got, procs)
	}

	// Closing the socket, no Shutdown: the reader ends with it.
	pcs, err = ListenUDP("127.0.0.1:0", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	s = newServer(t, testConfig(), nil)
	go func() { done <- s.ServeUDP(pcs[0]) }()
	exchange(t, "udp", pcs[0].LocalAddr().String(), question("host1.example.com.", dns.TypeA))
	time.Sleep(50 * time.Millisecond)
	pcs[0].Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("ServeUDP after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("closing the socket did not end ServeUDP")
	}
}
