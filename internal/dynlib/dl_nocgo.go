//go:build !cgo

package dynlib

// Available reports whether this build can open libraries (it has cgo).
const Available = false

// Open fails: without cgo there is no dlopen.
func Open(string, Mode) (Lib, error) { return nil, ErrNoCgo }

// Where returns "".
func Where(Lib, string) string { return "" }
