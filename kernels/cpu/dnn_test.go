package cpu

import (
	"errors"
	"strings"
	"testing"
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
