package server

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// blockingConn is a UDP socket bound to one address that ListenUDP opens
// itself, in blocking mode and outside Go's network poller, so that its
// reader waits for the next query inside recvmmsg, as NSD's and Knot's
// threads wait in theirs, instead of parking in the network poller.
//
// Why: through the poller, every wait for the next batch costs a read
// that fails with EAGAIN, an epoll_pwait, and the runtime's idle path
// (its monitor thread woken to tick every 20µs, Ps handed between
// threads), and under dnsperf at full rate on a pinned core that was a
// context switch every 25-50 queries and 6.6 queries per batch. Waiting
// in recvmmsg (MSG_WAITFORONE) it is one recvmmsg and one sendmmsg per
// batch, batches of about 13, and about 10% less CPU per query
// (deploy/bench, README "Performance"). The fd must stay out of the
// poller: a socket registered with epoll wakes the poller's thread at
// every datagram even while nobody waits there.
//
// The reader holds its P while it waits (the system call is not a raw
// one), so ServeUDP asks zone.SpareProc for one more P: the runtime hands
// a waiting thread's P to another thread unless some P is idle. And a
// wait ends after blockingWait (SO_RCVTIMEO) with no datagram: the
// runtime hands away the P of a thread in one system call for over 10 ms
// even when a P is idle, and its monitor then ticks every 20 µs again for
// a while. An idle socket's reader so wakes 200 times a second; that also
// bounds how long a read could outlive a Shutdown.
//
// Deadlines are not supported; Shutdown ends the reads with stopReads
// (shutdown(2) of the read side) instead, and Close wakes every system
// call in progress before it closes the fd.
type blockingConn struct {
	fd    int
	laddr *net.UDPAddr
	// mu is held for reading across each system call on fd, and for
	// writing by Close around close(2): the fd number is never reused
	// under a call in progress.
	mu      sync.RWMutex
	closed  atomic.Bool
	stopped atomic.Bool // stopReads: reads end with net.ErrClosed
}

// blockingWait is the longest a blockingConn's read waits (SO_RCVTIMEO):
// under the 10 ms after which the runtime takes a thread's P, in any case.
const blockingWait = 5 * time.Millisecond

