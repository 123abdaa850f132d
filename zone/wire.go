package zone

import (
	"encoding/binary"
	"net"
	"runtime"
	"sort"
	"sync"

	"github.com/miekg/dns"
)

// Precomputed wire-format responses.
//
// Every (owner, type) that has an RRset gets the response message the
// server would send for it, packed once (compression included) with ID 0,
// RD clear, no OPT RR, and the question in canonical (lower-case) form;
// the question section is then cut out, as the query holds it: what is
// stored is the 12-byte header followed by the answer, authority and
// additional sections. The server writes the header, the query's question
// bytes verbatim, the rest of the message, and its OPT RR, then patches ID
// and RD: nothing else in the message depends on the query. The query's
// question has the very length of the one packed (the same name, in any
// case, without compression), so every name that compresses against the
// question points into it at the offsets it had when packed.
//
// Only self-contained answers are stored: those whose Lookup, in a snapshot
// holding this zone alone, consulted no name outside the zone. Answers whose
// additional section depends on MX, NS or SRV targets inside the zone are
// marked, because a more specific zone served beside this one can change
// them; Snapshot.Precomputed refuses those when the snapshot serves such a
// zone.
//
// The messages are built after the zone is parsed and validated, into a
// wireSet that a copy of the Zone points to (Zone.Precompute): the Zone
// without them can be published (and served through Lookup) first, and is
// never written. Building them is the packing miekg/dns's Msg.PackBuffer
// does (header, question, then dns.PackRR of each RR against one
// compression map), done with a reused buffer and compression map and with
// scratch copies of the RRs (PackRR writes Rdlength into the RR it packs),
// in parallel over disjoint parts of the zone. The RRs are unpacked from
// the zone's wire data (records.go), the A and AAAA RRs of an answer into
// reused RRs (packer.appendAnswer), so that the bulk of a large zone is
// precomputed without allocating an RR each.

const (
	// headerLen is the length of a DNS message header.
	headerLen = 12
	// wireChunk is the size of one arena chunk of precomputed messages.
	wireChunk = 1 << 20
	// wireTargets marks, in wireLoc.off, an answer whose additional
	// section depends on target names inside the zone.
	wireTargets = 1 << 31
	// precomputeMin is the number of RRsets below which precomputing
	// runs on one goroutine.
	precomputeMin = 8192
)

// wireSet is the precomputed messages of a zone.
type wireSet struct {
	chunks [][]byte  // arena: each chunk holds whole messages
	loc    []wireLoc // by index in Zone.sets
	neg    *negWire  // the authority section of negative answers (negwire.go), or nil
}

// wireLoc locates one message: off is chunk*wireChunk + offset in the
// chunk, with the wireTargets flag; n is its length, 0 if none.
type wireLoc struct {
	off uint32
	n   uint16
}

// wireArena packs precomputed messages into large chunks, so that a zone
// holds a few big byte slices rather than one per RRset.
type wireArena struct {
	chunks [][]byte
}

// add appends msg and returns its offset (chunk*wireChunk + offset).
func (a *wireArena) add(msg []byte) (uint32, bool) {
	if len(msg) > wireChunk || len(a.chunks) >= (wireTargets/wireChunk)-1 {
		return 0, false
	}
	if len(a.chunks) == 0 || cap(a.chunks[len(a.chunks)-1])-len(a.chunks[len(a.chunks)-1]) < len(msg) {
		a.chunks = append(a.chunks, make([]byte, 0, wireChunk))
	}
	i := len(a.chunks) - 1
	off := len(a.chunks[i])
	a.chunks[i] = append(a.chunks[i], msg...)
	return uint32(i*wireChunk + off), true
}

// wireOf returns the precomputed message of the set at index i of
// Zone.sets, or nil.
func (w *wireSet) wireOf(i uint32) []byte {
	l := w.loc[i]
	if l.n == 0 {
		return nil
	}
	off := int(l.off &^ wireTargets)
	c := w.chunks[off/wireChunk]
	o := off % wireChunk
	return c[o : o+int(l.n) : o+int(l.n)]
}

