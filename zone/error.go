package zone

import "strconv"

// Error is a problem in a zone file. It prints as "file:line: reason", or
// "file: reason" when Line is 0.
type Error struct {
	File   string
	Line   int // 0 when the problem has no single line
	Reason string
	Err    error // underlying error, if any
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return e.File + ":" + strconv.Itoa(e.Line) + ": " + e.Reason
	}
	return e.File + ": " + e.Reason
}

// Unwrap returns the underlying error, if any.
func (e *Error) Unwrap() error { return e.Err }
