package zone

import (
	"bytes"
	"sync"
	"sync/atomic"

	"github.com/miekg/dns"
)

// Parsing large zone files fast.
//
// A large file is cut into parts at the start of entries whose owner is
// written out (a line that starts, outside parentheses, quotes and
// escapes, with neither blank, ';', '(' nor '$'). Each part is parsed by
// its own ZoneParser, the parts after the first fed first with the file's
// $ORIGIN and $TTL directives. One goroutine per worker parses parts, the
// caller's among them: it inserts the RRs in file order, part by part, as
// they are ready, so that the builder sees exactly what a sequential parse
// gives it, and parses a part itself while the next is not ready. The
// parts are read through a plain byte reader: without the lineReader's
// tracking, the RRs have no line (0). With one worker the file is one
// part, read the same way.
//
// A record cut short at the end of a part must not parse there as it
// would not in the whole file: where fields are missing, the ZoneParser
// reads on past the end of the line (an SOA with three of its seven
// fields takes the next line's owner as the fourth, an error), but at the
// end of its input it stops and may accept the record. So every part but
// the last is followed by a sentinel entry (splitSentinel) and must end
// with exactly that entry, which is dropped: a record that reached into
// it leaves something else last, and the file is parsed sequentially.
//
// This is only done when the parts cannot depend on each other: every
// directive is $ORIGIN or $TTL, all of them come before the first cut, a
// $TTL is among them (without one, a record's TTL defaults to the previous
// record's), and no other '$' starts or sits in a token outside quotes
// and comments (so nothing can be taken for $GENERATE or $INCLUDE). A
// file read as one part needs only that last condition, checked by a scan
// for '$' alone (plainDollars). If
// anything fails (a part does not parse, the builder finds a problem, or
// the file has more than maxRecords records), the file is parsed again
// sequentially through the lineReader, which reports every problem with
// its file and line, as for any other file.

const (
	// splitMin is the size of a zone file from which it is parsed in
	// parts.
	splitMin = 4 << 20
	// splitParts is how many parts a file is cut into to be parsed by
	// several goroutines: small parts let the builder start early and
	// keep the goroutines evenly busy.
	splitParts = 32
)

// splitSentinel follows every part but the last; sentinelOwner is its
// owner (see the comment at the top of this file).
const (
	splitSentinel = "\n" + sentinelOwner + " 0 IN TXT \"end\"\n"
	sentinelOwner = "anyns-split-sentinel.invalid."
)

// isSentinel reports whether rr is the entry of splitSentinel.
func isSentinel(rr dns.RR) bool {
	t, ok := rr.(*dns.TXT)
	return ok && t.Hdr.Name == sentinelOwner && len(t.Txt) == 1 && t.Txt[0] == "end"
}

// splitSpecial marks the bytes splitZone stops at outside quotes and
// comments; all others are skipped.
var splitSpecial = [256]bool{'\n': true, ';': true, '(': true, ')': true, '\\': true, '"': true, '$': true}