// Precomputed reports whether z holds precomputed answers.
func (z *Zone) Precomputed() bool { return z.pre != nil }

// Precompute returns a copy of z holding the precomputed answer of every
// (owner, type) (see the comment at the top of wire.go), or z itself if it
// has them already. z is not modified: the copy shares its data, so z may
// be published and serving meanwhile. It uses every core (GOMAXPROCS) for
// a large zone.
func (z *Zone) Precompute() *Zone {
	return z.precompute(runtime.GOMAXPROCS(0))
}

// precompute is Precompute on at most workers goroutines.
func (z *Zone) precompute(workers int) *Zone {
	if z.pre != nil {
		return z
	}
	c := *z
	c.pre = z.buildWire(workers)
	c.pre.neg = z.buildNegWire()
	return &c
}

// buildWire packs the messages of z, in parallel over disjoint ranges of
// its nodes: each worker writes only the loc entries of its own nodes'
// sets, into an arena of its own; the arenas are joined at the end. The
// nodes' sets are in node order (see builder.finish), so a range of nodes
// is a range of sets: the ranges hold about as many sets each.
func (z *Zone) buildWire(workers int) *wireSet {
	w := &wireSet{loc: make([]wireLoc, len(z.sets))}
	workers = max(1, min(workers, len(z.sets)/precomputeMin))
	arenas := make([]wireArena, workers)
	// Worker i packs nodes bounds[i] to bounds[i+1], whose sets are
	// z.sets[z.nodes[bounds[i]].first:] up to the next bound's.
	bounds := make([]int, workers+1)
	for i := range workers {
		want := uint32(i * len(z.sets) / workers)
		bounds[i] = sort.Search(len(z.nodes), func(j int) bool { return z.nodes[j].first >= want })
	}
	bounds[0], bounds[workers] = 0, len(z.nodes)
	firstSet := func(b int) uint32 {
		if b == len(z.nodes) {
			return uint32(len(z.sets))
		}
		return z.nodes[b].first
	}
	snap := &Snapshot{zones: []*Zone{z}, byName: map[string]*Zone{z.Origin: z}}
	snap.index()
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			p := newPacker()
			k := 0
			for j := bounds[i]; j < bounds[i+1]; j++ {
				n := &z.nodes[j]
				if n.empty() {
					continue
				}
				p.node(snap, z, n, w.loc, &arenas[i])
				if k++; k%yieldEvery == 0 {
					yieldToListeners.yield() // answers are built while zones serve
				}
			}
		})
	}
	wg.Wait()
	// Join the arenas: worker i's chunk j becomes chunk base+j.
	base := 0
	for i := range workers {
		if base > 0 {
			shift := uint32(base * wireChunk)
			for j := firstSet(bounds[i]); j < firstSet(bounds[i+1]); j++ {
				if l := &w.loc[j]; l.n != 0 {
					l.off += shift
				}
			}
		}
		for _, c := range arenas[i].chunks {
			w.chunks = append(w.chunks, c[:len(c):len(c)])
		}
		base += len(arenas[i].chunks)
	}
	if len(w.chunks) >= wireTargets/wireChunk {
		// More than 2 GiB of answers: offsets overflow; serve without.
		return &wireSet{loc: make([]wireLoc, len(z.sets))}
	}
	return w
}

// packer packs precomputed messages; one per goroutine.
type packer struct {
	buf []byte
	cm  map[string]int
	r   Response
	// Scratch copies of stored RRs for dns.PackRR (see packRR).
	a     dns.A
	aaaa  dns.AAAA
	mx    dns.MX
	txt   dns.TXT
	cname dns.CNAME
	ns    dns.NS
	soa   dns.SOA
	srv   dns.SRV
	ptr   dns.PTR
	// Reused RRs for the stored A and AAAA RRs of an answer (see
	// appendAnswer).
	as    []*dns.A
	aaaas []*dns.AAAA
}

func newPacker() *packer {
	return &packer{buf: make([]byte, dns.MaxMsgSize), cm: make(map[string]int)}
}

