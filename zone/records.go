package zone

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// AllRecords returns every resource record of the zone in AXFR order (RFC 5936
// section 2.2): the SOA first, then the other records of the apex, then
// the other owners in DNS canonical order (RFC 4034 section 6.1), each
// owner's RRsets in the order they were loaded. The SOA is not repeated at
// the end. The slice is new on each call, and so are most RRs (unpacked
// from the zone's wire data), but the SOA and some others are the stored,
// shared ones: callers must not modify them (copy one with dns.Copy
// first). AllRecords is safe from any goroutine; it allocates a slice of
// Zone.Records entries and an RR for most of them, and sorts the owner
// names.
func (z *Zone) AllRecords() []dns.RR {
	out := make([]dns.RR, 0, z.Records+1)
	out = append(out, z.soa)
	if len(z.nodes) == 0 {
		return out
	}
	apex := z.apex()
	sets := z.setsOf(apex)
	for i := range sets {
		if sets[i].typ == dns.TypeSOA {
			continue
		}
		out = z.appendSet(out, apex, &sets[i], "")
	}
	owners := make([]uint32, 0, len(z.nodes))
	for i := 1; i < len(z.nodes); i++ { // the apex is node 0
		if !z.nodes[i].empty() {
			owners = append(owners, uint32(i))
		}
	}
	slices.SortFunc(owners, func(a, b uint32) int {
		return compareCanonical(z.name(&z.nodes[a]), z.name(&z.nodes[b]))
	})
	for _, i := range owners {
		n := &z.nodes[i]
		sets := z.setsOf(n)
		for j := range sets {
			out = z.appendSet(out, n, &sets[j], "")
		}
	}
	return out
}

// compareCanonical orders two canonical names per RFC 4034 section 6.1:
// label by label from the root. Escaped labels compare by their
// presentation form, which keeps the order total.
func compareCanonical(a, b string) int {
	ai, bi := len(a), len(b)
	for {
		as, aok := prevLabel(a, ai)
		bs, bok := prevLabel(b, bi)
		switch {
		case !aok && !bok:
			return 0
		case !aok:
			return -1
		case !bok:
			return 1
		}
		// Labels exclude the trailing dot.
		la := strings.TrimSuffix(a[as:ai], ".")
		lb := strings.TrimSuffix(b[bs:bi], ".")
		if c := strings.Compare(la, lb); c != 0 {
			return c
		}
		ai, bi = as, bs
	}
}

// prevLabel returns the start of the label that ends at end in name, and
// false when there is none left.
func prevLabel(name string, end int) (int, bool) {
	if end <= 0 || name == "." {
		return 0, false
	}
	i, _ := dns.PrevLabel(name[:end], 1)
	return i, true
}

// Resource record storage.
//
// The RRs of a zone are kept in wire form, in one byte array per zone
// (Zone.rrData), with no Go object per RR: for each RR its TTL (4 bytes),
// RDLENGTH (2) and RDATA, as dns.PackRR packs them without compression. The
// owner is the node's name, the type the set's, the class IN (the builder
// takes no other). A set's RRs are contiguous, in the order they were
// loaded; the set holds their offset and count. Where a dns.RR is needed
// it is unpacked with dns.UnpackRRWithHeader (Zone.appendSet): a new RR
// on each call.
//
// Some sets are kept as dns.RR objects (Zone.objs) instead:
//   - the NS RRsets of zone cuts and the A and AAAA RRsets of their NS
//     targets at or below the cut: what a referral sends. The server
//     answers referrals on its fast path through Lookup, which must not
//     allocate;
//   - a set with an RR that miekg/dns does not pack (the parser accepts
//     some it cannot, such as a DNSKEY whose key is not base64) or, for
//     the less common types, does not unpack again: it is served as it
//     was parsed, as before.

// rrHeaderLen is the length of a stored RR's TTL and RDLENGTH.
const rrHeaderLen = 6

// set returns the RRset of type t of n, a node of z, or nil.
func (z *Zone) set(n *node, t uint16) *rrset {
	sets := z.setsOf(n)
	for i := range sets {
		if sets[i].typ == t {
			return &sets[i]
		}
	}
	return nil
}

