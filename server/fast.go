package server

import (
	"encoding/binary"
	"unsafe"

	"github.com/miekg/dns"

	"github.com/anyns/anyns/zone"
)

// The fast path answers the common queries without unpacking them into a
// dns.Msg and without allocating:
//
//   - a hit on an (owner, type) with a precomputed response
//     (zone.Snapshot.Precomputed, stored without its question) is a copy
//     of its header, the query's question bytes, a copy of the rest, and
//     our OPT RR, with ID and RD taken from the query;
//   - NXDOMAIN, NODATA and referrals are looked up with Snapshot.Lookup and
//     packed with miekg/dns (PackDomainName, PackRR) into the caller's
//     buffer, with a reused compression map and per-query copies of the
//     stored RRs (PackRR writes Rdlength into the RR it packs).
//
// Anything unusual falls back to the general path (respond), which stays
// the reference: an opcode other than QUERY, TC set, counts other than
// qd=1 an=0 ns=0 ar<=1, a question name with a compression pointer or a
// byte that miekg/dns would escape, a class other than IN, qtype ANY, AXFR
// or IXFR, an additional record other than one valid OPT of version 0 with
// only NSID, edns-tcp-keepalive, cookie and padding options (each at most
// once), trailing bytes, an answer over the size limit (truncation), and
// every lookup result the fast path does not pack (CNAME chains, wildcards,
// DNAME, REFUSED). TestFastPathEquivalence checks that both paths give the
// same bytes.

// fastQuery is what parseFast found in a query.
type fastQuery struct {
	name    string // canonical query name, pointing into query.nameBuf
	qEnd    int    // offset past the question in the query
	qtype   uint16
	limit   int  // largest response allowed
	edns    bool // the query has a valid OPT RR
	variant int  // index of our OPT RR in Server.opts
}

// OPT variants: bits of the index into Server.opts.
const (
	optDO      = 1 << iota // DO echoed
	optNSID                // NSID option
	optKA                  // edns-tcp-keepalive option
	optKAFirst             // keepalive before NSID (request order)
	optVariants
)

// EDNS option codes the fast path accepts in a query.
const (
	ednsNSID      = 3
	ednsCookie    = 10
	ednsKeepalive = 11
	ednsPadding   = 12
)

// initOPTs precomputes our OPT RR, in wire format, for every variant, with
// the same dns.OPT the general path builds (initOPT).
func (s *Server) initOPTs() error {
	for v := range optVariants {
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: uint16(s.cfg.UDPSize)}}
		if v&optDO != 0 {
			o.SetDo()
		}
		nsid := &dns.EDNS0_NSID{Code: dns.EDNS0NSID, Nsid: s.nsidHex}
		ka := &dns.EDNS0_TCP_KEEPALIVE{Code: dns.EDNS0TCPKEEPALIVE, Timeout: max(s.keepalive, 1)}
		switch {
		case v&optNSID != 0 && v&optKA != 0 && v&optKAFirst != 0:
			o.Option = []dns.EDNS0{ka, nsid}
		case v&optNSID != 0 && v&optKA != 0:
			o.Option = []dns.EDNS0{nsid, ka}
		case v&optNSID != 0:
			o.Option = []dns.EDNS0{nsid}
		case v&optKA != 0:
			o.Option = []dns.EDNS0{ka}
		}
		m := &dns.Msg{Extra: []dns.RR{o}}
		b, err := m.Pack()
		if err != nil {
			return err
		}
		s.opts[v] = b[headerLen:]
	}
	return nil
}

