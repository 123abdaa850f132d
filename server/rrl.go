package server

import (
	"encoding/binary"
	"hash/maphash"
	"math/bits"
	"net/netip"
	"sync"
	"time"
	"unsafe"

	"github.com/miekg/dns"
)

// Response Rate Limiting (RRL), as BIND 9 (rate-limit), NSD and Knot DNS
// (mod-rrl) do it. Each UDP response is accounted to a key:
//
//   - an answer (NOERROR with records): client prefix, qname, qtype;
//   - NODATA (NOERROR, AA, no records): client prefix, qname;
//   - NXDOMAIN: client prefix, the zone that answered (so random names in
//     one zone share one account, as BIND's nxdomains-per-second);
//   - a referral: client prefix, the delegation point;
//   - an error (REFUSED, FORMERR, SERVFAIL, NOTIMP, BADVERS): client prefix
//     only, as BIND's errors-per-second.
//
// Every key has a token bucket with BIND's semantics: it earns
// ResponsesPerSecond credits a second, holds at most one second's worth and
// goes down to at least -Window seconds' worth; each response debits one
// credit, limited ones included, and a response is limited when the account
// is negative after the debit. A flood that stops is therefore forgiven
// Window after it stops. Of the limited responses, every Slip-th leaves as
// a "slip": TC=1, the question only, so that a real client behind a spoofed
// prefix retries over TCP, which is never limited; the others are dropped.
//
// The buckets live in a fixed table indexed by a keyed hash (maphash, with a
// random seed per Server): memory is bounded whatever the traffic, and a
// bucket taken by another key is reset for the new one (as Knot DNS does
// when its table is full). Each bucket has its own mutex, so that queries
// of different keys never wait on each other. Nothing allocates.

// Defaults for the zero values of RRLConfig (BIND 9's).
const (
	DefaultRRLWindow        = 15 * time.Second
	DefaultRRLSlip          = 2
	DefaultRRLIPv4PrefixLen = 24
	DefaultRRLIPv6PrefixLen = 56
)

// rrlBuckets is the size of the bucket table (a power of two): about 2 MiB.
const rrlBuckets = 1 << 16

// RRLConfig configures Response Rate Limiting of UDP responses. The zero
// value turns it off.
type RRLConfig struct {
	// ResponsesPerSecond is the rate of responses allowed per account (see
	// the package's RRL notes: per client prefix and qname, zone or
	// delegation, and kind of response). 0, the default, turns RRL off.
	ResponsesPerSecond int
	// Window is how far an account may go into debt, in time: a client
	// that stops flooding gets answers again at most Window later. 1s to
	// 3600s, defaults to 15s when 0 (BIND's window).
	Window time.Duration
	// Slip is how many limited responses make one slip (TC=1, no records)
	// instead of a drop: 1 slips all of them, 2 (the default, BIND's)
	// every second one. 0 means the default; -1 never slips (drop all).
	Slip int
	// IPv4PrefixLen and IPv6PrefixLen group client addresses: 0 to 32 and
	// 0 to 128, default to 24 and 56 when 0 (BIND's). Use 32 or 128 to
	// account per address.
	IPv4PrefixLen int
	IPv6PrefixLen int
	// Exempt lists client prefixes that are never limited (resolvers you
	// know, monitoring). Their queries are not accounted.
	Exempt []netip.Prefix
}

func (c RRLConfig) withDefaults() RRLConfig {
	if c.Window == 0 {
		c.Window = DefaultRRLWindow
	}
	if c.Slip == 0 {
		c.Slip = DefaultRRLSlip
	}
	if c.IPv4PrefixLen == 0 {
		c.IPv4PrefixLen = DefaultRRLIPv4PrefixLen
	}
	if c.IPv6PrefixLen == 0 {
		c.IPv6PrefixLen = DefaultRRLIPv6PrefixLen
	}
	return c
}

// rrlKind is the kind of a response, for accounting.
type rrlKind uint8

const (
	rrlAnswer rrlKind = iota + 1
	rrlNoData
	rrlNXDomain
	rrlReferral
	rrlError
)

