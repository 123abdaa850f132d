package zone

import (
	"errors"
	"runtime"
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
	sets  int              // number of RRsets; rrset.wi counts them
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

// node is one owner name. Each RRset is stored once, as a clipped slice, so
// that a later stage can precompute the wire form of each (name, type).
type node struct {
	name  string // canonical owner, shared by the RRs' headers
	sets  []rrset
	flags uint8
}

const (
	flagCut   uint8 = 1 << iota // NS at a node that is not the apex: a zone cut
	flagCNAME                   // has a CNAME
	flagDNAME                   // has a DNAME
)

type rrset struct {
	rrs []dns.RR // clipped
	typ uint16
	wi  uint32 // index of the set in the zone: its entry in wireSet.loc
}

// rrset returns the node's RRs of type t, or nil.
func (n *node) rrset(t uint16) []dns.RR {
	for i := range n.sets {
		if n.sets[i].typ == t {
			return n.sets[i].rrs
		}
	}
	return nil
}

func (n *node) empty() bool { return len(n.sets) == 0 }

// dnssecType reports whether t may sit beside a CNAME (RFC 2181 section
// 10.1, RFC 4035 section 2.5).
func dnssecType(t uint16) bool { return t == dns.TypeRRSIG || t == dns.TypeNSEC }

// bigSet is the RRset size above which duplicates are found with a map
// rather than by comparing with every member.
const bigSet = 16

type setKey struct {
	owner string
	typ   uint16
}

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
	// first RRset of a node and first RR of a set (later ones are
	// appended on the heap). finish copies sets and RRs into exact,
	// contiguous arrays, so the slabs of those become garbage.
	nodeSlab []node
	setSlab  []rrset
	rrSlab   []dns.RR
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

	i := slices.IndexFunc(n.sets, func(s rrset) bool { return s.typ == t })
	if i >= 0 && b.duplicate(n, i, rr) {
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
		if n != b.z.apex {
			n.flags |= flagCut
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
	}
	if set := &n.sets[i]; set.rrs == nil {
		if len(b.rrSlab) == cap(b.rrSlab) {
			b.rrSlab = make([]dns.RR, 0, slabSize)
		}
		b.rrSlab = append(b.rrSlab, rr)
		set.rrs = b.rrSlab[len(b.rrSlab)-1 : len(b.rrSlab) : len(b.rrSlab)]
	} else {
		set.rrs = append(set.rrs, rr)
	}
	b.z.Records++
}

// newNode returns a new node, from the node slab.
func (b *builder) newNode(name string) *node {
	if len(b.nodeSlab) == cap(b.nodeSlab) {
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

// duplicate reports whether rr is already in n.sets[i].
func (b *builder) duplicate(n *node, i int, rr dns.RR) bool {
	set := n.sets[i].rrs
	if len(set) < bigSet {
		for _, o := range set {
			if dns.IsDuplicate(o, rr) {
				return true
			}
		}
		return false
	}
	if b.big == nil {
		b.big = map[setKey]map[string]struct{}{}
	}
	k := setKey{n.name, n.sets[i].typ}
	m := b.big[k]
	if m == nil {
		m = make(map[string]struct{}, len(set))
		for _, o := range set {
			m[rdataString(o)] = struct{}{}
		}
		b.big[k] = m
	}
	s := rdataString(rr)
	if _, ok := m[s]; ok {
		return true
	}
	m[s] = struct{}{}
	return false
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
	if z.apex.rrset(dns.TypeNS) == nil {
		b.errorf(b.file, 0, "no NS records at the zone apex "+z.Origin)
	}
	if len(b.errs) > 0 {
		return nil, b.err()
	}
	// Copy the RRsets and RRs into exact, contiguous (clipped) arrays:
	// fewer, larger objects for the GC, no slack, and the slabs and
	// grown slices become garbage.
	nsets := 0
	for _, n := range z.nodes {
		nsets += len(n.sets)
	}
	sets := make([]rrset, 0, nsets)
	rrs := make([]dns.RR, 0, z.Records)
	i := 0
	for _, n := range z.nodes {
		if i++; i%yieldEvery == 0 {
			runtime.Gosched()
		}
		if len(n.sets) == 0 {
			n.sets = nil
			continue
		}
		o := len(sets)
		for _, set := range n.sets {
			r := len(rrs)
			rrs = append(rrs, set.rrs...)
			set.rrs = rrs[r:len(rrs):len(rrs)]
			set.wi = uint32(len(sets))
			sets = append(sets, set)
		}
		n.sets = sets[o:len(sets):len(sets)]
	}
	z.sets = len(sets)
	b.nodeSlab, b.setSlab, b.rrSlab, b.last, b.lastParent = nil, nil, nil, nil, nil
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
