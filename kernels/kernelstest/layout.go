package kernelstest

import (
	"math"

	"github.com/macdist/macdist/kernels"
)

// layoutIndex is where l keeps element (i, ch, s) of an n×c×hw
// activation: the layouts' definitions.
func layoutIndex(l kernels.Layout, c, hw, i, ch, s int) int {
	switch l {
	case kernels.Blocked16:
		return ((i*(c/16)+ch/16)*hw+s)*16 + ch%16
	case kernels.NHWC:
		return (i*hw+s)*c + ch
	}
	return (i*c+ch)*hw + s
}

// testLayouter holds a kernels.Layouter's layouts to their definition and
// its …In methods to the NCHW methods they stand for: each runs on the
// inputs reordered, and its outputs, reordered back, must match to 1e-6
// (the sums may be added in another order).
func testLayouter(h *harness) {
	lo, ok := h.dev.(kernels.Layouter)
	if !ok {
		h.t.Skip("not a kernels.Layouter")
	}
	l := lo.ActivationLayout(16)
	switch l {
	case kernels.NCHW:
		h.t.Skip("the device keeps NCHW only")
	case kernels.Blocked16, kernels.NHWC:
	default:
		h.t.Fatalf("ActivationLayout(16) = %v, a layout this suite does not know", l)
	}
	if l15 := lo.ActivationLayout(15); l15 != kernels.NCHW && (l15 != kernels.NHWC || l != kernels.NHWC) {
		h.t.Errorf("ActivationLayout(15) = %v, with ActivationLayout(16) = %v: Blocked16 needs a multiple of 16 channels", l15, l)
	}
	d := h.dev
	to := func(v []float32, n, c, hw int) kernels.Buffer {
		b := h.alloc(len(v))
		lo.Relayout(b, l, h.buf(v), kernels.NCHW, n, c, hw)
		return b
	}
	back := func(b kernels.Buffer, n, c, hw int) []float32 {
		p := h.alloc(n * c * hw)
		lo.Relayout(p, kernels.NCHW, b, l, n, c, hw)
		return h.get(p)
	}
	shapes := [][3]int{{1, 16, 1}, {3, 16, 7}, {2, 48, 64}, {20, 32, 9}}
	if lo.ActivationLayout(40) == l {
		shapes = append(shapes, [3]int{3, 40, 5}, [3]int{2, 6, 9}) // a narrow last block of channels, and one alone
	}
	for _, s := range shapes {
		n, c, hw := s[0], s[1], s[2]
		x := h.uniform(n*c*hw, 9, 11)
		xl := to(x, n, c, hw)
		got := h.get(xl)
		want := make([]float64, len(x))
		for i := 0; i < n; i++ {
			for ch := 0; ch < c; ch++ {
				for p := 0; p < hw; p++ {
					want[layoutIndex(l, c, hw, i, ch, p)] = float64(x[(i*c+ch)*hw+p])
				}
			}
		}
		h.checkExact(name("Relayout(n=%d c=%d hw=%d) to %v", n, c, hw, l), got, want)
		h.checkExact(name("Relayout(n=%d c=%d hw=%d) back", n, c, hw), back(xl, n, c, hw), widen(x))
		same := h.alloc(len(x))
		lo.Relayout(same, l, xl, l, n, c, hw)
		h.checkExact(name("Relayout(n=%d c=%d hw=%d) %v to itself", n, c, hw, l), h.get(same), widen(got))

		for _, affine := range []bool{true, false} {
			what := name("BatchNorm…In(n=%d c=%d hw=%d affine=%v)", n, c, hw, affine)
			var gb, bb, dgb, dbb, dgl, dbl kernels.Buffer
			if affine {
				gamma, beta, dg, db := h.uniform(c, 0.5, 1.5), h.rand(c), h.rand(c), h.rand(c)
				gb, bb, dgb, dbb, dgl, dbl = h.buf(gamma), h.buf(beta), h.buf(dg), h.buf(db), h.buf(dg), h.buf(db)
			}
			rm, rv := h.rand(c), h.uniform(c, 0.5, 1.5)
			dy := h.rand(n * c * hw)
			const eps, momentum = 1e-5, 0.1
			if n*hw > 1 {
				y, sm, sr, rmb, rvb := h.alloc(n*c*hw), h.alloc(c), h.alloc(c), h.buf(rm), h.buf(rv)
				d.BatchNormTrain(y, sm, sr, rmb, rvb, h.buf(x), gb, bb, n, c, hw, momentum, eps)
				yl, sml, srl, rml, rvl := h.alloc(n*c*hw), h.alloc(c), h.alloc(c), h.buf(rm), h.buf(rv)
				lo.BatchNormTrainIn(l, yl, sml, srl, rml, rvl, xl, gb, bb, n, c, hw, momentum, eps)
				h.check(what+" y", back(yl, n, c, hw), widen(h.get(y)), 1e-6, 1e-6)
				h.check(what+" mean", h.get(sml), widen(h.get(sm)), 1e-6, 1e-6)
				h.check(what+" rstd", h.get(srl), widen(h.get(sr)), 1e-6, 1e-6)
				h.check(what+" running mean", h.get(rml), widen(h.get(rmb)), 1e-6, 1e-6)
				h.check(what+" running var", h.get(rvl), widen(h.get(rvb)), 1e-6, 1e-6)

				dx, dxl := h.alloc(n*c*hw), h.alloc(n*c*hw)
				d.BatchNormBackward(dx, dgb, dbb, h.buf(dy), h.buf(x), sm, sr, gb, n, c, hw)
				lo.BatchNormBackwardIn(l, dxl, dgl, dbl, to(dy, n, c, hw), xl, sm, sr, gb, n, c, hw)
				h.check(what+" dx", back(dxl, n, c, hw), widen(h.get(dx)), 1e-6, 1e-6)
				if affine {
					h.check(what+" dgamma", h.get(dgl), widen(h.get(dgb)), 1e-6, 1e-6)
					h.check(what+" dbeta", h.get(dbl), widen(h.get(dbb)), 1e-6, 1e-6)
				}
			}
			y, yl := h.alloc(n*c*hw), h.alloc(n*c*hw)
			d.BatchNormEval(y, h.buf(x), h.buf(rm), h.buf(rv), gb, bb, n, c, hw, eps)
			lo.BatchNormEvalIn(l, yl, xl, h.buf(rm), h.buf(rv), gb, bb, n, c, hw, eps)
			h.check(what+" eval y", back(yl, n, c, hw), widen(h.get(y)), 1e-6, 1e-6)
		}

		what := name("Plane…In(n=%d c=%d hw=%d)", n, c, hw)
		alpha := 1 / float32(hw)
		ps, psl := h.alloc(n*c), h.alloc(n*c)
		d.ReduceSum(ps, h.buf(x), n*c, hw, 1, alpha, 0)
		lo.PlaneSumIn(l, psl, xl, n, c, hw, alpha)
		h.check(what+" sum", h.get(psl), widen(h.get(ps)), 1e-6, 1e-6)
		g := h.rand(n * c)
		sp, spl := h.alloc(n*c*hw), h.alloc(n*c*hw)
		d.Expand(sp, h.buf(g), n*c, hw, 1, alpha, 0)
		lo.PlaneSpreadIn(l, spl, h.buf(g), n, c, hw, alpha)
		h.checkExact(what+" spread", back(spl, n, c, hw), widen(h.get(sp)))
	}
	if other := otherLayout(l); other != l {
		// Between the two blocked-channel layouts, for a device that
		// keeps one and may be handed the other.
		const n, c, hw = 2, 32, 5
		x := h.uniform(n*c*hw, -1, 1)
		a, b := to(x, n, c, hw), h.alloc(n*c*hw)
		lo.Relayout(b, other, a, l, n, c, hw)
		want := make([]float64, len(x))
		for i := 0; i < n; i++ {
			for ch := 0; ch < c; ch++ {
				for p := 0; p < hw; p++ {
					want[layoutIndex(other, c, hw, i, ch, p)] = float64(x[(i*c+ch)*hw+p])
				}
			}
		}
		h.checkExact(name("Relayout %v to %v", l, other), h.get(b), want)
		lo.Relayout(a, l, b, other, n, c, hw)
		h.checkExact(name("Relayout %v to %v and back", l, other), back(a, n, c, hw), widen(x))
	}
	testLayoutPool(h, lo, l)
	testLayoutConv(h, lo, l)
}

