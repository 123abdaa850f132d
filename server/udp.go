package server

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"time"

	"github.com/anyns/anyns/zone"
	"go.uber.org/zap"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

const (
	// udpBatch is the number of datagrams read (recvmmsg) and written
	// (sendmmsg) per system call.
	udpBatch = 32
	// udpReadSize is the read buffer per datagram: larger queries are cut
	// and answered FORMERR.
	udpReadSize = 8 << 10
)

// staggered returns n buffers of size bytes each, cut from one allocation
// with a gap of a few cache lines between them. Buffers allocated one by
// one start at multiples of 8 KiB (the read buffers) or 64 KiB (the
// answers): their first bytes, all that a DNS message uses, then fall in
// the same set of the L1 cache (4 KiB apart) and of the L2 (64 KiB apart),
// whose 8 ways cannot hold a batch of 32. Staggered, the heads of a batch
// spread over as many sets.
func staggered(n, size int) [][]byte {
	const gap = 5 * 64 // 5 cache lines: 32 buffers' heads on 32 distinct sets
	stride := (size+63)&^63 + gap
	slab := make([]byte, n*stride)
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = slab[i*stride : i*stride+size : i*stride+size]
	}
	return bufs
}

// batchConn is the batch I/O of ipv4.PacketConn and ipv6.PacketConn
// (ipv4.Message and ipv6.Message are the same type).
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// udpSocket is one UDP socket being served.
type udpSocket struct {
	pc  net.PacketConn
	bc  batchConn // nil: not a *net.UDPConn, plain ReadFrom/WriteTo
	v6  bool
	dst bool // wildcard address: reply from the query's destination address
	// oobSize is the size of the control message buffer per datagram.
	oobSize int
	// local is the socket's address (for a wildcard socket, not the
	// address each query was sent to): dnstap's response address.
	local netip.AddrPort
}

// ServeUDP answers the queries that arrive on pc until Shutdown, then
// returns ErrServerClosed (or the first fatal read error). A *net.UDPConn is
// read and written in batches (recvmmsg/sendmmsg) by a few goroutines, with
// reused buffers and no goroutine per packet; a blocking socket of
// ListenUDP by one goroutine that waits in recvmmsg, with one P more for
// the process while it serves (zone.SpareProc). When pc is bound to a
// wildcard address (0.0.0.0 or ::), each reply leaves from the address the
// query was sent to (IP_PKTINFO / IPV6_PKTINFO), as anycast needs. The
// caller keeps ownership of pc: Shutdown does not close it.
func (s *Server) ServeUDP(pc net.PacketConn) error {
	if !s.track(func() { s.udpConns[pc] = struct{}{} }) {
		return ErrServerClosed
	}
	defer func() {
		s.mu.Lock()
		delete(s.udpConns, pc)
		s.mu.Unlock()
		s.wg.Done()
	}()

	u := &udpSocket{pc: pc, local: addrPortOf(pc.LocalAddr())}
	n := numReaders()
	if isBlocking(pc) {
		// One reader: it waits in recvmmsg, where a second one would only
		// be woken with it. It keeps its P while it waits: see
		// zone.SpareProc.
		n = 1
		defer zone.SpareProc()()
	} else if uc, ok := pc.(*net.UDPConn); ok {
		la, _ := uc.LocalAddr().(*net.UDPAddr)
		u.v6 = la != nil && la.IP.To4() == nil
		u.dst = la != nil && la.IP.IsUnspecified()
		if u.v6 {
			p := ipv6.NewPacketConn(uc)
			if u.dst {
				if err := p.SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true); err != nil {
					return err
				}
				u.oobSize = len(ipv6.NewControlMessage(ipv6.FlagDst | ipv6.FlagInterface))
			}
			u.bc = p
		} else {
			p := ipv4.NewPacketConn(uc)
			if u.dst {
				if err := p.SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true); err != nil {
					return err
				}
				u.oobSize = len(ipv4.NewControlMessage(ipv4.FlagDst | ipv4.FlagInterface))
			}
			u.bc = p
		}
	}

	errc := make(chan error, n)
	for range n {
		go func() { errc <- s.udpReader(u) }()
	}
	var first error
	for range n {
		if err := <-errc; first == nil {
			first = err
		}
	}
	if s.shuttingDown() {
		return ErrServerClosed
	}
	return first
}

