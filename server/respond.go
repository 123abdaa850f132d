package server

import (
	"encoding/binary"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
	"go.uber.org/zap"

	"github.com/anyns/anyns/zone"
)

// Transport is the transport a query arrived on.
type Transport uint8

const (
	UDP Transport = iota + 1 // datagram: response size limited, truncation
	TCP                      // stream: responses up to 65535 bytes
)

const (
	headerLen = 12
	flagQR    = 1 << 15
	flagAA    = 1 << 10
	flagTC    = 1 << 9
	flagRD    = 1 << 8

	// chaosAuthoritative is the AA bit of CHAOS identity answers. NSD
	// clears AA there (query.c answer_chaos: AA_CLR) and Knot DNS never sets
	// it (chaos.c; AA is set only in internet.c solve_answer), so neither
	// do we.
	chaosAuthoritative = false
)

// query is the per-query scratch state, pooled by the Server. Nothing in it
// survives a query: release clears every pointer into packet memory.
type query struct {
	req   dns.Msg
	resp  dns.Msg
	zr    zone.Response
	opt   dns.OPT
	nsid  dns.EDNS0_NSID
	ka    dns.EDNS0_TCP_KEEPALIVE
	txt   dns.TXT
	opts  []dns.EDNS0
	extra []dns.RR // additional records (without OPT) of the response
	tmp   []dns.RR // scratch for truncation
	one   []dns.RR // scratch for the CHAOS answer
	optRR []dns.RR // scratch for an additional section of only the OPT
	qs    [1]dns.Question
	slow  bool // the general path ran: release clears its state
	// copied: packCopy filled soa, ns, a or aaaa (release clears them; the
	// general path may fill them too, and sets slow).
	copied bool

	info  reqInfo // what the transport knows of the query (metrics.go)
	shard uint8   // index of the metrics shard this query counts in
	qtype uint16  // set by the fast path, with qname

	// qname is the canonical query name, for RRL: set by the fast path
	// (in nameBuf) or by the general path (in qs).
	qname string

	// Fast path (fast.go).
	nameBuf [256]byte      // canonical query name
	cm      map[string]int // compression map, cleared after each query
	soa     dns.SOA        // copies of stored RRs for dns.PackRR
	ns      dns.NS
	a       dns.A
	aaaa    dns.AAAA
}

// ednsState is what the OPT RR of a query turned out to be.
type ednsState uint8

const (
	ednsNone ednsState = iota // no OPT
	ednsOK                    // one valid OPT
	ednsBad                   // FORMERR: several OPTs, OPT outside additional, owner not root
)

// Respond answers one DNS message req that arrived over t and returns the
// response in wire format, packed into buf when buf is large enough (give a
// buffer of 65535 bytes and nothing is allocated for the packet). ok is
// false when the message must be dropped without a reply: shorter than a
// header, or QR=1 (counted in Stats.Dropped).
//
// The response is limited to 65535 bytes over TCP and, over UDP, to 512
// bytes without EDNS or to min(client's EDNS size (at least 512),
// Config.UDPSize) with it; an answer over the limit is truncated per RRset
// with TC=1 (see truncate). req and buf must not overlap. A panic while
// answering is recovered here, logged with its stack, counted, and answered
// SERVFAIL. Respond does not know the client, so RRL does not apply (use
// RespondFrom). Respond is safe from any goroutine.
func (s *Server) Respond(req, buf []byte, t Transport) (resp []byte, ok bool) {
	return s.RespondFrom(req, buf, t, netip.Addr{})
}

// RespondFrom is Respond for a query from client. Over UDP, with
// Config.RRL on and a valid client address, the response is rate limited:
// ok is false for a response RRL drops (Stats.RRLDropped, not
// Stats.Dropped), and a slipped response is the question alone with TC=1
// (Stats.RRLSlipped). TCP is never rate limited. RespondFrom allocates
// nothing more than Respond.
func (s *Server) RespondFrom(req, buf []byte, t Transport, client netip.Addr) (resp []byte, ok bool) {
	return s.respondInfo(req, buf, reqInfo{t: t, client: netip.AddrPortFrom(client, 0)})
}

