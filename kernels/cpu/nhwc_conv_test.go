package cpu

import (
	"strings"
	"testing"

	"github.com/macdist/macdist/kernels"
)

// TestNHWCConvKernels wants oneDNN's optimised kernels for convolutions
// with an nhwc side, whatever the other: asked for "any" against a fixed
// nhwc, oneDNN 2.6 answers with its reference kernels, a hundred times
// slower (a model's first convolution, fed NCHW, took seconds).
func TestNHWCConvKernels(t *testing.T) {
	if err := loadOneDNN(); err != nil {
		t.Skip(err)
	}
	if !hasAVX512Core(oneDNNISA()) {
		t.Skip("not an AVX-512 CPU: oneDNN's choices differ")
	}
	arena := newDNNArena()
	for _, c := range []int{3, 16} {
		for _, p := range [][2]kernels.Layout{{kernels.NCHW, kernels.NHWC}, {kernels.NHWC, kernels.NHWC}, {kernels.NHWC, kernels.NCHW}} {
			q := [16]int64{8, int64(c), 16, 16, 32, 1, 3, 3, 1, 1, 1, 1, 1, 1, 16, 16}
			cv, err := newDNNConv(arena, q, true, 2, p[0], p[1], kernels.FP32, [3]ConvAlgorithm{})
			if err != nil {
				t.Fatalf("c=%d %v to %v: %v", c, p[0], p[1], err)
			}
			if impl := cv.impl(); strings.Contains(impl, "ref") {
				t.Errorf("c=%d %v to %v: %s", c, p[0], p[1], impl)
			}
		}
	}
}