// parseFast scans the fixed parts of req (header, question, OPT) and
// reports whether the fast path may answer it.
func (s *Server) parseFast(q *query, req []byte, t Transport) (fq fastQuery, ok bool) {
	if len(req) < headerLen+5 {
		return fq, false
	}
	flags := binary.BigEndian.Uint16(req[2:])
	if flags&(0xf<<11) != 0 || flags&flagTC != 0 {
		return fq, false
	}
	if binary.BigEndian.Uint16(req[4:]) != 1 || binary.BigEndian.Uint16(req[6:]) != 0 ||
		binary.BigEndian.Uint16(req[8:]) != 0 {
		return fq, false
	}
	arcount := binary.BigEndian.Uint16(req[10:])
	if arcount > 1 {
		return fq, false
	}

	// The question name: plain labels of bytes miekg/dns does not escape,
	// lower-cased into q.nameBuf in presentation form.
	off, n := headerLen, 0
	for {
		if off >= len(req) {
			return fq, false
		}
		l := int(req[off])
		off++
		if l == 0 {
			break
		}
		if l > 63 || off+l > len(req) || n+l+1 > len(q.nameBuf) {
			return fq, false
		}
		for _, c := range req[off : off+l] {
			switch {
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_', c == '*', c == '/':
			case 'A' <= c && c <= 'Z':
				c += 'a' - 'A'
			default:
				return fq, false
			}
			q.nameBuf[n] = c
			n++
		}
		q.nameBuf[n] = '.'
		n++
		off += l
	}
	if off-headerLen > 255 {
		return fq, false
	}
	if n == 0 {
		q.nameBuf[0] = '.'
		n = 1
	}
	if off+4 > len(req) {
		return fq, false
	}
	fq.qtype = binary.BigEndian.Uint16(req[off:])
	if binary.BigEndian.Uint16(req[off+2:]) != dns.ClassINET {
		return fq, false
	}
	switch fq.qtype {
	case dns.TypeANY, dns.TypeAXFR, dns.TypeIXFR:
		return fq, false
	}
	off += 4
	fq.qEnd = off
	fq.name = unsafe.String(&q.nameBuf[0], n)

	if t == TCP {
		fq.limit = dns.MaxMsgSize
	} else {
		fq.limit = dns.MinMsgSize
	}
	if arcount == 0 {
		return fq, off == len(req)
	}

	// One OPT RR (RFC 6891 6.1.2): root owner, version 0, known options.
	if off+11 > len(req) || req[off] != 0 || binary.BigEndian.Uint16(req[off+1:]) != dns.TypeOPT {
		return fq, false
	}
	size := int(binary.BigEndian.Uint16(req[off+3:]))
	if req[off+6] != 0 { // version
		return fq, false
	}
	v := 0
	if binary.BigEndian.Uint16(req[off+7:])&0x8000 != 0 {
		v |= optDO
	}
	rdlen := int(binary.BigEndian.Uint16(req[off+9:]))
	off += 11
	if off+rdlen != len(req) {
		return fq, false
	}
	nsid, ka := 0, 0
	for off < len(req) {
		if off+4 > len(req) {
			return fq, false
		}
		code := binary.BigEndian.Uint16(req[off:])
		olen := int(binary.BigEndian.Uint16(req[off+2:]))
		off += 4
		if off+olen > len(req) {
			return fq, false
		}
		switch code {
		case ednsNSID:
			nsid++
		case ednsKeepalive:
			if olen != 0 && olen != 2 {
				return fq, false
			}
			if nsid == 0 {
				v |= optKAFirst
			}
			ka++
		case ednsCookie, ednsPadding:
		default:
			return fq, false
		}
		off += olen
	}
	if nsid > 1 || ka > 1 {
		return fq, false
	}
	emitNSID := nsid == 1 && s.nsidHex != ""
	emitKA := ka == 1 && t == TCP
	if emitNSID {
		v |= optNSID
	}
	if emitKA {
		v |= optKA
	}
	if !emitNSID || !emitKA {
		v &^= optKAFirst
	}
	fq.edns = true
	fq.variant = v
	if t == UDP {
		fq.limit = max(dns.MinMsgSize, min(size, s.cfg.UDPSize))
	}
	return fq, true
}