// respondInfo is RespondFrom with all the transport knows of the query
// (source and destination ports, time read: see metrics.go).
func (s *Server) respondInfo(req, buf []byte, in reqInfo) (resp []byte, ok bool) {
	t, client := in.t, in.client.Addr()
	switch {
	case t == TCP:
		s.stats.queriesTCP.Add(1)
	case in.batch != nil:
		in.batch.queries++
	default:
		s.stats.queriesUDP.Add(1)
	}
	if len(req) < headerLen || binary.BigEndian.Uint16(req[2:])&flagQR != 0 {
		s.stats.dropped.Add(1)
		return nil, false
	}
	if s.xfr != nil {
		if out, ok, handled := s.respondXFR(req, buf, t, client); handled {
			return out, ok
		}
	}
	if t != UDP || s.rrl == nil || !client.IsValid() {
		client = netip.Addr{}
	}
	return s.respondClient(req, buf, t, s.testHookRespond == nil, client, in)
}

// respondWith is Respond, trying the fast path first when fast is set.
func (s *Server) respondWith(req, buf []byte, t Transport, fast bool) (resp []byte, ok bool) {
	return s.respondClient(req, buf, t, fast, netip.Addr{}, reqInfo{t: t})
}

// respondClient is respondWith with RRL applied to the response when
// client is valid; in is what the transport knows of the query (for
// whoami, the metrics, dnstap and the query log).
func (s *Server) respondClient(req, buf []byte, t Transport, fast bool, client netip.Addr, in reqInfo) (resp []byte, ok bool) {
	q := s.queries.Get().(*query)
	q.info = in
	if s.tap != nil || s.qlogThreshold > 0 {
		s.startObserve(q)
	}
	defer func() {
		s.observe(q, req, resp, ok)
		s.release(q)
	}()
	defer func() {
		if r := recover(); r != nil {
			resp, ok = s.recovered(q, r, req, buf)
		}
	}()
	out, answered := []byte(nil), false
	if fast {
		out, answered = s.respondFast(q, req, buf, t)
	}
	if !answered {
		out = s.respond(q, req, buf, t)
		if out == nil {
			s.stats.dropped.Add(1)
			return nil, false
		}
		copyQuestionCase(out, req)
	}
	if client.IsValid() {
		return s.rrlLimit(q, out, client)
	}
	return out, true
}

// release clears q and returns it to the pool.
func (s *Server) release(q *query) {
	if len(q.cm) > 0 {
		clear(q.cm)
	} else if q.cm == nil {
		q.cm = make(map[string]int, 16)
	}
	q.zr.Reset()
	q.qname = ""
	q.info, q.qtype = reqInfo{}, 0
	if q.copied || q.slow {
		// Only when filled: zeroing them costs a fifth of a fast-path
		// answer's user time.
		q.copied = false
		q.soa, q.ns, q.a, q.aaaa = dns.SOA{}, dns.NS{}, dns.A{}, dns.AAAA{}
	}
	if q.slow {
		q.slow = false
		q.req = dns.Msg{}
		q.resp = dns.Msg{}
		q.opt = dns.OPT{}
		q.txt = dns.TXT{}
		q.qs = [1]dns.Question{}
		clear(q.opts)
		q.opts = q.opts[:0]
		for _, p := range []*[]dns.RR{&q.extra, &q.tmp, &q.one, &q.optRR} {
			clear(*p)
			*p = (*p)[:0]
		}
	}
	s.queries.Put(q)
}

// recovered answers SERVFAIL after a panic in respond.
func (s *Server) recovered(q *query, r any, req, buf []byte) ([]byte, bool) {
	s.stats.panics.Add(1)
	q.slow = true
	s.log.Error("panic while answering a query", zap.Any("panic", r), zap.Stack("stack"))
	m := &q.resp
	*m = dns.Msg{}
	setHeader(m, req)
	m.Rcode = dns.RcodeServerFailure
	if binary.BigEndian.Uint16(req[4:]) == 1 && len(q.req.Question) == 1 {
		m.Question = q.req.Question[:1]
	}
	out, err := m.PackBuffer(buf)
	if err != nil {
		s.stats.dropped.Add(1)
		return nil, false
	}
	s.stats.servFail.Add(1)
	return out, true
}

// setHeader fills the response header from the request header: ID, opcode
// and RD are echoed, QR set, every other flag clear (as NSD and Knot do).
func setHeader(m *dns.Msg, req []byte) {
	flags := binary.BigEndian.Uint16(req[2:])
	m.Id = binary.BigEndian.Uint16(req)
	m.Response = true
	m.Opcode = int(flags>>11) & 0xf
	m.RecursionDesired = flags&flagRD != 0
}

