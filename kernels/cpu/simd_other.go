//go:build !cgo || !amd64

package cpu

// Without cgo, or off amd64, the element-wise loops run in Go only.

import "github.com/macdist/macdist/kernels"

const haveSIMD = false

// geluWide is never set here; simd_cgo.go's tests switch it.
var geluWide = false

const (
	simdGELU = iota
	simdGELUGrad
	simdGELUTanh
	simdGELUTanhGrad
)

func simdGELUOp(op int, y, x, dy []float32) { panic("cpu: no SIMD kernels in this build") }

func simdReLU(y, x []uint32) { panic("cpu: no SIMD kernels in this build") }

func simdAddTo(dst, src []float32) { panic("cpu: no SIMD kernels in this build") }

func simdReLUMask(dx, dy, y []uint32) { panic("cpu: no SIMD kernels in this build") }

func simdAdd(y, a, b []float32, relu bool) { panic("cpu: no SIMD kernels in this build") }

func simdSumPlanes(x []float32, n, hw, stride int) float64 {
	panic("cpu: no SIMD kernels in this build")
}

func simdSqDevPlanes(x []float32, n, hw, stride int, mu float64) float64 {
	panic("cpu: no SIMD kernels in this build")
}

func simdBNGradSums(x, dy []float32, n, hw, stride int, mu, rs float32) (sdy, sdyx float64) {
	panic("cpu: no SIMD kernels in this build")
}

func simdBNNorm(y, x []float32, n, hw, stride int, mu, a, b float32) {
	panic("cpu: no SIMD kernels in this build")
}

func simdBNDx(dx, dy, x []float32, n, hw, stride int, mu, rs, k1, k2, scale float32) {
	panic("cpu: no SIMD kernels in this build")
}

func simdColSums(acc []float64, x []float32, rows, cols, ld int) {
	panic("cpu: no SIMD kernels in this build")
}

func simdSoftmaxRows(y, x []float32, rows, cols int) { panic("cpu: no SIMD kernels in this build") }

func simdLayerNormRows(y, mean, rstd, x, gamma, beta []float32, rows, cols int, eps float32) {
	panic("cpu: no SIMD kernels in this build")
}

func simdLayerNormBackRows(dx, dy, x, mean, rstd, gamma []float32, rows, cols int) {
	panic("cpu: no SIMD kernels in this build")
}

func simdLNParam(accG, accB []float64, dy, x, mean, rstd []float32, rows, cols, ld int) {
	panic("cpu: no SIMD kernels in this build")
}

func simdConvPlane(fold bool, col, x []float32, g kernels.ConvGeom) {
	panic("cpu: no SIMD kernels in this build")
}

func simdMaxPool2x2(y, x, dx []float32, n, h, w, oh, ow int) {
	panic("cpu: no SIMD kernels in this build")
}

func simdAddBias(x, bias []float32, r0, rows, mid, inner int) {
	panic("cpu: no SIMD kernels in this build")
}

func simdAddBiasRows(x, bias []float32, rows, cols int) { panic("cpu: no SIMD kernels in this build") }

func simdBkSums(s, q []float64, x []float32, nimg, hw, istride int) {
	panic("cpu: no SIMD kernels in this build")
}

func simdBkNorm(y, x, z []float32, nimg, hw, istride int, mu, a, b []float32, relu bool) {
	panic("cpu: no SIMD kernels in this build")
}

func simdBkGradSums(s, q []float64, x, dy, y []float32, nimg, hw, istride int, mu, rs []float32) {
	panic("cpu: no SIMD kernels in this build")
}

func simdBkDx(dx, dy, x, y []float32, nimg, hw, istride int, mu, rs, k1, k2, scale []float32) {
	panic("cpu: no SIMD kernels in this build")
}
