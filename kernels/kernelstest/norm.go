package kernelstest

import (
	"math"

	"github.com/macdist/macdist/kernels"
)

// batchNormStats returns each channel's mean and biased variance of x
// (n × c × hw).
func batchNormStats(x []float64, n, c, hw int) (mean, variance []float64) {
	mean, variance = make([]float64, c), make([]float64, c)
	m := float64(n * hw)
	for ch := 0; ch < c; ch++ {
		for i := 0; i < n; i++ {
			for k := 0; k < hw; k++ {
				mean[ch] += x[(i*c+ch)*hw+k] / m
			}
		}
		for i := 0; i < n; i++ {
			for k := 0; k < hw; k++ {
				dv := x[(i*c+ch)*hw+k] - mean[ch]
				variance[ch] += dv * dv / m
			}
		}
	}
	return mean, variance
}

// batchNormBackwardRef returns dx of training-mode batch norm and adds into
// dgamma and dbeta.
func batchNormBackwardRef(dy, x, gamma, mean, rstd []float64, n, c, hw int, dgamma, dbeta []float64) []float64 {
	dx := make([]float64, len(x))
	m := float64(n * hw)
	for ch := 0; ch < c; ch++ {
		g := 1.0
		if gamma != nil {
			g = gamma[ch]
		}
		var sdy, sdyx float64
		for i := 0; i < n; i++ {
			for k := 0; k < hw; k++ {
				j := (i*c+ch)*hw + k
				sdy += dy[j]
				sdyx += dy[j] * (x[j] - mean[ch]) * rstd[ch]
			}
		}
		if dgamma != nil {
			dgamma[ch] += sdyx
		}
		if dbeta != nil {
			dbeta[ch] += sdy
		}
		for i := 0; i < n; i++ {
			for k := 0; k < hw; k++ {
				j := (i*c+ch)*hw + k
				xh := (x[j] - mean[ch]) * rstd[ch]
				dx[j] = g * rstd[ch] * (dy[j] - sdy/m - xh*sdyx/m)
			}
		}
	}
	return dx
}

func testBatchNorm(h *harness) {
	d := h.dev
	const eps, momentum = 1e-5, 0.1
	for _, s := range [][3]int{{2, 3, 5}, {4, 1, 1}, {1, 2, 7}, {8, 16, 49}, {3, 5, 1000}} {
		n, c, hw := s[0], s[1], s[2]
		for _, affine := range []bool{true, false} {
			what := name("BatchNorm(n=%d c=%d hw=%d affine=%v)", n, c, hw, affine)
			x := h.uniform(n*c*hw, 9, 11)
			dy := h.rand(n * c * hw)
			rm, rv := h.rand(c), h.uniform(c, 0.5, 1.5)
			var gamma, beta, dgamma, dbeta []float32
			var gb, bb, dgb, dbb kernels.Buffer
			if affine {
				gamma, beta = h.uniform(c, 0.5, 1.5), h.rand(c)
				dgamma, dbeta = h.rand(c), h.rand(c)
				gb, bb, dgb, dbb = h.buf(gamma), h.buf(beta), h.buf(dgamma), h.buf(dbeta)
			}
			xb := h.buf(x)
			y, sm, sr := h.alloc(n*c*hw), h.alloc(c), h.alloc(c)
			rmb, rvb := h.buf(rm), h.buf(rv)
			d.BatchNormTrain(y, sm, sr, rmb, rvb, xb, gb, bb, n, c, hw, momentum, eps)
			dx := h.alloc(n * c * hw)
			d.BatchNormBackward(dx, dgb, dbb, h.buf(dy), xb, sm, sr, gb, n, c, hw)
			ye := h.alloc(n * c * hw)
			d.BatchNormEval(ye, xb, rmb, rvb, gb, bb, n, c, hw, eps)

			xs := widen(x)
			mean, variance := batchNormStats(xs, n, c, hw)
			m := float64(n * hw)
			rstd := make([]float64, c)
			wantRm, wantRv := make([]float64, c), make([]float64, c)
			for ch := range rstd {
				rstd[ch] = 1 / math.Sqrt(variance[ch]+eps)
				wantRm[ch] = (1-momentum)*float64(rm[ch]) + momentum*mean[ch]
				wantRv[ch] = (1-momentum)*float64(rv[ch]) + momentum*variance[ch]*m/(m-1)
			}
			norm := func(mu, rs []float64) []float64 {
				out := make([]float64, len(xs))
				for j, v := range xs {
					ch := j / hw % c
					out[j] = (v - mu[ch]) * rs[ch]
					if affine {
						out[j] = out[j]*float64(gamma[ch]) + float64(beta[ch])
					}
				}
				return out
			}
			h.check(what+" y", h.get(y), norm(mean, rstd), 1e-4, 1e-4)
			h.check(what+" saveMean", h.get(sm), mean, 1e-6, 0)
			h.check(what+" saveRstd", h.get(sr), rstd, 1e-4, 0)
			h.check(what+" runMean", h.get(rmb), wantRm, 1e-5, 1e-6)
			h.check(what+" runVar", h.get(rvb), wantRv, 1e-4, 1e-6)

			// Eval with the updated running statistics.
			ers := make([]float64, c)
			for ch := range ers {
				ers[ch] = 1 / math.Sqrt(wantRv[ch]+eps)
			}
			h.check(what+" eval y", h.get(ye), norm(wantRm, ers), 1e-4, 1e-4)

			var wantDg, wantDb []float64
			if affine {
				wantDg, wantDb = widen(dgamma), widen(dbeta)
			}
			wantDx := batchNormBackwardRef(widen(dy), xs, widenOrNil(gamma), mean, rstd, n, c, hw, wantDg, wantDb)
			h.check(what+" dx", h.get(dx), wantDx, 1e-4, 1e-4*maxAbs(wantDx))
			if affine {
				h.check(what+" dgamma", h.get(dgb), wantDg, 1e-4, 1e-4*m)
				h.check(what+" dbeta", h.get(dbb), wantDb, 1e-4, 1e-5*m)
			}
		}
	}
}
