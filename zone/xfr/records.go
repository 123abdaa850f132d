package xfr

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// errInconsistent marks an IXFR response that cannot be applied to the
// version we hold; the caller falls back to AXFR.
var errInconsistent = errors.New("inconsistent incremental transfer")

// rrKey names an RRset: canonical owner and type.
type rrKey struct {
	name   string
	rrtype uint16
}

// recordSet is one version of a zone being built: its SOA and its other
// records grouped by RRset, in the order first seen (which is the order
// they are written in). The dns.RR values are never modified; a clone
// shares them.
type recordSet struct {
	origin string // canonical
	soa    *dns.SOA
	sets   map[rrKey][]dns.RR
	order  []rrKey
}

func newRecordSet(origin string) *recordSet {
	return &recordSet{origin: dns.CanonicalName(origin), sets: make(map[rrKey][]dns.RR)}
}

func keyOf(rr dns.RR) rrKey {
	return rrKey{strings.ToLower(rr.Header().Name), rr.Header().Rrtype}
}

// check reports why rr cannot be part of the zone, or nil.
func (s *recordSet) check(rr dns.RR) error {
	h := rr.Header()
	if h.Class != dns.ClassINET {
		return fmt.Errorf("%s: class %s is not IN", h.Name, dns.ClassToString[h.Class])
	}
	if !dns.IsSubDomain(s.origin, h.Name) {
		return fmt.Errorf("%s is outside the zone %s", h.Name, s.origin)
	}
	switch h.Rrtype {
	case dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY, dns.TypeAXFR, dns.TypeIXFR, dns.TypeANY:
		return fmt.Errorf("%s: %s is not zone data", h.Name, dns.TypeToString[h.Rrtype])
	}
	return nil
}

// add adds rr, or replaces the record equal to it but for its TTL
// (RFC 2181 section 5: identical records are one record).
func (s *recordSet) add(rr dns.RR) error {
	if err := s.check(rr); err != nil {
		return err
	}
	if soa, ok := rr.(*dns.SOA); ok {
		if dns.CanonicalName(soa.Hdr.Name) != s.origin {
			return fmt.Errorf("%s: SOA not at the apex", soa.Hdr.Name)
		}
		s.soa = soa
		return nil
	}
	k := keyOf(rr)
	set, ok := s.sets[k]
	if !ok {
		s.order = append(s.order, k)
	}
	for i, old := range set {
		if dns.IsDuplicate(old, rr) {
			set[i] = rr
			return nil
		}
	}
	s.sets[k] = append(set, rr)
	return nil
}

// remove removes the record equal to rr but for its TTL and reports
// whether there was one.
func (s *recordSet) remove(rr dns.RR) bool {
	k := keyOf(rr)
	set := s.sets[k]
	for i, old := range set {
		if dns.IsDuplicate(old, rr) {
			s.sets[k] = slices.Delete(set, i, i+1)
			return true
		}
	}
	return false
}

// clone returns a copy of s that can change without changing s.
func (s *recordSet) clone() *recordSet {
	c := &recordSet{origin: s.origin, soa: s.soa, sets: make(map[rrKey][]dns.RR, len(s.sets))}
	for _, k := range s.order {
		if set := s.sets[k]; len(set) > 0 {
			c.sets[k] = slices.Clone(set)
			c.order = append(c.order, k)
		}
	}
	return c
}

// len returns the number of records, SOA included.
func (s *recordSet) len() int {
	n := 0
	if s.soa != nil {
		n = 1
	}
	for _, set := range s.sets {
		n += len(set)
	}
	return n
}

// records returns the SOA followed by every other record.
func (s *recordSet) records() []dns.RR {
	out := make([]dns.RR, 0, s.len())
	if s.soa != nil {
		out = append(out, s.soa)
	}
	for _, k := range s.order {
		out = append(out, s.sets[k]...)
	}
	return out
}

