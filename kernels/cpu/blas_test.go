package cpu

import (
	"errors"
	"strings"
	"testing"
)

func TestChooseBLAS(t *testing.T) {
	missing := func() error { return errors.New("libopenblas.so.0 not found") }
	present := func() error { return nil }
	for _, c := range []struct {
		env     string
		load    func() error
		want    blasImpl
		warning string // a substring; "" for none
	}{
		{"", present, blasOpenBLAS, ""},
		{"", missing, blasGonum, "libopenblas.so.0 not found; using gonum's pure-Go BLAS (slow). Install Debian's libopenblas0 to fix."},
		{"gonum", present, blasGonum, ""},
		{"gonum", missing, blasGonum, ""},
		{"openblas", present, blasOpenBLAS, ""},
		{"mkl", present, blasOpenBLAS, `ignoring MACDIST_BLAS="mkl"`},
	} {
		impl, warning := chooseBLAS(c.env, c.load)
		if impl != c.want || (c.warning == "") != (warning == "") || !strings.Contains(warning, c.warning) {
			t.Errorf("chooseBLAS(%q) = %v, %q; want %v and a warning containing %q", c.env, impl, warning, c.want, c.warning)
		}
		if strings.Contains(warning, "\n") {
			t.Errorf("chooseBLAS(%q): warning is more than one line: %q", c.env, warning)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("chooseBLAS(\"openblas\") with OpenBLAS missing did not panic")
		}
	}()
	chooseBLAS("openblas", missing)
}

// TestOpenBLASSingleThreaded checks that OpenBLAS runs on the calling
// thread: the Device splits products over its own goroutines, and a second
// pool of threads would compete with them for the cores.
func TestOpenBLASSingleThreaded(t *testing.T) {
	if err := loadOpenBLAS(); err != nil {
		t.Skip(err)
	}
	if n := openBLASThreads(); n != 1 {
		t.Errorf("OpenBLAS runs %d threads, want 1", n)
	}
}
