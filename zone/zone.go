package zone

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// Zone is one loaded, validated zone. It is immutable once built: callers
// must not modify it or any RR reachable from it.
type Zone struct {
	Origin  string // canonical: lower case, fully qualified ("example.com.")
	File    string // the file it was loaded from
	Serial  uint32 // the SOA serial
	Records int    // number of resource records (duplicates removed)

	soa   *dns.SOA
	neg   dns.RR // SOA for negative answers, TTL = min(SOA TTL, MINIMUM)
	apex  *node
	nodes map[string]*node // by canonical owner, empty non-terminals included
	// sets holds every RRset, each node's contiguous (node.sets is a
	// clipped slice of it); a set's index in it is its entry in
	// wireSet.loc. rrData and objs hold the RRs (see records.go).
	sets   []rrset
	rrData []byte
	objs   []dns.RR
	// pre holds the precomputed messages (see wire.go); nil until they
	// are built. A Zone with them is a copy of the Zone without them,
	// sharing everything else (Precompute).
	pre *wireSet
}

// SOA returns the zone's SOA record. Callers must not modify it.
func (z *Zone) SOA() *dns.SOA { return z.soa }

// NegativeSOA returns the SOA record that negative answers carry in their
// authority section: a copy of the SOA with TTL = min(SOA TTL, SOA MINIMUM)
// (RFC 2308 section 3). Callers must not modify it.
func (z *Zone) NegativeSOA() dns.RR { return z.neg }

// node is one owner name. Each RRset is stored once, so that a later
// stage can precompute the wire form of each (name, type).
type node struct {
	name  string  // canonical owner, shared by the RRs' headers
	sets  []rrset // clipped slice of Zone.sets
	first uint32  // index of sets[0] in Zone.sets
	flags uint8
}

const (
	flagCut   uint8 = 1 << iota // NS at a node that is not the apex: a zone cut
	flagCNAME                   // has a CNAME
	flagDNAME                   // has a DNAME
)

// rrset is one RRset of a node (see records.go): n RRs at offset off of
// Zone.rrData, or, with obj, at index off of Zone.objs. While the zone is
// built, off is the position of the last RR in the builder's arena (or
// the index of the set's list in builder.objs).
type rrset struct {
	off uint32
	n   uint32
	typ uint16
	obj bool
}

func (n *node) empty() bool { return len(n.sets) == 0 }

// dnssecType reports whether t may sit beside a CNAME (RFC 2181 section
// 10.1, RFC 4035 section 2.5).
func dnssecType(t uint16) bool { return t == dns.TypeRRSIG || t == dns.TypeNSEC }

// bigSet is the RRset size above which duplicates are found with a map
// rather than by comparing with every member.
const bigSet = 16

// setKey names the set of a map of bigSet RDATA; wire: its keys are
// packed RDATA, else presentation form.
type setKey struct {
	owner string
	typ   uint16
	wire  bool
}

// pendingRR is an RR read before the SOA.
type pendingRR struct {
	rr   dns.RR
	file string
	line int
}

// builder validates RRs and builds a Zone from them.
type builder struct {
	file    string
	origin  string
	z       *Zone
	pending []pendingRR // RRs seen before the SOA told the origin
	soaLine int
	errs    []*Error
	big     map[setKey]map[string]struct{}

	// last is the node of the previous RR (zone files list an owner's
	// records together), lastParent the parent of the last new node.
	last, lastParent *node
	// Slabs for the many small objects of a large zone: nodes, and the
	// first RRset of a node (later ones are appended on the heap).
	// finish copies the sets into one exact array, so the set slabs
	// become garbage. fullSlabs are the node slabs before nodeSlab: with
	// it and the apex, every node in the order it was made.
	nodeSlab  []node
	fullSlabs [][]node
	setSlab   []rrset

	// The RRs, until finish copies them into the zone's: packed in arena
	// (see buildArena), or as objects in objs, one list per object set.
	arena     buildArena
	objs      [][]dns.RR
	nsets     int      // RRsets
	wireBytes int      // bytes of the packed RRs of non-object sets
	cuts      []*node  // nodes with flagCut
	buf       []byte   // packStored's buffer
	chain     []uint32 // finish's list of a set's arena positions
}

// slabSize is the number of elements of one builder slab.
const slabSize = 1024

func newBuilder(file string) *builder {
	return &builder{file: file}
}

func (b *builder) errorf(file string, line int, reason string) {
	b.errs = append(b.errs, &Error{File: file, Line: line, Reason: reason})
}

