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

// convolverCases are the shapes testConvolver runs: every geometry of
// convGeoms as a dense convolution, and grouped and depthwise ones.
func convolverCases() []struct {
	g           kernels.ConvGeom
	out, groups int
} {
	var cs []struct {
		g           kernels.ConvGeom
		out, groups int
	}
	for _, g := range convGeoms {
		cs = append(cs, struct {
			g           kernels.ConvGeom
			out, groups int
		}{g, 5, 1})
	}
	// Channels in multiples of 16, which the cpu Device's oneDNN keeps in
	// blocks of 16 (fewer take another path there).
	for _, c := range [][3]int{{16, 16, 1}, {32, 16, 2}} {
		g := kernels.ConvGeom{C: c[0], H: 6, W: 5, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1, DilH: 1, DilW: 1}
		cs = append(cs, struct {
			g           kernels.ConvGeom
			out, groups int
		}{g, c[1], c[2]})
	}
	for _, c := range [][3]int{{4, 6, 2}, {4, 4, 4}, {6, 3, 3}} {
		g := kernels.ConvGeom{C: c[0], H: 7, W: 6, KH: 3, KW: 3, StrideH: 2, StrideW: 1, PadH: 1, PadW: 1, DilH: 1, DilW: 1}
		cs = append(cs, struct {
			g           kernels.ConvGeom
			out, groups int
		}{g, c[1], c[2]})
	}
	return cs
}

// testConvolver checks a kernels.Convolver's three passes against sums in
// float64 over the definition, on every shape it accepts. A device may
// accept none (the cpu Device without oneDNN); the devices' own tests check
// that those that should, do.
func testConvolver(h *harness) {
	cv, ok := h.dev.(kernels.Convolver)
	if !ok {
		h.t.Skip("not a kernels.Convolver")
	}
	accepted := 0
	for _, c := range convolverCases() {
		for _, bias := range []bool{false, true} {
			g, out, groups, n := c.g, c.out, c.groups, convImages
			if !cv.Convolves(g, out, groups, n, bias) {
				continue
			}
			accepted++
			checkConvolver(h, cv, g, out, groups, n, bias)
		}
	}
	h.t.Logf("%d of %d shapes convolved directly", accepted, 2*len(convolverCases()))
}

func checkConvolver(h *harness, cv kernels.Convolver, g kernels.ConvGeom, out, groups, n int, bias bool) {
	cg, og := g.C/groups, out/groups
	kk := g.KH * g.KW
	oh, ow := g.OutH(), g.OutW()
	img, pos := g.C*g.H*g.W, oh*ow
	x, w, dy := h.rand(n*img), h.rand(out*cg*kk), h.rand(n*out*pos)
	var bv []float32
	var bb, db kernels.Buffer
	dbv := h.rand(out)
	if bias {
		bv = h.rand(out)
		bb, db = h.buf(bv), h.buf(dbv)
	}
	dwv := h.rand(len(w))
	xb, wb, dyb := h.buf(x), h.buf(w), h.buf(dy)
	y, dx, dw := h.buf(filled(n*out*pos, nan32)), h.buf(filled(n*img, nan32)), h.buf(dwv)

	wantY, magY := make([]float64, n*out*pos), make([]float64, n*out*pos)
	wantDx, magDx := make([]float64, n*img), make([]float64, n*img)
	wantDw, magDw := widen(dwv), make([]float64, len(w))
	wantDb, magDb := widen(dbv), make([]float64, out)
	for i := range magDw {
		magDw[i] = abs(wantDw[i])
	}
	for i := range magDb {
		magDb[i] = abs(wantDb[i])
	}
	for im := 0; im < n; im++ {
		for o := 0; o < out; o++ {
			gi := o / og
			for q := 0; q < pos; q++ {
				yi := (im*out+o)*pos + q
				if bias {
					wantY[yi], magY[yi] = float64(bv[o]), abs(float64(bv[o]))
					wantDb[o] += float64(dy[yi])
					magDb[o] += abs(float64(dy[yi]))
				}
				for r := 0; r < cg*kk; r++ {
					at := im2colIndex(g, gi*cg*kk+r, q) // the row of input channel gi·cg + r/kk
					if at < 0 {
						continue
					}
					xi, wi := im*img+at, o*cg*kk+r
					p := float64(x[xi]) * float64(w[wi])
					wantY[yi] += p
					magY[yi] += abs(p)
					d := float64(dy[yi]) * float64(w[wi])
					wantDx[xi] += d
					magDx[xi] += abs(d)
					e := float64(dy[yi]) * float64(x[xi])
					wantDw[wi] += e
					magDw[wi] += abs(e)
				}
			}
		}
	}
	what := name("%+v out=%d groups=%d n=%d bias=%v", g, out, groups, n, bias)
	bound := func(mag []float64) func(int) float64 {
		return func(i int) float64 { return 1e-5*mag[i] + 1e-7 }
	}
	cv.ConvForward(y, xb, wb, bb, g, out, groups, n)
	h.checkBound("ConvForward "+what, h.get(y), wantY, bound(magY))
	cv.ConvBackward(dx, dw, db, xb, dyb, wb, g, out, groups, n)
	h.checkBound("ConvBackward dx "+what, h.get(dx), wantDx, bound(magDx))
	h.checkBound("ConvBackward dw "+what, h.get(dw), wantDw, bound(magDw))
	if bias {
		h.checkBound("ConvBackward db "+what, h.get(db), wantDb, bound(magDb))
	}
}
