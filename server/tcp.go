package server

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"
)

// tcpBufPool holds response buffers for TCP: 2 bytes of length prefix and
// up to 65535 bytes of message.
var tcpBufPool = sync.Pool{New: func() any { b := make([]byte, 2+65535); return &b }}

// ServeTCP accepts connections on ln and answers the queries on them per
// RFC 7766 until Shutdown, then returns ErrServerClosed (or the first fatal
// Accept error). Each connection may carry many queries, pipelined: they
// are answered in order, and the responses to queries that arrived together
// leave in one write. A connection is closed after
// Config.TCPIdleTimeout without a query, on a length prefix over 16 KiB, on
// a message cut short, or on a write error. Beyond Config.TCPMaxConnections
// open connections a new one is closed at once (Stats.TCPRefused).
// Shutdown closes ln.
func (s *Server) ServeTCP(ln net.Listener) error {
	if !s.track(func() { s.listeners[ln] = struct{}{} }) {
		return ErrServerClosed
	}
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		s.wg.Done()
	}()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.shuttingDown() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				delay = s.readErrorBackoff(err, delay)
				continue
			}
			return err
		}
		delay = 0
		if s.stats.tcpConns.Add(1) > int64(s.cfg.TCPMaxConnections) {
			s.stats.tcpConns.Add(-1)
			s.stats.tcpRefused.Add(1)
			_ = c.Close()
			continue
		}
		prefix, ok := s.acquirePrefix(c.RemoteAddr())
		if !ok {
			s.stats.tcpConns.Add(-1)
			s.stats.tcpPrefixRefused.Add(1)
			_ = c.Close()
			continue
		}
		if !s.track(func() { s.tcpConns[c] = struct{}{} }) {
			s.releasePrefix(prefix)
			s.stats.tcpConns.Add(-1)
			_ = c.Close()
			return ErrServerClosed
		}
		go s.serveConn(c, prefix)
	}
}

// acquirePrefix counts a new connection from remote against its client
// prefix and reports false, counting nothing, when the prefix already has
// Config.TCPMaxConnectionsPerPrefix open. The prefix returned (invalid when
// not counted: no cap, an exempt client, an address of another kind) goes
// to releasePrefix when the connection closes.
func (s *Server) acquirePrefix(remote net.Addr) (netip.Prefix, bool) {
	limit := s.cfg.TCPMaxConnectionsPerPrefix
	addr := addrOf(remote)
	if limit < 0 || !addr.IsValid() || s.cfg.RRL.exempt(addr) {
		return netip.Prefix{}, true
	}
	bits := s.cfg.RRL.IPv6PrefixLen
	if addr.Is4() {
		bits = s.cfg.RRL.IPv4PrefixLen
	}
	p, err := addr.Prefix(bits)
	if err != nil {
		return netip.Prefix{}, true
	}
	s.prefixMu.Lock()
	defer s.prefixMu.Unlock()
	if s.prefixConns[p] >= limit {
		return netip.Prefix{}, false
	}
	s.prefixConns[p]++
	return p, true
}

// releasePrefix undoes acquirePrefix.
func (s *Server) releasePrefix(p netip.Prefix) {
	if !p.IsValid() {
		return
	}
	s.prefixMu.Lock()
	defer s.prefixMu.Unlock()
	if s.prefixConns[p] <= 1 {
		delete(s.prefixConns, p) // the map holds open prefixes only
	} else {
		s.prefixConns[p]--
	}
}

