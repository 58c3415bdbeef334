package kernelstest

import (
	"math"

	"github.com/macdist/macdist/kernels"
)

var poolGeoms = []kernels.PoolGeom{
	{C: 2, H: 5, W: 6, KH: 2, KW: 2, StrideH: 2, StrideW: 2},
	{C: 3, H: 7, W: 7, KH: 3, KW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1},
	{C: 1, H: 4, W: 5, KH: 3, KW: 2, StrideH: 1, StrideW: 2, PadH: 1, PadW: 1},
	{C: 2, H: 3, W: 3, KH: 1, KW: 1, StrideH: 1, StrideW: 1},
	{C: 2, H: 9, W: 8, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1},
	{C: 4, H: 8, W: 8, KH: 8, KW: 8, StrideH: 1, StrideW: 1},
	{C: 2, H: 6, W: 11, KH: 4, KW: 3, StrideH: 3, StrideW: 2, PadH: 2, PadW: 1},
}

// poolWindow calls f with the in-image positions of output (oh, ow) in
// row-major order, and returns the window's size counting the padding
// (PyTorch clips it at the padded edge).
func poolWindow(g kernels.PoolGeom, oh, ow int, f func(h, w int)) (padded int) {
	h0, w0 := oh*g.StrideH-g.PadH, ow*g.StrideW-g.PadW
	for i := 0; i < g.KH; i++ {
		for j := 0; j < g.KW; j++ {
			h, w := h0+i, w0+j
			if h < g.H+g.PadH && w < g.W+g.PadW {
				padded++
			}
			if h >= 0 && h < g.H && w >= 0 && w < g.W {
				f(h, w)
			}
		}
	}
	return padded
}

func testPool(h *harness) {
	d := h.dev
	const n = 3
	for _, g := range poolGeoms {
		oh, ow := g.OutH(), g.OutW()
		plane, oplane := g.H*g.W, oh*ow
		x := h.ints(n*g.C*plane, -3, 3) // ties everywhere
		dy := h.rand(n * g.C * oplane)
		dx0 := h.rand(n * g.C * plane) // the backward kernels accumulate

		y := h.alloc(n * g.C * oplane)
		d.MaxPool2d(y, h.buf(x), g, n)
		dx := h.buf(dx0)
		d.MaxPool2dBackward(dx, h.buf(dy), h.buf(x), g, n)
		wantY, wantDx := make([]float64, len(dy)), widen(dx0)
		for p := 0; p < n*g.C; p++ {
			for i := 0; i < oh; i++ {
				for j := 0; j < ow; j++ {
					best, at := math.Inf(-1), -1
					poolWindow(g, i, j, func(r, c int) {
						if v := float64(x[p*plane+r*g.W+c]); v > best {
							best, at = v, r*g.W+c
						}
					})
					wantY[p*oplane+i*ow+j] = best
					wantDx[p*plane+at] += float64(dy[p*oplane+i*ow+j])
				}
			}
		}
		h.checkExact(name("MaxPool2d(%+v)", g), h.get(y), wantY)
		h.check(name("MaxPool2dBackward(%+v)", g), h.get(dx), wantDx, 1e-5, 1e-5)

		xf := h.rand(n * g.C * plane)
		for _, incl := range []bool{true, false} {
			g := g
			g.CountIncludePad = incl
			d.AvgPool2d(y, h.buf(xf), g, n)
			dx := h.buf(dx0)
			d.AvgPool2dBackward(dx, h.buf(dy), g, n)
			wantY, wantDx := make([]float64, len(dy)), widen(dx0)
			for p := 0; p < n*g.C; p++ {
				for i := 0; i < oh; i++ {
					for j := 0; j < ow; j++ {
						var s float64
						cnt := 0
						padded := poolWindow(g, i, j, func(r, c int) {
							s += float64(xf[p*plane+r*g.W+c])
							cnt++
						})
						div := float64(cnt)
						if incl {
							div = float64(padded)
						}
						wantY[p*oplane+i*ow+j] = s / div
						poolWindow(g, i, j, func(r, c int) {
							wantDx[p*plane+r*g.W+c] += float64(dy[p*oplane+i*ow+j]) / div
						})
					}
				}
			}
			h.check(name("AvgPool2d(%+v)", g), h.get(y), wantY, 1e-5, 1e-6)
			h.check(name("AvgPool2dBackward(%+v)", g), h.get(dx), wantDx, 1e-5, 1e-5)
		}
	}
}
