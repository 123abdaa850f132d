package server

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr of recvmmsg(2) and sendmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// mmsgBatch reads and writes batches of datagrams with recvmmsg and
// sendmmsg on one socket, with every buffer, address and header allocated
// once: unlike x/net's ReadBatch, which allocates a net.Addr per datagram,
// the source address stays in raw form and is handed back to sendmmsg as
// is. One batch belongs to one goroutine.
type mmsgBatch struct {
	rc syscall.RawConn

	in, out   []mmsghdr
	inIov     []unix.Iovec
	outIov    []unix.Iovec
	names     []unix.RawSockaddrInet6 // source address of each datagram read
	bufs      [][]byte                // read buffers
	nread     int
	nwritten  int
	errno     syscall.Errno
	readFn    func(fd uintptr) bool // bound once: no closure per call
	writeFn   func(fd uintptr) bool
	writeFrom int
	writeN    int
	blocking  bool // a blockingConn's: reads wait in recvmmsg
}

// newMmsgBatch returns a batch of n datagrams of size bytes each for pc,
// or nil when pc is neither a *net.UDPConn nor a blockingConn.
func newMmsgBatch(pc net.PacketConn, n, size int) *mmsgBatch {
	var sc syscall.Conn
	switch pc := pc.(type) {
	case *net.UDPConn:
		sc = pc
	case *blockingConn:
		sc = pc
	default:
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	b := &mmsgBatch{
		rc:     rc,
		in:     make([]mmsghdr, n),
		out:    make([]mmsghdr, n),
		inIov:  make([]unix.Iovec, n),
		outIov: make([]unix.Iovec, n),
		names:  make([]unix.RawSockaddrInet6, n),
		bufs:   staggered(n, size),
	}
	for i := range n {
		b.inIov[i].Base = &b.bufs[i][0]
		b.inIov[i].SetLen(size)
		h := &b.in[i].hdr
		h.Iov = &b.inIov[i]
		h.SetIovlen(1)
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Namelen = uint32(unsafe.Sizeof(b.names[i]))
		o := &b.out[i].hdr
		o.Iov = &b.outIov[i]
		o.SetIovlen(1)
	}
	b.blocking = isBlocking(pc)
	b.readFn = b.doRead
	b.writeFn = b.doWrite
	return b
}

// read fills the batch and returns the number of datagrams read.
func (b *mmsgBatch) read() (int, error) {
	for i := range b.in {
		b.in[i].hdr.Namelen = uint32(unsafe.Sizeof(b.names[i]))
		b.in[i].hdr.Flags = 0
		b.in[i].n = 0
	}
	b.nread, b.errno = 0, 0
	if err := b.rc.Read(b.readFn); err != nil {
		return 0, err
	}
	if b.errno != 0 {
		return 0, b.errno
	}
	return b.nread, nil
}

// doRead is one recvmmsg. MSG_WAITFORONE: on a blocking socket
// (blockingConn) wait for the first datagram only, then take what is
// queued; a non-blocking socket never waits anyway.
func (b *mmsgBatch) doRead(fd uintptr) bool {
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.in[0])), uintptr(len(b.in)), unix.MSG_WAITFORONE, 0, 0)
	if e == unix.EAGAIN && b.blocking {
		// A blockingConn's wait timed out (blockingWait): no datagram,
		// back to the reader's loop.
		b.nread, b.errno = 0, 0
		return true
	}
	if e == unix.EAGAIN || e == unix.EINTR {
		return false
	}
	b.nread, b.errno = int(n), e
	return true
}

// datagram returns the i-th datagram read.
func (b *mmsgBatch) datagram(i int) []byte {
	return b.bufs[i][:b.in[i].n]
}

// source returns the source address of the i-th datagram read (invalid
// for a family other than IPv4 and IPv6), IPv4-mapped addresses unmapped.
func (b *mmsgBatch) source(i int) netip.Addr {
	raw := &b.names[i]
	switch raw.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(raw))
		return netip.AddrFrom4(sa.Addr)
	case unix.AF_INET6:
		return netip.AddrFrom16(raw.Addr).Unmap()
	}
	return netip.Addr{}
}

// sourcePort is source with the source port.
func (b *mmsgBatch) sourcePort(i int) netip.AddrPort {
	raw := &b.names[i]
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&raw.Port))[:])
	addr := b.source(i)
	if !addr.IsValid() {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(addr, port)
}

// setReply makes out[j] the reply resp to the i-th datagram read.
func (b *mmsgBatch) setReply(j, i int, resp []byte) {
	b.outIov[j].Base = &resp[0]
	b.outIov[j].SetLen(len(resp))
	o := &b.out[j].hdr
	o.Name = b.in[i].hdr.Name
	o.Namelen = b.in[i].hdr.Namelen
}

// write sends out[:n], retrying what a partial sendmmsg left and skipping a
// datagram that fails. It returns the last error.
func (b *mmsgBatch) write(n int) error {
	var last error
	for from := 0; from < n; {
		b.writeFrom, b.writeN, b.nwritten, b.errno = from, n-from, 0, 0
		if err := b.rc.Write(b.writeFn); err != nil {
			return err
		}
		if b.errno != 0 {
			last = b.errno
			from++ // skip the datagram that failed
			continue
		}
		from += max(b.nwritten, 1)
	}
	for j := range n {
		b.outIov[j].Base = nil
		b.out[j].hdr.Name = nil
	}
	return last
}