// node packs the answers for every type at n into a, recording them in loc.
func (p *packer) node(snap *Snapshot, z *Zone, n *node, loc []wireLoc, a *wireArena) {
	// The answer of a name that is neither at nor below a zone cut or a
	// DNAME (other than DNAME at itself) is its RRset, with the
	// additional data of its targets: Lookup is needed only for the rest.
	name := z.name(n)
	direct := n.flags&flagCut == 0 && !z.occluded(name)
	r := &p.r
	sets := z.setsOf(n)
	for i := range sets {
		set := &sets[i]
		if set.typ == dns.TypeDS && n == z.apex() {
			continue // answered from the parent zone when it is served
		}
		if direct {
			r.Reset()
			r.Answer = p.appendAnswer(z, n, set, r.Answer)
			r.Result = Success
			r.Zone = z
			switch set.typ {
			case dns.TypeMX, dns.TypeNS, dns.TypeSRV:
				snap.additional(r)
			}
		} else {
			snap.Lookup(name, set.typ, r)
		}
		targets, ok := selfContained(z, name, set.typ, r)
		if !ok {
			continue
		}
		msg, ok := p.pack(name, set.typ, r)
		if !ok {
			continue
		}
		off, ok := a.add(msg)
		if !ok {
			continue
		}
		if targets {
			off |= wireTargets
		}
		loc[n.first+uint32(i)] = wireLoc{off: off, n: uint16(len(msg))}
	}
	r.Reset()
}

// appendAnswer appends the RRs of set, a set of n, to dst, as
// z.appendSet does, but for the A and AAAA RRs in wire form (most of a
// large zone) without allocating: they are RRs of p, reused on the next
// call, whose address is a slice of the stored RDATA (an A or AAAA RDATA is
// the address; the packer only reads it).
func (p *packer) appendAnswer(z *Zone, n *node, set *rrset, dst []dns.RR) []dns.RR {
	if set.obj || (set.typ != dns.TypeA && set.typ != dns.TypeAAAA) {
		return z.appendSet(dst, n, set, "")
	}
	k := len(dst)
	name := z.name(n)
	data := z.rrData[set.off:]
	for i := range int(set.n) {
		ttl := binary.BigEndian.Uint32(data)
		rdlen := int(binary.BigEndian.Uint16(data[4:]))
		addr := net.IP(data[rrHeaderLen : rrHeaderLen+rdlen : rrHeaderLen+rdlen])
		data = data[rrHeaderLen+rdlen:]
		h := dns.RR_Header{Name: name, Rrtype: set.typ, Class: dns.ClassINET, Ttl: ttl, Rdlength: uint16(rdlen)}
		switch {
		case set.typ == dns.TypeA && rdlen == net.IPv4len:
			if i == len(p.as) {
				p.as = append(p.as, new(dns.A))
			}
			*p.as[i] = dns.A{Hdr: h, A: addr}
			dst = append(dst, p.as[i])
		case set.typ == dns.TypeAAAA && rdlen == net.IPv6len:
			if i == len(p.aaaas) {
				p.aaaas = append(p.aaaas, new(dns.AAAA))
			}
			*p.aaaas[i] = dns.AAAA{Hdr: h, AAAA: addr}
			dst = append(dst, p.aaaas[i])
		default:
			return z.appendSet(dst[:k], n, set, "")
		}
	}
	return dst
}

