package kernelstest

import "github.com/macdist/macdist/kernels"

// convGeoms cover stride, padding and dilation in both directions, kernels
// larger than the padding reaches and outputs of one pixel.
var convGeoms = []kernels.ConvGeom{
	{C: 1, H: 1, W: 1, KH: 1, KW: 1, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1},
	{C: 3, H: 7, W: 5, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1, DilH: 1, DilW: 1},
	{C: 2, H: 8, W: 9, KH: 3, KW: 2, StrideH: 2, StrideW: 3, PadH: 1, PadW: 2, DilH: 1, DilW: 1},
	{C: 2, H: 9, W: 7, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 2, PadW: 2, DilH: 2, DilW: 2},
	{C: 4, H: 5, W: 6, KH: 5, KW: 4, StrideH: 2, StrideW: 2, DilH: 1, DilW: 1},
	{C: 1, H: 4, W: 4, KH: 4, KW: 4, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1},
	{C: 2, H: 6, W: 5, KH: 2, KW: 2, StrideH: 3, StrideW: 3, PadH: 1, PadW: 1, DilH: 1, DilW: 1},
	{C: 3, H: 11, W: 7, KH: 1, KW: 3, StrideH: 1, StrideW: 2, PadH: 0, PadW: 1, DilH: 1, DilW: 3},
	{C: 2, H: 5, W: 13, KH: 3, KW: 5, StrideH: 2, StrideW: 1, PadH: 3, PadW: 2, DilH: 3, DilW: 1},
	{C: 3, H: 32, W: 32, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1, DilH: 1, DilW: 1},
	// A strided window that lies wholly in the padding for some kernel
	// columns, as in a ResNet's last stage at a small input.
	{C: 2, H: 2, W: 2, KH: 3, KW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1, DilH: 1, DilW: 1},
	// Stride 1 and an output as wide as the input but not as high.
	{C: 2, H: 6, W: 5, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 0, PadW: 1, DilH: 1, DilW: 1},
}

// im2colIndex returns the index into an image of the input that column q of
// row r of its unfolded block reads, or -1 in the padding.
func im2colIndex(g kernels.ConvGeom, r, q int) int {
	c, ki, kj := r/(g.KH*g.KW), r/g.KW%g.KH, r%g.KW
	oh, ow := q/g.OutW(), q%g.OutW()
	ih := oh*g.StrideH - g.PadH + ki*g.DilH
	iw := ow*g.StrideW - g.PadW + kj*g.DilW
	if ih < 0 || ih >= g.H || iw < 0 || iw >= g.W {
		return -1
	}
	return (c*g.H+ih)*g.W + iw
}

const convImages = 3

func testIm2col(h *harness) {
	for _, g := range convGeoms {
		img := g.C * g.H * g.W
		blk := g.ColRows() * g.ColCols()
		x := h.rand(convImages * img)
		xb := h.buf(x)
		for _, r := range [][2]int{{0, convImages}, {1, 2}, {2, 1}} {
			img0, nimg := r[0], r[1]
			col := h.buf(filled(nimg*blk+3, nan32)) // the padding must be written as 0
			h.dev.Im2col(col, xb, g, img0, nimg)
			want := widen(filled(nimg*blk+3, nan32))
			for im := 0; im < nimg; im++ {
				for row := 0; row < g.ColRows(); row++ {
					for q := 0; q < g.ColCols(); q++ {
						v := 0.0
						if at := im2colIndex(g, row, q); at >= 0 {
							v = float64(x[(img0+im)*img+at])
						}
						want[im*blk+row*g.ColCols()+q] = v
					}
				}
			}
			h.checkExact(name("Im2col(%+v img0=%d nimg=%d)", g, img0, nimg), h.get(col), want)
		}
	}
}

func testCol2im(h *harness) {
	for _, g := range convGeoms {
		img := g.C * g.H * g.W
		blk := g.ColRows() * g.ColCols()
		for _, r := range [][2]int{{0, convImages}, {1, 2}} {
			img0, nimg := r[0], r[1]
			colv := h.rand(nimg * blk)
			dxv := h.rand(convImages * img) // Col2im accumulates
			dx := h.buf(dxv)
			h.dev.Col2im(dx, h.buf(colv), g, img0, nimg)
			want := widen(dxv)
			mag := make([]float64, len(want))
			for i, v := range want {
				mag[i] = abs(v)
			}
			for im := 0; im < nimg; im++ {
				for row := 0; row < g.ColRows(); row++ {
					for q := 0; q < g.ColCols(); q++ {
						if at := im2colIndex(g, row, q); at >= 0 {
							v := float64(colv[im*blk+row*g.ColCols()+q])
							want[(img0+im)*img+at] += v
							mag[(img0+im)*img+at] += abs(v)
						}
					}
				}
			}
			h.checkBound(name("Col2im(%+v img0=%d nimg=%d)", g, img0, nimg), h.get(dx), want,
				func(i int) float64 { return 1e-5 * mag[i] })
		}
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