// otherLayout is the blocked-channel layout that is not l, or l.
func otherLayout(l kernels.Layout) kernels.Layout {
	switch l {
	case kernels.Blocked16:
		return kernels.NHWC
	case kernels.NHWC:
		return kernels.Blocked16
	}
	return l
}

// testLayoutPool checks MaxPool2dIn and its backward against MaxPool2d,
// bit for bit, with ties, NaNs and −Inf in the windows.
func testLayoutPool(h *harness, lo kernels.Layouter, l kernels.Layout) {
	d := h.dev
	for _, g := range []kernels.PoolGeom{
		{C: 16, H: 9, W: 9, KH: 3, KW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1},
		{C: 32, H: 8, W: 8, KH: 2, KW: 2, StrideH: 2, StrideW: 2},
		{C: 16, H: 7, W: 6, KH: 3, KW: 3, StrideH: 1, StrideW: 1},
		{C: 40, H: 7, W: 7, KH: 3, KW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1},
		{C: 6, H: 8, W: 8, KH: 2, KW: 2, StrideH: 2, StrideW: 2},
	} {
		if lo.ActivationLayout(g.C) != l {
			continue
		}
		const n = 3
		hw, ohw := g.H*g.W, g.OutH()*g.OutW()
		what := name("MaxPool2dIn(%+v)", g)
		x := h.ints(n*g.C*hw, -3, 3) // ties
		inf := float32(math.Inf(-1))
		for i := 0; i < len(x); i += 37 {
			x[i] = nan32
		}
		for i := 5; i < len(x); i += 11 {
			x[i] = inf
		}
		dy := h.rand(n * g.C * ohw)
		xl, dyl := h.alloc(len(x)), h.alloc(len(dy))
		lo.Relayout(xl, l, h.buf(x), kernels.NCHW, n, g.C, hw)
		lo.Relayout(dyl, l, h.buf(dy), kernels.NCHW, n, g.C, ohw)
		y, yl, yp := h.alloc(len(dy)), h.alloc(len(dy)), h.alloc(len(dy))
		d.MaxPool2d(y, h.buf(x), g, n)
		lo.MaxPool2dIn(l, yl, xl, g, n)
		lo.Relayout(yp, kernels.NCHW, yl, l, n, g.C, ohw)
		h.checkExact(what+" y", h.get(yp), widen(h.get(y)))
		dx, dxl, dxp := h.buf(make([]float32, len(x))), h.buf(make([]float32, len(x))), h.alloc(len(x))
		d.MaxPool2dBackward(dx, h.buf(dy), h.buf(x), g, n)
		lo.MaxPool2dBackwardIn(l, dxl, dyl, xl, g, n)
		lo.Relayout(dxp, kernels.NCHW, dxl, l, n, g.C, hw)
		h.checkExact(what+" dx", h.get(dxp), widen(h.get(dx)))
	}
}

