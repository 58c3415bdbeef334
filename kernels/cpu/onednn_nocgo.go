//go:build !cgo

package cpu

import (
	"errors"

	"github.com/macdist/macdist/kernels"
)

// Without cgo there is no dlopen, and so no oneDNN: Conv2d keeps to im2col.

var oneDNNLib = "libdnnl.so.2"

func dlopenOneDNN() error {
	return errors.New(oneDNNLib + " not loadable (built without cgo)")
}

func oneDNNVersion() string { return "" }

func oneDNNISA() int { return 0 }

func ompThreads() int { return 0 }

type dnnConv struct{}

type dnnArena struct{}

func newDNNArena() dnnArena { return dnnArena{} }

func newDNNConv(a dnnArena, q [16]int64, bias bool, nthr int, xl, yl kernels.Layout, prec kernels.Precision,
	algs [3]ConvAlgorithm) (*dnnConv, error) {
	return nil, errors.New("oneDNN is not available without cgo")
}

func (*dnnConv) impl() string   { return "" }
func (*dnnConv) reorders() bool { return false }
func (*dnnConv) forward(x, w, b, y []float32, nthr int) {
	panic("cpu: oneDNN is not available without cgo")
}
func (*dnnConv) backward(x, dy, w, dx, dw, db []float32, nthr int) {
	panic("cpu: oneDNN is not available without cgo")
}
func (*dnnConv) sharesDy() bool { return false }

// Without oneDNN, MatMul in BF16 rounds its operands itself.
type dnnMatMuls struct{}

func (*dnnMatMuls) matmul(k matKey, a, b, c []float32, o bf16Opts) bool { return false }
func (*dnnMatMuls) impl(k matKey) string                                { return "" }

func dnnSgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int,
	beta float32, c []float32, ldc int, nthr int) {
	panic("cpu: oneDNN is not available without cgo")
}