// respond builds and packs the response to req (header already known to
// parse and to have QR=0).
func (s *Server) respond(q *query, req, buf []byte, t Transport) []byte {
	q.slow = true
	m := &q.resp
	setHeader(m, req)
	m.Compress = true

	flags := binary.BigEndian.Uint16(req[2:])
	qdcount := binary.BigEndian.Uint16(req[4:])
	ancount := binary.BigEndian.Uint16(req[6:])
	nscount := binary.BigEndian.Uint16(req[8:])

	err := q.req.Unpack(req)
	if err == nil && s.testHookRespond != nil {
		s.testHookRespond(&q.req)
	}
	if qdcount == 1 && len(q.req.Question) == 1 {
		// The question is packed in canonical form, so that every name
		// compresses against it whatever the query's case; Respond then
		// copies the query's bytes over it (copyQuestionCase).
		q.qs[0] = q.req.Question[0]
		q.qs[0].Name = asciiLower(q.qs[0].Name)
		q.qname = q.qs[0].Name
		m.Question = q.qs[:1]
	}
	edns := ednsNone
	if err == nil {
		edns = q.checkEDNS()
	}
	if edns == ednsOK {
		s.initOPT(q, t)
	}
	limit := s.limit(q, t, edns)

	// RFC 1035 4.1.1: opcodes other than QUERY are not implemented.
	if m.Opcode != dns.OpcodeQuery {
		return s.finish(q, buf, limit, dns.RcodeNotImplemented, "")
	}
	// Exactly one question, no answer or authority records, no TC bit,
	// nothing in additional but OPT and TSIG, a valid OPT (NSD query.c
	// query_process does the same checks).
	if qdcount != 1 {
		m.Question = nil
		return s.finish(q, buf, limit, dns.RcodeFormatError, "")
	}
	// A compression pointer in the only question points forward, into
	// the header or into the name itself: Knot DNS refuses all three
	// (knot_dname_wire_check), miekg/dns follows forward ones.
	if questionHasPointer(req) {
		m.Question = nil
		return s.finish(q, buf, limit, dns.RcodeFormatError, "")
	}
	if err != nil || len(q.req.Question) != 1 || edns == ednsBad || flags&flagTC != 0 ||
		ancount != 0 || (nscount != 0 && q.req.Question[0].Qtype != dns.TypeIXFR) ||
		len(q.req.Ns) != int(nscount) || len(q.req.Extra) != int(binary.BigEndian.Uint16(req[10:])) {
		// miekg/dns stops quietly at the end of the packet: a count of
		// records beyond it is a FORMERR here, as in NSD and Knot DNS.
		return s.finish(q, buf, limit, dns.RcodeFormatError, "")
	}
	// RFC 6891 6.1.3: we speak EDNS version 0 only.
	if edns == ednsOK && q.req.Extra[q.optIndex()].(*dns.OPT).Version() != 0 {
		return s.finish(q, buf, limit, dns.RcodeBadVers, "")
	}

	question := q.req.Question[0]
	switch question.Qclass {
	case dns.ClassINET, dns.ClassANY:
		if out, ok := s.answerWhoami(q, buf, t, limit, question); ok {
			return out
		}
		// Knot answers class ANY like IN (process_query.c).
		return s.answerIN(q, buf, t, limit, question)
	case dns.ClassCHAOS:
		return s.finish(q, buf, limit, s.answerCH(q, question), "")
	default:
		// Knot DNS: any other class is REFUSED (process_query.c).
		return s.finish(q, buf, limit, dns.RcodeRefused, "")
	}
}

// checkEDNS validates the OPT RR of the request per RFC 6891 6.1.1: at most
// one, only in the additional section, owned by the root. Records other than
// OPT and TSIG in the additional section are a FORMERR (as NSD).
func (q *query) checkEDNS() ednsState {
	for _, rr := range q.req.Answer {
		if rr.Header().Rrtype == dns.TypeOPT {
			return ednsBad
		}
	}
	for _, rr := range q.req.Ns {
		if rr.Header().Rrtype == dns.TypeOPT {
			return ednsBad
		}
	}
	n := 0
	for _, rr := range q.req.Extra {
		switch rr.Header().Rrtype {
		case dns.TypeOPT:
			n++
			if rr.Header().Name != "." {
				return ednsBad
			}
		case dns.TypeTSIG:
		default:
			return ednsBad
		}
	}
	switch n {
	case 0:
		return ednsNone
	case 1:
		return ednsOK
	default:
		return ednsBad
	}
}

// optIndex returns the index of the (single, valid) OPT in q.req.Extra.
func (q *query) optIndex() int {
	for i, rr := range q.req.Extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			return i
		}
	}
	return -1
}