// testLayoutConv checks ConvForwardIn and ConvBackwardIn for every pair
// of layouts a shape allows against ConvForward and ConvBackward.
func testLayoutConv(h *harness, lo kernels.Layouter, l kernels.Layout) {
	cv, ok := h.dev.(kernels.Convolver)
	if !ok {
		return
	}
	for _, c := range []struct {
		g             kernels.ConvGeom
		out, groups   int
		bias, skipsDx bool
	}{
		{kernels.ConvGeom{C: 3, H: 9, W: 9, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1, DilH: 1, DilW: 1}, 16, 1, false, true},
		{kernels.ConvGeom{C: 16, H: 8, W: 8, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1, DilH: 1, DilW: 1}, 16, 1, false, false},
		{kernels.ConvGeom{C: 16, H: 8, W: 8, KH: 1, KW: 1, StrideH: 2, StrideW: 2, DilH: 1, DilW: 1}, 32, 1, true, false},
		{kernels.ConvGeom{C: 32, H: 5, W: 5, KH: 3, KW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1, DilH: 1, DilW: 1}, 16, 1, true, false},
		{kernels.ConvGeom{C: 6, H: 7, W: 7, KH: 5, KW: 5, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1}, 10, 1, true, false},
		{kernels.ConvGeom{C: 16, H: 6, W: 6, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1, DilH: 1, DilW: 1}, 32, 4, false, false},
	} {
		const n = 3
		g := c.g
		if !cv.Convolves(g, c.out, c.groups, n, c.bias) {
			continue
		}
		hw, ohw := g.H*g.W, g.OutH()*g.OutW()
		x, w, dy := h.rand(n*g.C*hw), h.rand(c.out*g.C/c.groups*g.KH*g.KW), h.rand(n*c.out*ohw)
		var bb, db kernels.Buffer
		if c.bias {
			bb, db = h.buf(h.rand(c.out)), h.alloc(c.out)
		}
		y, dx, dw := h.alloc(n*c.out*ohw), h.alloc(n*g.C*hw), h.alloc(len(w))
		cv.ConvForward(y, h.buf(x), h.buf(w), bb, g, c.out, c.groups, n)
		cv.ConvBackward(dx, dw, db, h.buf(x), h.buf(dy), h.buf(w), g, c.out, c.groups, n)
		for _, xl := range []kernels.Layout{kernels.NCHW, lo.ActivationLayout(g.C)} {
			for _, yl := range []kernels.Layout{kernels.NCHW, lo.ActivationLayout(c.out)} {
				what := name("Conv…In(%+v out=%d bias=%v, %v to %v)", g, c.out, c.bias, xl, yl)
				xb, dyb := h.alloc(len(x)), h.alloc(len(dy))
				lo.Relayout(xb, xl, h.buf(x), kernels.NCHW, n, g.C, hw)
				lo.Relayout(dyb, yl, h.buf(dy), kernels.NCHW, n, c.out, ohw)
				yb, dxb, dwb := h.alloc(len(dy)), h.alloc(len(x)), h.alloc(len(w))
				var dbb kernels.Buffer
				if c.bias {
					dbb = h.alloc(c.out)
				}
				lo.ConvForwardIn(xl, yl, yb, xb, h.buf(w), bb, g, c.out, c.groups, n)
				yp, dxp := h.alloc(len(dy)), h.alloc(len(x))
				lo.Relayout(yp, kernels.NCHW, yb, yl, n, c.out, ohw)
				h.check(what+" y", h.get(yp), widen(h.get(y)), 1e-5, 1e-5)
				if c.skipsDx {
					dxb = nil
				}
				lo.ConvBackwardIn(xl, yl, dxb, dwb, dbb, xb, dyb, h.buf(w), g, c.out, c.groups, n)
				if dxb != nil {
					lo.Relayout(dxp, kernels.NCHW, dxb, xl, n, g.C, hw)
					h.check(what+" dx", h.get(dxp), widen(h.get(dx)), 1e-5, 1e-5)
				}
				h.check(what+" dw", h.get(dwb), widen(h.get(dw)), 1e-5, 1e-5)
				if c.bias {
					h.check(what+" db", h.get(dbb), widen(h.get(db)), 1e-5, 1e-5)
				}
			}
		}
	}
}

