package server

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// sockopt reads an int socket option of pc.
func sockopt(t *testing.T, pc net.PacketConn, level, opt int) int {
	t.Helper()
	sc, ok := pc.(syscall.Conn)
	if !ok {
		t.Fatalf("%T is not a syscall.Conn", pc)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatalf("getsockopt %d/%d: %v", level, opt, gerr)
	}
	return v
}

// TestListenUDPDontFragment: up to DontFragmentMax every kind of UDP
// socket ListenUDP opens sends with DF and ignores the path MTU; with a
// larger udp_size the kernel's default (fragment when needed) stays.
func TestListenUDPDontFragment(t *testing.T) {
	cases := []struct {
		addr    string
		udpSize int
		df      bool
	}{
		{"127.0.0.1:0", 0, true}, // blocking socket, DefaultUDPSize
		{"127.0.0.1:0", DontFragmentMax, true},
		{"127.0.0.1:0", DontFragmentMax + 1, false},
		{"0.0.0.0:0", 0, true}, // Go's socket
		{"0.0.0.0:0", 4096, false},
		{"[::1]:0", 0, true},
		{"[::1]:0", 4096, false},
		{"[::]:0", 0, true},
	}
	for _, tc := range cases {
		pcs, err := ListenUDP(tc.addr, 2, tc.udpSize)
		if err != nil {
			if tc.addr[0] == '[' {
				t.Logf("%s: %v (no IPv6 here)", tc.addr, err)
				continue
			}
			t.Fatal(err)
		}
		for _, pc := range pcs {
			v6 := pc.LocalAddr().(*net.UDPAddr).IP.To4() == nil
			want4, want6, wantDontfrag := unix.IP_PMTUDISC_PROBE, unix.IPV6_PMTUDISC_PROBE, 1
			if !tc.df {
				want4, want6, wantDontfrag = unix.IP_PMTUDISC_WANT, unix.IPV6_PMTUDISC_WANT, 0
			}
			if !v6 {
				if got := sockopt(t, pc, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER); got != want4 {
					t.Errorf("%s udp_size %d (%T): IP_MTU_DISCOVER %d, want %d", tc.addr, tc.udpSize, pc, got, want4)
				}
				continue
			}
			if got := sockopt(t, pc, unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER); got != want6 {
				t.Errorf("%s udp_size %d (%T): IPV6_MTU_DISCOVER %d, want %d", tc.addr, tc.udpSize, pc, got, want6)
			}
			if got := sockopt(t, pc, unix.IPPROTO_IPV6, unix.IPV6_DONTFRAG); got != wantDontfrag {
				t.Errorf("%s udp_size %d (%T): IPV6_DONTFRAG %d, want %d", tc.addr, tc.udpSize, pc, got, wantDontfrag)
			}
		}
		for _, pc := range pcs {
			pc.Close()
		}
	}
}

// TestUDPAnswerDontFragment reads the IPv4 header of real answers off
// loopback with a raw socket (root only): DF set and IP ID 0 with the
// default udp_size; with a larger one, the kernel's default for an
// unconnected socket: path MTU discovery (DF while under the path MTU,
// fragments over it, so the DF bit is not checked) and hashed IP IDs.
func TestUDPAnswerDontFragment(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a raw socket")
	}
	raw, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		t.Skipf("raw socket: %v", err)
	}
	defer unix.Close(raw)
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(raw, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr    string
		udpSize int
		df      bool
	}{
		{"127.0.0.1:0", 0, true},
		{"127.0.0.1:0", 4096, false},
		{"0.0.0.0:0", 0, true},
		{"0.0.0.0:0", 4096, false},
	} {
		pcs, err := ListenUDP(tc.addr, 1, tc.udpSize)
		if err != nil {
			t.Fatal(err)
		}
		s := newServer(t, testConfig(), nil)
		go s.ServeUDP(pcs[0])
		port := pcs[0].LocalAddr().(*net.UDPAddr).Port
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		var ids []uint16
		for i := range 4 {
			m := question("host1.example.com.", dns.TypeA)
			m.Id = uint16(100 + i)
			if r := exchange(t, "udp", addr, m); len(r.Answer) != 1 {
				t.Fatalf("%s: %v", tc.addr, r)
			}
			// The raw socket holds a copy of every UDP datagram on the host
			// since it opened; find this answer (source port, DNS ID).
			for {
				buf := make([]byte, 2048)
				n, _, err := unix.Recvfrom(raw, buf, 0)
				if err != nil {
					if errors.Is(err, unix.EAGAIN) {
						t.Fatalf("%s: answer %d not seen on the raw socket", tc.addr, i)
					}
					t.Fatal(err)
				}
				pkt := buf[:n]
				ihl := int(pkt[0]&0x0f) * 4
				if n < ihl+8+2 || int(binary.BigEndian.Uint16(pkt[ihl:])) != port ||
					binary.BigEndian.Uint16(pkt[ihl+8:]) != m.Id {
					continue
				}
				if tc.df && binary.BigEndian.Uint16(pkt[6:])&0x4000 == 0 {
					t.Errorf("%s udp_size %d: answer without DF", tc.addr, tc.udpSize)
				}
				ids = append(ids, binary.BigEndian.Uint16(pkt[4:]))
				break
			}
		}
		zero := 0
		for _, id := range ids {
			if id == 0 {
				zero++
			}
		}
		if tc.df && zero != len(ids) {
			t.Errorf("%s udp_size %d: IP IDs %v, want 0 on DF datagrams", tc.addr, tc.udpSize, ids)
		}
		if !tc.df && zero == len(ids) {
			t.Errorf("%s udp_size %d: IP IDs %v, want the kernel's hashed IDs", tc.addr, tc.udpSize, ids)
		}
		pcs[0].Close()
	}
}
