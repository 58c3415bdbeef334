package main

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/macdist/macdist/safetensors"
)

// The file check_safetensors_torch.py loads must at least read back in Go,
// so that a failure there points at PyTorch's side of the format.
func TestSampleReadsBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.safetensors")
	if err := safetensors.WriteFile(path, sample(), map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"weight", "bias", "extra.f64", "extra.i64", "extra.f16", "extra.u8", "extra.scalar"}
	if got := f.Names(); !slices.Equal(got, want) {
		t.Errorf("names %v, want %v", got, want)
	}
	w, err := f.Float32s("weight", []int{3, 4})
	if err != nil {
		t.Fatal(err)
	}
	if w[0] != -1 || w[11] != 1.75 {
		t.Errorf("weight %v, want i·0.25 − 1", w)
	}
	h, err := f.Float32s("extra.f16", []int{4})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(h, []float32{1, -2, 65504, 0x1p-24}) {
		t.Errorf("extra.f16 %v", h)
	}
}
