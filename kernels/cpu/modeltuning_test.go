package cpu_test

import (
	"slices"
	"testing"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/nn/models"
)

// TestModelTunings wants the table's names to be models', TuneForModel to
// follow it where it applies, and MACDIST_LAYOUT and MACDIST_CONV_ALGO to
// win, each over its own half.
func TestModelTunings(t *testing.T) {
	for name := range cpu.ModelTunings {
		if !slices.Contains(models.Names(), name) {
			t.Errorf("the tuning table names %q, not a model", name)
		}
	}
	t.Setenv("MACDIST_LAYOUT", "")
	t.Setenv("MACDIST_CONV_ALGO", "")
	d, err := cpu.NewWithDNN("onednn")
	if err != nil {
		t.Skip(err)
	}
	if _, isa, _ := cpu.OneDNN(); d.Layout() != kernels.Blocked16 {
		t.Skipf("oneDNN on %s: the table applies to AVX-512 CPUs", isa)
	}
	d.TuneForModel("vit-tiny")
	if d.Layout() != kernels.Blocked16 || d.ConvAlgorithm() != cpu.ConvDirect {
		t.Errorf("vit-tiny, not in the table: %v, %v; want the defaults", d.Layout(), d.ConvAlgorithm())
	}
	for name, want := range cpu.ModelTunings {
		d.TuneForModel(name)
		if l, a := cpu.TuningOf(want); d.Layout() != l || d.ConvAlgorithm() != a {
			t.Errorf("%s: %v, %v; want %v, %v", name, d.Layout(), d.ConvAlgorithm(), l, a)
		}
	}
	t.Setenv("MACDIST_LAYOUT", "nchw")
	t.Setenv("MACDIST_CONV_ALGO", "direct")
	for name, want := range cpu.ModelTunings {
		d, _ = cpu.NewWithDNN("onednn")
		d.TuneForModel(name)
		if d.Layout() != kernels.NCHW || d.ConvAlgorithm() != cpu.ConvDirect {
			t.Errorf("MACDIST_LAYOUT=nchw MACDIST_CONV_ALGO=direct, %s: %v, %v", name, d.Layout(), d.ConvAlgorithm())
		}
		t.Setenv("MACDIST_CONV_ALGO", "")
		d, _ = cpu.NewWithDNN("onednn")
		d.TuneForModel(name)
		if _, a := cpu.TuningOf(want); d.Layout() != kernels.NCHW || d.ConvAlgorithm() != a {
			t.Errorf("MACDIST_LAYOUT=nchw, %s: %v, %v; want nchw, %v", name, d.Layout(), d.ConvAlgorithm(), a)
		}
		t.Setenv("MACDIST_CONV_ALGO", "direct")
	}
}
