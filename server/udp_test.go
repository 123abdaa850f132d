package server

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/miekg/dns"
)

// TestListenUDPReusePort serves two SO_REUSEPORT sockets and checks that
// queries from many source ports are all answered.
func TestListenUDPReusePort(t *testing.T) {
	pcs, err := ListenUDP("127.0.0.1:0", 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if pcs[0].LocalAddr().String() != pcs[1].LocalAddr().String() {
		t.Fatalf("sockets on %v and %v, want one address", pcs[0].LocalAddr(), pcs[1].LocalAddr())
	}
	s := newServer(t, testConfig(), nil)
	for _, pc := range pcs {
		done := make(chan error, 1)
		go func() { done <- s.ServeUDP(pc) }()
		t.Cleanup(func() {
			_ = s.Shutdown(context.Background()) // t.Context is already done in Cleanup
			<-done
			_ = pc.Close()
		})
	}
	addr := pcs[0].LocalAddr().String()
	for i := range 20 {
		m := question("host1.example.com.", dns.TypeA)
		m.Id = uint16(i)
		r := exchange(t, "udp", addr, m)
		if r.Id != uint16(i) || len(r.Answer) != 1 {
			t.Fatalf("query %d: %v", i, r)
		}
	}
}

// TestUDPAllocs fails when answering over a real UDP socket (recvmmsg,
// Respond, sendmmsg) allocates in the steady state: the budget is zero. The
// client side allocates nothing either, so every allocation counted is the
// server's. Both kinds of socket: one of the net package's (read through
// Go's network poller) and ListenUDP's blocking one.
func TestUDPAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	t.Run("poller", func(t *testing.T) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		testUDPAllocs(t, pc)
	})
	t.Run("blocking", func(t *testing.T) {
		pcs, err := ListenUDP("127.0.0.1:0", 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		testUDPAllocs(t, pcs[0])
	})
}

func testUDPAllocs(t *testing.T, pc net.PacketConn) {
	s := newServer(t, testConfig(), nil)
	done := make(chan error, 1)
	go func() { done <- s.ServeUDP(pc) }()
	t.Cleanup(func() {
		_ = s.Shutdown(context.Background()) // t.Context is already done in Cleanup
		<-done
		_ = pc.Close()
	})
	client, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server := netip.MustParseAddrPort(pc.LocalAddr().String())
	for _, tc := range fastCases() {
		if tc.tr != UDP {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			req := pack(t, tc.m)
			resp := make([]byte, 4096)
			ask := func() {
				if _, err := client.WriteToUDPAddrPort(req, server); err != nil {
					t.Fatal(err)
				}
				if err := client.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
					t.Fatal(err)
				}
				n, _, err := client.ReadFromUDPAddrPort(resp)
				if err != nil || n < headerLen || resp[0] != req[0] || resp[1] != req[1] {
					t.Fatalf("no answer: %v", err)
				}
			}
			ask()
			if n := testing.AllocsPerRun(200, ask); n != 0 {
				t.Errorf("%v allocs per query over UDP, want 0", n)
			}
		})
	}
}

// TestTCPAllocs is TestUDPAllocs over one persistent TCP connection.
func TestTCPAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(t, testConfig(), nil)
	done := make(chan error, 1)
	go func() { done <- s.ServeTCP(ln) }()
	t.Cleanup(func() {
		_ = s.Shutdown(context.Background()) // t.Context is already done in Cleanup
		<-done
	})
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tc := range fastCases() {
		if tc.tr != TCP {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			msg := pack(t, tc.m)
			frame := append([]byte{byte(len(msg) >> 8), byte(len(msg))}, msg...)
			resp := make([]byte, 65537)
			ask := func() {
				if _, err := c.Write(frame); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(c, resp[:2]); err != nil {
					t.Fatal(err)
				}
				n := int(resp[0])<<8 | int(resp[1])
				if _, err := io.ReadFull(c, resp[2:2+n]); err != nil || resp[2] != msg[0] {
					t.Fatalf("no answer: %v", err)
				}
			}
			ask()
			if n := testing.AllocsPerRun(200, ask); n != 0 {
				t.Errorf("%v allocs per query over TCP, want 0", n)
			}
		})
	}
}

// TestStaggered: the batch buffers do not overlap, cannot grow into each
// other, and their heads fall on distinct sets of a 64-set L1 cache and of
// a 1024-set L2 (addresses 4 KiB and 64 KiB apart would share one).
func TestStaggered(t *testing.T) {
	for _, size := range []int{udpReadSize, 65535} {
		bufs := staggered(udpBatch, size)
		l1 := map[uintptr]bool{}
		l2 := map[uintptr]bool{}
		for i, b := range bufs {
			if len(b) != size || cap(b) != size {
				t.Fatalf("size %d: buffer %d len %d cap %d", size, i, len(b), cap(b))
			}
			head := uintptr(unsafe.Pointer(&b[0]))
			if i > 0 {
				prev := uintptr(unsafe.Pointer(&bufs[i-1][0]))
				if head < prev+uintptr(size) {
					t.Fatalf("size %d: buffer %d starts inside buffer %d", size, i, i-1)
				}
			}
			l1[head>>6&63] = true
			l2[head>>6&1023] = true
		}
		if len(l1) != udpBatch || len(l2) != udpBatch {
			t.Errorf("size %d: heads on %d L1 sets and %d L2 sets, want %d each", size, len(l1), len(l2), udpBatch)
		}
	}
}