// initOPT prepares the response OPT: version 0, our UDP size, DO echoed,
// NSID when asked for (RFC 5001), edns-tcp-keepalive over TCP when asked
// for (RFC 7828 3.2.2; over UDP the option is ignored).
func (s *Server) initOPT(q *query, t Transport) {
	reqOPT := q.req.Extra[q.optIndex()].(*dns.OPT)
	o := &q.opt
	o.Hdr = dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: uint16(s.cfg.UDPSize)}
	if reqOPT.Do() {
		o.SetDo()
	}
	q.opts = q.opts[:0]
	for _, e := range reqOPT.Option {
		switch e.Option() {
		case dns.EDNS0NSID:
			if s.nsidHex != "" {
				q.nsid = dns.EDNS0_NSID{Code: dns.EDNS0NSID, Nsid: s.nsidHex}
				q.opts = append(q.opts, &q.nsid)
			}
		case dns.EDNS0TCPKEEPALIVE:
			if t == TCP {
				q.ka = dns.EDNS0_TCP_KEEPALIVE{Code: dns.EDNS0TCPKEEPALIVE, Timeout: max(s.keepalive, 1)}
				q.opts = append(q.opts, &q.ka)
			}
		}
	}
	o.Option = q.opts
}

// limit returns the largest response we may send for this query.
func (s *Server) limit(q *query, t Transport, edns ednsState) int {
	if t == TCP {
		return dns.MaxMsgSize
	}
	if edns != ednsOK {
		return dns.MinMsgSize
	}
	size := int(q.req.Extra[q.optIndex()].(*dns.OPT).UDPSize())
	return max(dns.MinMsgSize, min(size, s.cfg.UDPSize))
}

// answerIN answers from the zone store.
func (s *Server) answerIN(q *query, buf []byte, t Transport, limit int, question dns.Question) []byte {
	m := &q.resp
	if question.Qtype == dns.TypeAXFR || question.Qtype == dns.TypeIXFR {
		// Zone transfers are not served (yet).
		return s.finish(q, buf, limit, dns.RcodeRefused, "")
	}
	snap := s.store.Load()
	// Lookup lower-cases the name itself (without allocating).
	snap.Lookup(question.Name, question.Qtype, &q.zr)
	zr := &q.zr
	if zr.Result == zone.NotAuth {
		return s.finish(q, buf, limit, dns.RcodeRefused, "")
	}
	rcode := zr.Result.Rcode()
	m.Authoritative = zr.Authoritative()
	answer, extra := zr.Answer, zr.Extra
	if question.Qtype == dns.TypeANY && t == UDP && len(answer) > 0 {
		// RFC 8482 4.1: one RRset, never the whole node over UDP. Over TCP
		// the whole node is given (as Knot DNS does with disable-any).
		answer = answer[:rrsetEnd(answer, 0)]
		extra = nil
	}
	// Stored owners are canonical: those equal to the query name compress
	// against the canonical question and read as the query spelled them.
	m.Answer = answer
	m.Ns = zr.Ns
	q.extra = append(q.extra[:0], extra...)
	cut := ""
	if zr.Result == zone.Delegation {
		for _, rr := range zr.Ns {
			if rr.Header().Rrtype == dns.TypeNS {
				cut = rr.Header().Name
				break
			}
		}
	}
	return s.finish(q, buf, limit, rcode, cut)
}

