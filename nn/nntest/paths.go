package nntest

import (
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
