package config

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem found in a limits file: where it is and why it is rejected.
type Error struct {
	File   string // the name given to Parse, or the path read by Load
	Line   int    // 1-based line in File; 0 when the problem is not tied to a line
	Path   string // field path such as "descriptors[0].rate_limit.unit"; empty for document-level problems
	Reason string
}

// Error formats e as "file:line: path: reason".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// Errors are all the problems of one load, sorted by file and line. A load with any error is rejected as
// a whole: no partial configuration is ever returned.
type Errors []*Error

// Error lists every problem, one per line.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

func (es Errors) sort() {
	slices.SortStableFunc(es, func(a, b *Error) int {
		if c := cmp.Compare(a.File, b.File); c != 0 {
			return c
		}
		return cmp.Compare(a.Line, b.Line)
	})
}
