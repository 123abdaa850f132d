package server

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	dnstap "github.com/dnstap/golang-dnstap"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// dnstap output (https://dnstap.info): every query answered is copied into
// a pooled item and handed to a bounded channel with a non-blocking send;
// when the channel is full the item is dropped and counted
// (Stats.DnstapDropped), so dnstap never slows an answer. One writer
// goroutine encodes AUTH_QUERY and AUTH_RESPONSE messages and writes them
// as Frame Streams, to a unix socket (golang-dnstap's socket writer, which
// reconnects after a failure) or to a file.

const (
	// dnstapQueue is the number of queries waiting for the writer.
	dnstapQueue = 4096
	// dnstapFlush is how long the socket writer keeps data buffered.
	dnstapFlush = time.Second
	// dnstapRetry is the wait before reconnecting to the socket.
	dnstapRetry = 2 * time.Second
	// dnstapItemCap is the capacity of a pooled item's buffer; a larger
	// one (a long response) is not returned to the pool.
	dnstapItemCap = 4096
)

// tapItem is one query and its response, copied off the query path.
type tapItem struct {
	buf      []byte // query bytes, then response bytes
	qlen     int
	answered bool // a response was sent
	t        Transport
	client   netip.AddrPort
	local    netip.AddrPort
	qtime    time.Time
	rtime    time.Time
}

// tap is the dnstap output of a Server.
type tap struct {
	identity, version []byte
	log               *zap.Logger

	ch      chan *tapItem
	pool    sync.Pool
	dropped atomic.Uint64

	w    dnstap.Writer
	file *os.File // nil for a socket

	stop     chan struct{} // closed to stop the writer
	stopOnce sync.Once
	stopped  atomic.Bool   // set before stop is closed: send drops
	done     chan struct{} // closed when the writer has returned
}

// newTap opens the dnstap output dest: "unix:/path" for a socket (the
// connection is made, and remade, by the writer), anything else for a file
// (created or truncated now), and starts the writer.
func newTap(dest, identity, version string, log *zap.Logger) (*tap, error) {
	t := &tap{
		identity: []byte(identity),
		version:  []byte(version),
		log:      log,
		ch:       make(chan *tapItem, dnstapQueue),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	t.pool.New = func() any { return &tapItem{buf: make([]byte, 0, dnstapItemCap)} }
	if path, ok := strings.CutPrefix(dest, "unix:"); ok {
		if path == "" {
			return nil, fmt.Errorf("dnstap: empty socket path")
		}
		t.w = dnstap.NewSocketWriter(&net.UnixAddr{Name: path, Net: "unix"}, &dnstap.SocketWriterOptions{
			FlushTimeout:  dnstapFlush,
			RetryInterval: dnstapRetry,
			Timeout:       5 * time.Second,
			Dialer:        &net.Dialer{Timeout: 5 * time.Second},
			Logger:        tapLogger{log},
		})
	} else {
		f, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, fmt.Errorf("dnstap: %w", err)
		}
		w, err := dnstap.NewWriter(f, nil)
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("dnstap %s: %w", dest, err)
		}
		t.w, t.file = w, f
	}
	go t.run()
	return t, nil
}

// tapLogger adapts zap to golang-dnstap's Printf logger (connection
// errors and reconnects).
type tapLogger struct{ log *zap.Logger }

func (l tapLogger) Printf(format string, v ...any) {
	if ce := l.log.Check(zap.DebugLevel, "dnstap"); ce != nil {
		ce.Write(zap.String("detail", fmt.Sprintf(format, v...)))
	}
}

// send copies a query and its response (out, sent when ok) and queues
// them for the writer, or drops them when the queue is full.
func (t *tap) send(req, out []byte, ok bool, in *reqInfo, now time.Time) {
	if t.stopped.Load() {
		t.dropped.Add(1)
		return
	}
	it := t.pool.Get().(*tapItem)
	it.buf = append(it.buf[:0], req...)
	it.qlen = len(req)
	it.answered = ok
	if ok {
		it.buf = append(it.buf, out...)
	}
	it.t, it.client, it.local = in.t, in.client, in.local
	it.qtime, it.rtime = in.recv, now
	if it.qtime.IsZero() {
		it.qtime = now
	}
	select {
	case t.ch <- it:
	default:
		t.dropped.Add(1)
		t.put(it)
	}
}