// rrlVerdict is what RRL decided for one response.
type rrlVerdict uint8

const (
	rrlPass rrlVerdict = iota
	rrlDrop
	rrlSlip
)

// rrlBucket is the account of one key.
type rrlBucket struct {
	mu    sync.Mutex
	key   uint64 // hash of the key; 0: unused
	tat   int64  // theoretical arrival time (GCRA), ns since rrl.base
	slips uint32 // limited responses so far, for Slip
}

// rrl is the rate limiter of a Server; nil when RRL is off.
type rrl struct {
	cfg      RRLConfig
	seed     maphash.Seed
	interval int64 // ns per credit: 1s / ResponsesPerSecond
	burst    int64 // ns: one second of credit (the account's ceiling)
	debt     int64 // ns: Window of debt (the account's floor)
	// elapsed is the clock: time since an origin of its own, in ns (a
	// field, so that tests need no sleeps). The default reads only the
	// monotonic clock (time.Since).
	elapsed func() int64
	buckets []rrlBucket
}

// newRRL returns the limiter for cfg (defaults applied), or nil when
// ResponsesPerSecond is 0.
func newRRL(cfg RRLConfig) *rrl {
	if cfg.ResponsesPerSecond == 0 {
		return nil
	}
	base := time.Now()
	return &rrl{
		cfg:      cfg,
		seed:     maphash.MakeSeed(),
		interval: int64(time.Second) / int64(cfg.ResponsesPerSecond),
		burst:    int64(time.Second),
		debt:     int64(cfg.Window),
		elapsed:  func() int64 { return int64(time.Since(base)) },
		buckets:  make([]rrlBucket, rrlBuckets),
	}
}

// exempt reports whether client is in an exempt prefix.
func (c *RRLConfig) exempt(client netip.Addr) bool {
	for _, p := range c.Exempt {
		if p.Contains(client) {
			return true
		}
	}
	return false
}

// key returns the hash of (client prefix, kind, qtype, name), keyed with
// the server's random seed so that clients cannot aim at a bucket.
func (r *rrl) key(client netip.Addr, kind rrlKind, qtype uint16, name string) uint64 {
	var b [20]byte
	if client.Is4() {
		p, _ := client.Prefix(r.cfg.IPv4PrefixLen)
		a4 := p.Addr().As4()
		copy(b[:], a4[:])
		b[15] = 4 // v4 and v6 never share an account
	} else {
		p, _ := client.Prefix(r.cfg.IPv6PrefixLen)
		a := p.Addr().As16()
		copy(b[:], a[:])
	}
	b[16] = byte(kind)
	binary.BigEndian.PutUint16(b[17:], qtype)
	h := maphash.Bytes(r.seed, b[:])
	if name != "" {
		h ^= bits.RotateLeft64(maphash.String(r.seed, name), 29)
	}
	if h == 0 {
		h = 1 // 0 marks an unused bucket
	}
	return h
}

// account debits the account of key by one response and returns the
// verdict.
func (r *rrl) account(key uint64) rrlVerdict {
	now := r.elapsed()
	bk := &r.buckets[key&(rrlBuckets-1)]
	bk.mu.Lock()
	defer bk.mu.Unlock()
	if bk.key != key {
		// A new key, or another key's bucket: start with full credit.
		bk.key, bk.tat, bk.slips = key, now, 0
	}
	// The account holds (now + burst - tat) / interval credits: at most
	// burst (tat >= now), at least -debt.
	tat := max(bk.tat, now) + r.interval
	bk.tat = min(tat, now+r.burst+r.debt)
	if tat <= now+r.burst {
		return rrlPass
	}
	if r.cfg.Slip < 1 {
		return rrlDrop
	}
	bk.slips++
	if bk.slips%uint32(r.cfg.Slip) == 0 {
		return rrlSlip
	}
	return rrlDrop
}