// answerCH answers the CHAOS identity names (TXT only, as Knot DNS; every
// other CHAOS query is REFUSED) and returns the rcode.
func (s *Server) answerCH(q *query, question dns.Question) int {
	if question.Qtype != dns.TypeTXT {
		return dns.RcodeRefused
	}
	var text string
	switch strings.ToLower(question.Name) {
	case "id.server.", "hostname.bind.":
		text = s.cfg.Identity
	case "version.bind.", "version.server.":
		text = s.cfg.Version
	}
	if text == "" {
		return dns.RcodeRefused
	}
	q.txt = dns.TXT{
		Hdr: dns.RR_Header{Name: q.qs[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassCHAOS, Ttl: 0},
		Txt: []string{escapeTXT(text)},
	}
	q.one = append(q.one[:0], &q.txt)
	q.resp.Answer = q.one
	q.resp.Authoritative = chaosAuthoritative
	return dns.RcodeSuccess
}

// questionHasPointer reports whether the name of the first question of req
// holds a compression pointer (or another label type than a plain label)
// before its end.
func questionHasPointer(req []byte) bool {
	for off := headerLen; off < len(req); {
		l := int(req[off])
		if l&0xc0 != 0 {
			return true
		}
		if l == 0 {
			return false
		}
		off += 1 + l
	}
	return false
}

// asciiLower returns s with ASCII upper case letters lowered (s itself
// when there are none).
func asciiLower(s string) string {
	i := 0
	for i < len(s) && !('A' <= s[i] && s[i] <= 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if 'A' <= b[i] && b[i] <= 'Z' {
			b[i] += 'a' - 'A'
		}
	}
	return string(b)
}

// escapeTXT escapes the backslashes of s: miekg/dns reads TXT strings in
// presentation format when packing.
func escapeTXT(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	return strings.ReplaceAll(s, `\`, `\\`)
}

// finish sets rcode (the sections are already set: empty for errors), adds the OPT RR when the query had a valid one, and
// packs the response within limit. cut is the delegation point of a
// referral ("" otherwise): glue below it is required (RFC 9471).
func (s *Server) finish(q *query, buf []byte, limit, rcode int, cut string) []byte {
	m := &q.resp
	m.Rcode = rcode
	hasOPT := q.opt.Hdr.Rrtype == dns.TypeOPT
	m.Extra = q.extra
	if hasOPT {
		m.Extra = append(m.Extra, &q.opt)
	}
	s.countRcode(rcode)

	out, err := m.PackBuffer(buf)
	if err == nil && len(out) <= limit {
		return out
	}
	if err == nil {
		s.truncate(q, limit, cut, hasOPT)
		out, err = m.PackBuffer(buf)
	}
	if err != nil || len(out) > limit {
		// Cannot happen with valid data; keep the reply minimal.
		m.Truncated = err == nil
		m.Answer, m.Ns, m.Extra = nil, nil, nil
		if hasOPT {
			m.Extra = append(q.optRR[:0], &q.opt)
		}
		if err != nil {
			m.Rcode = dns.RcodeServerFailure
			s.stats.servFail.Add(1)
		}
		out, err = m.PackBuffer(buf)
		if err == nil && len(out) > limit && hasOPT {
			q.opt.Option = nil // a long NSID with a long question
			out, err = m.PackBuffer(buf)
		}
		if err != nil {
			// Unreachable: the header and question packed before.
			return nil
		}
	}
	if m.Truncated {
		s.stats.truncated.Add(1)
	}
	return out
}

// truncate cuts m down to limit bytes, the way NSD and Knot DNS do: whole
// RRsets from the answer, then the authority section, in order; the first
// that does not fit sets TC=1 and ends the response there (the RRsets that
// fit are kept). Additional RRsets that do not fit are left out without TC,
// except in-domain glue of a referral (below cut): RFC 9471 requires TC=1
// then. The OPT RR is kept whatever happens (its room is counted first).
func (s *Server) truncate(q *query, limit int, cut string, hasOPT bool) {
	m := &q.resp
	ans, ns := m.Answer, m.Ns
	extra := q.extra
	opt := q.optRR[:0]
	if hasOPT {
		opt = append(opt, &q.opt)
	}
	q.optRR = opt
	m.Answer, m.Ns, m.Extra = nil, nil, opt

	tc := false
	fit := func(sec *[]dns.RR, rrs []dns.RR) {
		for i := 0; i < len(rrs); {
			j := rrsetEnd(rrs, i)
			*sec = rrs[:j]
			if m.Len() > limit {
				*sec = rrs[:i]
				tc = true
				return
			}
			i = j
		}
	}
	fit(&m.Answer, ans)
	if !tc {
		fit(&m.Ns, ns)
	}
	if !tc {
		kept := q.tmp[:0]
		for i := 0; i < len(extra); {
			j := rrsetEnd(extra, i)
			n := len(kept)
			kept = append(append(kept, extra[i:j]...), opt...)
			m.Extra = kept
			if m.Len() > limit {
				kept = kept[:n]
				if cut != "" && dns.IsSubDomain(cut, extra[i].Header().Name) {
					tc = true
					break
				}
			} else {
				kept = kept[:n+j-i]
			}
			i = j
		}
		q.tmp = kept
		m.Extra = append(kept, opt...)
	}
	m.Truncated = tc
}

// rrsetEnd returns the end of the RRset starting at rrs[i]: the records that
// follow with the same owner (ignoring case), type and class.
func rrsetEnd(rrs []dns.RR, i int) int {
	h := rrs[i].Header()
	j := i + 1
	for ; j < len(rrs); j++ {
		g := rrs[j].Header()
		if g.Rrtype != h.Rrtype || g.Class != h.Class || !strings.EqualFold(g.Name, h.Name) {
			break
		}
	}
	return j
}
