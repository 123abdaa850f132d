package zone

import (
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// AllRecords returns every resource record of the zone in AXFR order (RFC 5936
// section 2.2): the SOA first, then the other records of the apex, then
// the other owners in DNS canonical order (RFC 4034 section 6.1), each
// owner's RRsets in the order they were loaded. The SOA is not repeated at
// the end. The slice is new on each call, but the RRs are the stored,
// shared ones: callers must not modify them (copy one with dns.Copy
// first). Records is safe from any goroutine; it allocates a slice of
// Zone.Records entries and sorts the owner names.
func (z *Zone) AllRecords() []dns.RR {
	out := make([]dns.RR, 0, z.Records+1)
	out = append(out, z.soa)
	if z.apex != nil {
		for _, set := range z.apex.sets {
			if set.typ == dns.TypeSOA {
				continue
			}
			out = append(out, set.rrs...)
		}
	}
	names := make([]*node, 0, len(z.nodes))
	for _, n := range z.nodes {
		if n != z.apex && len(n.sets) > 0 {
			names = append(names, n)
		}
	}
	slices.SortFunc(names, func(a, b *node) int { return compareCanonical(a.name, b.name) })
	for _, n := range names {
		for _, set := range n.sets {
			out = append(out, set.rrs...)
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