func (t *tap) put(it *tapItem) {
	if cap(it.buf) > dnstapItemCap {
		return
	}
	t.pool.Put(it)
}

// run is the writer: it encodes and writes the queued items until close.
func (t *tap) run() {
	defer close(t.done)
	var msg dnstap.Message
	d := dnstap.Dnstap{
		Identity: t.identity,
		Version:  t.version,
		Type:     dnstap.Dnstap_MESSAGE.Enum(),
		Message:  &msg,
	}
	var frame []byte
	write := func(it *tapItem) {
		for _, resp := range []bool{false, true} {
			if resp && !it.answered {
				break
			}
			it.fill(&msg, resp)
			var err error
			frame, err = proto.MarshalOptions{}.MarshalAppend(frame[:0], &d)
			if err == nil {
				_, err = t.w.WriteFrame(frame)
			}
			if err != nil {
				if ce := t.log.Check(zap.DebugLevel, "dnstap write failed"); ce != nil {
					ce.Write(zap.Error(err))
				}
			}
		}
		t.put(it)
	}
	for {
		select {
		case it := <-t.ch:
			write(it)
		case <-t.stop:
			for {
				select {
				case it := <-t.ch:
					write(it)
				default:
					if err := t.w.Close(); err != nil {
						t.log.Debug("dnstap close failed", zap.Error(err))
					}
					if t.file != nil {
						_ = t.file.Close()
					}
					return
				}
			}
		}
	}
}

// fill sets msg to the AUTH_QUERY (resp false) or AUTH_RESPONSE of it.
func (it *tapItem) fill(msg *dnstap.Message, resp bool) {
	*msg = dnstap.Message{}
	typ := dnstap.Message_AUTH_QUERY
	if resp {
		typ = dnstap.Message_AUTH_RESPONSE
	}
	msg.Type = typ.Enum()
	sp := dnstap.SocketProtocol_UDP
	if it.t == TCP {
		sp = dnstap.SocketProtocol_TCP
	}
	msg.SocketProtocol = sp.Enum()
	addr := it.client.Addr()
	if !addr.IsValid() {
		addr = it.local.Addr()
	}
	if addr.IsValid() {
		family := dnstap.SocketFamily_INET6
		if addr.Is4() {
			family = dnstap.SocketFamily_INET
		}
		msg.SocketFamily = family.Enum()
	}
	if a := it.client.Addr(); a.IsValid() {
		msg.QueryAddress = a.AsSlice()
		msg.QueryPort = proto32(uint32(it.client.Port()))
	}
	if a := it.local.Addr(); a.IsValid() {
		msg.ResponseAddress = a.AsSlice()
		msg.ResponsePort = proto32(uint32(it.local.Port()))
	}
	msg.QueryTimeSec = proto64(uint64(it.qtime.Unix()))
	msg.QueryTimeNsec = protoNsec(it.qtime)
	if resp {
		msg.ResponseTimeSec = proto64(uint64(it.rtime.Unix()))
		msg.ResponseTimeNsec = protoNsec(it.rtime)
		msg.ResponseMessage = it.buf[it.qlen:]
	} else {
		msg.QueryMessage = it.buf[:it.qlen]
	}
}

func proto32(v uint32) *uint32 { return &v }
func proto64(v uint64) *uint64 { return &v }
func protoNsec(t time.Time) *uint32 {
	return proto32(uint32(t.Nanosecond()))
}

// close stops the writer once it has written what is queued, or when ctx
// is done. Items sent later are dropped (counted).
func (t *tap) close(ctx context.Context) error {
	t.stopOnce.Do(func() {
		t.stopped.Store(true)
		close(t.stop)
	})
	select {
	case <-t.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// droppedCount returns the queries dropped (0 when t is nil: dnstap off).
func (t *tap) droppedCount() uint64 {
	if t == nil {
		return 0
	}
	return t.dropped.Load()
}

// dnstapVersion is the version field of our messages.
func dnstapVersion(v string) string {
	if v == "" {
		return "anyns"
	}
	return v
}