// udpReader reads, answers and writes batches until a fatal error or
// Shutdown.
func (s *Server) udpReader(u *udpSocket) error {
	if !u.dst {
		if b := newMmsgBatch(u.pc, udpBatch, udpReadSize); b != nil {
			return s.udpReaderMmsg(b, u.local)
		}
	}
	if u.bc == nil {
		return s.udpReaderPlain(u)
	}
	in := make([]ipv4.Message, udpBatch)
	out := make([]ipv4.Message, udpBatch)
	reads := staggered(udpBatch, udpReadSize)
	bufs := staggered(udpBatch, 65535) // response buffers, reused
	for i := range in {
		in[i].Buffers = [][]byte{reads[i]}
		if u.oobSize > 0 {
			in[i].OOB = make([]byte, u.oobSize)
		}
		out[i].Buffers = [][]byte{bufs[i][:0]}
	}
	var delay time.Duration
	for {
		for i := range in {
			in[i].OOB = in[i].OOB[:cap(in[i].OOB)]
		}
		n, err := u.bc.ReadBatch(in, 0)
		if err != nil {
			if s.shuttingDown() || errors.Is(err, net.ErrClosed) {
				return err
			}
			delay = s.readErrorBackoff(err, delay)
			continue
		}
		delay = 0
		nout := 0
		start := time.Now() // metrics.go: one clock read per batch boundary
		for i := range n {
			msg := &in[i]
			ri := reqInfo{t: UDP, client: addrPortOf(msg.Addr), local: u.local, recv: start}
			resp, ok := s.respondInfo(msg.Buffers[0][:msg.N], bufs[i], ri)
			if !ok || len(resp) == 0 {
				continue
			}
			o := &out[nout]
			nout++
			o.Buffers[0] = resp
			o.Addr = msg.Addr
			o.OOB = nil
			if u.dst {
				o.OOB = replyOOB(u.v6, msg.OOB[:msg.NN])
			}
		}
		s.writeBatch(u, out[:nout])
		s.metrics.dur.observeN(time.Since(start), nout)
		for i := range nout {
			out[i].Addr = nil
			out[i].OOB = nil
		}
	}
}

// udpReaderMmsg is udpReader for a socket bound to one address, with
// recvmmsg/sendmmsg batches that allocate nothing per datagram.
func (s *Server) udpReaderMmsg(b *mmsgBatch, local netip.AddrPort) error {
	bufs := staggered(udpBatch, 65535) // response buffers, reused
	var delay time.Duration
	counts := udpCounts{s: s, shard: s.metrics.shard()}
	var yieldAt time.Time
	for {
		n, err := b.read()
		if err != nil {
			if s.shuttingDown() || errors.Is(err, net.ErrClosed) {
				return err
			}
			delay = s.readErrorBackoff(err, delay)
			continue
		}
		delay = 0
		nout := 0
		start := time.Now() // metrics.go: one clock read per batch boundary
		for i := range n {
			ri := reqInfo{t: UDP, client: b.sourcePort(i), local: local, recv: start, batch: &counts}
			resp, ok := s.respondInfo(b.datagram(i), bufs[i], ri)
			if !ok || len(resp) == 0 {
				continue
			}
			b.setReply(nout, i, resp)
			nout++
		}
		counts.flush() // before the answers leave: who reads one sees it counted
		if err := b.write(nout); err != nil {
			if ce := s.log.Check(zap.DebugLevel, "udp write failed"); ce != nil {
				ce.Write(zap.Error(err))
			}
		}
		s.metrics.dur.observeN(time.Since(start), nout)
		if b.blocking && start.After(yieldAt) {
			// A goroutine that waits in system calls never passes through
			// the scheduler, and one that has not for 10ms is taken for a
			// runaway: the runtime's monitor signals its thread and hands
			// its P away at each of its ticks (down to 20µs apart). Every
			// 5ms it passes through (which wakes a thread to look for
			// work, as a yield does: so not at every batch).
			runtime.Gosched()
			yieldAt = start.Add(5 * time.Millisecond)
		}
	}
}