// testReLUFuser holds a kernels.ReLUFuser's fused methods to the unfused
// ones, bit for bit: they do the same float operations.
func testReLUFuser(h *harness) {
	f, ok := h.dev.(kernels.ReLUFuser)
	if !ok {
		h.t.Skip("not a kernels.ReLUFuser")
	}
	d := h.dev
	x, y := h.rand(1000), h.rand(1000)
	x[0], x[1], x[2], y[2], x[3], y[3] = nan32, -1, 0, float32(negZero()), float32(negZero()), float32(negZero())
	sum, fused := h.alloc(1000), h.alloc(1000)
	d.Add(sum, h.buf(x), h.buf(y))
	d.ReLU(sum, sum)
	f.AddReLU(fused, h.buf(x), h.buf(y))
	h.checkExact("AddReLU", h.get(fused), widen(h.get(sum)))

	lo, ok := h.dev.(kernels.Layouter)
	if !ok {
		return
	}
	for _, s := range []struct {
		l kernels.Layout
		c int
	}{{kernels.NCHW, 32}, {lo.ActivationLayout(16), 32}, {lo.ActivationLayout(40), 40}} {
		l, c := s.l, s.c
		if !f.FusesReLU(l) || lo.ActivationLayout(c) != l && l != kernels.NCHW {
			continue
		}
		const n, hw = 5, 9
		what := name("BatchNormReLU…In(%v, c=%d)", l, c)
		xv, dyv := h.rand(n*c*hw), h.rand(n*c*hw)
		xb, dyb := h.alloc(n*c*hw), h.alloc(n*c*hw)
		lo.Relayout(xb, l, h.buf(xv), kernels.NCHW, n, c, hw)
		lo.Relayout(dyb, l, h.buf(dyv), kernels.NCHW, n, c, hw)
		gamma, beta := h.buf(h.uniform(c, -1, 1.5)), h.buf(h.rand(c))
		y1, sm, sr, rm, rv := h.alloc(n*c*hw), h.alloc(c), h.alloc(c), h.alloc(c), h.buf(filled(c, 1))
		lo.BatchNormTrainIn(l, y1, sm, sr, rm, rv, xb, gamma, beta, n, c, hw, 0.1, 1e-5)
		d.ReLU(y1, y1)
		y2, sm2, sr2, rm2, rv2 := h.alloc(n*c*hw), h.alloc(c), h.alloc(c), h.alloc(c), h.buf(filled(c, 1))
		f.BatchNormReLUTrainIn(l, y2, sm2, sr2, rm2, rv2, xb, gamma, beta, n, c, hw, 0.1, 1e-5)
		h.checkExact(what+" y", h.get(y2), widen(h.get(y1)))
		h.checkExact(what+" mean", h.get(sm2), widen(h.get(sm)))

		// The norm, the sum with a shortcut and the ReLU, against the
		// three apart.
		zv := h.rand(n * c * hw)
		zv[0], zv[1] = nan32, float32(negZero())
		zb := h.alloc(n * c * hw)
		lo.Relayout(zb, l, h.buf(zv), kernels.NCHW, n, c, hw)
		y3, sm3, sr3, rm3, rv3 := h.alloc(n*c*hw), h.alloc(c), h.alloc(c), h.alloc(c), h.buf(filled(c, 1))
		lo.BatchNormTrainIn(l, y3, sm3, sr3, rm3, rv3, xb, gamma, beta, n, c, hw, 0.1, 1e-5)
		d.Add(y3, y3, zb)
		d.ReLU(y3, y3)
		y4, sm4, sr4, rm4, rv4 := h.alloc(n*c*hw), h.alloc(c), h.alloc(c), h.alloc(c), h.buf(filled(c, 1))
		f.BatchNormAddReLUTrainIn(l, y4, sm4, sr4, rm4, rv4, xb, zb, gamma, beta, n, c, hw, 0.1, 1e-5)
		add := name("BatchNormAddReLUTrainIn(%v, c=%d)", l, c)
		h.checkExact(add+" y", h.get(y4), widen(h.get(y3)))
		h.checkExact(add+" mean", h.get(sm4), widen(h.get(sm3)))
		h.checkExact(add+" rstd", h.get(sr4), widen(h.get(sr3)))
		h.checkExact(add+" running mean", h.get(rm4), widen(h.get(rm3)))
		h.checkExact(add+" running var", h.get(rv4), widen(h.get(rv3)))

		g1, dg1, db1 := h.alloc(n*c*hw), h.alloc(c), h.alloc(c)
		masked := h.alloc(n * c * hw)
		d.ReLUBackward(masked, dyb, y1)
		lo.BatchNormBackwardIn(l, g1, dg1, db1, masked, xb, sm, sr, gamma, n, c, hw)
		g2, dg2, db2 := h.alloc(n*c*hw), h.alloc(c), h.alloc(c)
		f.BatchNormReLUBackwardIn(l, g2, dg2, db2, dyb, y2, xb, sm, sr, gamma, n, c, hw)
		h.checkExact(what+" dx", h.get(g2), widen(h.get(g1)))
		h.checkExact(what+" dgamma", h.get(dg2), widen(h.get(dg1)))
		h.checkExact(what+" dbeta", h.get(db2), widen(h.get(db1)))
	}
}

func negZero() float64 { return math.Copysign(0, -1) }