// appendSet appends the RRs of set, an RRset of node n, to dst: new RRs
// unpacked from the zone's data, or the stored objects. With an owner
// (wildcard synthesis) the RRs are named owner (objects are copied first).
func (z *Zone) appendSet(dst []dns.RR, n *node, set *rrset, owner string) []dns.RR {
	if set.obj {
		objs := z.objs[set.off : set.off+set.n]
		if owner == "" {
			return append(dst, objs...)
		}
		for _, rr := range objs {
			c := dns.Copy(rr)
			c.Header().Name = owner
			dst = append(dst, c)
		}
		return dst
	}
	if owner == "" {
		owner = z.name(n)
	}
	data := z.rrData[set.off:]
	for range set.n {
		rr, rest, err := unpackStored(data, owner, set.typ)
		if err != nil {
			// The builder stores only RRs that unpack (see packStored).
			panic("zone: stored " + dns.TypeToString[set.typ] + " record of " + z.name(n) + " does not unpack: " + err.Error())
		}
		dst = append(dst, rr)
		data = rest
	}
	return dst
}

// appendType appends the RRs of n's RRset of type t, if any, to dst.
func (z *Zone) appendType(dst []dns.RR, n *node, t uint16) []dns.RR {
	if set := z.set(n, t); set != nil {
		return z.appendSet(dst, n, set, "")
	}
	return dst
}

// unpackStored unpacks the stored RR at the start of data (TTL, RDLENGTH,
// RDATA) with owner and type typ, and returns the data after it.
func unpackStored(data []byte, owner string, typ uint16) (dns.RR, []byte, error) {
	if len(data) < rrHeaderLen {
		return nil, nil, errShortRR
	}
	ttl := binary.BigEndian.Uint32(data)
	rdlen := int(binary.BigEndian.Uint16(data[4:]))
	end := rrHeaderLen + rdlen
	if len(data) < end {
		return nil, nil, errShortRR
	}
	h := dns.RR_Header{Name: owner, Rrtype: typ, Class: dns.ClassINET, Ttl: ttl, Rdlength: uint16(rdlen)}
	rr, _, err := dns.UnpackRRWithHeader(h, data[rrHeaderLen:end:end], 0)
	if err != nil {
		return nil, nil, err
	}
	return rr, data[end:], nil
}

var errShortRR = errors.New("stored record is cut short")

// packStored packs rr (owner and type aside) the way the zone stores it,
// into buf (at least dns.MaxMsgSize bytes), and returns the packed bytes
// (TTL, RDLENGTH, RDATA; a slice of buf), or false when miekg/dns does not
// pack it or, for a type outside the common ones, does not unpack what it
// packed into an RR that packs the same. rr's owner name is left as it
// was; its Rdlength is set.
func packStored(rr dns.RR, buf []byte) ([]byte, bool) {
	h := rr.Header()
	name := h.Name
	// The root name packs to one byte: the type, class, TTL and RDLENGTH
	// follow it at known offsets.
	h.Name = "."
	end, err := dns.PackRR(rr, buf, 0, nil, false)
	h.Name = name
	const ttlOff = 1 + 2 + 2 // root, type, class
	if err != nil || end < ttlOff+rrHeaderLen {
		return nil, false
	}
	rec := buf[ttlOff:end]
	switch h.Rrtype {
	case dns.TypeA, dns.TypeAAAA, dns.TypeNS, dns.TypeCNAME, dns.TypeMX, dns.TypeTXT,
		dns.TypePTR, dns.TypeSRV, dns.TypeSOA, dns.TypeCAA, dns.TypeDS:
	default:
		// Unpacked and packed again, it must give the same bytes (after
		// rec in buf, if they fit).
		u, _, err := unpackStored(rec, ".", h.Rrtype)
		if err != nil {
			return nil, false
		}
		end2, err := dns.PackRR(u, buf, end, nil, false)
		if err != nil || !bytes.Equal(buf[end+ttlOff:end2], rec) {
			return nil, false
		}
	}
	return rec, true
}