// rrlClassify returns the kind of the response out and the name it is
// accounted to, from its header and the lookup result zr.
func (q *query) rrlClassify(out []byte) (rrlKind, string) {
	flags := binary.BigEndian.Uint16(out[2:])
	ancount := binary.BigEndian.Uint16(out[6:])
	nscount := binary.BigEndian.Uint16(out[8:])
	zr := &q.zr
	switch flags & 0xf {
	case dns.RcodeSuccess:
		switch {
		case ancount > 0:
			return rrlAnswer, ""
		case flags&(1<<10) != 0: // AA
			return rrlNoData, ""
		case nscount > 0 && len(zr.Ns) > 0:
			return rrlReferral, zr.Ns[0].Header().Name
		}
		return rrlError, "" // BADVERS and the like: no records, not AA
	case dns.RcodeNameError:
		if zr.Zone != nil {
			return rrlNXDomain, zr.Zone.Origin
		}
		return rrlNXDomain, ""
	}
	return rrlError, ""
}

// questionEnd returns the offset past the question of the message m when
// it holds exactly one uncompressed question, else headerLen.
func questionEnd(m []byte) int {
	if len(m) < headerLen || binary.BigEndian.Uint16(m[4:]) != 1 {
		return headerLen
	}
	off := headerLen
	for {
		if off >= len(m) {
			return headerLen
		}
		l := int(m[off])
		if l > 63 {
			return headerLen
		}
		off += 1 + l
		if l == 0 {
			break
		}
	}
	if off+4 > len(m) {
		return headerLen
	}
	return off + 4
}

// lowerQuestion copies the name of the question of m (from offset
// headerLen to end-4), lower-cased, into b and returns its length.
func lowerQuestion(b []byte, m []byte, end int) int {
	if end <= headerLen {
		return 0
	}
	n := 0
	for _, c := range m[headerLen : end-4] {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if n == len(b) {
			break
		}
		b[n] = c
		n++
	}
	return n
}

// rrlLimit applies RRL to the response out (in buf) to a query from client
// over UDP, and returns the response to send: out itself, a slip written
// over it, or ok false for a drop.
func (s *Server) rrlLimit(q *query, out []byte, client netip.Addr) ([]byte, bool) {
	r := s.rrl
	client = client.Unmap()
	if r.cfg.exempt(client) {
		return out, true
	}
	kind, name := q.rrlClassify(out)
	qEnd := questionEnd(out)
	var qtype uint16
	if qEnd > headerLen {
		qtype = binary.BigEndian.Uint16(out[qEnd-4:])
	}
	var key uint64
	switch kind {
	case rrlAnswer:
		key = r.key(client, kind, qtype, q.qnameOf(out, qEnd))
	case rrlNoData:
		key = r.key(client, kind, 0, q.qnameOf(out, qEnd))
	case rrlError:
		key = r.key(client, kind, 0, "")
	default:
		key = r.key(client, kind, 0, name)
	}
	switch r.account(key) {
	case rrlPass:
		return out, true
	case rrlSlip:
		s.stats.rrlSlipped.Add(1)
		// The question only, TC=1, NOERROR: "ask again over TCP".
		out = out[:qEnd]
		flags := binary.BigEndian.Uint16(out[2:])
		flags &^= 1<<10 | 0xf // AA, rcode
		flags |= flagTC
		binary.BigEndian.PutUint16(out[2:], flags)
		binary.BigEndian.PutUint16(out[4:], uint16(min(qEnd-headerLen, 1)))
		binary.BigEndian.PutUint16(out[6:], 0)
		binary.BigEndian.PutUint16(out[8:], 0)
		binary.BigEndian.PutUint16(out[10:], 0)
		return out, true
	default:
		s.stats.rrlDropped.Add(1)
		return nil, false
	}
}

// qnameOf returns the canonical query name: the one the fast or the
// general path found, or else the question of the response out (ending at
// qEnd) lower-cased into q.nameBuf.
func (q *query) qnameOf(out []byte, qEnd int) string {
	if q.qname != "" {
		return q.qname
	}
	n := lowerQuestion(q.nameBuf[:], out, qEnd)
	if n == 0 {
		return ""
	}
	return unsafe.String(&q.nameBuf[0], n)
}
