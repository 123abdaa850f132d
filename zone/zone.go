package zone

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/maphash"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unsafe"

	"github.com/miekg/dns"
)

// Zone is one loaded, validated zone. It is immutable once built: callers
// must not modify it or any RR reachable from it.
type Zone struct {
	Origin  string // canonical: lower case, fully qualified ("example.com.")
	File    string // the file it was loaded from
	Serial  uint32 // the SOA serial
	Records int    // number of resource records (duplicates removed)

	soa *dns.SOA
	neg dns.RR // SOA for negative answers, TTL = min(SOA TTL, MINIMUM)
	// The owner names, empty non-terminals included (see the Storage
	// section of doc.go): nodes holds one node per name, the apex first,
	// names their canonical names, and index finds a node by name (see
	// nameIndex). None of the three holds a pointer, so the garbage
	// collector does not scan them.
	names string
	nodes []node
	index nameIndex
	// sets holds every RRset, each node's contiguous, in the order of
	// the nodes; a set's index in it is its entry in wireSet.loc. rrData
	// and objs hold the RRs (see records.go).
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
// stage can precompute the wire form of each (name, type). A node holds
// no pointer: its name and RRsets are ranges of the zone's arrays.
type node struct {
	off   uint32 // its canonical name is Zone.names[off:off+len]
	len   uint16
	flags uint8
	first uint32 // index of its first RRset in Zone.sets
	nsets uint32 // number of RRsets
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

func (n *node) empty() bool { return n.nsets == 0 }

// name returns the canonical name of n, a node of z (a substring of
// z.names: it does not allocate).
func (z *Zone) name(n *node) string { return z.names[n.off : n.off+uint32(n.len)] }

// setsOf returns the RRsets of n, a node of z (a clipped slice of z.sets).
func (z *Zone) setsOf(n *node) []rrset {
	return z.sets[n.first : n.first+n.nsets : n.first+n.nsets]
}

// apex returns the node of the zone's origin.
func (z *Zone) apex() *node { return &z.nodes[0] }

// lookup returns the node named name (canonical), or nil. It does not
// allocate.
func (z *Zone) lookup(name string) *node {
	if i := z.index.find(name, hashName(name), z.nodes, z.names); i != 0 {
		return &z.nodes[i-1]
	}
	return nil
}

// nameIndex finds the node of a name: an open-addressing hash table with
// linear probing. An entry is hash<<32 | (node index + 1), 0 being an
// empty slot; hash is hashName of the node's name, and it places the
// entry: its home slot is hash*len/2^32, so that the table can be any
// size, and grows or shrinks without reading a name. A probe compares a
// name only when the hashes match. The table is at most maxLoad full.
type nameIndex []uint64

// maxLoad is the highest ratio of entries to slots of a nameIndex, in
// tenths.
const maxLoad = 7

// nameSeed seeds the hash of owner names; entries of a nameIndex hold the
// hash, so it is fixed for the process.
var nameSeed = maphash.MakeSeed()

// hashName returns the hash of a canonical name that a nameIndex holds.
func hashName(name string) uint32 { return uint32(maphash.String(nameSeed, name)) }

// newNameIndex returns an empty table for n entries.
func newNameIndex(n int) nameIndex {
	return make(nameIndex, max(8, n*10/maxLoad+1))
}

// home returns the slot at which the probe for hash h starts.
func (x nameIndex) home(h uint32) int { return int(uint64(h) * uint64(len(x)) >> 32) }

// find returns the node index + 1 of the node named name, whose hash is
// h, or 0. nodes and names are the zone's (or the builder's).
func (x nameIndex) find(name string, h uint32, nodes []node, names string) uint32 {
	if len(x) == 0 {
		return 0
	}
	for i := x.home(h); ; {
		e := x[i]
		if uint32(e>>32) == h {
			n := &nodes[uint32(e)-1]
			if int(n.len) == len(name) && names[n.off:n.off+uint32(n.len)] == name {
				return uint32(e)
			}
		} else if e == 0 {
			return 0
		}
		if i++; i == len(x) {
			i = 0
		}
	}
}

// put stores the entry e (hash<<32 | index+1), which is not in x, in
// the first free slot from its home.
func (x nameIndex) put(e uint64) {
	i := x.home(uint32(e >> 32))
	for x[i] != 0 {
		if i++; i == len(x) {
			i = 0
		}
	}
	x[i] = e
}

// resized returns a table of the entries of x, which are n, sized for
// them and at most maxLoad full.
func (x nameIndex) resized(n int) nameIndex {
	y := newNameIndex(n)
	for _, e := range x {
		if e != 0 {
			y.put(e)
		}
	}
	return y
}

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
	hint    int         // the expected number of owner names
	pending []pendingRR // RRs seen before the SOA told the origin
	soaLine int
	errs    []*Error
	big     map[setKey]map[string]struct{}

	// The nodes, their names and index, as in Zone (finish copies names
	// and, when it has much slack, nodes). An empty non-terminal's name
	// is a suffix of the name that made it.
	names []byte
	nodes []node
	index nameIndex
	// sets holds the RRsets of the nodes, each node's contiguous; adding
	// an RRset to a node whose sets are not the last moves them to the
	// end (zone files list an owner's records together, so this is rare),
	// leaving a hole that finish drops when it copies the sets in node
	// order.
	sets []rrset
	// last is the node of the previous RR (zone files list an owner's
	// records together), lastParent the parent of the last new node;
	// -1 for none.
	last, lastParent int

	// The RRs, until finish copies them into the zone's: packed in arena
	// (see buildArena), or as objects in objs, one list per object set.
	arena     buildArena
	objs      [][]dns.RR
	nsets     int      // RRsets
	wireBytes int      // bytes of the packed RRs of non-object sets
	cuts      []uint32 // nodes with flagCut
	buf       []byte   // packStored's buffer
	chain     []uint32 // finish's list of a set's arena positions
	sink      uint64   // what addAll loaded, so that the loads stay
	pace      pacing   // of finish's loop
}

// maxNodes is the largest number of owner names of a zone: node indexes
// + 1 are 32 bits, and so are offsets into its names.
const maxNodes = 1<<32 - 2

// newBuilder returns a builder for the zone of file. hint is the number
// of owner names expected (0 if unknown), such as the number of lines of
// the file: the node array and the index are sized for it, so that a
// large zone does not grow them step by step.
func newBuilder(file string, hint int) *builder {
	return &builder{file: file, hint: min(max(hint, 0), 1<<26), last: -1, lastParent: -1}
}

// nameHint returns the number of owner names to expect of a zone file
// data: its number of lines (most records of a large zone are one line
// each, with an owner of its own), at most one per 8 bytes, and at most
// maxRecords when that is not 0 (a longer file is an error).
func nameHint(data []byte, maxRecords int) int {
	n := min(bytes.Count(data, []byte{'\n'})+1, len(data)/8)
	if maxRecords > 0 {
		n = min(n, maxRecords)
	}
	return n
}

// namesString returns b.names as a string without copying. Bytes once
// appended to b.names are never written again (a new array is allocated
// when it grows), so the string stays valid.
func (b *builder) namesString() string {
	return unsafe.String(unsafe.SliceData(b.names), len(b.names))
}

// nameOf returns the name of node i (a view of b.names; see namesString).
func (b *builder) nameOf(i int) string {
	n := &b.nodes[i]
	return b.namesString()[n.off : n.off+uint32(n.len)]
}

func (b *builder) errorf(file string, line int, reason string) {
	b.errs = append(b.errs, &Error{File: file, Line: line, Reason: reason})
}

// add takes the next RR from the parser, read at file:line.
func (b *builder) add(rr dns.RR, file string, line int) {
	b.addOwned(rr, file, line, nil)
}

// lookAheadRRs is how many RRs addAll looks at before adding them.
const lookAheadRRs = 16

// ownerHash is the canonical owner name of an RR and its hash.
type ownerHash struct {
	owner string
	h     uint32
}

// addAll adds rrs, read in file at lines (nil: line 0 for every RR), in
// order. It looks lookAheadRRs RRs ahead: it names their owners and loads
// their home slots of the index, all at once, before adding them. Those
// loads are independent, so the processor runs them in parallel, where
// each add would wait for its own: in a large zone most owners are new,
// and the slot of a new name is a cache miss.
func (b *builder) addAll(rrs []dns.RR, file string, lines []int) {
	var ahead [lookAheadRRs]ownerHash
	for len(rrs) > 0 {
		k := min(len(rrs), lookAheadRRs)
		batch := rrs[:k]
		looked := b.z != nil // the index exists
		if looked {
			for i, rr := range batch {
				o := canonicalName(rr.Header().Name)
				if i > 0 && o == ahead[i-1].owner {
					ahead[i] = ahead[i-1]
					continue
				}
				ahead[i] = ownerHash{o, hashName(o)}
			}
			// A loop of loads alone, so that they are in flight together.
			var sink uint64
			for i := range batch {
				sink += b.index[b.index.home(ahead[i].h)]
			}
			b.sink += sink
		}
		for i, rr := range batch {
			line := 0
			if lines != nil {
				line = lines[i]
			}
			if looked {
				b.addOwned(rr, file, line, &ahead[i])
			} else {
				b.addOwned(rr, file, line, nil)
			}
		}
		rrs = rrs[k:]
		if lines != nil {
			lines = lines[k:]
		}
	}
}

// addOwned is add, given the canonical owner name of rr and its hash when
// o is not nil.
func (b *builder) addOwned(rr dns.RR, file string, line int, o *ownerHash) {
	if b.z != nil {
		b.insert(rr, file, line, o)
		return
	}
	if soa, ok := rr.(*dns.SOA); ok && soa.Hdr.Class == dns.ClassINET && !noRdata(soa) {
		b.start(soa, line)
		b.insert(rr, file, line, nil)
		for _, p := range b.pending {
			b.insert(p.rr, p.file, p.line, nil)
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
	b.z = &Zone{Origin: b.origin, File: b.file}
	b.nodes = make([]node, 0, max(b.hint, 1))
	b.index = newNameIndex(b.hint)
	// About one RRset per name, and names of 20 bytes; finish copies both
	// into exact arrays.
	b.sets = make([]rrset, 0, b.hint)
	b.names = make([]byte, 0, 20*b.hint)
	b.newNode(b.origin, hashName(b.origin), -1) // the apex, node 0
}

// insert adds rr, read at file:line, to the zone; o is its canonical
// owner name and that name's hash, or nil.
func (b *builder) insert(rr dns.RR, file string, line int, o *ownerHash) {
	h := rr.Header()
	if h.Class != dns.ClassINET {
		b.errorf(file, line, "class "+dns.Class(h.Class).String()+" is not supported, only IN")
		return
	}
	if noRdata(rr) {
		b.errorf(file, line, dns.Type(h.Rrtype).String()+" record without data")
		return
	}
	var owner string
	if o != nil {
		owner = o.owner
	} else {
		owner = canonicalName(h.Name)
	}
	if !isSubdomain(owner, b.origin) {
		b.errorf(file, line, owner+" is outside the zone "+b.origin)
		return
	}
	ni := b.last
	if ni < 0 || b.nameOf(ni) != owner {
		var hash uint32
		if o != nil {
			hash = o.h
		} else {
			hash = hashName(owner)
		}
		ni = b.node(owner, hash)
		if ni < 0 {
			b.errorf(file, line, "more than "+strconv.Itoa(maxNodes)+" owner names")
			return
		}
		b.last = ni
	}
	// Until finish, the RR's owner is a view of b.names; finish names the
	// RRs it keeps after the zone's names.
	name := b.nameOf(ni)
	h.Name = name
	t := h.Rrtype
	n := &b.nodes[ni]

	if b.buf == nil {
		b.buf = make([]byte, dns.MaxMsgSize)
	}
	rec, packed := packStored(rr, b.buf)
	sets := b.sets[n.first : n.first+n.nsets]
	i := slices.IndexFunc(sets, func(s rrset) bool { return s.typ == t })
	if i >= 0 && b.duplicate(name, &sets[i], rr, rec, packed) {
		return // RFC 2181 section 5: duplicate RRs are dropped
	}
	switch {
	case t == dns.TypeSOA && ni != 0:
		b.errorf(file, line, "SOA record at "+owner+" is not at the zone apex "+b.origin)
		return
	case t == dns.TypeSOA && i >= 0:
		b.errorf(file, line, "more than one SOA record (the first is at line "+strconv.Itoa(b.soaLine)+")")
		return
	case t == dns.TypeCNAME && i >= 0:
		b.errorf(file, line, "more than one CNAME record at "+owner)
		return
	case t == dns.TypeCNAME && slices.ContainsFunc(sets, func(s rrset) bool { return !dnssecType(s.typ) }):
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
		if ni != 0 && n.flags&flagCut == 0 {
			n.flags |= flagCut
			b.cuts = append(b.cuts, uint32(ni))
		}
	case dns.TypeSOA:
		b.z.soa, _ = rr.(*dns.SOA)
	}
	if i < 0 {
		if end := uint32(len(b.sets)); n.nsets > 0 && n.first+n.nsets != end {
			// Move the node's sets to the end, where the new one goes.
			b.sets = append(reserve(b.sets, int(n.nsets)), b.sets[n.first:n.first+n.nsets]...)
			n.first = end
		} else if n.nsets == 0 {
			n.first = end
		}
		b.sets = append(reserve(b.sets, 1), rrset{typ: t})
		n.nsets++
		i = int(n.nsets) - 1
		b.nsets++
	}
	b.store(name, &b.sets[n.first+uint32(i)], rr, rec, packed)
	b.z.Records++
}

// store adds rr to set, a set of the node named owner: packed (rec) in
// the arena, or as an object when it did not pack, the set holds objects
// already, or the arena is full.
func (b *builder) store(owner string, set *rrset, rr dns.RR, rec []byte, packed bool) {
	if packed && !set.obj {
		if pos, ok := b.arena.add(set.off, rec); ok {
			set.off = pos
			set.n++
			b.wireBytes += len(rec)
			return
		}
	}
	b.toObjects(owner, set)
	b.objs[set.off] = append(b.objs[set.off], rr)
	set.n++
}

// toObjects turns set, a set of the node named owner, into an object
// set: its RRs are unpacked from the arena into a list of b.objs.
func (b *builder) toObjects(owner string, set *rrset) {
	if set.obj {
		return
	}
	list := b.unpackSet(owner, set, make([]dns.RR, 0, set.n+1))
	for _, rr := range list {
		b.wireBytes -= rrHeaderLen + int(rr.Header().Rdlength)
	}
	set.off = uint32(len(b.objs))
	set.obj = true
	b.objs = append(b.objs, list)
}

// unpackSet appends the RRs of set, a set of the node named owner, to
// dst, in the order they were added: the stored objects, or new RRs
// unpacked from the arena.
func (b *builder) unpackSet(owner string, set *rrset, dst []dns.RR) []dns.RR {
	if set.obj {
		return append(dst, b.objs[set.off]...)
	}
	b.chain = b.arena.chain(set.off, b.chain[:0])
	for k := len(b.chain) - 1; k >= 0; k-- {
		rr, _, err := unpackStored(b.arena.record(b.chain[k]), owner, set.typ)
		if err != nil {
			panic("zone: packed " + dns.TypeToString[set.typ] + " record of " + owner + " does not unpack: " + err.Error())
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

// newNode adds a node named name, whose hash is h, to the nodes and the
// index and returns its index. The name is b.names[off:], or when off is
// -1 it is appended to b.names. It returns -1 when the zone has
// maxNodes nodes or its names 4 GiB.
func (b *builder) newNode(name string, h uint32, off int) int {
	if len(b.nodes) >= maxNodes || (off < 0 && len(b.names)+len(name) > 1<<32-1) {
		return -1
	}
	if off < 0 {
		off = len(b.names)
		b.names = append(reserve(b.names, len(name)), name...)
	}
	if (len(b.nodes)+1)*10 > len(b.index)*maxLoad {
		b.index = b.index.resized(2 * (len(b.nodes) + 1))
	}
	i := len(b.nodes)
	b.nodes = append(b.nodes, node{off: uint32(off), len: uint16(len(name))})
	b.index.put(uint64(h)<<32 | uint64(i+1))
	return i
}

// reserve returns s with room for n more elements: when it must grow, it
// doubles. The builder's arrays grow to many megabytes, and append grows
// a large slice by a quarter at a time, copying it again and again; finish
// copies them into exact arrays anyway, so the slack does not last.
func reserve[S ~[]E, E any](s S, n int) S {
	if cap(s)-len(s) >= n {
		return s
	}
	return append(make(S, 0, max(2*cap(s), len(s)+n, 256)), s...)
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
// set, a set of the node named owner. RRs compare as stored: as unpacked
// from their wire form, if they have one. For the types whose duplicates
// are exactly the RRs with the same packed RDATA (wireComparable), the
// packed forms are compared.
func (b *builder) duplicate(owner string, set *rrset, rr dns.RR, rec []byte, packed bool) bool {
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
		if rr, _, err = unpackStored(rec, owner, set.typ); err != nil {
			panic("zone: packed " + dns.TypeToString[set.typ] + " record of " + owner + " does not unpack: " + err.Error())
		}
	}
	if set.n < bigSet {
		for _, o := range b.unpackSet(owner, set, nil) {
			if dns.IsDuplicate(o, rr) {
				return true
			}
		}
		return false
	}
	if b.big == nil {
		b.big = map[setKey]map[string]struct{}{}
	}
	k := setKey{owner, set.typ, byWire}
	m := b.big[k]
	if m == nil {
		m = make(map[string]struct{}, set.n)
		if byWire {
			b.chain = b.arena.chain(set.off, b.chain[:0])
			for _, pos := range b.chain {
				m[string(b.arena.record(pos)[4:])] = struct{}{}
			}
		} else {
			for _, o := range b.unpackSet(owner, set, nil) {
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

// node returns the index of the node for a canonical owner inside the
// zone, creating it and any missing ancestors (empty non-terminals) up to
// the apex, or -1 when there are too many nodes; h is hashName(owner).
func (b *builder) node(owner string, h uint32) int {
	if i := b.index.find(owner, h, b.nodes, b.namesString()); i != 0 {
		return int(i - 1)
	}
	ni := b.newNode(owner, h, -1)
	if ni < 0 {
		return -1
	}
	// The ancestors' names are suffixes of the owner's.
	off := int(b.nodes[ni].off)
	for k := 0; ; {
		if name := owner[k:]; name == b.origin || name == "." {
			break
		}
		next, end := dns.NextLabel(owner, k)
		if end {
			next = len(owner) - 1 // the root
		}
		k = next
		name := owner[k:]
		if p := b.lastParent; p >= 0 && b.nameOf(p) == name {
			break
		}
		ph := hashName(name)
		if p := b.index.find(name, ph, b.nodes, b.namesString()); p != 0 {
			b.lastParent = int(p - 1)
			break
		}
		if b.newNode(name, ph, off+k) < 0 {
			return -1
		}
	}
	return ni
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
	apex := &b.nodes[0]
	if !slices.ContainsFunc(b.sets[apex.first:apex.first+apex.nsets], func(s rrset) bool { return s.typ == dns.TypeNS }) {
		b.errorf(b.file, 0, "no NS records at the zone apex "+z.Origin)
	}
	if len(b.errs) > 0 {
		return nil, b.err()
	}
	// What a referral sends is kept as objects (see records.go): the NS
	// RRset of each cut, and the A and AAAA RRsets of its NS targets at
	// or below the cut (the glue Zone.referral adds).
	for _, ci := range b.cuts {
		c := &b.nodes[ci]
		cname := b.nameOf(int(ci))
		set := &b.sets[c.first+uint32(slices.IndexFunc(b.sets[c.first:c.first+c.nsets], func(s rrset) bool { return s.typ == dns.TypeNS }))]
		b.toObjects(cname, set)
		for _, rr := range b.objs[set.off] {
			ns, ok := rr.(*dns.NS)
			if !ok {
				continue
			}
			t := canonicalName(ns.Ns)
			if !isSubdomain(t, cname) {
				continue
			}
			if gi := b.index.find(t, hashName(t), b.nodes, b.namesString()); gi != 0 {
				g := &b.nodes[gi-1]
				for i := range b.sets[g.first : g.first+g.nsets] {
					gs := &b.sets[g.first+uint32(i)]
					if gs.typ == dns.TypeA || gs.typ == dns.TypeAAAA {
						b.toObjects(t, gs)
					}
				}
			}
		}
	}
	// Copy the names, RRsets and RRs into exact, contiguous arrays: fewer,
	// larger objects for the GC, no slack, and the arena and grown slices
	// become garbage. The nodes are visited in the order they were made,
	// the apex first, which is about the order of their RRs in the arena:
	// it is read nearly in order. The RRs kept as objects are named after
	// the zone's names (until now their owner was a view of b.names).
	z.names = string(b.names)
	nobjs := 0
	for _, l := range b.objs {
		nobjs += len(l)
	}
	sets := make([]rrset, 0, b.nsets)
	data := make([]byte, 0, b.wireBytes)
	objs := make([]dns.RR, 0, nobjs)
	for i := range b.nodes {
		if i%yieldEvery == yieldEvery-1 {
			b.pace.yield()
		}
		n := &b.nodes[i]
		o := len(sets)
		for _, set := range b.sets[n.first : n.first+n.nsets] {
			if set.obj {
				l := b.objs[set.off]
				set.off = uint32(len(objs))
				name := z.names[n.off : n.off+uint32(n.len)]
				for _, rr := range l {
					rr.Header().Name = name
				}
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
		n.first = uint32(o) // also for a node without sets: first never decreases
	}
	z.sets, z.rrData, z.objs = sets, data, objs
	z.nodes, z.index = b.nodes, b.index
	if cap(z.nodes)-len(z.nodes) > len(z.nodes)/8 {
		// The hint was high: drop the slack.
		z.nodes = append(make([]node, 0, len(z.nodes)), z.nodes...)
	}
	if want := len(newNameIndex(len(z.nodes))); len(z.index) > want+want/4 {
		z.index = z.index.resized(len(z.nodes))
	}
	b.names, b.nodes, b.index, b.sets = nil, nil, nil, nil
	b.arena, b.objs, b.cuts, b.buf, b.chain, b.big = buildArena{}, nil, nil, nil, nil, nil
	z.soa.Hdr.Name = z.name(z.apex())
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