// add takes the next RR from the parser, read at file:line.
func (b *builder) add(rr dns.RR, file string, line int) {
	if b.z != nil {
		b.insert(rr, file, line)
		return
	}
	if soa, ok := rr.(*dns.SOA); ok && soa.Hdr.Class == dns.ClassINET && !noRdata(soa) {
		b.start(soa, line)
		b.insert(rr, file, line)
		for _, p := range b.pending {
			b.insert(p.rr, p.file, p.line)
		}
		b.pending = nil
		return
	}
	b.pending = append(b.pending, pendingRR{rr, file, line})
}

// start begins the zone at the owner of its (first) SOA record.
func (b *builder) start(soa *dns.SOA, line int) {
	b.origin = canonicalName(soa.Hdr.Name)
	b.soaLine = line
	apex := &node{name: b.origin}
	b.z = &Zone{
		Origin: b.origin,
		File:   b.file,
		apex:   apex,
		nodes:  map[string]*node{b.origin: apex},
	}
}

func (b *builder) insert(rr dns.RR, file string, line int) {
	h := rr.Header()
	if h.Class != dns.ClassINET {
		b.errorf(file, line, "class "+dns.Class(h.Class).String()+" is not supported, only IN")
		return
	}
	if noRdata(rr) {
		b.errorf(file, line, dns.Type(h.Rrtype).String()+" record without data")
		return
	}
	owner := canonicalName(h.Name)
	if !isSubdomain(owner, b.origin) {
		b.errorf(file, line, owner+" is outside the zone "+b.origin)
		return
	}
	n := b.last
	if n == nil || n.name != owner {
		n = b.node(owner)
		b.last = n
	}
	h.Name = n.name
	t := h.Rrtype

	if b.buf == nil {
		b.buf = make([]byte, dns.MaxMsgSize)
	}
	rec, packed := packStored(rr, b.buf)
	i := slices.IndexFunc(n.sets, func(s rrset) bool { return s.typ == t })
	if i >= 0 && b.duplicate(n, i, rr, rec, packed) {
		return // RFC 2181 section 5: duplicate RRs are dropped
	}
	switch {
	case t == dns.TypeSOA && n != b.z.apex:
		b.errorf(file, line, "SOA record at "+owner+" is not at the zone apex "+b.origin)
		return
	case t == dns.TypeSOA && i >= 0:
		b.errorf(file, line, "more than one SOA record (the first is at line "+strconv.Itoa(b.soaLine)+")")
		return
	case t == dns.TypeCNAME && i >= 0:
		b.errorf(file, line, "more than one CNAME record at "+owner)
		return
	case t == dns.TypeCNAME && slices.ContainsFunc(n.sets, func(s rrset) bool { return !dnssecType(s.typ) }):
		b.errorf(file, line, "CNAME record beside other data at "+owner+" (RFC 2181 section 10.1)")
		return
	case !dnssecType(t) && t != dns.TypeCNAME && n.flags&flagCNAME != 0:
		b.errorf(file, line, dns.Type(t).String()+" record beside a CNAME at "+owner+" (RFC 2181 section 10.1)")
		return
	case t == dns.TypeDNAME && i >= 0:
		b.errorf(file, line, "more than one DNAME record at "+owner+" (RFC 6672 section 2.4)")
		return
	case t == dns.TypeNS && isWildcard(owner):
		b.errorf(file, line, "NS record at the wildcard "+owner+" is not supported (RFC 4592 section 4.2)")
		return
	}
	switch t {
	case dns.TypeCNAME:
		n.flags |= flagCNAME
	case dns.TypeDNAME:
		n.flags |= flagDNAME
	case dns.TypeNS:
		if n != b.z.apex && n.flags&flagCut == 0 {
			n.flags |= flagCut
			b.cuts = append(b.cuts, n)
		}
	case dns.TypeSOA:
		b.z.soa, _ = rr.(*dns.SOA)
	}
	if i < 0 {
		if n.sets == nil {
			if len(b.setSlab) == cap(b.setSlab) {
				b.setSlab = make([]rrset, 0, slabSize)
			}
			b.setSlab = append(b.setSlab, rrset{typ: t})
			n.sets = b.setSlab[len(b.setSlab)-1 : len(b.setSlab) : len(b.setSlab)]
		} else {
			n.sets = append(n.sets, rrset{typ: t})
		}
		i = len(n.sets) - 1
		b.nsets++
	}
	b.store(n, &n.sets[i], rr, rec, packed)
	b.z.Records++
}