// fromAXFR builds a zone from an AXFR response (or an AXFR-style IXFR
// response): the SOA, the records, the SOA again (RFC 5936 section 2.2).
func fromAXFR(origin string, rrs []dns.RR) (*recordSet, error) {
	if len(rrs) < 2 {
		return nil, fmt.Errorf("transfer of %d records: too short", len(rrs))
	}
	first, ok1 := rrs[0].(*dns.SOA)
	last, ok2 := rrs[len(rrs)-1].(*dns.SOA)
	if !ok1 || !ok2 {
		return nil, errors.New("transfer does not begin and end with the SOA")
	}
	if first.Serial != last.Serial {
		return nil, fmt.Errorf("transfer begins with serial %d and ends with %d", first.Serial, last.Serial)
	}
	s := newRecordSet(origin)
	for _, rr := range rrs[:len(rrs)-1] {
		if rr.Header().Rrtype == dns.TypeSOA && s.soa != nil {
			return nil, errors.New("SOA in the middle of the transfer")
		}
		if err := s.add(rr); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// isIncremental reports whether an IXFR response holds differences
// (RFC 1995 section 4: the second record is the SOA of an older version)
// rather than a whole zone.
func isIncremental(rrs []dns.RR) bool {
	return len(rrs) > 2 && rrs[1].Header().Rrtype == dns.TypeSOA
}

// applyIXFR applies the differences of an incremental IXFR response
// (RFC 1995 section 4) to cur, which it does not modify. Differences that
// do not start at cur's serial, delete a record cur lacks, or do not end at
// the serial the response announces wrap errInconsistent.
func applyIXFR(cur *recordSet, rrs []dns.RR) (*recordSet, error) {
	if cur.soa == nil {
		return nil, fmt.Errorf("%w: no current version", errInconsistent)
	}
	if !isIncremental(rrs) {
		return nil, fmt.Errorf("%w: not a list of differences", errInconsistent)
	}
	top, ok1 := rrs[0].(*dns.SOA)
	end, ok2 := rrs[len(rrs)-1].(*dns.SOA)
	if !ok1 || !ok2 || top.Serial != end.Serial {
		return nil, fmt.Errorf("%w: does not begin and end with the new SOA", errInconsistent)
	}
	body := rrs[1 : len(rrs)-1]
	next := cur.clone()
	from := cur.soa.Serial
	for i := 0; i < len(body); {
		old, ok := body[i].(*dns.SOA)
		if !ok {
			return nil, fmt.Errorf("%w: difference does not begin with an SOA", errInconsistent)
		}
		if old.Serial != from {
			return nil, fmt.Errorf("%w: difference from serial %d, have %d", errInconsistent, old.Serial, from)
		}
		for i++; i < len(body) && body[i].Header().Rrtype != dns.TypeSOA; i++ {
			if !next.remove(body[i]) {
				return nil, fmt.Errorf("%w: serial %d deletes a missing record: %s", errInconsistent, old.Serial, body[i])
			}
		}
		if i == len(body) {
			return nil, fmt.Errorf("%w: difference from serial %d has no new SOA", errInconsistent, old.Serial)
		}
		nw := body[i].(*dns.SOA)
		if err := next.add(nw); err != nil {
			return nil, fmt.Errorf("%w: %v", errInconsistent, err)
		}
		for i++; i < len(body) && body[i].Header().Rrtype != dns.TypeSOA; i++ {
			if err := next.add(body[i]); err != nil {
				return nil, fmt.Errorf("%w: %v", errInconsistent, err)
			}
		}
		from = nw.Serial
	}
	if from != top.Serial {
		return nil, fmt.Errorf("%w: differences end at serial %d, not %d", errInconsistent, from, top.Serial)
	}
	return next, nil
}

// readRecords reads a zone file this package wrote (no $INCLUDE).
func readRecords(path, origin string) (*recordSet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zp := dns.NewZoneParser(bufio.NewReader(f), origin, path)
	zp.SetIncludeAllowed(false)
	s := newRecordSet(origin)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if err := s.add(rr); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	if err := zp.Err(); err != nil {
		return nil, err
	}
	if s.soa == nil {
		return nil, fmt.Errorf("%s: no SOA", path)
	}
	return s, nil
}

// fileBase returns the file name (without suffix) of a zone: the name
// without its final dot, lower case, with anything but letters, digits,
// '-', '_' and inner dots escaped as %XX; the root zone is "root".
func fileBase(origin string) string {
	n := strings.TrimSuffix(dns.CanonicalName(origin), ".")
	if n == "" {
		return "root"
	}
	var b strings.Builder
	for i := 0; i < len(n); i++ {
		c := n[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_', c == '.' && i > 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// writeFile writes s to path atomically: a temporary file in tmpDir (on
// the same file system), checked by check, then renamed into place. On
// any error path is left as it was.
func writeFile(path, tmpDir string, s *recordSet, header string, check func(tmp string) error) (err error) {
	if err := os.MkdirAll(tmpDir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(tmpDir, filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	w := bufio.NewWriterSize(f, 64<<10)
	for line := range strings.SplitSeq(strings.TrimRight(header, "\n"), "\n") {
		fmt.Fprintf(w, "; %s\n", line)
	}
	for _, rr := range s.records() {
		w.WriteString(rr.String())
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if check != nil {
		if err := check(tmp); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync() // best effort: make the rename durable
		d.Close()
	}
	return nil
}
