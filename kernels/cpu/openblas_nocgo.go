//go:build !cgo

package cpu

import "errors"

// Without cgo there is no dlopen, and so no OpenBLAS.

func dlopenOpenBLAS() error {
	return errors.New("libopenblas.so.0 not loadable (built without cgo)")
}

func openBLASSetThreads(int) {}

func openBLASThreads() int { return 0 }

func openBLASConfig() string { return "" }

func openBLASCore() string { return "" }

func openBLASSgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	panic("cpu: OpenBLAS is not available without cgo")
}

func openBLASSgemmLoop(iters, m, n, k int, a, b, c []float32) {
	panic("cpu: OpenBLAS is not available without cgo")
}