// store adds rr to set, a set of n: packed (rec) in the arena, or as an
// object when it did not pack, the set holds objects already, or the
// arena is full.
func (b *builder) store(n *node, set *rrset, rr dns.RR, rec []byte, packed bool) {
	if packed && !set.obj {
		if pos, ok := b.arena.add(set.off, rec); ok {
			set.off = pos
			set.n++
			b.wireBytes += len(rec)
			return
		}
	}
	b.toObjects(n, set)
	b.objs[set.off] = append(b.objs[set.off], rr)
	set.n++
}

// toObjects turns set, a set of n, into an object set: its RRs are
// unpacked from the arena into a list of b.objs.
func (b *builder) toObjects(n *node, set *rrset) {
	if set.obj {
		return
	}
	list := b.unpackSet(n, set, make([]dns.RR, 0, set.n+1))
	for _, rr := range list {
		b.wireBytes -= rrHeaderLen + int(rr.Header().Rdlength)
	}
	set.off = uint32(len(b.objs))
	set.obj = true
	b.objs = append(b.objs, list)
}

// unpackSet appends the RRs of set, a set of n, to dst, in the order they
// were added: the stored objects, or new RRs unpacked from the arena.
func (b *builder) unpackSet(n *node, set *rrset, dst []dns.RR) []dns.RR {
	if set.obj {
		return append(dst, b.objs[set.off]...)
	}
	b.chain = b.arena.chain(set.off, b.chain[:0])
	for k := len(b.chain) - 1; k >= 0; k-- {
		rr, _, err := unpackStored(b.arena.record(b.chain[k]), n.name, set.typ)
		if err != nil {
			panic("zone: packed " + dns.TypeToString[set.typ] + " record of " + n.name + " does not unpack: " + err.Error())
		}
		dst = append(dst, rr)
	}
	return dst
}

// buildArena holds the packed RRs while a zone is built. RRs of one set
// need not come together in a zone file, so each entry is a packed RR
// (TTL, RDLENGTH, RDATA) preceded by the position of the previous entry of
// its set: a set is a chain from its last entry. A position is the
// offset of the entry plus one, 0 meaning none; the arena is a list of
// chunks, so that it never copies what it holds.
type buildArena struct {
	chunks [][]byte
}

const (
	buildChunk     = 1 << 20 // bytes per chunk
	buildMaxChunks = (1<<32 - 1) / buildChunk
)

// add appends rec to the chain that ends at prev and returns the new
// end, or false when the arena is full.
func (a *buildArena) add(prev uint32, rec []byte) (uint32, bool) {
	need := 4 + len(rec)
	if len(a.chunks) == 0 || cap(a.chunks[len(a.chunks)-1])-len(a.chunks[len(a.chunks)-1]) < need {
		if len(a.chunks) >= buildMaxChunks || need > buildChunk {
			return 0, false
		}
		a.chunks = append(a.chunks, make([]byte, 0, buildChunk))
	}
	i := len(a.chunks) - 1
	c := a.chunks[i]
	pos := uint32(i*buildChunk+len(c)) + 1
	c = binary.BigEndian.AppendUint32(c, prev)
	a.chunks[i] = append(c, rec...)
	return pos, true
}

// entry returns the chunk bytes from the entry at pos on.
func (a *buildArena) entry(pos uint32) []byte {
	off := int(pos - 1)
	return a.chunks[off/buildChunk][off%buildChunk:]
}

// record returns the packed RR of the entry at pos.
func (a *buildArena) record(pos uint32) []byte {
	e := a.entry(pos)[4:]
	return e[:rrHeaderLen+int(binary.BigEndian.Uint16(e[4:]))]
}

// chain appends the positions of the chain that ends at pos to dst, last
// entry first.
func (a *buildArena) chain(pos uint32, dst []uint32) []uint32 {
	for pos != 0 {
		dst = append(dst, pos)
		pos = binary.BigEndian.Uint32(a.entry(pos))
	}
	return dst
}

// newNode returns a new node, from the node slab.
func (b *builder) newNode(name string) *node {
	if len(b.nodeSlab) == cap(b.nodeSlab) {
		if b.nodeSlab != nil {
			b.fullSlabs = append(b.fullSlabs, b.nodeSlab)
		}
		b.nodeSlab = make([]node, 0, slabSize)
	}
	b.nodeSlab = append(b.nodeSlab, node{name: name})
	return &b.nodeSlab[len(b.nodeSlab)-1]
}

