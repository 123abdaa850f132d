package server

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"
)

// tcpBufPool holds response buffers for TCP: 2 bytes of length prefix and
// up to 65535 bytes of message.
var tcpBufPool = sync.Pool{New: func() any { b := make([]byte, 2+65535); return &b }}

// ServeTCP accepts connections on ln and answers the queries on them per
// RFC 7766 until Shutdown, then returns ErrServerClosed (or the first fatal
// Accept error). Each connection may carry many queries, pipelined: up to
// 16 are answered at once and each response is written as soon as it is
// ready (possibly out of order). A connection is closed after
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
		if !s.track(func() { s.tcpConns[c] = struct{}{} }) {
			s.stats.tcpConns.Add(-1)
			_ = c.Close()
			return ErrServerClosed
		}
		go s.serveConn(c)
	}
}

// isTemporary reports whether an Accept error is worth retrying
// (EMFILE, ECONNABORTED and the like).
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// tcpConn is the state of one TCP connection.
type tcpConn struct {
	c     net.Conn
	wmu   sync.Mutex // serializes writes
	slots chan struct{}
	wg    sync.WaitGroup // queries in flight
}

// serveConn reads the queries of one connection and answers them.
func (s *Server) serveConn(c net.Conn) {
	tc := &tcpConn{c: c, slots: make(chan struct{}, maxTCPInFlight)}
	defer func() {
		tc.wg.Wait()
		_ = c.Close()
		s.mu.Lock()
		delete(s.tcpConns, c)
		s.mu.Unlock()
		s.stats.tcpConns.Add(-1)
		s.wg.Done()
	}()
	r := bufio.NewReaderSize(c, 4096)
	var lenBuf [2]byte
	for {
		// The idle timeout restarts with each message (RFC 7766 6.2.3).
		// Check for Shutdown after setting it: Shutdown closes done before
		// it sets a deadline in the past, so one of the two wins.
		if err := c.SetReadDeadline(time.Now().Add(s.cfg.TCPIdleTimeout)); err != nil || s.shuttingDown() {
			return
		}
		if _, err := io.ReadFull(r, lenBuf[:]); err != nil {
			s.connDebug("tcp connection closed", c, err)
			return
		}
		n := int(binary.BigEndian.Uint16(lenBuf[:]))
		if n > maxTCPQuery {
			s.connDebug("tcp query too large", c, nil)
			return
		}
		bp := tcpBufPool.Get().(*[]byte)
		req := make([]byte, n) // the query outlives the read buffer when handled concurrently
		if _, err := io.ReadFull(r, req); err != nil {
			tcpBufPool.Put(bp)
			s.connDebug("tcp query cut short", c, err)
			return
		}
		tc.slots <- struct{}{}
		tc.wg.Add(1)
		if r.Buffered() == 0 {
			// Nothing pipelined behind it: answer in this goroutine.
			s.answerTCP(tc, req, bp)
			continue
		}
		go s.answerTCP(tc, req, bp)
	}
}

// answerTCP answers one query of a connection and writes the response.
func (s *Server) answerTCP(tc *tcpConn, req []byte, bp *[]byte) {
	defer func() {
		tcpBufPool.Put(bp)
		<-tc.slots
		tc.wg.Done()
	}()
	buf := *bp
	resp, ok := s.Respond(req, buf[2:], TCP)
	if !ok || len(resp) == 0 {
		return
	}
	var frame []byte
	if len(resp) <= len(buf)-2 && &resp[0] == &buf[2] {
		frame = buf[:2+len(resp)]
	} else {
		frame = make([]byte, 2+len(resp))
		copy(frame[2:], resp)
	}
	binary.BigEndian.PutUint16(frame, uint16(len(resp)))
	tc.wmu.Lock()
	defer tc.wmu.Unlock()
	_ = tc.c.SetWriteDeadline(time.Now().Add(s.cfg.TCPIdleTimeout))
	if _, err := tc.c.Write(frame); err != nil {
		s.connDebug("tcp write failed", tc.c, err)
		// Unblock the reader: the connection is unusable.
		_ = tc.c.SetReadDeadline(aLongTimeAgo)
	}
}

func (s *Server) connDebug(msg string, c net.Conn, err error) {
	if ce := s.log.Check(zap.DebugLevel, msg); ce != nil {
		ce.Write(zap.Stringer("peer", c.RemoteAddr()), zap.Error(err))
	}
}