// splitZone returns the directives (to replay before each later part) and
// up to parts parts of data, or ok false when data must be parsed
// sequentially (see the comment at the top of this file).
func splitZone(data []byte, parts int) (prelude []byte, out [][]byte, ok bool) {
	if parts <= 1 {
		return nil, [][]byte{data}, plainDollars(data)
	}
	var (
		depth   int
		cuts    []int // offsets of owner lines at which data is cut
		n       = len(data)
		i       int
		start   = true // i is at the start of a line
		haveTTL bool
	)
	// nextCut is the offset from which the next cut is taken.
	nextCut := func() int { return n * (len(cuts) + 1) / parts }
	for i < n {
		if start {
			start = false
			if depth == 0 {
				switch data[i] {
				case '$':
					end := bytes.IndexByte(data[i:], '\n')
					if end < 0 {
						end = n - i
					}
					dl := data[i : i+end]
					name := dl
					if k := bytes.IndexAny(dl, " \t;"); k >= 0 {
						name = dl[:k]
					}
					switch {
					case bytes.EqualFold(name, []byte("$TTL")):
						haveTTL = true
					case bytes.EqualFold(name, []byte("$ORIGIN")):
					default:
						return nil, nil, false // $INCLUDE, $GENERATE, ...
					}
					if len(cuts) > 0 || bytes.ContainsAny(dl, "\"()\\") || bytes.IndexByte(dl[1:], '$') >= 0 {
						return nil, nil, false // a directive after a cut, or not plain
					}
					prelude = append(append(prelude, dl...), '\n')
					i += end + 1
					start = true
					continue
				case ' ', '\t', '\r', '\n', ';', '(', ')', '"', '\\':
				default:
					if len(cuts) < parts-1 && i >= nextCut() {
						cuts = append(cuts, i)
					}
				}
			}
		}
		for i < n && !splitSpecial[data[i]] {
			i++
		}
		if i >= n {
			break
		}
		switch data[i] {
		case '\n':
			start = true
			i++
		case ';':
			if j := bytes.IndexByte(data[i:], '\n'); j >= 0 {
				i += j // the newline ends the comment and starts a line
			} else {
				i = n
			}
		case '(':
			depth++
			i++
		case ')':
			if depth > 0 {
				depth--
			}
			i++
		case '\\':
			i += 2 // the escaped byte, even a newline, continues the token
		case '"':
			for i++; i < n && data[i] != '"'; i++ {
				if data[i] == '\\' {
					i++
				}
			}
			i++ // past the closing quote
		case '$':
			return nil, nil, false // may be read as a directive
		}
	}
	if !haveTTL {
		return nil, nil, false
	}
	from := 0
	for _, cut := range cuts {
		out = append(out, data[from:cut])
		from = cut
	}
	return prelude, append(out, data[from:]), true
}

// plainDollars reports whether every '$' of data starts a $TTL or $ORIGIN
// directive at the start of a line: then a ZoneParser reading all of data
// through a plain reader parses what the lineReader's would (it meets no
// $GENERATE, and $INCLUDE is refused), and no line needs tracking unless
// there is an error. Any other '$', even in a quoted string or a comment,
// makes it false, which only costs the faster path.
func plainDollars(data []byte) bool {
	for i := 0; ; {
		j := bytes.IndexByte(data[i:], '$')
		if j < 0 {
			return true
		}
		p := i + j
		if p > 0 && data[p-1] != '\n' {
			return false
		}
		word := data[p:]
		if k := bytes.IndexAny(word, " \t\n;"); k >= 0 {
			word = word[:k]
		}
		if !bytes.EqualFold(word, []byte("$TTL")) && !bytes.EqualFold(word, []byte("$ORIGIN")) {
			return false
		}
		i = p + 1
	}
}

// parseData parses a zone held in memory (see parse), on up to workers
// goroutines when it is large, with its loops paced by p.
func parseData(data []byte, path, dir string, maxRecords, workers int, p pacing) (*Zone, []string, error) {
	if len(data) >= splitMin {
		parts := 1
		if workers > 1 {
			parts = splitParts
		}
		if z, ok := parseSplit(data, path, maxRecords, workers, parts, p); ok {
			return z, nil, nil
		}
	}
	return parse(data, path, dir, maxRecords, p)
}

// parsedPart is the outcome of parsing one part.
type parsedPart struct {
	done chan struct{} // closed when rrs and ok are set
	rrs  []dns.RR
	ok   bool
}

