package kernelstest

import (
	"math"
)

// gemmRef returns what C (all of its buffer) should hold after
// C = alpha·op(A)·op(B) + beta·C, with the error each element may carry:
// rtolSum times the magnitudes of the terms summed into it. Elements outside
// the m×n window must not change at all.
func gemmRef(transA, transB bool, m, n, k int, alpha float64, a []float32, lda int, b []float32, ldb int, beta float64, c []float32, ldc int) (want, bound []float64) {
	want, bound = widen(c), make([]float64, len(c))
	at := func(i, p int) float64 {
		if transA {
			return float64(a[p*lda+i])
		}
		return float64(a[i*lda+p])
	}
	bt := func(p, j int) float64 {
		if transB {
			return float64(b[j*ldb+p])
		}
		return float64(b[p*ldb+j])
	}
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s, mag float64
			for p := 0; p < k; p++ {
				s += at(i, p) * bt(p, j)
				mag += math.Abs(at(i, p) * bt(p, j))
			}
			s *= alpha
			mag *= math.Abs(alpha)
			if beta != 0 { // beta == 0: C is not read, and its NaNs vanish
				cv := float64(c[i*ldc+j])
				s += beta * cv
				mag += math.Abs(beta * cv)
			}
			want[i*ldc+j] = s
			bound[i*ldc+j] = rtolSum*mag + 1e-30
		}
	}
	return want, bound
}

type gemmCase struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	pad            int // added to every leading dimension
	aOff           int // A starts this far into its buffer (through a View)
}

func (h *harness) runGemm(tc gemmCase, nanC bool) {
	h.t.Helper()
	ra, ca := tc.m, tc.k
	if tc.transA {
		ra, ca = tc.k, tc.m
	}
	rb, cb := tc.k, tc.n
	if tc.transB {
		rb, cb = tc.n, tc.k
	}
	lda, ldb, ldc := max(ca, 1)+tc.pad, max(cb, 1)+tc.pad, max(tc.n, 1)+tc.pad
	av, bv := h.rand(tc.aOff+ra*lda), h.rand(rb*ldb)
	var cv []float32
	if nanC {
		cv = filled(tc.m*ldc, nan32)
	} else {
		cv = h.rand(tc.m * ldc)
	}
	a := h.dev.View(h.buf(av), tc.aOff, ra*lda)
	b, c := h.buf(bv), h.buf(cv)
	h.dev.Gemm(tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)
	want, bound := gemmRef(tc.transA, tc.transB, tc.m, tc.n, tc.k, float64(tc.alpha), av[tc.aOff:], lda, bv, ldb, float64(tc.beta), cv, ldc)
	h.checkBound(name("Gemm(%s%s m=%d n=%d k=%d alpha=%g beta=%g lda=%d ldb=%d ldc=%d nanC=%v)",
		b2s(tc.transA), b2s(tc.transB), tc.m, tc.n, tc.k, tc.alpha, tc.beta, lda, ldb, ldc, nanC),
		h.get(c), want, func(i int) float64 { return bound[i] })
}

func testGemm(h *harness) {
	shapes := [][3]int{{1, 1, 1}, {3, 5, 7}, {17, 13, 31}, {64, 65, 63}, {2, 130, 257}, {129, 3, 2}, {70, 200, 9}}
	for _, s := range shapes {
		for _, tr := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
			for _, ab := range [][2]float32{{1, 0}, {0.5, -2}, {-1, 1}} {
				for _, pad := range []int{0, 3} {
					h.runGemm(gemmCase{transA: tr[0], transB: tr[1], m: s[0], n: s[1], k: s[2],
						alpha: ab[0], beta: ab[1], pad: pad, aOff: pad}, false)
				}
			}
			// beta == 0 must not read C: its NaNs, padding included, stay
			// out of the product and the padding stays NaN.
			h.runGemm(gemmCase{transA: tr[0], transB: tr[1], m: s[0], n: s[1], k: s[2], alpha: 1.5, beta: 0, pad: 2}, true)
		}
	}
	// Degenerate products: C = beta·C.
	h.runGemm(gemmCase{m: 4, n: 5, k: 0, alpha: 1, beta: 2}, false)
	h.runGemm(gemmCase{m: 4, n: 5, k: 0, alpha: 1, beta: 0}, true)
	h.runGemm(gemmCase{m: 4, n: 5, k: 3, alpha: 0, beta: 0.5, pad: 1}, false)
	h.runGemm(gemmCase{m: 0, n: 5, k: 3, alpha: 1, beta: 1}, false)
	h.runGemm(gemmCase{m: 3, n: 0, k: 3, alpha: 1, beta: 1}, false)
	// Large enough for a multi-threaded BLAS path.
	h.runGemm(gemmCase{m: 200, n: 190, k: 180, alpha: 1, beta: 0}, true)
	h.runGemm(gemmCase{transA: true, transB: true, m: 150, n: 160, k: 170, alpha: 0.25, beta: 1, pad: 5}, false)
}