// writeBatch sends ms, retrying the part a partial sendmmsg left; a
// message that fails is dropped.
func (s *Server) writeBatch(u *udpSocket, ms []ipv4.Message) {
	for len(ms) > 0 {
		n, err := u.bc.WriteBatch(ms, 0)
		if err != nil {
			if ce := s.log.Check(zap.DebugLevel, "udp write failed"); ce != nil {
				ce.Write(zap.Error(err))
			}
			n = max(n, 1) // skip the message that failed
		}
		ms = ms[n:]
	}
}

// replyOOB returns the control message that makes the reply leave from the
// destination address of the query (oob is the query's control message).
func replyOOB(v6 bool, oob []byte) []byte {
	if v6 {
		var cm ipv6.ControlMessage
		if cm.Parse(oob) != nil || cm.Dst == nil {
			return nil
		}
		if cm.Dst.To4() != nil {
			// An IPv4 query on a dual-stack socket: x/net does not marshal
			// a v4-mapped IPV6_PKTINFO source, but Linux takes IP_PKTINFO
			// for a v4-mapped destination.
			return (&ipv4.ControlMessage{Src: cm.Dst.To4()}).Marshal()
		}
		reply := ipv6.ControlMessage{Src: cm.Dst}
		if cm.Dst.IsLinkLocalUnicast() {
			reply.IfIndex = cm.IfIndex
		}
		return reply.Marshal()
	}
	var cm ipv4.ControlMessage
	if cm.Parse(oob) != nil || cm.Dst == nil {
		return nil
	}
	// IfIndex 0: the route decides the interface, Src the address.
	return (&ipv4.ControlMessage{Src: cm.Dst}).Marshal()
}

// udpReaderPlain serves a PacketConn that is not a *net.UDPConn, one
// datagram at a time.
func (s *Server) udpReaderPlain(u *udpSocket) error {
	in := make([]byte, udpReadSize)
	buf := make([]byte, 65535)
	var delay time.Duration
	for {
		n, addr, err := u.pc.ReadFrom(in)
		if err != nil {
			if s.shuttingDown() || errors.Is(err, net.ErrClosed) {
				return err
			}
			delay = s.readErrorBackoff(err, delay)
			continue
		}
		delay = 0
		start := time.Now()
		ri := reqInfo{t: UDP, client: addrPortOf(addr), local: u.local, recv: start}
		if resp, ok := s.respondInfo(in[:n], buf, ri); ok && len(resp) > 0 {
			_, _ = u.pc.WriteTo(resp, addr)
			s.metrics.dur.observeN(time.Since(start), 1)
		}
	}
}

// addrOf returns the IP address of a (*net.UDPAddr or *net.TCPAddr),
// IPv4-mapped addresses unmapped, or an invalid address.
func addrOf(a net.Addr) netip.Addr {
	var ip net.IP
	switch a := a.(type) {
	case *net.UDPAddr:
		ip = a.IP
	case *net.TCPAddr:
		ip = a.IP
	default:
		return netip.Addr{}
	}
	addr, _ := netip.AddrFromSlice(ip)
	return addr.Unmap()
}

// readErrorBackoff logs a non-fatal read error and waits a little longer
// each time it repeats (as net/http does for Accept), so a persistent error
// cannot spin a core.
func (s *Server) readErrorBackoff(err error, delay time.Duration) time.Duration {
	if delay == 0 {
		delay = 5 * time.Millisecond
	} else {
		delay = min(2*delay, time.Second)
	}
	if ce := s.log.Check(zap.DebugLevel, "read failed"); ce != nil {
		ce.Write(zap.Error(err), zap.Duration("retry_in", delay))
	}
	t := time.NewTimer(delay)
	select {
	case <-t.C:
	case <-s.done:
		t.Stop()
	}
	return delay
}
