package xfr

import (
	"sync"

	"github.com/miekg/dns"

	"github.com/anyns/anyns/zone"
)

// DefaultJournalSize is the default bound of a Journal, in records per zone.
const DefaultJournalSize = 100_000

// Journal keeps, per zone, the differences between successive loaded
// versions, for IXFR out (RFC 1995). Each zone's history is bounded by a
// number of records (deleted plus added, SOAs included): the oldest
// differences are dropped first, and a single difference larger than the
// bound empties the history (clients then get a full zone). A Journal is
// in memory only: a restart begins with an empty one. It is safe from any
// goroutine.
type Journal struct {
	max int

	mu    sync.Mutex
	zones map[string]*history // by origin
	last  map[string]*zone.Zone
}

type history struct {
	steps []step // oldest first, contiguous: steps[i].to == steps[i+1].from
	size  int    // records held
}

// step is the difference between two versions of a zone. Its RRs are
// the stored ones of the zones: never modified.
type step struct {
	from, to *dns.SOA
	del, add []dns.RR
}

func (st *step) size() int { return len(st.del) + len(st.add) + 2 }

// NewJournal returns a journal holding at most maxRecords records per
// zone; 0 means DefaultJournalSize.
func NewJournal(maxRecords int) *Journal {
	if maxRecords <= 0 {
		maxRecords = DefaultJournalSize
	}
	return &Journal{max: maxRecords, zones: make(map[string]*history), last: make(map[string]*zone.Zone)}
}

// Change is a zone whose serial went up in Observe.
type Change struct {
	Zone   string // origin
	Serial uint32 // the new serial
}

// Observe records the differences between the zones of snap and those of
// the snapshot observed before, and returns the zones whose serial went up
// (the ones to NOTIFY). Call it after each publish of the zone store, e.g.
// Observe(store.Load()) once Loader.Reload reports a change; the first call
// records nothing. A zone seen again with the same serial is skipped (the
// Loader publishes a zone a second time with its precomputed answers); one
// that left snap loses its history. Observe computes a full difference of
// each changed zone (its cost grows with the zone's size).
func (j *Journal) Observe(snap *zone.Snapshot) []Change {
	var out []Change
	seen := make(map[string]bool)
	for _, z := range snap.Zones() {
		seen[z.Origin] = true
		j.mu.Lock()
		prev := j.last[z.Origin]
		j.last[z.Origin] = z
		j.mu.Unlock()
		if prev == nil || prev.Serial == z.Serial {
			continue
		}
		j.Record(prev, z)
		if serialNewer(z.Serial, prev.Serial) {
			out = append(out, Change{Zone: z.Origin, Serial: z.Serial})
		}
	}
	j.mu.Lock()
	for name := range j.last {
		if !seen[name] {
			delete(j.last, name)
			delete(j.zones, name)
		}
	}
	j.mu.Unlock()
	return out
}

// Record adds the difference from old to new, two versions of one zone,
// to the zone's history. A new serial that is not newer than the old one
// (RFC 1982), or an old version that does not follow the recorded history,
// restarts the history. old may be nil (nothing is recorded).
func (j *Journal) Record(old, new *zone.Zone) {
	if old == nil || new == nil || old.Origin != new.Origin {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	h := j.zones[new.Origin]
	if h == nil {
		h = &history{}
		j.zones[new.Origin] = h
	}
	if !serialNewer(new.Serial, old.Serial) {
		*h = history{}
		return
	}
	if n := len(h.steps); n > 0 && h.steps[n-1].to.Serial != old.Serial {
		*h = history{}
	}
	st := diffZones(old, new)
	if st.size() > j.max {
		*h = history{}
		return
	}
	h.steps = append(h.steps, st)
	h.size += st.size()
	for h.size > j.max {
		h.size -= h.steps[0].size()
		h.steps[0] = step{}
		h.steps = h.steps[1:]
	}
}

// IXFR returns the body of an incremental transfer of z from serial from
// (RFC 1995 section 4): for each version after from, the old SOA, the
// deleted records, the new SOA and the added records; the caller puts z's
// SOA before and after it. ok is false when the journal cannot lead from
// from to z (the caller then sends the whole zone). The RRs are shared:
// callers must not modify them.
func (j *Journal) IXFR(z *zone.Zone, from uint32) (body []dns.RR, ok bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	h := j.zones[z.Origin]
	if h == nil {
		return nil, false
	}
	start := -1
	for i, st := range h.steps {
		if st.from.Serial == from {
			start = i
			break
		}
	}
	if start < 0 || h.steps[len(h.steps)-1].to.Serial != z.Serial {
		return nil, false
	}
	for _, st := range h.steps[start:] {
		body = append(body, st.from)
		body = append(body, st.del...)
		body = append(body, st.to)
		body = append(body, st.add...)
	}
	return body, true
}

// diffZones returns the records of old not in new (deleted) and of new
// not in old (added), SOAs left out. A TTL change is a deletion and an
// addition.
func diffZones(old, new *zone.Zone) step {
	key := func(rr dns.RR) string { return rr.String() }
	oldRRs := old.AllRecords()
	newRRs := new.AllRecords()
	have := make(map[string]int, len(oldRRs))
	for _, rr := range oldRRs[1:] {
		have[key(rr)]++
	}
	st := step{from: old.SOA(), to: new.SOA()}
	inNew := make(map[string]int, len(newRRs))
	for _, rr := range newRRs[1:] {
		k := key(rr)
		inNew[k]++
		if have[k] > 0 {
			have[k]--
			continue
		}
		st.add = append(st.add, rr)
	}
	for _, rr := range oldRRs[1:] {
		k := key(rr)
		if inNew[k] > 0 {
			inNew[k]--
			continue
		}
		st.del = append(st.del, rr)
	}
	return st
}