// noRdata reports whether rr was written without RDATA, which ZoneParser
// accepts (as for a dynamic update).
func noRdata(rr dns.RR) bool {
	switch rr := rr.(type) {
	case *dns.A:
		return len(rr.A) == 0
	case *dns.AAAA:
		return len(rr.AAAA) == 0
	case *dns.NS:
		return rr.Ns == ""
	case *dns.CNAME:
		return rr.Target == ""
	case *dns.DNAME:
		return rr.Target == ""
	case *dns.MX:
		return rr.Mx == ""
	case *dns.SRV:
		return rr.Target == ""
	case *dns.PTR:
		return rr.Ptr == ""
	case *dns.SOA:
		return rr.Ns == ""
	case *dns.TXT:
		return len(rr.Txt) == 0
	}
	return rr.String() == rr.Header().String()
}

// duplicate reports whether rr, packed as rec if packed, is already in
// n.sets[i]. RRs compare as stored: as unpacked from their wire form, if
// they have one. For the types whose duplicates are exactly the RRs with
// the same packed RDATA (wireComparable), the packed forms are compared.
func (b *builder) duplicate(n *node, i int, rr dns.RR, rec []byte, packed bool) bool {
	set := &n.sets[i]
	byWire := packed && !set.obj && wireComparable(set.typ)
	rdata := ""
	switch {
	case byWire && set.n < bigSet:
		b.chain = b.arena.chain(set.off, b.chain[:0])
		for _, pos := range b.chain {
			if bytes.Equal(b.arena.record(pos)[4:], rec[4:]) {
				return true
			}
		}
		return false
	case byWire:
		rdata = string(rec[4:])
	case packed:
		var err error
		if rr, _, err = unpackStored(rec, n.name, set.typ); err != nil {
			panic("zone: packed " + dns.TypeToString[set.typ] + " record of " + n.name + " does not unpack: " + err.Error())
		}
	}
	if set.n < bigSet {
		for _, o := range b.unpackSet(n, set, nil) {
			if dns.IsDuplicate(o, rr) {
				return true
			}
		}
		return false
	}
	if b.big == nil {
		b.big = map[setKey]map[string]struct{}{}
	}
	k := setKey{n.name, set.typ, byWire}
	m := b.big[k]
	if m == nil {
		m = make(map[string]struct{}, set.n)
		if byWire {
			b.chain = b.arena.chain(set.off, b.chain[:0])
			for _, pos := range b.chain {
				m[string(b.arena.record(pos)[4:])] = struct{}{}
			}
		} else {
			for _, o := range b.unpackSet(n, set, nil) {
				m[rdataString(o)] = struct{}{}
			}
		}
		b.big[k] = m
	}
	if !byWire {
		rdata = rdataString(rr)
	}
	if _, ok := m[rdata]; ok {
		return true
	}
	m[rdata] = struct{}{}
	return false
}

// wireComparable reports whether two RRs of type t are duplicates (per
// dns.IsDuplicate) exactly when their packed RDATA are equal: true of the
// common types without domain names in their RDATA (which IsDuplicate
// compares without regard to case).
func wireComparable(t uint16) bool {
	return t == dns.TypeA || t == dns.TypeAAAA || t == dns.TypeTXT
}

func rdataString(rr dns.RR) string {
	return strings.TrimPrefix(rr.String(), rr.Header().String())
}

// node returns the node for a canonical owner inside the zone, creating it
// and any missing ancestors (empty non-terminals) up to the apex.
func (b *builder) node(owner string) *node {
	if n := b.z.nodes[owner]; n != nil {
		return n
	}
	n := b.newNode(owner)
	b.z.nodes[owner] = n
	for name := owner; name != b.origin && name != "."; {
		name = parentName(name)
		if p := b.lastParent; p != nil && p.name == name {
			break
		}
		if p := b.z.nodes[name]; p != nil {
			b.lastParent = p
			break
		}
		b.z.nodes[name] = b.newNode(name)
	}
	return n
}

