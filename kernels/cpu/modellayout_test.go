package cpu_test

import (
	"slices"
	"testing"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/nn/models"
)

// TestModelLayouts wants the table's names to be models', and
// UseModelLayout to follow it where it applies and MACDIST_LAYOUT to win.
func TestModelLayouts(t *testing.T) {
	for name := range cpu.ModelLayouts {
		if !slices.Contains(models.Names(), name) {
			t.Errorf("the layout table names %q, not a model", name)
		}
	}
	t.Setenv("MACDIST_LAYOUT", "")
	d, err := cpu.NewWithDNN("onednn")
	if err != nil {
		t.Skip(err)
	}
	if _, isa, _ := cpu.OneDNN(); d.Layout() != kernels.Blocked16 {
		t.Skipf("oneDNN on %s: the table applies to AVX-512 CPUs", isa)
	}
	d.UseModelLayout("vit-tiny")
	if d.Layout() != kernels.Blocked16 {
		t.Errorf("vit-tiny, not in the table: %v, want the default", d.Layout())
	}
	for name, want := range cpu.ModelLayouts {
		d.UseModelLayout(name)
		if d.Layout() != want {
			t.Errorf("%s: %v, want %v", name, d.Layout(), want)
		}
	}
	t.Setenv("MACDIST_LAYOUT", "blocked16")
	d, _ = cpu.NewWithDNN("onednn")
	d.UseModelLayout("resnet20")
	if d.Layout() != kernels.Blocked16 {
		t.Errorf("MACDIST_LAYOUT=blocked16, resnet20: %v", d.Layout())
	}
}
