package zone

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// defaultTTL is the TTL of records before the first $TTL or explicit TTL
// (what miekg/dns NewRR uses; BIND would take the SOA MINIMUM).
const defaultTTL = 3600

// ParseFile parses and validates one zone file. dir is the zones directory:
// $INCLUDE may only name files inside it (after resolving "..", absolute
// paths and symbolic links); an empty dir means the file's own directory.
// The origin is the owner of the SOA record; a relative SOA owner (such as
// "@" without $ORIGIN) is relative to the origin taken from the file name
// (<origin>.zone), as kzonecheck does.
// The zone it returns has its precomputed answers (Zone.Precompute).
// Errors are *Error (joined with errors.Join when there are several).
func ParseFile(path, dir string) (*Zone, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Reason: errReason(err), Err: err}
	}
	z, _, err := parseData(data, path, dir, 0, runtime.GOMAXPROCS(0), yieldToListeners)
	if err != nil {
		return nil, err
	}
	return z.Precompute(), nil
}

func errReason(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Op + ": " + pe.Err.Error()
	}
	return err.Error()
}

// parse reads a zone from data; path names it in errors and gives the origin
// when the file does not. A zone of more than maxRecords records (0: no
// limit) is an error. It also returns the files $INCLUDE opened (by real
// path), also when parsing fails, so a reload can watch them. p paces
// its loops.
func parse(data []byte, path, dir string, maxRecords int, p pacing) (z *Zone, includes []string, err error) {
	if dir == "" {
		dir = filepath.Dir(path)
	}
	absPath, err := filepath.Abs(path)
	if err != nil {
		return nil, nil, &Error{File: path, Reason: err.Error(), Err: err}
	}
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return nil, nil, &Error{File: path, Reason: err.Error(), Err: err}
	}
	parserName := filepath.ToSlash(absPath)

	t := &tracker{names: map[string]string{parserName: path}}
	defer func() { includes = t.includes }()
	top := newDataLineReader(t, data, path)
	t.cur = top
	ifs := &includeFS{t: t, dir: dir, absDir: absDir}
	defer ifs.close()

	zp := dns.NewZoneParser(top, originFromFileName(path), parserName)
	zp.SetDefaultTTL(defaultTTL)
	zp.SetIncludeAllowed(true)
	zp.SetIncludeFS(ifs)

	b := newBuilder(path, nameHint(data, maxRecords))
	b.pace = p
	n := 0
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		cur := t.cur
		if n++; maxRecords > 0 && n > maxRecords {
			return nil, nil, &Error{File: cur.file, Line: cur.entry, Reason: "more than " + strconv.Itoa(maxRecords) + " records"}
		}
		b.add(rr, cur.file, cur.entry)
		if n%yieldEvery == 0 {
			p.yield()
		}
	}
	if err := zp.Err(); err != nil {
		return nil, nil, convertParseError(t, err)
	}
	if t.err != nil {
		return nil, nil, t.err
	}
	z, err = b.finish()
	return z, nil, err
}

// originFromFileName returns the origin named by a file called
// <origin>.zone, or "" when the name is not a domain name.
func originFromFileName(path string) string {
	base := filepath.Base(path)
	name, ok := strings.CutSuffix(base, ".zone")
	if !ok || name == "" {
		return ""
	}
	if _, ok := dns.IsDomainName(name); !ok {
		return ""
	}
	return dns.Fqdn(name)
}

// convertParseError turns a ZoneParser error into an *Error with the file
// and line it names.
func convertParseError(t *tracker, err error) error {
	if t.err != nil {
		return t.err
	}
	var ze *Error
	if errors.As(err, &ze) {
		return ze
	}
	e := &Error{Reason: err.Error(), Err: err}
	if t.cur != nil {
		e.File, e.Line = t.cur.file, t.cur.line
	}
	var pe *dns.ParseError
	if !errors.As(err, &pe) {
		return e
	}
	// ParseError prints as `file: dns: reason: "token" at line: L:C`; its
	// fields are unexported.
	msg := pe.Error()
	i := strings.Index(msg, "dns: ")
	if i < 0 {
		return e
	}
	if i >= 2 {
		if name, ok := t.names[msg[:i-2]]; ok {
			e.File = name
		}
	}
	reason := msg[i+len("dns: "):]
	if j := strings.LastIndex(reason, " at line: "); j >= 0 {
		pos := reason[j+len(" at line: "):]
		if k := strings.IndexByte(pos, ':'); k >= 0 {
			pos = pos[:k]
		}
		if n, err := strconv.Atoi(pos); err == nil && n > 0 {
			e.Line = n
		}
		reason = reason[:j]
	}
	e.Reason = reason
	return e
}

// LoadDir parses every *.zone file in dir (not its subdirectories; hidden
// files are skipped; symbolic links to regular files are followed). It
// returns the zones that loaded, sorted by origin, and, joined, an *Error
// for every file that did not: one bad file does not stop the others. A
// second file with an origin already loaded is an error (files are read
// in name order) and is left out. Files named for $INCLUDE should not end
// in .zone, or they are loaded as zones too.
func LoadDir(dir string) ([]*Zone, error) {
	paths, errs, err := zoneFiles(dir)
	if err != nil {
		return nil, err
	}
	var (
		zs   []*Zone
		seen = map[string]*Zone{}
	)
	for _, path := range paths {
		z, err := ParseFile(path, dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if prev := seen[z.Origin]; prev != nil {
			errs = append(errs, &Error{File: path, Reason: "zone " + z.Origin + " already loaded from " + prev.File})
			continue
		}
		seen[z.Origin] = z
		zs = append(zs, z)
	}
	sort.Slice(zs, func(i, j int) bool { return zs[i].Origin < zs[j].Origin })
	return zs, errors.Join(errs...)
}
