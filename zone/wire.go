package zone

import (
	"github.com/miekg/dns"
)

// Precomputed wire-format responses.
//
// When a zone is built, every (owner, type) that has an RRset gets the
// complete response message the server would send for it, packed once with
// miekg/dns (compression included) with ID 0, RD clear, no OPT RR, and the
// question in canonical (lower-case) form. The server copies it, patches ID,
// RD and the question's case, and appends its OPT RR: nothing else in the
// message depends on the query, because every name in it that compresses
// against the question points into the question, whose bytes the server
// copies from the query verbatim.
//
// Only self-contained answers are stored: those whose Lookup, in a snapshot
// holding this zone alone, consulted no name outside the zone. Answers whose
// additional section depends on MX, NS or SRV targets inside the zone are
// marked, because a more specific zone served beside this one can change
// them; Snapshot.Precomputed refuses those when the snapshot serves such a
// zone.

const (
	// wireChunk is the size of one arena chunk of precomputed messages.
	wireChunk = 1 << 20
	// wireTargets marks, in rrset.woff, an answer whose additional section
	// depends on target names inside the zone.
	wireTargets = 1 << 31
)

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

// wireOf returns the precomputed message of set, or nil.
func (z *Zone) wireOf(set *rrset) []byte {
	if set.wlen == 0 {
		return nil
	}
	off := int(set.woff &^ wireTargets)
	c := z.wire[off/wireChunk]
	o := off % wireChunk
	return c[o : o+int(set.wlen) : o+int(set.wlen)]
}

// precompute packs the self-contained answer of every (owner, type) of z
// (see the comment at the top of this file). It runs once, before z is
// published.
func (z *Zone) precompute() {
	snap := &Snapshot{zones: []*Zone{z}, byName: map[string]*Zone{z.Origin: z}}
	var (
		a   wireArena
		r   Response
		buf = make([]byte, dns.MaxMsgSize)
		m   dns.Msg
		qs  [1]dns.Question
	)
	for _, n := range z.nodes {
		for i := range n.sets {
			set := &n.sets[i]
			if set.typ == dns.TypeDS && n == z.apex {
				continue // answered from the parent zone when it is served
			}
			snap.Lookup(n.name, set.typ, &r)
			targets, ok := selfContained(z, n, set.typ, &r)
			if !ok {
				continue
			}
			qs[0] = dns.Question{Name: n.name, Qtype: set.typ, Qclass: dns.ClassINET}
			m = dns.Msg{
				MsgHdr: dns.MsgHdr{
					Response:      true,
					Authoritative: r.Authoritative(),
					Rcode:         r.Result.Rcode(),
				},
				Compress: true,
				Question: qs[:],
				Answer:   r.Answer,
				Ns:       r.Ns,
				Extra:    r.Extra,
			}
			out, err := m.PackBuffer(buf)
			if err != nil || len(out) > dns.MaxMsgSize || len(out) == 0 {
				continue
			}
			off, ok := a.add(out)
			if !ok {
				continue
			}
			set.wlen = uint16(len(out))
			set.woff = off
			if targets {
				set.woff |= wireTargets
			}
		}
	}
	r.Reset()
	for i, c := range a.chunks {
		a.chunks[i] = c[:len(c):len(c)]
	}
	z.wire = a.chunks
}

// selfContained reports whether the lookup r of (n, qtype) in z alone used
// no name outside z, and (targets) whether its additional section depends
// on MX, NS or SRV targets inside z.
func selfContained(z *Zone, n *node, qtype uint16, r *Response) (targets, ok bool) {
	switch r.Result {
	case Success, NoData, NameError, Delegation:
	default:
		return false, false
	}
	for _, rr := range r.Answer {
		h := rr.Header()
		if h.Name != n.name || h.Rrtype != qtype {
			return false, false // a CNAME or DNAME chain
		}
		var target string
		switch rr := rr.(type) {
		case *dns.MX:
			target = rr.Mx
		case *dns.NS:
			target = rr.Ns
		case *dns.SRV:
			target = rr.Target
		default:
			continue
		}
		if !isSubdomain(canonicalName(target), z.Origin) {
			return false, false // another served zone may add glue
		}
		targets = true
	}
	return targets, true
}

// Precomputed returns the precomputed response message for qname/qtype
// (class IN), or nil when there is none valid in s: the caller then answers
// through Lookup. qname must be canonical (lower case, fully qualified,
// escaped as miekg/dns unpacks names). The message has ID 0, RD clear, no
// OPT RR and the question in canonical form; it is shared and read-only:
// callers copy it and must not modify it. Precomputed does not allocate.
func (s *Snapshot) Precomputed(qname string, qtype uint16) []byte {
	z := s.find(qname)
	if z == nil || z.wire == nil {
		return nil
	}
	if qtype == dns.TypeDS && qname == z.Origin {
		return nil
	}
	n := z.nodes[qname]
	if n == nil {
		return nil
	}
	for i := range n.sets {
		set := &n.sets[i]
		if set.typ != qtype {
			continue
		}
		if set.woff&wireTargets != 0 && s.nested[z] {
			return nil
		}
		return z.wireOf(set)
	}
	return nil
}
