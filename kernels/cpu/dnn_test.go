package cpu

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/macdist/macdist/kernels"
)

func TestChooseDNN(t *testing.T) {
	missing := func() error { return errors.New("libdnnl.so.2 not found") }
	present := func() error { return nil }
	for _, c := range []struct {
		env     string
		load    func() error
		want    dnnImpl
		warning string // a substring; "" for none
	}{
		{"", present, dnnOneDNN, ""},
		{"", missing, dnnNone, "libdnnl.so.2 not found; convolutions use im2col (slower). Install Debian's libdnnl2 to fix."},
		{"none", present, dnnNone, ""},
		{"none", missing, dnnNone, ""},
		{"onednn", present, dnnOneDNN, ""},
		{"mkldnn", present, dnnOneDNN, `ignoring MACDIST_DNN="mkldnn"`},
		{"mkldnn", missing, dnnNone, `ignoring MACDIST_DNN="mkldnn"`},
	} {
		impl, warning := chooseDNN(c.env, c.load)
		if impl != c.want || (c.warning == "") != (warning == "") || !strings.Contains(warning, c.warning) {
			t.Errorf("chooseDNN(%q) = %v, %q; want %v and a warning containing %q", c.env, impl, warning, c.want, c.warning)
		}
		if strings.Contains(warning, "\n") {
			t.Errorf("chooseDNN(%q): warning is more than one line: %q", c.env, warning)
		}
	}
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(r.(string), "MACDIST_DNN=onednn, but libdnnl.so.2 not found") {
			t.Errorf("chooseDNN(\"onednn\") with oneDNN missing: panic %v, want one naming the library", r)
		}
	}()
	chooseDNN("onednn", missing)
}

// TestOneDNNMissing opens a library that is not there: an error that names
// it, and a Device on the im2col path that refuses every convolution.
func TestOneDNNMissing(t *testing.T) {
	saved := oneDNNLib
	defer func() { oneDNNLib = saved }()
	oneDNNLib = "libdnnl-macdist-missing.so.2"
	err := dlopenOneDNN()
	if err == nil || !strings.Contains(err.Error(), "libdnnl-macdist-missing.so.2") {
		t.Errorf("dlopen of a missing library: %v", err)
	}
}

func TestISAName(t *testing.T) {
	for isa, want := range map[int]string{0x7: "avx2", 0x27: "avx512_core", 0x67: "avx512_core_vnni", 0x3e7: "avx512_core_amx", 0x12345: "isa 0x12345"} {
		if got := isaName(isa); got != want {
			t.Errorf("isaName(%#x) = %q, want %q", isa, got, want)
		}
	}
}

// TestOneDNNThreads checks that oneDNN's OpenMP threads follow GOMAXPROCS,
// as the Device's goroutines do, rather than OpenMP's default of every CPU.
// OpenMP's setting is per OS thread, so the test stays on one.
func TestOneDNNThreads(t *testing.T) {
	d, err := NewWithDNN("onednn")
	if err != nil {
		t.Skip(err)
	}
	if ompThreads() == 0 {
		t.Skip("oneDNN does not use libgomp here")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	g := kernels.ConvGeom{C: 2, H: 6, W: 6, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1, DilH: 1, DilW: 1}
	x, w, y := d.Alloc(2*2*36), d.Alloc(3*2*9), d.Alloc(2*3*36)
	for _, n := range []int{1, 3, 2, 1, 3} { // the last two reuse primitives made before
		runtime.GOMAXPROCS(n)
		if !d.Convolves(g, 3, 1, 2, false) {
			t.Fatal("Convolves = false")
		}
		d.ConvForward(y, x, w, nil, g, 3, 1, 2)
		if got := ompThreads(); got != n {
			t.Errorf("GOMAXPROCS %d: oneDNN runs on %d OpenMP threads", n, got)
		}
	}
}