// listenBlocking opens a blocking UDP socket bound to ap with
// SO_REUSEPORT, a UDPReceiveBuffer receive buffer and reads that wait at
// most blockingWait; df: with setDontFragment.
func listenBlocking(ap netip.AddrPort, df bool) (*blockingConn, error) {
	family := unix.AF_INET
	if ap.Addr().Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	fail := func(call string, err error) (*blockingConn, error) {
		unix.Close(fd)
		return nil, os.NewSyscallError(call, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return fail("setsockopt", err)
	}
	// Best effort: the kernel caps it at net.core.rmem_max.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, UDPReceiveBuffer)
	tv := unix.NsecToTimeval(blockingWait.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fail("setsockopt", err)
	}
	if family == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return fail("setsockopt", err)
		}
	}
	if df {
		if err := setDontFragment(fd, family == unix.AF_INET6); err != nil {
			unix.Close(fd)
			return nil, err
		}
	}
	if err := unix.Bind(fd, sockaddrOf(ap)); err != nil {
		return fail("bind", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	return &blockingConn{fd: fd, laddr: net.UDPAddrFromAddrPort(addrPortOfSockaddr(sa))}, nil
}

// sockaddrOf converts ap (IPv4-mapped addresses unmapped) for bind(2) and
// sendto(2).
func sockaddrOf(ap netip.AddrPort) unix.Sockaddr {
	if a := ap.Addr().Unmap(); a.Is4() {
		return &unix.SockaddrInet4{Addr: a.As4(), Port: int(ap.Port())}
	}
	return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
}

func addrPortOfSockaddr(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// isBlocking reports whether pc is a blockingConn.
func isBlocking(pc net.PacketConn) bool {
	_, ok := pc.(*blockingConn)
	return ok
}

// opError wraps err as the net package does.
func (c *blockingConn) opError(op string, addr net.Addr, err error) error {
	return &net.OpError{Op: op, Net: "udp", Source: c.laddr, Addr: addr, Err: err}
}

// SyscallConn returns the raw connection: the mmsg reader's batches and
// setsockopt in tests go through it.
func (c *blockingConn) SyscallConn() (syscall.RawConn, error) { return blockingRaw{c}, nil }

// blockingRaw is syscall.RawConn for a blockingConn. Read and Write call f
// again while it reports false (EINTR), and Read returns net.ErrClosed
// once stopReads was called, whatever the call read.
type blockingRaw struct{ c *blockingConn }

func (r blockingRaw) Control(f func(fd uintptr)) error {
	c := r.c
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed.Load() {
		return net.ErrClosed
	}
	f(uintptr(c.fd))
	return nil
}

func (r blockingRaw) Read(f func(fd uintptr) bool) error {
	c := r.c
	c.mu.RLock()
	defer c.mu.RUnlock()
	for {
		if c.closed.Load() || c.stopped.Load() {
			return net.ErrClosed
		}
		if f(uintptr(c.fd)) {
			break
		}
	}
	if c.stopped.Load() { // shut down: what the call returned is no datagram
		return net.ErrClosed
	}
	return nil
}

func (r blockingRaw) Write(f func(fd uintptr) bool) error {
	c := r.c
	c.mu.RLock()
	defer c.mu.RUnlock()
	for {
		if c.closed.Load() {
			return net.ErrClosed
		}
		if f(uintptr(c.fd)) {
			return nil
		}
	}
}

// stopReads ends every read of c, those waiting now included, for good:
// shutdown(2) of the read side wakes them.
func (c *blockingConn) stopReads() {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed.Load() || c.stopped.Swap(true) {
		return
	}
	// On an unconnected UDP socket shutdown reports ENOTCONN, but it marks
	// the socket and wakes its waiters all the same.
	_ = unix.Shutdown(c.fd, unix.SHUT_RD)
}

// ReadFrom reads one datagram (not on the serving path: the readers use
// recvmmsg through SyscallConn).
func (c *blockingConn) ReadFrom(p []byte) (int, net.Addr, error) {
	var (
		n     int
		from  unix.Sockaddr
		errno error
	)
	err := blockingRaw{c}.Read(func(fd uintptr) bool {
		n, from, errno = unix.Recvfrom(int(fd), p, 0)
		return errno != unix.EINTR && errno != unix.EAGAIN // EAGAIN: blockingWait passed
	})
	if err == nil {
		err = errno
	}
	if err != nil {
		return 0, nil, c.opError("read", nil, err)
	}
	return n, net.UDPAddrFromAddrPort(addrPortOfSockaddr(from)), nil
}

// WriteTo sends p to addr, a *net.UDPAddr.
func (c *blockingConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, c.opError("write", addr, fmt.Errorf("address %v: not UDP", addr))
	}
	sa := sockaddrOf(ua.AddrPort())
	var errno error
	err := blockingRaw{c}.Write(func(fd uintptr) bool {
		errno = unix.Sendto(int(fd), p, 0, sa)
		return errno != unix.EINTR
	})
	if err == nil {
		err = errno
	}
	if err != nil {
		return 0, c.opError("write", addr, err)
	}
	return len(p), nil
}

// Close wakes every system call in progress on c (shutdown(2) of both
// sides), waits for them to return and closes the socket.
func (c *blockingConn) Close() error {
	c.stopReads()
	if c.closed.Swap(true) {
		return c.opError("close", nil, net.ErrClosed)
	}
	_ = unix.Shutdown(c.fd, unix.SHUT_RDWR)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := unix.Close(c.fd); err != nil {
		return c.opError("close", nil, os.NewSyscallError("close", err))
	}
	return nil
}

func (c *blockingConn) LocalAddr() net.Addr { return c.laddr }

// errNoDeadline: a blockingConn has no deadlines.
var errNoDeadline = errors.New("deadlines are not supported on a blocking UDP socket (Shutdown or Close end its reads)")

func (c *blockingConn) SetDeadline(time.Time) error {
	return c.opError("set", nil, errNoDeadline)
}

func (c *blockingConn) SetReadDeadline(time.Time) error {
	return c.opError("set", nil, errNoDeadline)
}

func (c *blockingConn) SetWriteDeadline(time.Time) error {
	return c.opError("set", nil, errNoDeadline)
}
