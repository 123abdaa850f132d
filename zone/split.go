package zone

import (
	"bytes"
	"sync"

	"github.com/miekg/dns"
)

// Parallel parsing of large zone files.
//
// A large file is cut into parts at the start of entries whose owner is
// written out (a line that starts, outside parentheses and quotes, with
// neither blank, ';' nor '$'), and each part after the first is parsed by
// its own ZoneParser, fed first with the file's $ORIGIN and $TTL
// directives, while the first part is parsed and inserted as usual; the
// later parts' RRs are then inserted in file order, so the builder sees
// exactly what a sequential parse gives it. This is only done when the
// parts cannot depend on each other: every directive is $ORIGIN or $TTL,
// all of them come before the first cut, and a $TTL is among them (without
// one, a record's TTL defaults to the previous record's). If any part
// fails to parse, or the file has more than maxRecords records, the file is
// parsed again sequentially, which reports the problems as before.

const (
	// splitMin is the size of a zone file from which it is parsed in
	// parallel.
	splitMin = 4 << 20
	// splitMaxParts bounds the number of parts.
	splitMaxParts = 8
)

// splitPart is one part of a file to parse: its bytes, the line it starts
// on, and the directives to replay before it.
type splitPart struct {
	data []byte
	line int
}

// splitZone returns the directives (to replay before each later part) and
// the parts of data, or ok false when data must be parsed sequentially.
func splitZone(data []byte, parts int) (prelude []byte, out []splitPart, ok bool) {
	var (
		depth        int
		quote, esc   bool
		comment      bool
		line         = 1
		haveTTL      bool
		lastDirEnd   int
		directiveCnt int
		cuts         []int // offsets of owner lines usable as cuts
		cutLines     []int
	)
	want := make([]int, 0, parts)
	for i := 1; i < parts; i++ {
		want = append(want, len(data)*i/parts)
	}
	atLineStart := true
	for i := 0; i < len(data); i++ {
		c := data[i]
		if atLineStart {
			atLineStart = false
			if depth == 0 && !quote && !esc {
				switch c {
				case '$':
					end := bytes.IndexByte(data[i:], '\n')
					if end < 0 {
						end = len(data) - i
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
					if bytes.ContainsAny(dl, "\"()\\") {
						return nil, nil, false
					}
					if len(cuts) > 0 {
						return nil, nil, false // a directive after a cut
					}
					prelude = append(append(prelude, dl...), '\n')
					directiveCnt++
					i += end // at the '\n' (or the end)
					line++
					lastDirEnd = i
					atLineStart = true
					continue
				case ' ', '\t', '\r', '\n', ';', '(', ')', '"':
				default:
					if len(cuts) < len(want) && i >= want[len(cuts)] && i > lastDirEnd {
						cuts = append(cuts, i)
						cutLines = append(cutLines, line)
					}
				}
			}
		}
		switch {
		case comment:
			if c == '\n' {
				comment = false
			}
		case esc:
			esc = false
		case quote:
			switch c {
			case '\\':
				esc = true
			case '"':
				quote = false
			}
		default:
			switch c {
			case ';':
				comment = true
			case '(':
				depth++
			case ')':
				if depth > 0 {
					depth--
				}
			case '\\':
				esc = true
			case '"':
				quote = true
			}
		}
		if c == '\n' {
			line++
			atLineStart = true
		}
	}
	if !haveTTL || len(cuts) == 0 {
		return nil, nil, false
	}
	start, startLine := 0, 1
	for k, cut := range cuts {
		out = append(out, splitPart{data: data[start:cut], line: startLine})
		start, startLine = cut, cutLines[k]-directiveCnt
	}
	out = append(out, splitPart{data: data[start:], line: startLine})
	return prelude, out, true
}

// parseData parses a zone held in memory (see parse), on up to workers
// goroutines when it is large.
func parseData(data []byte, path, dir string, maxRecords, workers int) (*Zone, []string, error) {
	parts := min(workers, splitMaxParts)
	if len(data) >= splitMin && parts > 1 {
		if z, ok := parseSplit(data, path, dir, maxRecords, parts); ok {
			return z, nil, nil
		}
	}
	return parse(data, path, dir, maxRecords)
}

// parsedRR is an RR of a later part, with where it was read.
type parsedRR struct {
	rr   dns.RR
	line int
}

// parseSplit parses data in parts (see the comment at the top of this
// file); ok is false when the caller must parse it sequentially.
func parseSplit(data []byte, path, dir string, maxRecords, parts int) (*Zone, bool) {
	prelude, ps, ok := splitZone(data, parts)
	if !ok {
		return nil, false
	}
	rest := make([][]parsedRR, len(ps))
	failed := make([]bool, len(ps))
	var wg sync.WaitGroup
	for i := 1; i < len(ps); i++ {
		wg.Go(func() {
			p := ps[i]
			src := make([]byte, 0, len(prelude)+len(p.data))
			src = append(append(src, prelude...), p.data...)
			out := make([]parsedRR, 0, len(p.data)/24)
			failed[i] = !parsePart(src, path, p.line, func(rr dns.RR, line int) {
				out = append(out, parsedRR{rr, line})
			})
			rest[i] = out
		})
	}
	b := newBuilder(path, nameHint(data, maxRecords))
	n := 0
	failed[0] = !parsePart(ps[0].data, path, 1, func(rr dns.RR, line int) {
		n++
		b.add(rr, path, line)
	})
	wg.Wait()
	for i := range ps {
		if failed[i] {
			return nil, false
		}
		n += len(rest[i])
	}
	if maxRecords > 0 && n > maxRecords {
		return nil, false
	}
	for i := 1; i < len(ps); i++ {
		for _, p := range rest[i] {
			b.add(p.rr, path, p.line)
		}
		rest[i] = nil
	}
	z, err := b.finish()
	if err != nil {
		return nil, false // reported with the sequential parse's errors
	}
	return z, true
}

// parsePart parses src, whose first line is line firstLine of path, with
// $INCLUDE refused, calling add for every RR; it reports whether src
// parsed without error.
func parsePart(src []byte, path string, firstLine int, add func(dns.RR, int)) bool {
	t := &tracker{names: map[string]string{}}
	lr := newDataLineReader(t, src, path)
	lr.line, lr.entry = firstLine, firstLine
	t.cur = lr
	zp := dns.NewZoneParser(lr, originFromFileName(path), path)
	zp.SetDefaultTTL(defaultTTL)
	zp.SetIncludeAllowed(false)
	for i := 0; ; i++ {
		rr, ok := zp.Next()
		if !ok {
			break
		}
		add(rr, t.cur.entry)
		if i%yieldEvery == yieldEvery-1 {
			yield()
		}
	}
	return zp.Err() == nil && t.err == nil
}
