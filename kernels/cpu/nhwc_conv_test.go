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

// TestBF16ConvJitKernels wants oneDNN's jit kernels for the passes of
// LeNet-5's convolutions in bf16 on a CPU with native bf16: for the
// first (one input channel) oneDNN offers, for plain x and dy, only its
// gemm kernel for the weights' gradient, eleven times float32's time; in
// nhwc it has a jit one (mdnn_prefer_nhwc).
func TestBF16ConvJitKernels(t *testing.T) {
	if err := loadOneDNN(); err != nil {
		t.Skip(err)
	}
	if isa := isaName(oneDNNISA()); !nativeBF16(isa) {
		t.Skipf("no native bf16 here (oneDNN's ISA is %s): its choices differ", isa)
	}
	arena := newDNNArena()
	for _, q := range [][16]int64{
		{128, 1, 28, 28, 6, 1, 5, 5, 1, 1, 2, 2, 1, 1, 28, 28},
		{128, 6, 14, 14, 16, 1, 5, 5, 1, 1, 0, 0, 1, 1, 10, 10},
	} {
		cv, err := newDNNConv(arena, q, true, 2, kernels.NCHW, kernels.NCHW, kernels.BF16, [3]ConvAlgorithm{})
		if err != nil {
			t.Fatalf("%v: %v", q, err)
		}
		for _, pass := range strings.Split(cv.impl(), ", ") {
			// Up to 4 input channels the input's gradient is asked of
			// the gemm kernel on purpose (mdnn_conv_prims' small_ic).
			if q[1] <= 4 && strings.HasPrefix(pass, "bwd-data") {
				continue
			}
			if strings.Contains(pass, "gemm") || strings.Contains(pass, "ref") {
				t.Errorf("%d input channels: %s", q[1], cv.impl())
			}
		}
	}
}