func (b *mmsgBatch) doWrite(fd uintptr) bool {
	n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.out[b.writeFrom])), uintptr(b.writeN), 0, 0, 0)
	if e == unix.EAGAIN || e == unix.EINTR {
		return false
	}
	b.nwritten, b.errno = int(n), e
	return true
}

// UDPReceiveBuffer is the receive buffer ListenUDP asks for (SO_RCVBUF):
// the queries that arrive while a socket's reader is held up wait there,
// and those beyond it are dropped. The kernel's default, 208 KiB, holds
// about 250 small queries: 12 ms at 20,000 queries per second, which a
// reload of a large zone on a busy core can reach. 512 KiB holds about
// 1,300 (65 ms at that rate). Not more: under a flood the buffer is the
// queue every query waits in, a health probe's too (4 MiB made it 127 ms
// at 85,000 queries per second in TestOverload, which allows 100). The
// kernel grants at most net.core.rmem_max (208 KiB on a stock kernel; see
// the README).
const UDPReceiveBuffer = 512 << 10

// ListenUDP opens n UDP sockets on addr ("host:port") with SO_REUSEPORT, so
// that the kernel spreads datagrams over them (by flow hash): give each to
// its own ServeUDP call, one per core. Each asks for a receive buffer of
// UDPReceiveBuffer bytes. Port 0 picks one free port for all n. On error
// every socket opened is closed.
//
// On an address of one host, given as an IP literal (not 0.0.0.0 or ::,
// not link-local with a zone), the sockets are blocking ones outside Go's network poller, whose
// readers wait in recvmmsg (see blockingConn): they support no deadlines.
// On a wildcard address they are *net.UDPConn, whose readers need the
// control messages of x/net to answer from each query's destination.
//
// udpSize is the largest UDP payload the server sends (Config.UDPSize; 0
// for DefaultUDPSize). Up to DontFragmentMax the sockets send with the
// don't-fragment bit (see setDontFragment).
func ListenUDP(addr string, n, udpSize int) ([]net.PacketConn, error) {
	if n < 1 {
		return nil, errors.New("listen udp: need at least one socket")
	}
	if udpSize == 0 {
		udpSize = DefaultUDPSize
	}
	df := udpSize <= DontFragmentMax
	if ap, err := netip.ParseAddrPort(addr); err == nil && !ap.Addr().IsUnspecified() && ap.Addr().Zone() == "" {
		return listenBlockingN(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), n, df)
	}
	lc := net.ListenConfig{Control: func(network, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			// Best effort: the kernel caps it at net.core.rmem_max.
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, UDPReceiveBuffer)
			if serr == nil && df {
				serr = setDontFragment(int(fd), network == "udp6")
			}
		}); err != nil {
			return err
		}
		return serr
	}}
	pcs := make([]net.PacketConn, 0, n)
	for range n {
		pc, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			for _, p := range pcs {
				_ = p.Close()
			}
			return nil, err
		}
		if len(pcs) == 0 {
			addr = pc.LocalAddr().String() // port 0: the same port for all
		}
		pcs = append(pcs, pc)
	}
	return pcs, nil
}

// listenBlockingN is ListenUDP's n blocking sockets on ap.
func listenBlockingN(ap netip.AddrPort, n int, df bool) ([]net.PacketConn, error) {
	pcs := make([]net.PacketConn, 0, n)
	for range n {
		c, err := listenBlocking(ap, df)
		if err != nil {
			for _, p := range pcs {
				_ = p.Close()
			}
			return nil, &net.OpError{Op: "listen", Net: "udp", Addr: net.UDPAddrFromAddrPort(ap), Err: err}
		}
		if len(pcs) == 0 {
			ap = c.laddr.AddrPort() // port 0: the same port for all
		}
		pcs = append(pcs, c)
	}
	return pcs, nil
}

// DontFragmentMax is the largest udp_size at which ListenUDP's sockets send
// with the don't-fragment bit: 1232 bytes of DNS payload and 48 of IPv6 and
// UDP headers fill the IPv6 minimum MTU of 1280 (RFC 8200), so an answer
// never needs fragmenting on any IPv6 link, nor on any IPv4 link of 1260
// bytes or more.
const DontFragmentMax = 1232

// setDontFragment makes the UDP socket fd send every datagram with DF set
// and ignore the path MTU the kernel may have learned from ICMP:
// IP_PMTUDISC_PROBE, and on an IPv6 socket IPV6_PMTUDISC_PROBE and
// IPV6_DONTFRAG (RFC 3542), as RFC 9715 recommends for DNS responders. An
// off-path attacker's forged "fragmentation needed" then cannot make the
// kernel fragment answers (fragments are what DNS cache-poisoning attacks
// by fragment replacement need), and the kernel skips the IP ID it hashes
// for every datagram it might fragment (__ip_select_ident, about 3% of the
// kernel's instructions per UDP answer; a DF datagram from an unconnected
// socket carries ID 0, which RFC 6864 allows for atomic datagrams). A
// datagram larger than the interface's MTU fails with EMSGSIZE instead of
// leaving in fragments, which is why ListenUDP does this only up to
// DontFragmentMax. On an IPv6 socket the IPv4 option is set too, for
// IPv4-mapped peers, when the socket takes it.
func setDontFragment(fd int, v6 bool) error {
	if !v6 {
		return os.NewSyscallError("setsockopt IP_MTU_DISCOVER", unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE))
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE)
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_PROBE); err != nil {
		return os.NewSyscallError("setsockopt IPV6_MTU_DISCOVER", err)
	}
	return os.NewSyscallError("setsockopt IPV6_DONTFRAG", unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_DONTFRAG, 1))
}
