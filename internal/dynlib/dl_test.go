package dynlib_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/macdist/macdist/internal/dynlib"
	"github.com/macdist/macdist/internal/dynlib/dynlibtest"
)

// libc is in every cgo binary, so the real loader can be tried on it.
const libc = "libc.so.6"

func TestOpen(t *testing.T) {
	if !dynlib.Available {
		if _, err := dynlib.Open(libc, 0); !errors.Is(err, dynlib.ErrNoCgo) {
			t.Fatalf("dynlib.Open without cgo: %v, want dynlib.ErrNoCgo", err)
		}
		return
	}
	l, err := dynlib.Open(libc, dynlib.NoLoad)
	if err != nil {
		t.Fatalf("libc is not loaded: %v", err)
	}
	if w := dynlib.Where(l, "malloc"); !strings.Contains(filepath.Base(w), "libc") {
		t.Errorf("dynlib.Where(malloc) = %q, want libc's file", w)
	}
	if w := dynlib.Where(l, "no_such_symbol_anywhere"); w != "" {
		t.Errorf("dynlib.Where(a missing symbol) = %q", w)
	}
	if _, err := dynlib.Open("libmacdist-none.so.7", dynlib.NoLoad); err == nil {
		t.Error("dynlib.NoLoad opened a library that was never loaded")
	}
	fake := dynlibtest.Touch(t, t.TempDir(), "libfake.so.1")
	_, err = dynlib.Open(fake, dynlib.Global)
	if err == nil || !strings.Contains(err.Error(), "dlopen "+fake) {
		t.Errorf("dynlib.Open(a text file) = %v, want dlopen's complaint naming it", err)
	}
}

func TestOpenFirst(t *testing.T) {
	fake := dynlibtest.Touch(t, t.TempDir(), "libc.so.6")
	cands := []dynlib.Candidate{
		{Path: fake, Where: "env"},
		{Path: "libmacdist-none.so.7", Where: "loader"},
		{Path: libc, Where: "loader"},
	}
	binds := 0
	bind := func(dynlib.Lib) error { binds++; return nil }
	l, h := dynlib.OpenFirst(cands, bind, "malloc", nil)
	if !dynlib.Available {
		if l.Err == nil || h != nil || len(l.Tried) != 3 {
			t.Fatalf("dynlib.OpenFirst without cgo: %+v", l)
		}
		return
	}
	if l.Err != nil || h == nil {
		t.Fatalf("dynlib.OpenFirst: %v; tried %s", l.Err, dynlib.TriedText(l.Tried))
	}
	if l.Name != libc || l.Where != "loader" || !strings.Contains(l.Path, "libc") || binds != 1 {
		t.Errorf("loaded %+v after %d binds, want libc from the loader, bound once", l, binds)
	}
	if len(l.Tried) != 3 || l.Tried[0].Err == "" || l.Tried[1].Err == "" || l.Tried[2].Err != "" {
		t.Errorf("Tried = %+v: want two failures, then the one taken", l.Tried)
	}
	if txt := dynlib.TriedText(l.Tried[:2]); !strings.HasPrefix(txt, fake+" (env): dlopen "+fake) ||
		!strings.Contains(txt, "; libmacdist-none.so.7 (loader): ") {
		t.Errorf("dynlib.TriedText = %q", txt)
	}

	// A library without the symbols wanted is passed over, and so is one
	// that pre refuses.
	missing := errors.New("missing symbol x")
	l, _ = dynlib.OpenFirst(cands[2:], func(dynlib.Lib) error { return missing }, "malloc", nil)
	if l.Err == nil || len(l.Tried) != 1 || !strings.Contains(l.Tried[0].Err, "missing symbol x") {
		t.Errorf("bind failure: %+v", l)
	}
	l, _ = dynlib.OpenFirst(cands[2:], bind, "malloc", func(dynlib.Candidate) error { return errors.New("no Lt") })
	if l.Err == nil || l.Tried[0].Err != "no Lt" {
		t.Errorf("pre failure: %+v", l)
	}
	if dynlib.TriedText(nil) != "nothing to try" {
		t.Errorf("dynlib.TriedText(nil) = %q", dynlib.TriedText(nil))
	}
}
