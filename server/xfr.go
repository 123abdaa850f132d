package server

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// TransferRule allows zone transfers (AXFR, IXFR) of a zone.
type TransferRule struct {
	// Zone is the zone's origin, or "*" for every zone.
	Zone string
	// Allow are the client prefixes allowed to transfer the zone.
	Allow []netip.Prefix
	// Keys are TSIG key names (keys of Config.TSIGKeys): a request
	// signed with one of them is allowed whatever its address.
	Keys []string
}

// xfrState is the primary side's configuration, normalised; nil when
// Config sets none of it.
type xfrState struct {
	rules map[string][]TransferRule // by canonical zone, "*" included
	keys  map[string]tsigKey        // by canonical key name
}

// xfrEnabled reports whether c sets any of the primary side.
func (c Config) xfrEnabled() bool {
	return len(c.Transfer) > 0 || len(c.TSIGKeys) > 0 || c.Notify != nil || c.Expired != nil || c.IXFR != nil
}

// newXFRState checks and normalises the primary side of c and returns
// every problem, joined.
func newXFRState(c Config) (*xfrState, error) {
	if !c.xfrEnabled() {
		return nil, nil
	}
	x := &xfrState{rules: make(map[string][]TransferRule), keys: make(map[string]tsigKey)}
	var errs []error
	for name, k := range c.TSIGKeys {
		if _, ok := dns.IsDomainName(name); !ok || name == "" {
			errs = append(errs, fmt.Errorf("tsig_keys: %q is not a domain name", name))
			continue
		}
		tk, err := parseTSIGKey(name, k)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		x.keys[tk.name] = tk
	}
	for i, r := range c.Transfer {
		name := r.Zone
		if name != "*" {
			if _, ok := dns.IsDomainName(name); !ok || name == "" {
				errs = append(errs, fmt.Errorf("transfer[%d].zone: %q is not a domain name or *", i, r.Zone))
				continue
			}
			name = dns.CanonicalName(name)
		}
		nr := TransferRule{Zone: name}
		for j, p := range r.Allow {
			if !p.IsValid() {
				errs = append(errs, fmt.Errorf("transfer[%d].allow[%d]: invalid prefix", i, j))
				continue
			}
			nr.Allow = append(nr.Allow, p.Masked())
		}
		for _, k := range r.Keys {
			kn := dns.CanonicalName(k)
			if _, ok := x.keys[kn]; !ok {
				errs = append(errs, fmt.Errorf("transfer[%d].allow: no key %q in tsig_keys", i, k))
				continue
			}
			nr.Keys = append(nr.Keys, kn)
		}
		x.rules[name] = append(x.rules[name], nr)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return x, nil
}

// allowed reports whether client, with the verified key (nil: none), may
// transfer origin: some rule for origin or "*" lists a prefix holding
// client or the key.
func (x *xfrState) allowed(origin string, client netip.Addr, key *tsigKey) bool {
	client = client.Unmap()
	for _, name := range [2]string{origin, "*"} {
		for _, r := range x.rules[name] {
			if client.IsValid() {
				for _, p := range r.Allow {
					if p.Contains(client) {
						return true
					}
				}
			}
			if key != nil {
				for _, k := range r.Keys {
					if k == key.name {
						return true
					}
				}
			}
		}
	}
	return false
}

// xfrMessageBudget bounds the records of one transfer message by their
// uncompressed size, in bytes, so that a message, question and TSIG
// included, stays well below 64 KiB.
const xfrMessageBudget = 32 << 10

// wireQuery is what scanQuery found in a query without unpacking it.
type wireQuery struct {
	opcode int
	qtype  uint16
	tsig   bool // the last additional record is a TSIG
	name   [256]byte
	nlen   int // length of the canonical presentation name in name, 0 if unknown
}

// scanQuery reads the header, the single question and the type of the
// last record of req (header known to parse). ok is false when the
// message is not one the general path would answer (the general path then
// deals with it).
func scanQuery(req []byte, w *wireQuery) bool {
	if binary.BigEndian.Uint16(req[4:]) != 1 {
		return false
	}
	w.opcode = int(binary.BigEndian.Uint16(req[2:])>>11) & 0xf
	off := headerLen
	simple := true
	n := 0
	for {
		if off >= len(req) {
			return false
		}
		l := int(req[off])
		if l&0xc0 != 0 {
			return false
		}
		off++
		if l == 0 {
			break
		}
		if off+l > len(req) {
			return false
		}
		for _, c := range req[off : off+l] {
			switch {
			case 'A' <= c && c <= 'Z':
				c += 'a' - 'A'
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_', c == '*':
			default:
				simple = false
			}
			if n < len(w.name)-1 {
				w.name[n] = c
			}
			n++
		}
		if n < len(w.name) {
			w.name[n] = '.'
		}
		n++
		off += l
	}
	if n == 0 {
		w.name[0] = '.'
		n = 1
	}
	if simple && n <= len(w.name) {
		w.nlen = n
	}
	if off+4 > len(req) {
		return false
	}
	w.qtype = binary.BigEndian.Uint16(req[off:])
	off += 4
	rrs := int(binary.BigEndian.Uint16(req[6:])) + int(binary.BigEndian.Uint16(req[8:])) + int(binary.BigEndian.Uint16(req[10:]))
	for i := 0; i < rrs; i++ {
		// Owner: labels or a pointer.
		for {
			if off >= len(req) {
				return false
			}
			l := int(req[off])
			if l&0xc0 == 0xc0 {
				off += 2
				break
			}
			if l&0xc0 != 0 {
				return false
			}
			off += 1 + l
			if l == 0 {
				break
			}
		}
		if off+10 > len(req) {
			return false
		}
		typ := binary.BigEndian.Uint16(req[off:])
		off += 10 + int(binary.BigEndian.Uint16(req[off+8:]))
		if off > len(req) {
			return false
		}
		w.tsig = i == rrs-1 && typ == dns.TypeTSIG
	}
	return true
}

// special reports whether req goes to the primary side (handleXFR) rather
// than to the general path: NOTIFY, AXFR, IXFR, a TSIG-signed query, or a
// query for a zone that Config.Expired reports expired.
func (s *Server) special(req []byte, w *wireQuery) bool {
	if !scanQuery(req, w) {
		return false
	}
	if w.opcode == dns.OpcodeNotify && s.cfg.Notify != nil || w.tsig {
		return true
	}
	if w.opcode != dns.OpcodeQuery {
		return false
	}
	if w.qtype == dns.TypeAXFR || w.qtype == dns.TypeIXFR {
		return true
	}
	return s.cfg.Expired != nil && s.expired(w)
}

// expired reports whether the zone of w's name is expired. It does not
// allocate for plain names.
func (s *Server) expired(w *wireQuery) bool {
	var name string
	if w.nlen > 0 {
		name = unsafe.String(&w.name[0], w.nlen)
	} else {
		return true // unusual name: let handleXFR unpack and decide
	}
	z := s.store.Load().Find(name)
	return z != nil && s.cfg.Expired(z.Origin)
}

// handleXFR answers a special request (see special) from client over t;
// emit writes one response message and reports false when the
// connection is unusable. handleXFR returns emit's last result, or false
// for a request to drop.
func (s *Server) handleXFR(raw []byte, t Transport, client netip.Addr, buf []byte, emit func([]byte) bool) bool {
	m := new(dns.Msg)
	if err := m.Unpack(raw); err != nil || len(m.Question) != 1 {
		out, ok := s.respondWith(raw, buf, t, false)
		return !ok || emit(out)
	}
	q := m.Question[0]
	origin := dns.CanonicalName(q.Name)
	st := s.verifyTSIG(raw, m)
	resp := new(dns.Msg)
	resp.SetReply(m)
	resp.RecursionAvailable = false
	resp.Compress = true

	reply := func(rcode int) bool {
		resp.Rcode = rcode
		s.countRcode(rcode)
		out, err := s.sign(resp, &st, true)
		if err != nil {
			s.log.Error("cannot pack a response", zap.Error(err))
			return true
		}
		return emit(out)
	}
	if st.error != 0 {
		if ce := s.log.Check(zap.DebugLevel, "tsig check failed"); ce != nil {
			ce.Write(zap.String("zone", origin), zap.String("error", dns.RcodeToString[int(st.error)]), zap.Stringer("peer", client))
		}
		return reply(dns.RcodeNotAuth)
	}
	if m.Opcode == dns.OpcodeNotify {
		if s.cfg.Notify == nil {
			return reply(dns.RcodeNotImplemented)
		}
		if !s.cfg.Notify(origin, client) {
			return reply(dns.RcodeRefused)
		}
		resp.Authoritative = true
		return reply(dns.RcodeSuccess)
	}
	if m.Opcode != dns.OpcodeQuery {
		return s.signGeneral(raw, t, buf, &st, emit)
	}
	snap := s.store.Load()
	if s.cfg.Expired != nil {
		if z := snap.Find(origin); z != nil && s.cfg.Expired(z.Origin) {
			return reply(dns.RcodeServerFailure)
		}
	}
	if q.Qtype != dns.TypeAXFR && q.Qtype != dns.TypeIXFR {
		return s.signGeneral(raw, t, buf, &st, emit)
	}
	z := snap.Zone(origin)
	if z == nil || q.Qclass != dns.ClassINET || s.xfr == nil || !s.xfr.allowed(z.Origin, client, st.key) {
		return reply(dns.RcodeRefused)
	}
	if q.Qtype == dns.TypeAXFR && t != TCP {
		// AXFR needs TCP (RFC 5936 section 4.2).
		return reply(dns.RcodeNotImplemented)
	}
	soa := z.SOA()
	resp.Authoritative = true
	if q.Qtype == dns.TypeIXFR {
		var from *dns.SOA
		if len(m.Ns) == 1 {
			from, _ = m.Ns[0].(*dns.SOA)
		}
		if from == nil {
			return reply(dns.RcodeFormatError)
		}
		// Up to date, or over UDP: the SOA alone (RFC 1995 sections 2
		// and 4); a UDP client retries over TCP.
		if t != TCP || !serialBefore(from.Serial, soa.Serial) {
			resp.Answer = []dns.RR{soa}
			return reply(dns.RcodeSuccess)
		}
		if s.cfg.IXFR != nil {
			if body, ok := s.cfg.IXFR(z, from.Serial); ok {
				return s.stream(resp, &st, soa, body, emit)
			}
		}
	}
	return s.stream(resp, &st, soa, z.AllRecords()[1:], emit)
}

// serialBefore reports whether serial a is before b (RFC 1982).
func serialBefore(a, b uint32) bool { return a != b && int32(b-a) > 0 }

// stream sends soa, body and soa again in as many messages as needed
// (RFC 5936 section 2.2), each signed when the request was.
func (s *Server) stream(resp *dns.Msg, st *tsigState, soa dns.RR, body []dns.RR, emit func([]byte) bool) bool {
	all := make([]dns.RR, 0, len(body)+2)
	all = append(append(append(all, soa), body...), soa)
	first := true
	for len(all) > 0 {
		size, n := 0, 0
		for n < len(all) {
			l := dns.Len(all[n])
			if n > 0 && size+l > xfrMessageBudget {
				break
			}
			size += l
			n++
		}
		msg := resp.Copy()
		msg.Answer = all[:n:n]
		msg.Extra = nil
		if !first {
			msg.Question = nil
		}
		out, err := s.sign(msg, st, first)
		if err != nil {
			s.log.Error("cannot pack a transfer message", zap.Error(err))
			return false
		}
		if !emit(out) {
			return false
		}
		first = false
		all = all[n:]
	}
	return true
}

// signGeneral answers raw on the general path and signs the response
// (a signed SOA query of a secondary, for instance).
func (s *Server) signGeneral(raw []byte, t Transport, buf []byte, st *tsigState, emit func([]byte) bool) bool {
	out, ok := s.respondWith(raw, buf, t, false)
	if !ok {
		return true
	}
	if st.req == nil {
		return emit(out)
	}
	m := new(dns.Msg)
	if err := m.Unpack(out); err != nil {
		return emit(out)
	}
	m.Compress = true
	signed, err := s.sign(m, st, true)
	if err != nil {
		return emit(out)
	}
	return emit(signed)
}

// countRcode counts an error response in Stats by its rcode.
func (s *Server) countRcode(rcode int) {
	switch rcode {
	case dns.RcodeFormatError:
		s.stats.formErr.Add(1)
	case dns.RcodeNotImplemented:
		s.stats.notImp.Add(1)
	case dns.RcodeRefused:
		s.stats.refused.Add(1)
	case dns.RcodeServerFailure:
		s.stats.servFail.Add(1)
	}
}

// respondXFR is the hook of RespondFrom: it answers a special request
// with a single message in buf. handled is false for the others.
func (s *Server) respondXFR(req, buf []byte, t Transport, client netip.Addr) (resp []byte, ok, handled bool) {
	var w wireQuery
	if !s.special(req, &w) {
		return nil, false, false
	}
	defer func() {
		if r := recover(); r != nil {
			s.stats.panics.Add(1)
			s.log.Error("panic while answering a query", zap.Any("panic", r), zap.Stack("stack"))
			resp, ok, handled = nil, false, true
		}
	}()
	var out []byte
	s.handleXFR(req, t, client, buf, func(b []byte) bool {
		if out == nil { // over UDP only one message is ever sent
			if len(b) <= len(buf) {
				out = append(buf[:0], b...)
			} else {
				out = b
			}
		}
		return true
	})
	return out, out != nil, true
}

// serveXFR is the hook of the TCP loop: it answers a special request,
// writing each message of a transfer framed to w. handled is false for
// the others; ok is false when the connection must close.
func (s *Server) serveXFR(c net.Conn, w *bufio.Writer, req []byte, flush func() bool) (handled, ok bool) {
	var wq wireQuery
	if !s.special(req, &wq) {
		return false, true
	}
	s.stats.queriesTCP.Add(1)
	defer func() {
		if r := recover(); r != nil {
			s.stats.panics.Add(1)
			s.log.Error("panic while answering a query", zap.Any("panic", r), zap.Stack("stack"))
			handled, ok = true, false
		}
	}()
	bp := tcpBufPool.Get().(*[]byte)
	defer tcpBufPool.Put(bp)
	emit := func(b []byte) bool {
		if len(b) > dns.MaxMsgSize {
			return false
		}
		var l [2]byte
		binary.BigEndian.PutUint16(l[:], uint16(len(b)))
		if w.Available() < 2+len(b) && !flush() {
			return false
		}
		_, err1 := w.Write(l[:])
		_, err2 := w.Write(b)
		return err1 == nil && err2 == nil
	}
	if !s.handleXFR(req, TCP, addrOf(c.RemoteAddr()), (*bp)[2:], emit) {
		return true, false
	}
	return true, true
}
