package zone

import (
	"slices"
	"sort"
	"sync/atomic"

	"github.com/miekg/dns"
)

// Snapshot is an immutable set of zones indexed for longest-match
// selection. Lookups on it are safe from any goroutine; nothing reachable
// from a Snapshot is ever written once it is built. The zero Snapshot
// serves no zones.
type Snapshot struct {
	zones  []*Zone          // sorted by origin
	byName map[string]*Zone // by canonical origin
	// longest holds the zones by origin length, longest first, when
	// there are at most scanZones: find compares their origins with the
	// name's end rather than looking up each of its suffixes in byName.
	longest []*Zone
	// nested holds the zones below which another served zone lies: their
	// precomputed answers that depend on in-zone targets are not used.
	nested map[*Zone]bool
}

// NewSnapshot builds a snapshot of zs. Two zones with the same origin are an
// error naming both files. Nil zones are ignored.
func NewSnapshot(zs ...*Zone) (*Snapshot, error) {
	s := &Snapshot{byName: make(map[string]*Zone, len(zs))}
	for _, z := range zs {
		if z == nil {
			continue
		}
		if prev := s.byName[z.Origin]; prev != nil {
			return nil, &Error{File: z.File, Reason: "zone " + z.Origin + " already loaded from " + prev.File}
		}
		s.byName[z.Origin] = z
		s.zones = append(s.zones, z)
	}
	sortZones(s.zones)
	s.index()
	return s, nil
}

func sortZones(zs []*Zone) {
	sort.Slice(zs, func(i, j int) bool { return zs[i].Origin < zs[j].Origin })
}

// With returns a new snapshot that holds z in place of any zone with the same
// origin, and every other zone of s. s is not modified.
func (s *Snapshot) With(z *Zone) *Snapshot {
	if z == nil {
		return s
	}
	n := &Snapshot{byName: make(map[string]*Zone, len(s.byName)+1)}
	for _, o := range s.zones {
		if o.Origin != z.Origin {
			n.byName[o.Origin] = o
			n.zones = append(n.zones, o)
		}
	}
	n.byName[z.Origin] = z
	n.zones = append(n.zones, z)
	sortZones(n.zones)
	n.index()
	return n
}

// Without returns a new snapshot without the zone of this origin (any case).
// s is not modified.
func (s *Snapshot) Without(origin string) *Snapshot {
	origin = canonicalName(origin)
	n := &Snapshot{byName: make(map[string]*Zone, len(s.byName))}
	for _, o := range s.zones {
		if o.Origin != origin {
			n.byName[o.Origin] = o
			n.zones = append(n.zones, o)
		}
	}
	n.index()
	return n
}

// scanZones is the number of zones up to which find compares each
// zone's origin with the name (a few string comparisons) rather than
// looking each suffix of the name up in a map (a hash of each).
const scanZones = 4

// index computes s.longest and s.nested (before s is published).
func (s *Snapshot) index() {
	s.longest = nil
	if len(s.zones) <= scanZones {
		s.longest = slices.Clone(s.zones)
		slices.SortStableFunc(s.longest, func(a, b *Zone) int { return len(b.Origin) - len(a.Origin) })
	}
	s.nested = nil
	for _, z := range s.zones {
		for _, c := range s.zones {
			if c != z && isSubdomain(c.Origin, z.Origin) {
				if s.nested == nil {
					s.nested = make(map[*Zone]bool)
				}
				s.nested[z] = true
				break
			}
		}
	}
}

// Zones returns the zones sorted by origin. Callers must not modify it.
func (s *Snapshot) Zones() []*Zone { return s.zones }

// Zone returns the zone with exactly this origin (any case), or nil.
func (s *Snapshot) Zone(origin string) *Zone {
	return s.byName[canonicalName(origin)]
}

// Find returns the served zone that is the longest match for qname, or nil.
func (s *Snapshot) Find(qname string) *Zone {
	return s.find(canonicalName(qname))
}

// find is Find for a canonical name. It does not allocate.
func (s *Snapshot) find(name string) *Zone {
	if len(s.zones) <= scanZones {
		for _, z := range s.longest {
			if isSubdomain(name, z.Origin) {
				return z
			}
		}
		return nil
	}
	for off := 0; ; {
		if z := s.byName[name[off:]]; z != nil {
			return z
		}
		next, end := dns.NextLabel(name, off)
		if end {
			return s.byName["."]
		}
		off = next
	}
}

// Store publishes the current Snapshot. Load is lock-free and safe from any
// goroutine; Store replaces the snapshot with one atomic pointer swap.
type Store struct{ p atomic.Pointer[Snapshot] }

// NewStore returns a store that publishes s (nil means an empty snapshot).
func NewStore(s *Snapshot) *Store {
	if s == nil {
		s = &Snapshot{}
	}
	st := &Store{}
	st.p.Store(s)
	return st
}

// Load returns the current snapshot (never nil).
func (st *Store) Load() *Snapshot { return st.p.Load() }

// Store publishes s; a nil s publishes an empty snapshot.
func (st *Store) Store(s *Snapshot) {
	if s == nil {
		s = &Snapshot{}
	}
	st.p.Store(s)
}
