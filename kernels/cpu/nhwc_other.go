//go:build !cgo || !amd64

package cpu

func simdNHWCSums(s, q []float64, x []float32) { panic("cpu: no SIMD kernels in this build") }

func simdNHWCNorm(y, x, z, mu, a, b []float32, relu bool) {
	panic("cpu: no SIMD kernels in this build")
}

func simdNHWCGradSums(s, q []float64, x, dy, y, mu, rs []float32) {
	panic("cpu: no SIMD kernels in this build")
}

func simdNHWCDx(dx, dy, x, y, mu, rs, k1, k2, scale []float32) {
	panic("cpu: no SIMD kernels in this build")
}