// respondFast answers req on the fast path into buf, or reports false
// (having written nothing the caller needs) when the general path must.
func (s *Server) respondFast(q *query, req, buf []byte, t Transport) ([]byte, bool) {
	fq, ok := s.parseFast(q, req, t)
	if !ok || fq.name == s.whoami { // whoami.go: the general path
		return nil, false
	}
	q.qname = fq.name
	q.qtype = fq.qtype // for the metrics
	var opt []byte
	if fq.edns {
		opt = s.opts[fq.variant]
	}
	snap := s.store.Load()
	if w := snap.Precomputed(fq.name, fq.qtype); w != nil {
		if out, ok := precomputedAnswer(w, req, buf, fq.qEnd, fq.limit, opt); ok {
			return out, true
		}
		out, ok := precomputedTruncated(w, req, buf, fq.qEnd, fq.limit, opt)
		if ok {
			s.stats.truncated.Add(1)
		}
		return out, ok
	}

	zr := &q.zr
	snap.Lookup(fq.name, fq.qtype, zr)
	switch zr.Result {
	case zone.NameError, zone.NoData, zone.Delegation:
	default:
		return nil, false
	}
	if len(zr.Answer) > 0 {
		return nil, false // a CNAME or DNAME chain led here
	}
	if len(buf) < fq.qEnd {
		return nil, false
	}
	var off int
	if zr.Result != zone.Delegation && len(zr.Extra) == 0 && zr.Zone != nil {
		// NXDOMAIN or NODATA: the zone's SOA, packed once (zone/negwire.go).
		copy(buf[headerLen:fq.qEnd], req[headerLen:fq.qEnd])
		if out, ok := zr.Zone.AppendNegative(buf, fq.qEnd, fq.name, zr.Ns); ok {
			off = len(out)
		}
	}
	if off == 0 {
		// The question: the canonical name packed first, so that the
		// compression map holds its suffixes at their offsets, then the
		// query's own bytes over it (same length, only the case differs).
		var err error
		off, err = dns.PackDomainName(fq.name, buf, headerLen, q.cm, true)
		if err != nil || off+4 != fq.qEnd {
			return nil, false
		}
		copy(buf[headerLen:fq.qEnd], req[headerLen:fq.qEnd])
		off = fq.qEnd
		for _, rr := range zr.Ns {
			if off, ok = q.packCopy(rr, buf, off); !ok {
				return nil, false
			}
		}
		for _, rr := range zr.Extra {
			if off, ok = q.packCopy(rr, buf, off); !ok {
				return nil, false
			}
		}
	}
	arcount := len(zr.Extra)
	if opt != nil {
		if off+len(opt) > len(buf) {
			return nil, false
		}
		off += copy(buf[off:], opt)
		arcount++
	}
	if off > fq.limit {
		return nil, false // truncation: the general path
	}
	bits := uint16(flagQR) | uint16(zr.Result.Rcode())
	if zr.Authoritative() {
		bits |= 1 << 10 // AA
	}
	bits |= binary.BigEndian.Uint16(req[2:]) & flagRD
	copy(buf, req[:2])
	binary.BigEndian.PutUint16(buf[2:], bits)
	binary.BigEndian.PutUint16(buf[4:], 1)
	binary.BigEndian.PutUint16(buf[6:], 0)
	binary.BigEndian.PutUint16(buf[8:], uint16(len(zr.Ns)))
	binary.BigEndian.PutUint16(buf[10:], uint16(arcount))
	return buf[:off], true
}

// precomputedAnswer writes the response to req from w, a precomputed
// message without its question (zone.Snapshot.Precomputed), into buf: w's
// header, req's question (up to qEnd; the very length of the one w was
// packed with), the rest of w, and opt (our OPT RR, or nil), with the ID
// and RD of req. It reports false when the response would exceed limit or
// buf.
func precomputedAnswer(w, req, buf []byte, qEnd, limit int, opt []byte) ([]byte, bool) {
	n := len(w) + qEnd - headerLen + len(opt)
	if n > limit || n > len(buf) || len(w) < headerLen {
		return nil, false
	}
	out := buf[:n]
	hdr := (*[headerLen]byte)(out)
	*hdr = [headerLen]byte(w)
	off := headerLen + copy(out[headerLen:], req[headerLen:qEnd])
	off += copy(out[off:], w[headerLen:])
	copy(out[off:], opt)
	hdr[0], hdr[1] = req[0], req[1] // ID
	hdr[2] |= req[2] & (flagRD >> 8)
	if opt != nil {
		binary.BigEndian.PutUint16(hdr[10:], binary.BigEndian.Uint16(hdr[10:])+1)
	}
	return out, true
}

// packCopy packs a copy of the stored rr (so that PackRR's write of
// Rdlength stays in q) at buf[off:], compressing against q.cm. It reports
// false for a type it does not copy.
func (q *query) packCopy(rr dns.RR, buf []byte, off int) (int, bool) {
	var c dns.RR
	switch v := rr.(type) {
	case *dns.SOA:
		q.soa = *v
		c = &q.soa
	case *dns.NS:
		q.ns = *v
		c = &q.ns
	case *dns.A:
		q.a = *v
		c = &q.a
	case *dns.AAAA:
		q.aaaa = *v
		c = &q.aaaa
	default:
		return 0, false
	}
	q.copied = true
	off, err := dns.PackRR(c, buf, off, q.cm, true)
	return off, err == nil
}

// copyQuestionCase writes the query's question name bytes over the
// response's (the general path packs the canonical name so that names
// compress against it as on the fast path). It does nothing unless both
// hold one question whose names differ in ASCII case only.
func copyQuestionCase(out, req []byte) {
	if len(out) < headerLen || len(req) < headerLen ||
		binary.BigEndian.Uint16(out[4:]) != 1 || binary.BigEndian.Uint16(req[4:]) != 1 {
		return
	}
	end := headerLen
	for {
		if end >= len(req) || end >= len(out) {
			return
		}
		l := int(req[end])
		if l > 63 {
			return
		}
		end += 1 + l
		if l == 0 {
			break
		}
	}
	if end > len(out) || end > len(req) {
		return
	}
	a, b := out[headerLen:end], req[headerLen:end]
	for i := range a {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return
		}
	}
	copy(a, b)
}
