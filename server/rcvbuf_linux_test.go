package server

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestListenUDPReceiveBuffer checks that ListenUDP's sockets get the
// receive buffer it asks for, as far as net.core.rmem_max allows: more
// than the kernel's default whenever the machine allows more.
func TestListenUDPReceiveBuffer(t *testing.T) {
	limit := readSysctl(t, "/proc/sys/net/core/rmem_max")
	def := readSysctl(t, "/proc/sys/net/core/rmem_default")
	pcs, err := ListenUDP("127.0.0.1:0", 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, pc := range pcs {
		defer pc.Close()
		rc, err := pc.(syscall.Conn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var got int
		var gerr error
		if err := rc.Control(func(fd uintptr) {
			got, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		}); err != nil || gerr != nil {
			t.Fatal(err, gerr)
		}
		// Linux doubles the value set (for its bookkeeping) and reports that.
		want := 2 * min(UDPReceiveBuffer, limit)
		if got < want {
			t.Errorf("SO_RCVBUF %d, want %d (rmem_max %d, default %d)", got, want, limit, def)
		}
		if limit > def && got <= 2*def {
			t.Errorf("SO_RCVBUF %d: no more than the default %d although rmem_max is %d", got, def, limit)
		}
	}
}

func readSysctl(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Skip(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