// pack packs the response r to qname/qtype as Msg.PackBuffer would with
// Compress set (ID 0, RD clear), into p.buf, and returns it without its
// question section.
func (p *packer) pack(qname string, qtype uint16, r *Response) ([]byte, bool) {
	clear(p.cm)
	buf := p.buf
	bits := uint16(1<<15) | uint16(r.Result.Rcode()&0xf) // QR, RCODE
	if r.Authoritative() {
		bits |= 1 << 10 // AA
	}
	binary.BigEndian.PutUint16(buf[0:], 0)
	binary.BigEndian.PutUint16(buf[2:], bits)
	binary.BigEndian.PutUint16(buf[4:], 1)
	binary.BigEndian.PutUint16(buf[6:], uint16(len(r.Answer)))
	binary.BigEndian.PutUint16(buf[8:], uint16(len(r.Ns)))
	binary.BigEndian.PutUint16(buf[10:], uint16(len(r.Extra)))
	off, err := dns.PackDomainName(qname, buf, headerLen, p.cm, true)
	if err != nil || off+4 > len(buf) {
		return nil, false
	}
	binary.BigEndian.PutUint16(buf[off:], qtype)
	binary.BigEndian.PutUint16(buf[off+2:], dns.ClassINET)
	off += 4
	qEnd := off
	for _, sec := range [...][]dns.RR{r.Answer, r.Ns, r.Extra} {
		for _, rr := range sec {
			if off, err = dns.PackRR(p.scratch(rr), buf, off, p.cm, true); err != nil {
				return nil, false
			}
		}
	}
	if off == 0 || off > dns.MaxMsgSize {
		return nil, false
	}
	// Cut out the question (see the top of wire.go).
	n := copy(buf[headerLen:], buf[qEnd:off])
	return buf[:headerLen+n], true
}

// scratch returns a copy of the stored rr that dns.PackRR may write
// (it sets Rdlength): a shallow copy into p for the common types, else a
// deep copy. The copy is valid until the next call.
func (p *packer) scratch(rr dns.RR) dns.RR {
	switch v := rr.(type) {
	case *dns.A:
		p.a = *v
		return &p.a
	case *dns.AAAA:
		p.aaaa = *v
		return &p.aaaa
	case *dns.MX:
		p.mx = *v
		return &p.mx
	case *dns.TXT:
		p.txt = *v
		return &p.txt
	case *dns.CNAME:
		p.cname = *v
		return &p.cname
	case *dns.NS:
		p.ns = *v
		return &p.ns
	case *dns.SOA:
		p.soa = *v
		return &p.soa
	case *dns.SRV:
		p.srv = *v
		return &p.srv
	case *dns.PTR:
		p.ptr = *v
		return &p.ptr
	}
	return dns.Copy(rr)
}

// selfContained reports whether the lookup r of (name, qtype) in z alone
// used no name outside z, and (targets) whether its additional section
// depends on MX, NS or SRV targets inside z.
func selfContained(z *Zone, name string, qtype uint16, r *Response) (targets, ok bool) {
	switch r.Result {
	case Success, NoData, NameError, Delegation:
	default:
		return false, false
	}
	for _, rr := range r.Answer {
		h := rr.Header()
		if h.Name != name || h.Rrtype != qtype {
			return false, false // a CNAME or DNAME chain
		}
		target, ok := additionalTarget(rr)
		if !ok {
			continue
		}
		if !isSubdomain(r.canon(target), z.Origin) {
			return false, false // another served zone may add glue
		}
		targets = true
	}
	return targets, true
}

// Precomputed returns the precomputed response message for qname/qtype
// (class IN) without its question section, or nil when there is none
// valid in s: the caller then answers through Lookup. qname must be
// canonical (lower case, fully qualified, escaped as miekg/dns unpacks
// names). The message has ID 0, RD clear, no OPT RR, and QDCOUNT 1; it is
// the 12-byte header followed by the answer, authority and additional
// sections, whose compression pointers assume the question (qname in wire
// form without compression, qtype, class IN) sits at offset 12 between
// them: the caller writes the header, the query's question and the rest
// (see the top of wire.go). It is shared and read-only: callers copy it
// and must not modify it. Precomputed does not allocate.
func (s *Snapshot) Precomputed(qname string, qtype uint16) []byte {
	z := s.find(qname)
	if z == nil || z.pre == nil {
		return nil
	}
	if qtype == dns.TypeDS && qname == z.Origin {
		return nil
	}
	n := z.lookup(qname)
	if n == nil {
		return nil
	}
	for i, set := range z.setsOf(n) {
		if set.typ != qtype {
			continue
		}
		wi := n.first + uint32(i)
		if z.pre.loc[wi].off&wireTargets != 0 && s.nested[z] {
			return nil
		}
		return z.pre.wireOf(wi)
	}
	return nil
}