// isTemporary reports whether an Accept error is worth retrying
// (EMFILE, ECONNABORTED and the like).
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// serveConn reads the queries of one connection and answers them in order.
// Every query is answered from memory, so nothing is gained by answering a
// connection's queries concurrently: responses are appended to a write
// buffer, which is flushed when no further query is already buffered
// (pipelined queries get one write for many responses), when it is full, and
// before waiting for the next query. Steady state allocates nothing per query.
func (s *Server) serveConn(c net.Conn, prefix netip.Prefix) {
	defer func() {
		_ = c.Close()
		s.releasePrefix(prefix)
		s.mu.Lock()
		delete(s.tcpConns, c)
		s.mu.Unlock()
		s.stats.tcpConns.Add(-1)
		s.wg.Done()
	}()
	r := bufio.NewReaderSize(c, 4096)
	remote, local := addrPortOf(c.RemoteAddr()), addrPortOf(c.LocalAddr())
	w := bufio.NewWriterSize(c, 16<<10)
	req := make([]byte, 0, 512)
	var lenBuf [2]byte
	flush := func() bool {
		if w.Buffered() == 0 {
			return true
		}
		_ = c.SetWriteDeadline(time.Now().Add(s.cfg.TCPIdleTimeout))
		if err := w.Flush(); err != nil {
			s.connDebug("tcp write failed", c, err)
			return false
		}
		return true
	}
	// setDeadline sets the read deadline and reports false when the
	// connection must close: Shutdown closes done before it sets a deadline
	// in the past, so checking after setting ours means one of the two wins.
	setDeadline := func(d time.Duration) bool {
		return c.SetReadDeadline(time.Now().Add(d)) == nil && !s.shuttingDown()
	}
	for {
		if r.Buffered() == 0 {
			if !flush() {
				return
			}
			// The idle timeout restarts with each message (RFC 7766
			// 6.2.3) and runs until its first byte.
			if !setDeadline(s.cfg.TCPIdleTimeout) {
				return
			}
			if _, err := r.Peek(1); err != nil {
				s.connDebug("tcp connection closed", c, err)
				return
			}
		} else if s.shuttingDown() {
			flush()
			return
		}
		// A message has begun: the rest of it must arrive within
		// TCPReadTimeout (slowloris). When it is all buffered already,
		// no deadline is needed.
		started := false
		if r.Buffered() < 2 {
			if !setDeadline(s.cfg.TCPReadTimeout) {
				flush()
				return
			}
			started = true
		}
		if _, err := io.ReadFull(r, lenBuf[:]); err != nil {
			s.readFailed(c, "tcp connection closed", err)
			flush()
			return
		}
		n := int(binary.BigEndian.Uint16(lenBuf[:]))
		if n > maxTCPQuery {
			s.connDebug("tcp query too large", c, nil)
			flush()
			return
		}
		if !started && r.Buffered() < n && !setDeadline(s.cfg.TCPReadTimeout) {
			flush()
			return
		}
		if cap(req) < n {
			req = make([]byte, n)
		}
		req = req[:n]
		if _, err := io.ReadFull(r, req); err != nil {
			s.readFailed(c, "tcp query cut short", err)
			flush()
			return
		}
		if s.xfr != nil {
			if handled, ok := s.serveXFR(c, w, req, flush); handled {
				if !ok {
					return
				}
				continue
			}
		}
		if !s.answerTCP(w, req, flush, reqInfo{t: TCP, client: remote, local: local, recv: time.Now()}) {
			return
		}
	}
}

// answerTCP answers one query and appends the framed response to w,
// flushing first when it does not fit. It reports false when the
// connection is unusable.
// in is what is known of the query; its handling time (metrics.go) ends
// when the response is in w.
func (s *Server) answerTCP(w *bufio.Writer, req []byte, flush func() bool, in reqInfo) bool {
	bp := tcpBufPool.Get().(*[]byte)
	defer tcpBufPool.Put(bp)
	buf := *bp
	resp, ok := s.respondInfo(req, buf[2:], in)
	if !ok || len(resp) == 0 {
		return true
	}
	var frame []byte
	if len(resp) <= len(buf)-2 && &resp[0] == &buf[2] {
		frame = buf[:2+len(resp)]
	} else {
		frame = make([]byte, 2+len(resp))
		copy(frame[2:], resp)
	}
	binary.BigEndian.PutUint16(frame, uint16(len(resp)))
	if w.Available() < len(frame) && !flush() {
		return false
	}
	_, err := w.Write(frame)
	s.metrics.dur.observeN(time.Since(in.recv), 1)
	return err == nil
}

// readFailed logs a read error inside a message and counts a timeout as a
// slow client cut off.
func (s *Server) readFailed(c net.Conn, msg string, err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && !s.shuttingDown() {
		s.stats.tcpReadTimeouts.Add(1)
		msg = "tcp message too slow"
	}
	s.connDebug(msg, c, err)
}

func (s *Server) connDebug(msg string, c net.Conn, err error) {
	if ce := s.log.Check(zap.DebugLevel, msg); ce != nil {
		ce.Write(zap.Stringer("peer", c.RemoteAddr()), zap.Error(err))
	}
}
