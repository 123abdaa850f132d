package zone

import (
	"bufio"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// The miekg/dns ZoneParser does not report the line of the RR it returns, so
// every file it reads goes through a lineReader: a byte reader that follows
// the zone file syntax just far enough (comments, quotes, escapes,
// parentheses) to know the line on which the current entry started. The
// ZoneParser reads byte by byte through io.ByteReader and never reads past
// the newline that ends an entry before returning it, so when Next returns
// an RR, the reader that read the last byte and its entry line name the
// RR's file and line.
//
// The lineReader also guards $GENERATE: ZoneParser expands a $GENERATE line
// into text that it parses again, with $INCLUDE enabled but without the
// include file system, so a generated line that starts with '$' (from an
// owner written as \$INCLUDE or $$INCLUDE) would open any file on the
// system. A $GENERATE whose owner starts with a backslash, a quote or "$$"
// is rejected before the parser sees it.

// tracker follows which file the parser is reading.
type tracker struct {
	cur   *lineReader
	names map[string]string // parser file name -> file name for errors
	err   *Error            // first error raised by a reader or the include FS
	// includes are the files $INCLUDE opened, by real path, in order.
	includes []string
}

func (t *tracker) fail(e *Error) *Error {
	if t.err == nil {
		t.err = e
	}
	return e
}

// lineReader is an io.ByteReader (and an fs.File for $INCLUDE) that tracks
// entry lines. It is used by one parser goroutine only.
type lineReader struct {
	t    *tracker
	br   *bufio.Reader // nil when reading data
	data []byte        // the whole input, when it is in memory
	pos  int           // next byte of data
	f    *os.File      // nil for the top-level reader
	file string        // file name for errors
	err  error

	line  int // line of the byte last read
	entry int // line on which the current entry started
	nl    bool

	lineHasContent bool
	comment        bool
	quote          bool
	escape         bool
	depth          int

	// $GENERATE guard.
	tok       int // index of the current token in the entry
	inTok     bool
	first     [len("$GENERATE")]byte
	firstN    int
	generate  bool
	lhsDollar bool
}

func newLineReader(t *tracker, r io.Reader, file string, f *os.File) *lineReader {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	return &lineReader{t: t, br: br, f: f, file: file, line: 1, entry: 1}
}

// newDataLineReader returns a lineReader over data, already in memory (a
// whole zone file, or a part of one): it reads the bytes in place.
func newDataLineReader(t *tracker, data []byte, file string) *lineReader {
	return &lineReader{t: t, data: data, file: file, line: 1, entry: 1}
}

// special marks the bytes the zone file syntax gives a meaning to; any
// other byte inside a token is plain content (lineReader.ReadByte).
var special = [256]bool{'\n': true, ' ': true, '\t': true, '\r': true, ';': true, '(': true, ')': true, '\\': true, '"': true}

// ReadByte implements io.ByteReader.
func (lr *lineReader) ReadByte() (byte, error) {
	if lr.err != nil {
		return 0, lr.err
	}
	var c byte
	if lr.br == nil {
		if lr.pos >= len(lr.data) {
			return 0, io.EOF
		}
		c = lr.data[lr.pos]
		lr.pos++
	} else {
		var err error
		if c, err = lr.br.ReadByte(); err != nil {
			return 0, err
		}
	}
	if lr.t.cur != lr {
		lr.t.cur = lr
	}
	if lr.nl {
		lr.line++
		lr.nl = false
	}
	// Most bytes continue a token of an entry's RR: nothing to track
	// (the $GENERATE guard looks at the first token and the first byte
	// of the owner only).
	if lr.inTok && !special[c] && !lr.comment && !lr.escape && !lr.quote && !lr.lhsDollar && (lr.tok != 0 || lr.firstN == len(lr.first)) {
		return c, nil
	}
	if err := lr.scan(c); err != nil {
		lr.err = err
		return 0, err
	}
	return c, nil
}

// Read implements io.Reader (ZoneParser uses ReadByte only).
func (lr *lineReader) Read(p []byte) (int, error) {
	for i := range p {
		c, err := lr.ReadByte()
		if err != nil {
			return i, err
		}
		p[i] = c
	}
	return len(p), nil
}

// Stat implements fs.File.
func (lr *lineReader) Stat() (fs.FileInfo, error) {
	if lr.f == nil {
		return nil, fs.ErrInvalid
	}
	return lr.f.Stat()
}

// Close implements fs.File; ZoneParser closes included files when done.
func (lr *lineReader) Close() error {
	if lr.f == nil {
		return nil
	}
	return lr.f.Close()
}

func (lr *lineReader) scan(c byte) error {
	switch {
	case lr.comment:
		if c == '\n' {
			lr.comment = false
			lr.newline()
		}
		return nil
	case lr.escape:
		lr.escape = false
		if c == '\n' {
			lr.newline()
			return nil
		}
		return lr.content(c)
	case lr.quote:
		switch c {
		case '\\':
			lr.escape = true
		case '"':
			lr.quote = false
		case '\n':
			lr.newline()
		}
		return nil
	}
	switch c {
	case '\n':
		lr.endToken()
		lr.newline()
	case ' ', '\t', '\r':
		lr.endToken()
	case ';':
		lr.endToken()
		lr.comment = true
	case '(':
		lr.endToken()
		lr.mark()
		lr.depth++
	case ')':
		lr.endToken()
		if lr.depth > 0 {
			lr.depth--
		}
	case '\\':
		err := lr.content(c)
		lr.escape = true
		return err
	case '"':
		err := lr.content(c)
		lr.quote = true
		return err
	default:
		return lr.content(c)
	}
	return nil
}

func (lr *lineReader) newline() {
	lr.endToken()
	lr.nl = true
	lr.lineHasContent = false
}

// mark notes the first meaningful byte of a line: outside parentheses it
// starts a new entry.
func (lr *lineReader) mark() {
	if lr.lineHasContent {
		return
	}
	lr.lineHasContent = true
	if lr.depth == 0 {
		lr.entry = lr.line
		lr.tok = -1
		lr.inTok = false
		lr.firstN = 0
		lr.generate = false
	}
}

func (lr *lineReader) content(c byte) error {
	lr.mark()
	if !lr.inTok {
		lr.inTok = true
		lr.tok++
		if lr.generate && lr.tok == 2 {
			// First byte of the $GENERATE owner.
			switch c {
			case '\\', '"':
				return lr.generateError()
			case '$':
				lr.lhsDollar = true
				return nil
			}
		}
	} else if lr.lhsDollar {
		lr.lhsDollar = false
		if c == '$' {
			return lr.generateError()
		}
	}
	if lr.tok == 0 && lr.firstN < len(lr.first) {
		lr.first[lr.firstN] = c
		lr.firstN++
	}
	return nil
}

func (lr *lineReader) endToken() {
	if !lr.inTok {
		return
	}
	lr.inTok = false
	lr.lhsDollar = false
	if lr.tok == 0 {
		lr.generate = lr.firstN == len(lr.first) && strings.EqualFold(string(lr.first[:]), "$GENERATE")
	}
}

func (lr *lineReader) generateError() error {
	return lr.t.fail(&Error{File: lr.file, Line: lr.line,
		Reason: `$GENERATE owner must not start with \, " or $$ (it would be expanded into a directive)`})
}

// includeFS opens $INCLUDE files for a ZoneParser, only inside the zones
// directory. ZoneParser hands it slash-separated paths relative to "/"
// (the top-level file is given to the parser by absolute path), so the
// directory check is on absolute, cleaned paths; symbolic links are
// resolved by os.Root, which refuses any that lead outside the directory.
type includeFS struct {
	t       *tracker
	dir     string // zones directory as given, for error messages
	absDir  string
	realDir string   // absDir with symbolic links resolved
	root    *os.Root // opened on the first $INCLUDE
}

func (f *includeFS) Open(name string) (fs.File, error) {
	parent := f.t.cur
	fail := func(reason string, err error) error {
		e := &Error{Reason: "$INCLUDE " + filepath.FromSlash("/"+name) + ": " + reason, Err: err}
		if parent != nil {
			e.File, e.Line = parent.file, parent.entry
		}
		return f.t.fail(e)
	}
	if f.absDir == "" {
		return nil, fail("no zones directory", nil)
	}
	p := filepath.FromSlash("/" + name)
	rel, err := filepath.Rel(f.absDir, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return nil, fail("outside the zones directory "+f.dir, err)
	}
	// Resolve symbolic links first so that links that stay inside the
	// directory work, absolute ones included; os.Root then refuses any
	// link that leads outside, also if one changes meanwhile.
	if f.realDir == "" {
		if f.realDir, err = filepath.EvalSymlinks(f.absDir); err != nil {
			return nil, fail(errReason(err), err)
		}
	}
	if real, err := filepath.EvalSymlinks(p); err == nil {
		if rel, err = filepath.Rel(f.realDir, real); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return nil, fail("outside the zones directory "+f.dir+" (through a symbolic link)", err)
		}
	}
	if f.root == nil {
		root, err := os.OpenRoot(f.realDir)
		if err != nil {
			return nil, fail(errReason(err), err)
		}
		f.root = root
	}
	file, err := f.root.Open(rel)
	if err != nil {
		reason := err.Error()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			reason = pe.Err.Error()
		}
		if strings.Contains(reason, "escapes") {
			reason = "outside the zones directory " + f.dir + " (through a symbolic link)"
		}
		return nil, fail(reason, err)
	}
	st, err := file.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fs.ErrInvalid
	}
	if err != nil {
		file.Close()
		return nil, fail("not a regular file", err)
	}
	display := filepath.Join(f.dir, strings.TrimPrefix(p, f.absDir))
	f.t.includes = append(f.t.includes, filepath.Join(f.realDir, rel))
	f.t.names[strings.TrimPrefix(name, "/")] = display
	return newLineReader(f.t, file, display, file), nil
}

func (f *includeFS) close() {
	if f.root != nil {
		f.root.Close()
	}
}
