package server

import "encoding/binary"

// Truncating a precomputed answer on the fast path.
//
// A precomputed answer too large for the client's UDP limit used to take
// the general path, which unpacks the stored RRsets and packs them again
// to find what fits: a large RRset over UDP (a TXT or DNSKEY set without
// EDNS, say) cost 18us and 340 allocations a query, about 150 times a hit.
// The cut the general path makes (Server.truncate: whole RRsets in order,
// answer then authority, the first that does not fit sets TC=1 and ends
// the message; additional RRsets that do not fit are left out without TC;
// the OPT RR's room is counted first) is a prefix of the stored message in
// every case but one, so it is found by walking the stored message's
// records and copied: packing is sequential and compression only points
// backwards, so the general path's packing of those RRsets is exactly the
// stored prefix. The exceptions take the general path still: an
// additional RRset that does not fit followed by more additional records
// (the general path would keep a later one that fits, compressed
// differently perhaps), and glue that does not fit in a referral (TC=1 or
// not depends on where the glue is, RFC 9471). TestFastPathEquivalence and FuzzRespond hold the two
// paths to identical bytes.

// precomputedTruncated writes the truncated response to req from w, a
// precomputed message (zone.Snapshot.Precomputed) that does not fit in
// limit with req's question (up to qEnd) and opt, into buf. It reports
// false when the general path must cut it.
func precomputedTruncated(w, req, buf []byte, qEnd, limit int, opt []byte) ([]byte, bool) {
	full := len(w) + qEnd - headerLen
	if len(w) < headerLen || full+len(opt) > len(buf) {
		return nil, false
	}
	// The whole response first (without OPT), so that compression
	// pointers, question included, resolve at their own offsets.
	msg := buf[:full]
	copy(msg, w[:headerLen])
	copy(msg[headerLen:], req[headerLen:qEnd])
	copy(msg[qEnd:], w[headerLen:])
	room := limit - len(opt)
	if room < qEnd {
		return nil, false // not even the question: the general path drops NSID
	}
	counts := [3]int{
		int(binary.BigEndian.Uint16(msg[6:])),
		int(binary.BigEndian.Uint16(msg[8:])),
		int(binary.BigEndian.Uint16(msg[10:])),
	}
	var kept [3]int // records kept per section
	off, cut := qEnd, qEnd
	tc := false
	for sec := 0; sec < 3 && !tc; sec++ {
		for i := 0; i < counts[sec]; {
			// One RRset: the records from i with the same owner and type.
			start := off
			typ, end, ok := rrAt(msg, off)
			if !ok {
				return nil, false
			}
			n := 1
			for off = end; i+n < counts[sec]; n++ {
				t, e, ok := rrAt(msg, off)
				if !ok {
					return nil, false
				}
				if t != typ || !sameName(msg, start, off) {
					break
				}
				off = e
			}
			if cut+off-start > room {
				if sec < 2 {
					tc = true // answer or authority: TC, and stop here
					break
				}
				if i+n < counts[sec] || msg[2]&(flagAA>>8) == 0 {
					// More additional records follow, or this is a
					// referral, whose glue may need TC (RFC 9471).
					return nil, false
				}
				break // the last additional RRset is left out, no TC
			}
			cut += off - start
			kept[sec] += n
			i += n
		}
	}
	out := buf[:cut+len(opt)]
	copy(out[cut:], opt)
	out[0], out[1] = req[0], req[1] // ID
	out[2] |= req[2] & (flagRD >> 8)
	if tc {
		out[2] |= flagTC >> 8
	}
	ar := kept[2]
	if opt != nil {
		ar++
	}
	binary.BigEndian.PutUint16(out[6:], uint16(kept[0]))
	binary.BigEndian.PutUint16(out[8:], uint16(kept[1]))
	binary.BigEndian.PutUint16(out[10:], uint16(ar))
	return out, true
}

// rrAt reads the record at msg[off:]: its type and the offset after it.
func rrAt(msg []byte, off int) (typ uint16, end int, ok bool) {
	for {
		if off >= len(msg) {
			return 0, 0, false
		}
		l := int(msg[off])
		if l == 0 {
			off++
			break
		}
		if l&0xc0 == 0xc0 {
			off += 2
			break
		}
		if l&0xc0 != 0 {
			return 0, 0, false
		}
		off += 1 + l
	}
	if off+10 > len(msg) {
		return 0, 0, false
	}
	typ = binary.BigEndian.Uint16(msg[off:])
	end = off + 10 + int(binary.BigEndian.Uint16(msg[off+8:]))
	if end > len(msg) {
		return 0, 0, false
	}
	return typ, end, true
}

// sameName reports whether the names encoded at msg[a:] and msg[b:] are
// equal, ignoring ASCII case and following compression pointers (at most
// 64 jumps each, so a pointer loop ends).
func sameName(msg []byte, a, b int) bool {
	for ja, jb := 0, 0; ; {
		var ok bool
		if a, ok = follow(msg, a, &ja); !ok {
			return false
		}
		if b, ok = follow(msg, b, &jb); !ok {
			return false
		}
		if a == b {
			return true // the same bytes from here on
		}
		la, lb := int(msg[a]), int(msg[b])
		if la != lb || a+1+la > len(msg) || b+1+lb > len(msg) {
			return false
		}
		if la == 0 {
			return true
		}
		for i := 1; i <= la; i++ {
			if lower(msg[a+i]) != lower(msg[b+i]) {
				return false
			}
		}
		a, b = a+1+la, b+1+lb
	}
}

// follow resolves compression pointers at msg[off:], counting jumps in *j.
func follow(msg []byte, off int, j *int) (int, bool) {
	for {
		if off+1 > len(msg) {
			return 0, false
		}
		if msg[off]&0xc0 != 0xc0 {
			return off, msg[off]&0xc0 == 0
		}
		if off+2 > len(msg) || *j >= 64 {
			return 0, false
		}
		*j++
		off = int(binary.BigEndian.Uint16(msg[off:]) & 0x3fff)
	}
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