// parseSplit parses data in up to parts parts on workers goroutines (see
// the comment at the top of this file); ok is false when the caller must
// parse it sequentially.
func parseSplit(data []byte, path string, maxRecords, workers, parts int, pace pacing) (*Zone, bool) {
	prelude, ps, ok := splitZone(data, max(parts, 1))
	if !ok {
		return nil, false
	}
	b := newBuilder(path, nameHint(data, maxRecords))
	b.pace = pace
	n := 0
	// add adds rrs to b, in order, and reports whether all is well.
	add := func(rrs []dns.RR) bool {
		if n += len(rrs); maxRecords > 0 && n > maxRecords {
			return false
		}
		b.addAll(rrs, path, nil)
		return len(b.errs) == 0
	}
	if len(ps) == 1 {
		buf := make([]dns.RR, 0, yieldEvery)
		ok := parsePart(ps[0], path, pace, func(rr dns.RR) bool {
			if buf = append(buf, rr); len(buf) < cap(buf) {
				return true
			}
			ok := add(buf)
			buf = buf[:0]
			return ok
		})
		if !ok || !add(buf) {
			return nil, false
		}
		return finishSplit(b)
	}

	out := make([]parsedPart, len(ps))
	for i := range out {
		out[i].done = make(chan struct{})
	}
	var (
		next atomic.Int64
		stop atomic.Bool
		wg   sync.WaitGroup
	)
	// parseNext parses the first part nobody has taken, if any.
	parseNext := func() bool {
		i := int(next.Add(1) - 1)
		if i >= len(ps) {
			return false
		}
		p := &out[i]
		defer close(p.done)
		if stop.Load() {
			return true
		}
		src := ps[i]
		last := i == len(ps)-1
		if i > 0 || !last {
			buf := make([]byte, 0, len(prelude)+len(src)+len(splitSentinel))
			if i > 0 {
				buf = append(buf, prelude...)
			}
			buf = append(buf, src...)
			if !last {
				buf = append(buf, splitSentinel...)
			}
			src = buf
		}
		rrs := make([]dns.RR, 0, len(src)/24)
		p.ok = parsePart(src, path, pace, func(rr dns.RR) bool {
			rrs = append(rrs, rr)
			return len(rrs)%yieldEvery != 0 || !stop.Load()
		})
		if !last {
			// The sentinel must be the last entry, whole.
			p.ok = p.ok && len(rrs) > 0 && isSentinel(rrs[len(rrs)-1])
			if p.ok {
				rrs = rrs[:len(rrs)-1]
			}
		}
		p.rrs = rrs
		return true
	}
	defer wg.Wait()
	defer stop.Store(true)
	for range min(workers, len(ps)) - 1 {
		wg.Go(func() {
			for parseNext() {
			}
		})
	}
	// This goroutine is a worker too: it inserts the parts in order, and
	// while the next one is not ready, it parses another. So no more
	// goroutines than workers are busy at once, and inserting, which
	// only this goroutine can do, never waits for a core.
	for i := range out {
		p := &out[i]
	wait:
		for {
			select {
			case <-p.done:
				break wait
			default:
			}
			if !parseNext() {
				<-p.done
				break
			}
		}
		if !p.ok {
			return nil, false
		}
		for rrs := p.rrs; len(rrs) > 0; rrs = rrs[min(len(rrs), yieldEvery):] {
			if !add(rrs[:min(len(rrs), yieldEvery)]) {
				return nil, false
			}
			pace.yield()
		}
		p.rrs = nil
	}
	return finishSplit(b)
}

// finishSplit finishes the zone of b, or reports that it must be parsed
// again to report its problems.
func finishSplit(b *builder) (*Zone, bool) {
	z, err := b.finish()
	if err != nil {
		return nil, false // reported by the sequential parse
	}
	return z, true
}

// parsePart parses src with $INCLUDE refused, calling add for every RR
// until it returns false; it reports whether src parsed to its end
// without error and add took every RR. p paces its loop.
func parsePart(src []byte, path string, p pacing, add func(dns.RR) bool) bool {
	zp := dns.NewZoneParser(bytes.NewReader(src), originFromFileName(path), path)
	zp.SetDefaultTTL(defaultTTL)
	zp.SetIncludeAllowed(false)
	for i := 0; ; i++ {
		rr, ok := zp.Next()
		if !ok {
			break
		}
		if !add(rr) {
			return false
		}
		if i%yieldEvery == yieldEvery-1 {
			p.yield()
		}
	}
	return zp.Err() == nil
}
