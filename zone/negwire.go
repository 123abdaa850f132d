package zone

import (
	"bytes"
	"encoding/binary"
	"strings"

	"github.com/miekg/dns"
)

// Precomputed authority sections of negative answers.
//
// An NXDOMAIN or NODATA answer carries one RR, the same for every name of
// the zone: its SOA (Zone.neg). Packed after the question with compression,
// its owner is a pointer to the apex inside the question, and its MNAME and
// RNAME point there too, or into the SOA itself (RNAME to MNAME). Every
// such target lies a fixed distance before the end of the question: its
// apex and the apex's ancestors end the question name, and the SOA starts
// right after it. So the packed SOA is the same for every question, but
// for its pointers, which all move by the difference in question length.
// negWire holds it packed once after a question naming the apex, with the
// offsets of its pointers, found by packing it (with miekg/dns, as the
// general path does) after two questions of different lengths: the bytes
// that differ are the pointers. The one exception is a question ending in
// a name below the apex that MNAME or RNAME ends in (x.ns1.example. when
// MNAME is ns1.example.): the SOA compresses against it there, so that
// question takes the general path (Zone.AppendNegative reports false).

// negWire is the packed SOA of a zone's negative answers.
type negWire struct {
	rr    []byte   // packed after the question (apex, SOA, IN)
	qEnd  int      // where that question ends: headerLen + the apex's wire length + 4
	ptrs  []uint16 // offsets in rr of its compression pointers
	below []string // names below the apex that MNAME or RNAME end in
}

// buildNegWire packs z's negative SOA (see the comment at the top of
// this file), or returns nil when its pointers do not move with the
// question as expected.
func (z *Zone) buildNegWire() *negWire {
	soa, ok := z.neg.(*dns.SOA)
	if !ok {
		return nil
	}
	w := &negWire{}
	for _, name := range []string{soa.Ns, soa.Mbox} {
		name = canonicalName(name)
		for k := 0; isSubdomain(name[k:], z.Origin) && name[k:] != z.Origin; {
			w.below = append(w.below, name[k:])
			next, end := dns.NextLabel(name, k)
			if end {
				break
			}
			k = next
		}
	}
	// Three questions: the apex, and one and two labels under it, named
	// so that no name of below ends them.
	var qs []string
	for _, l := range []string{"a", "b", "c", "d"} {
		q1 := l + "." + z.Origin
		if z.Origin == "." {
			q1 = l + "."
		}
		if q2 := l + "." + q1; len(q2) < 250 && !w.belowEnds(q1) && !w.belowEnds(q2) {
			qs = []string{z.Origin, q1, q2}
			break
		}
	}
	if qs == nil {
		return nil
	}
	var packed [3][]byte
	var ends [3]int
	for i, q := range qs {
		m := &dns.Msg{Compress: true, Question: []dns.Question{{Name: q, Qtype: dns.TypeSOA, Qclass: dns.ClassINET}}, Ns: []dns.RR{z.neg}}
		b, err := m.Pack()
		if err != nil {
			return nil
		}
		off, err := dns.PackDomainName(q, make([]byte, 256), 0, nil, false)
		if err != nil {
			return nil
		}
		ends[i] = headerLen + off + 4
		if len(b) < ends[i] {
			return nil
		}
		packed[i] = b[ends[i]:]
	}
	rr0, rr1 := packed[0], packed[1]
	if len(rr0) != len(rr1) {
		return nil
	}
	delta := ends[1] - ends[0]
	for i := 0; i < len(rr0); i++ {
		if rr0[i] == rr1[i] {
			continue
		}
		// A pointer changed: at i (its high byte changed too) or at i-1.
		p := i
		if !movedPointer(rr0, rr1, p, delta) {
			p = i - 1
			if p < 0 || !movedPointer(rr0, rr1, p, delta) {
				return nil
			}
		}
		w.ptrs = append(w.ptrs, uint16(p))
		i = p + 1
	}
	w.rr, w.qEnd = rr0, ends[0]
	// The third question, two labels longer than the apex, must come out
	// as patched.
	got, ok := w.appendAt(make([]byte, ends[2]), ends[2])
	if !ok || !bytes.Equal(got[ends[2]:], packed[2]) {
		return nil
	}
	return w
}

// movedPointer reports whether a and b hold at p a compression pointer
// whose target in b is delta bytes after its target in a.
func movedPointer(a, b []byte, p, delta int) bool {
	if p+2 > len(a) || a[p]&0xC0 != 0xC0 || b[p]&0xC0 != 0xC0 {
		return false
	}
	va := int(binary.BigEndian.Uint16(a[p:]) &^ 0xC000)
	vb := int(binary.BigEndian.Uint16(b[p:]) &^ 0xC000)
	return vb == va+delta
}

// belowEnds reports whether the canonical name q is, or is below, a name
// of w.below.
func (w *negWire) belowEnds(q string) bool {
	for _, s := range w.below {
		if q == s || strings.HasSuffix(q, s) && q[len(q)-len(s)-1] == '.' {
			return true
		}
	}
	return false
}

// appendAt writes the SOA into buf after a question ending at qEnd (buf
// holds at least qEnd bytes) and returns buf up to its end, or false when
// a pointer would not fit in 14 bits.
func (w *negWire) appendAt(buf []byte, qEnd int) ([]byte, bool) {
	buf = append(buf[:qEnd], w.rr...)
	shift := qEnd - w.qEnd
	for _, p := range w.ptrs {
		at := buf[qEnd+int(p):]
		v := int(binary.BigEndian.Uint16(at)&^0xC000) + shift
		if v < 0 || v > 0x3FFF {
			return nil, false
		}
		binary.BigEndian.PutUint16(at, 0xC000|uint16(v))
	}
	return buf, true
}

// AppendNegative writes the authority section of a negative answer of z,
// ns (what Lookup put in Response.Ns: z's SOA), into buf after the
// question, which ends at qEnd and names qname (canonical), packed as
// miekg/dns packs it with compression. It returns the message up to the
// end of that section, or false when z has no precomputed answers, ns is
// not z's negative SOA, buf is too small, or the question takes the
// general path (see the comment at the top of this file).
func (z *Zone) AppendNegative(buf []byte, qEnd int, qname string, ns []dns.RR) ([]byte, bool) {
	if z.pre == nil || z.pre.neg == nil || len(ns) != 1 || ns[0] != z.neg {
		return nil, false
	}
	w := z.pre.neg
	if qEnd+len(w.rr) > cap(buf) || w.belowEnds(qname) {
		return nil, false
	}
	return w.appendAt(buf[:cap(buf)], qEnd)
}
