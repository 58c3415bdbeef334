package kernelstest

import (
	"math"
)

// elemSizes include one large enough to be split across threads.
var elemSizes = []int{1, 7, 1000, 100003}

func testElementwise(h *harness) {
	d := h.dev
	for _, n := range elemSizes {
		x, y, z := h.rand(n), h.rand(n), h.rand(n)
		want := make([]float64, n)

		for _, ab := range [][2]float32{{2, 0.5}, {-1, 1}, {0.25, 0}, {0, 3}} {
			yb := h.buf(y)
			if ab[1] == 0 {
				yb = h.buf(filled(n, nan32)) // beta == 0: y is not read
			}
			d.Axpby(yb, ab[0], h.buf(x), ab[1])
			for i := range want {
				want[i] = float64(ab[0]) * float64(x[i])
				if ab[1] != 0 {
					want[i] += float64(ab[1]) * float64(y[i])
				}
			}
			h.check(name("Axpby(n=%d alpha=%g beta=%g)", n, ab[0], ab[1]), h.get(yb), want, rtolElem, atolElem)
		}

		xb := h.buf(x)
		d.Scale(xb, -1.5)
		for i := range want {
			want[i] = -1.5 * float64(x[i])
		}
		h.check(name("Scale(n=%d)", n), h.get(xb), want, rtolElem, atolElem)

		dst := h.alloc(n)
		d.Add(dst, h.buf(x), h.buf(y))
		for i := range want {
			want[i] = float64(x[i]) + float64(y[i])
		}
		h.check(name("Add(n=%d)", n), h.get(dst), want, rtolElem, atolElem)
		ab := h.buf(x) // in place
		d.Add(ab, ab, h.buf(y))
		h.check(name("Add in place (n=%d)", n), h.get(ab), want, rtolElem, atolElem)

		d.Mul(dst, h.buf(x), h.buf(z))
		for i := range want {
			want[i] = float64(x[i]) * float64(z[i])
		}
		h.check(name("Mul(n=%d)", n), h.get(dst), want, rtolElem, atolElem)

		xb = h.buf(x)
		dot := d.Dot(xb, h.buf(z))
		var s, mag float64
		for i := range x {
			s += float64(x[i]) * float64(z[i])
			mag += math.Abs(float64(x[i]) * float64(z[i]))
		}
		h.checkScalar(name("Dot(n=%d)", n), dot, s, 0, 1e-6*mag)
	}
	if got := h.dev.Dot(h.alloc(0), h.alloc(0)); got != 0 {
		h.t.Errorf("Dot of empty buffers = %v", got)
	}
}

// reduceShapes are outer × mid × inner.
var reduceShapes = [][3]int{{1, 5, 7}, {3, 4, 1}, {2, 3, 300}, {1, 1000, 3}, {4, 1, 5}, {2, 17, 1000}, {64, 257, 1}, {300, 129, 1}, {3, 600, 20}}

func testReduce(h *harness) {
	d := h.dev
	for _, s := range reduceShapes {
		outer, mid, inner := s[0], s[1], s[2]
		x := h.rand(outer * mid * inner)
		at := func(o, j, i int) float64 { return float64(x[(o*mid+j)*inner+i]) }

		// AddBias: x viewed as outer × len(bias) × inner.
		bias := h.rand(mid)
		xb := h.buf(x)
		d.AddBias(xb, h.buf(bias), outer, inner)
		want := make([]float64, len(x))
		for o := 0; o < outer; o++ {
			for j := 0; j < mid; j++ {
				for i := 0; i < inner; i++ {
					want[(o*mid+j)*inner+i] = at(o, j, i) + float64(bias[j])
				}
			}
		}
		h.check(name("AddBias(%v)", s), h.get(xb), want, rtolElem, atolElem)

		for _, ab := range [][2]float32{{1, 0}, {0.5, 2}, {-2, 1}} {
			// ReduceSum.
			dv := h.rand(outer * inner)
			if ab[1] == 0 {
				dv = filled(outer*inner, nan32)
			}
			dst := h.buf(dv)
			d.ReduceSum(dst, h.buf(x), outer, mid, inner, ab[0], ab[1])
			want, mag := make([]float64, outer*inner), make([]float64, outer*inner)
			for o := 0; o < outer; o++ {
				for i := 0; i < inner; i++ {
					var s, m float64
					for j := 0; j < mid; j++ {
						s += at(o, j, i)
						m += math.Abs(at(o, j, i))
					}
					want[o*inner+i] = float64(ab[0]) * s
					mag[o*inner+i] = math.Abs(float64(ab[0])) * m
					if ab[1] != 0 {
						want[o*inner+i] += float64(ab[1]) * float64(dv[o*inner+i])
						mag[o*inner+i] += math.Abs(float64(ab[1]) * float64(dv[o*inner+i]))
					}
				}
			}
			h.checkBound(name("ReduceSum(%v alpha=%g beta=%g)", s, ab[0], ab[1]), h.get(dst), want,
				func(i int) float64 { return rtolSum*mag[i] + 1e-30 })

			// ReduceSumMid.
			dv = h.rand(mid)
			if ab[1] == 0 {
				dv = filled(mid, nan32)
			}
			dst = h.buf(dv)
			d.ReduceSumMid(dst, h.buf(x), outer, mid, inner, ab[0], ab[1])
			want, mag = make([]float64, mid), make([]float64, mid)
			for j := 0; j < mid; j++ {
				var s, m float64
				for o := 0; o < outer; o++ {
					for i := 0; i < inner; i++ {
						s += at(o, j, i)
						m += math.Abs(at(o, j, i))
					}
				}
				want[j] = float64(ab[0]) * s
				mag[j] = math.Abs(float64(ab[0])) * m
				if ab[1] != 0 {
					want[j] += float64(ab[1]) * float64(dv[j])
					mag[j] += math.Abs(float64(ab[1]) * float64(dv[j]))
				}
			}
			h.checkBound(name("ReduceSumMid(%v alpha=%g beta=%g)", s, ab[0], ab[1]), h.get(dst), want,
				func(i int) float64 { return rtolSum*mag[i] + 1e-30 })

			// Expand, ReduceSum's adjoint.
			src := h.rand(outer * inner)
			ev := x
			if ab[1] == 0 {
				ev = filled(len(x), nan32)
			}
			eb := h.buf(ev)
			d.Expand(eb, h.buf(src), outer, mid, inner, ab[0], ab[1])
			want = make([]float64, len(x))
			for o := 0; o < outer; o++ {
				for j := 0; j < mid; j++ {
					for i := 0; i < inner; i++ {
						k := (o*mid+j)*inner + i
						want[k] = float64(ab[0]) * float64(src[o*inner+i])
						if ab[1] != 0 {
							want[k] += float64(ab[1]) * float64(ev[k])
						}
					}
				}
			}
			h.check(name("Expand(%v alpha=%g beta=%g)", s, ab[0], ab[1]), h.get(eb), want, rtolElem, atolElem)
		}
	}
}
