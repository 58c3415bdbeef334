package dynlib

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// Attempt is one place a library was tried, and why it was not taken
// (Err is empty for the one that was).
type Attempt struct {
	Path  string // a file, or a bare soname left to the dynamic loader
	Where string // which part of the search produced it
	Err   string
}

// Library describes how a shared library was found.
type Library struct {
	Name  string // the soname loaded, such as libcublas.so.12
	Path  string // the file it was loaded from
	Where string // the Candidate's Where
	Tried []Attempt
	Err   error // nil when loaded
}

// OpenFirst opens the candidates in order and returns the first that loads
// and that bind accepts (bind looks up the symbols its package needs). The
// Library's Path is the file that defines probeSym, which tells which copy
// the loader took for a bare soname. pre, when not nil, runs before each
// candidate is opened (to load a library it depends on) and may pass it
// over with an error. When none loads, Err is a plain "not found" for the
// caller to replace with one that says what to install; Tried lists every
// attempt (TriedText renders it).
func OpenFirst(cands []Candidate, bind func(Lib) error, probeSym string, pre func(Candidate) error) (Library, Lib) {
	var l Library
	for _, c := range cands {
		if pre != nil {
			if err := pre(c); err != nil {
				l.Tried = append(l.Tried, Attempt{Path: c.Path, Where: c.Where, Err: err.Error()})
				continue
			}
		}
		h, err := Open(c.Path, 0)
		if err == nil {
			if err = bind(h); err != nil {
				err = fmt.Errorf("%s: %w", c.Path, err)
			}
		}
		if err != nil {
			l.Tried = append(l.Tried, Attempt{Path: c.Path, Where: c.Where, Err: err.Error()})
			continue
		}
		l.Tried = append(l.Tried, Attempt{Path: c.Path, Where: c.Where})
		l.Name = filepath.Base(c.Path)
		if l.Path = Where(h, probeSym); l.Path == "" {
			l.Path = c.Path
		}
		l.Where = c.Where
		return l, h
	}
	l.Err = errors.New("not found")
	return l, nil
}

// TriedText lists attempts for an error message: "path (where): why; …".
func TriedText(tried []Attempt) string {
	if len(tried) == 0 {
		return "nothing to try"
	}
	parts := make([]string, len(tried))
	for i, a := range tried {
		parts[i] = a.Path + " (" + a.Where + ")"
		if a.Err != "" {
			parts[i] += ": " + a.Err
		}
	}
	return strings.Join(parts, "; ")
}
