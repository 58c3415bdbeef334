package nntest

import (
	"strings"
	"testing"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
)

// CPUPath is one of the ways the cpu Device convolves.
type CPUPath struct {
	Name string
	Dev  kernels.Device
}

// CPUPaths returns both ways the cpu Device convolves, so that a fixture
// test covers each: "default" (oneDNN where it is installed, im2col
// otherwise) and "im2col".
func CPUPaths(t testing.TB) []CPUPath {
	t.Helper()
	im2col, err := cpu.NewWithDNN("none")
	if err != nil {
		t.Fatal(err)
	}
	return []CPUPath{{"default", cpu.New()}, {"im2col", im2col}}
}

// BF16Device returns a cpu Device in bf16, through oneDNN's emulation
// where the CPU has no native bf16 (it sets MACDIST_BF16=emulate for t),
// or skips t where oneDNN or AVX-512 is missing.
func BF16Device(t *testing.T) kernels.Device {
	t.Helper()
	t.Setenv("MACDIST_BF16", "emulate")
	d, err := cpu.NewWithDNN("onednn")
	if err != nil {
		t.Skipf("bf16 needs oneDNN: %v", err)
	}
	if _, isa, _ := cpu.OneDNN(); !strings.HasPrefix(isa, "avx512_core") {
		t.Skipf("bf16 needs AVX-512 here, native or emulated; oneDNN's ISA is %s", isa)
	}
	if err := d.SetPrecision(kernels.BF16); err != nil {
		t.Fatal(err)
	}
	return d
}