type stridedCase struct {
	transA, transB            bool
	m, n, k, batch            int
	alpha, beta               float32
	aOff, bOff, cOff          int
	strideA, strideB, strideC int // -1 means packed plus gap
	gap, pad                  int
}

func testGemmStrided(h *harness) {
	cases := []stridedCase{
		{m: 5, n: 7, k: 3, batch: 4, alpha: 1, beta: 0, strideA: -1, strideB: -1, strideC: -1},
		{transA: true, m: 5, n: 7, k: 3, batch: 3, alpha: 0.5, beta: 1, aOff: 2, bOff: 5, cOff: 1, strideA: -1, strideB: -1, strideC: -1, gap: 3, pad: 2},
		{transB: true, m: 16, n: 9, k: 33, batch: 5, alpha: 1, beta: -1, strideA: 0, strideB: -1, strideC: -1, gap: 1},
		{transA: true, transB: true, m: 16, n: 9, k: 33, batch: 5, alpha: 2, beta: 0, strideA: -1, strideB: 0, strideC: -1, pad: 1},
		{m: 1, n: 1, k: 1, batch: 7, alpha: 1, beta: 0, strideA: -1, strideB: -1, strideC: -1},
		{m: 8, n: 8, k: 8, batch: 64, alpha: 1, beta: 0.5, aOff: 3, strideA: -1, strideB: 0, strideC: -1, gap: 2},
		{m: 96, n: 80, k: 72, batch: 2, alpha: 1, beta: 0, strideA: -1, strideB: -1, strideC: -1, gap: 4},
		{m: 4, n: 4, k: 4, batch: 0, alpha: 1, beta: 0, strideA: -1, strideB: -1, strideC: -1},
		{m: 4, n: 6, k: 0, batch: 3, alpha: 1, beta: 0, strideA: 0, strideB: 0, strideC: -1},
	}
	for _, nanC := range []bool{false, true} {
		for _, tc := range cases {
			if nanC && tc.beta != 0 {
				continue
			}
			ra, ca := tc.m, tc.k
			if tc.transA {
				ra, ca = tc.k, tc.m
			}
			rb, cb := tc.k, tc.n
			if tc.transB {
				rb, cb = tc.n, tc.k
			}
			lda, ldb, ldc := max(ca, 1)+tc.pad, max(cb, 1)+tc.pad, max(tc.n, 1)+tc.pad
			sa, sb, sc := tc.strideA, tc.strideB, tc.strideC
			if sa < 0 {
				sa = ra*lda + tc.gap
			}
			if sb < 0 {
				sb = rb*ldb + tc.gap
			}
			if sc < 0 {
				sc = tc.m*ldc + tc.gap
			}
			extent := func(off, stride, size int) int { return off + max(tc.batch-1, 0)*stride + size }
			av := h.rand(extent(tc.aOff, sa, ra*lda))
			bv := h.rand(extent(tc.bOff, sb, rb*ldb))
			var cv []float32
			if nanC {
				cv = filled(extent(tc.cOff, sc, tc.m*ldc), nan32)
			} else {
				cv = h.rand(extent(tc.cOff, sc, tc.m*ldc))
			}
			a, b, c := h.buf(av), h.buf(bv), h.buf(cv)
			h.dev.GemmStrided(tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha,
				a, tc.aOff, lda, sa, b, tc.bOff, ldb, sb, tc.beta, c, tc.cOff, ldc, sc, tc.batch)
			want, bound := widen(cv), make([]float64, len(cv))
			for i := 0; i < tc.batch; i++ {
				w, bd := gemmRef(tc.transA, tc.transB, tc.m, tc.n, tc.k, float64(tc.alpha),
					av[tc.aOff+i*sa:], lda, bv[tc.bOff+i*sb:], ldb, float64(tc.beta), cv[tc.cOff+i*sc:], ldc)
				copy(want[tc.cOff+i*sc:], w[:tc.m*ldc])
				copy(bound[tc.cOff+i*sc:], bd[:tc.m*ldc])
			}
			h.checkBound(name("GemmStrided(%+v nanC=%v)", tc, nanC), h.get(c), want, func(i int) float64 { return bound[i] })
		}
	}
}