// finish checks the zone as a whole and returns it, or every problem found.
func (b *builder) finish() (*Zone, error) {
	if b.z == nil {
		b.errorf(b.file, 0, "no SOA record")
		for _, p := range b.pending {
			if p.rr.Header().Class != dns.ClassINET {
				b.errorf(p.file, p.line, "class "+dns.Class(p.rr.Header().Class).String()+" is not supported, only IN")
			}
		}
		return nil, b.err()
	}
	z := b.z
	if z.apex.set(dns.TypeNS) == nil {
		b.errorf(b.file, 0, "no NS records at the zone apex "+z.Origin)
	}
	if len(b.errs) > 0 {
		return nil, b.err()
	}
	// What a referral sends is kept as objects (see records.go): the NS
	// RRset of each cut, and the A and AAAA RRsets of its NS targets at
	// or below the cut (the glue Zone.referral adds).
	for _, c := range b.cuts {
		set := c.set(dns.TypeNS)
		b.toObjects(c, set)
		for _, rr := range b.objs[set.off] {
			ns, ok := rr.(*dns.NS)
			if !ok {
				continue
			}
			t := canonicalName(ns.Ns)
			if g := z.nodes[t]; g != nil && isSubdomain(t, c.name) {
				for i := range g.sets {
					if typ := g.sets[i].typ; typ == dns.TypeA || typ == dns.TypeAAAA {
						b.toObjects(g, &g.sets[i])
					}
				}
			}
		}
	}
	// Copy the RRsets and RRs into exact, contiguous arrays: fewer,
	// larger objects for the GC, no slack, and the slabs, the arena and
	// grown slices become garbage. The nodes are visited in the order
	// they were made, the apex first, which is about the order of their
	// RRs in the arena: it is read nearly in order.
	nobjs := 0
	for _, l := range b.objs {
		nobjs += len(l)
	}
	sets := make([]rrset, 0, b.nsets)
	data := make([]byte, 0, b.wireBytes)
	objs := make([]dns.RR, 0, nobjs)
	visit := func(n *node) {
		if len(n.sets) == 0 {
			n.sets = nil
			return
		}
		o := len(sets)
		for _, set := range n.sets {
			if set.obj {
				l := b.objs[set.off]
				set.off = uint32(len(objs))
				objs = append(objs, l...)
			} else {
				b.chain = b.arena.chain(set.off, b.chain[:0])
				set.off = uint32(len(data))
				for k := len(b.chain) - 1; k >= 0; k-- {
					data = append(data, b.arena.record(b.chain[k])...)
				}
			}
			sets = append(sets, set)
		}
		n.sets = sets[o:len(sets):len(sets)]
		n.first = uint32(o)
	}
	visit(z.apex)
	i := 0
	for _, slab := range append(b.fullSlabs, b.nodeSlab) {
		for j := range slab {
			if i++; i%yieldEvery == 0 {
				yield()
			}
			visit(&slab[j])
		}
	}
	z.sets, z.rrData, z.objs = sets, data, objs
	b.nodeSlab, b.fullSlabs, b.setSlab, b.last, b.lastParent = nil, nil, nil, nil, nil
	b.arena, b.objs, b.cuts, b.buf, b.chain = buildArena{}, nil, nil, nil, nil
	z.Serial = z.soa.Serial
	neg := dns.Copy(z.soa)
	neg.Header().Ttl = min(z.soa.Hdr.Ttl, z.soa.Minttl)
	z.neg = neg
	return z, nil
}

func (b *builder) err() error {
	sort.SliceStable(b.errs, func(i, j int) bool {
		if b.errs[i].File != b.errs[j].File {
			return b.errs[i].File == b.file // the zone file first, then includes
		}
		return b.errs[i].Line < b.errs[j].Line
	})
	if len(b.errs) == 1 {
		return b.errs[0]
	}
	errs := make([]error, len(b.errs))
	for i, e := range b.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// parentName returns the name one label up ("." for a top-level name and
// for the root).
func parentName(name string) string {
	off, end := dns.NextLabel(name, 0)
	if end {
		return "."
	}
	return name[off:]
}

// isSubdomain reports whether child is parent or below it; both are
// canonical.
func isSubdomain(child, parent string) bool {
	if parent == "." {
		return true
	}
	if !strings.HasSuffix(child, parent) {
		return false
	}
	i := len(child) - len(parent)
	if i == 0 {
		return true
	}
	if child[i-1] != '.' {
		return false
	}
	// The dot must not be escaped: count the backslashes before it.
	j := i - 2
	for j >= 0 && child[j] == '\\' {
		j--
	}
	return (i-2-j)%2 == 0
}

func isWildcard(name string) bool {
	return len(name) >= 2 && name[0] == '*' && name[1] == '.'
}

// canonicalName returns s in the form lookups compare: ASCII lower case,
// fully qualified, escaped the way miekg/dns escapes a name it unpacks from
// the wire (so that "\065" in a zone file matches "a" in a query).
func canonicalName(s string) string {
	if s == "" {
		return "."
	}
	needWire, upper := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' || c >= 0x80 || c < ' ':
			needWire = true
		case 'A' <= c && c <= 'Z':
			upper = true
		}
	}
	if needWire {
		var buf [256]byte
		if off, err := dns.PackDomainName(dns.Fqdn(s), buf[:], 0, nil, false); err == nil {
			if name, _, err := dns.UnpackDomainName(buf[:off], 0); err == nil {
				s = name
				upper = true
			}
		}
	}
	if upper {
		s = asciiLower(s)
	}
	return dns.Fqdn(s)
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
