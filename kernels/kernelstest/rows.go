package kernelstest

import (
	"math"

	"github.com/macdist/macdist/kernels"
)

// softmaxRef returns the softmax and log-softmax of one row.
func softmaxRef(x []float64) (p, logp []float64) {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, v)
	}
	var s float64
	for _, v := range x {
		s += math.Exp(v - m)
	}
	lse := m + math.Log(s)
	p, logp = make([]float64, len(x)), make([]float64, len(x))
	for j, v := range x {
		logp[j] = v - lse
		p[j] = math.Exp(logp[j])
	}
	return p, logp
}

// crossEntropyRef returns one row's label-smoothed loss, as PyTorch defines
// it, (1−s)·(−log p_label) + s·mean_j(−log p_j), and its gradient.
func crossEntropyRef(x []float64, label int, s float64) (loss float64, grad []float64) {
	p, logp := softmaxRef(x)
	n := float64(len(x))
	var smooth float64
	for _, l := range logp {
		smooth -= l / n
	}
	loss = (1-s)*(-logp[label]) + s*smooth
	grad = make([]float64, len(x))
	for j := range x {
		grad[j] = p[j] - s/n
		if j == label {
			grad[j] -= 1 - s
		}
	}
	return loss, grad
}

var rowShapes = [][2]int{{1, 1}, {3, 7}, {5, 300}, {2, 1000}, {300, 33}}

func testSoftmax(h *harness) {
	d := h.dev
	for _, s := range rowShapes {
		rows, cols := s[0], s[1]
		// Large logits: a naive exp overflows.
		x := h.uniform(rows*cols, 900, 1000)
		dy := h.rand(rows * cols)
		y, ly, dx := h.alloc(rows*cols), h.alloc(rows*cols), h.alloc(rows*cols)
		d.Softmax(y, h.buf(x), rows, cols)
		d.LogSoftmax(ly, h.buf(x), rows, cols)
		yv := h.get(y)
		d.SoftmaxBackward(dx, h.buf(dy), h.buf(yv), rows, cols)

		wantY, wantL, wantDx := make([]float64, rows*cols), make([]float64, rows*cols), make([]float64, rows*cols)
		dxMag := make([]float64, rows*cols)
		for r := 0; r < rows; r++ {
			p, lp := softmaxRef(widen(x[r*cols : (r+1)*cols]))
			copy(wantY[r*cols:], p)
			copy(wantL[r*cols:], lp)
			// dx from the device's own y, so that only the backward
			// kernel is under test.
			var dot, mag float64
			for j := 0; j < cols; j++ {
				dot += float64(dy[r*cols+j]) * float64(yv[r*cols+j])
				mag += math.Abs(float64(dy[r*cols+j]) * float64(yv[r*cols+j]))
			}
			for j := 0; j < cols; j++ {
				k := r*cols + j
				wantDx[k] = float64(yv[k]) * (float64(dy[k]) - dot)
				dxMag[k] = math.Abs(float64(yv[k])) * (math.Abs(float64(dy[k])) + mag)
			}
		}
		h.check(name("Softmax(%d×%d)", rows, cols), yv, wantY, 1e-5, 1e-7)
		h.check(name("LogSoftmax(%d×%d)", rows, cols), h.get(ly), wantL, 1e-5, 1e-5)
		h.checkBound(name("SoftmaxBackward(%d×%d)", rows, cols), h.get(dx), wantDx,
			func(i int) float64 { return 1e-5*dxMag[i] + 1e-30 })

		xb := h.buf(x)
		d.Softmax(xb, xb, rows, cols)
		h.check(name("Softmax in place (%d×%d)", rows, cols), h.get(xb), wantY, 1e-5, 1e-7)
	}
}

func testCrossEntropy(h *harness) {
	d := h.dev
	shapes := append([][2]int{{4, 10}, {64, 5}}, rowShapes...)
	for _, s := range shapes {
		rows, cols := s[0], s[1]
		for _, smoothing := range []float32{0, 0.1} {
			x := h.uniform(rows*cols, -8, 8)
			labels := make([]int32, rows)
			for r := range labels {
				labels[r] = int32(h.rng.IntN(cols))
			}
			if rows >= 4 && cols >= 2 {
				// Ties: the first maximum is the prediction.
				for j := 0; j < cols; j++ {
					x[j], x[cols+j] = 3, 3
				}
				labels[0], labels[1] = 0, 1
				// Certainly right, and large.
				x[2*cols+int(labels[2])] = 400
			}
			g := h.buf(filled(rows*cols, nan32))
			loss, correct := d.CrossEntropy(g, h.buf(x), labels, rows, cols, smoothing)

			var wantLoss float64
			wantCorrect := 0
			wantG := make([]float64, rows*cols)
			for r := 0; r < rows; r++ {
				row := widen(x[r*cols : (r+1)*cols])
				l, gr := crossEntropyRef(row, int(labels[r]), float64(smoothing))
				wantLoss += l / float64(rows)
				for j := range gr {
					wantG[r*cols+j] = gr[j] / float64(rows)
				}
				arg := 0
				for j, v := range row {
					if v > row[arg] {
						arg = j
					}
				}
				if arg == int(labels[r]) {
					wantCorrect++
				}
			}
			what := name("CrossEntropy(%d×%d smoothing=%g)", rows, cols, smoothing)
			h.checkScalar(what+" loss", loss, wantLoss, 1e-5, 1e-6)
			if correct != wantCorrect {
				h.t.Errorf("%s correct = %d, want %d", what, correct, wantCorrect)
			}
			h.check(what+" dlogits", h.get(g), wantG, 1e-4, 1e-7/float64(rows))
		}
	}
}

// layerNormRef normalises one row and returns the output, mean and 1/σ.
func layerNormRef(x, gamma, beta []float64, eps float64) (y []float64, mean, rstd float64) {
	n := float64(len(x))
	for _, v := range x {
		mean += v / n
	}
	var v2 float64
	for _, v := range x {
		v2 += (v - mean) * (v - mean) / n
	}
	rstd = 1 / math.Sqrt(v2+eps)
	y = make([]float64, len(x))
	for j, v := range x {
		y[j] = (v - mean) * rstd
		if gamma != nil {
			y[j] *= gamma[j]
		}
		if beta != nil {
			y[j] += beta[j]
		}
	}
	return y, mean, rstd
}

// layerNormBackwardRef returns dx for one row, and adds into dgamma and dbeta.
func layerNormBackwardRef(dy, x, gamma []float64, mean, rstd float64, dgamma, dbeta []float64) []float64 {
	n := float64(len(x))
	g := make([]float64, len(x))
	var mg, mgx float64
	for j := range x {
		xh := (x[j] - mean) * rstd
		g[j] = dy[j]
		if gamma != nil {
			g[j] *= gamma[j]
		}
		mg += g[j] / n
		mgx += g[j] * xh / n
		if dgamma != nil {
			dgamma[j] += dy[j] * xh
		}
		if dbeta != nil {
			dbeta[j] += dy[j]
		}
	}
	dx := make([]float64, len(x))
	for j := range x {
		xh := (x[j] - mean) * rstd
		dx[j] = rstd * (g[j] - mg - xh*mgx)
	}
	return dx
}

func testLayerNorm(h *harness) {
	d := h.dev
	const eps = 1e-5
	for _, s := range append([][2]int{{64, 48}}, rowShapes...) {
		rows, cols := s[0], s[1]
		for _, affine := range [][2]bool{{true, true}, {false, false}, {true, false}, {false, true}} {
			what := name("LayerNorm(%d×%d gamma=%v beta=%v)", rows, cols, affine[0], affine[1])
			// An offset mean tests that the variance is not E[x²]−E[x]².
			x := h.uniform(rows*cols, 99, 101)
			dy := h.rand(rows * cols)
			var gamma, beta, dgamma, dbeta []float32
			var gb, bb, dgb, dbb kernels.Buffer
			if affine[0] {
				gamma, dgamma = h.uniform(cols, 0.5, 1.5), h.rand(cols)
				gb, dgb = h.buf(gamma), h.buf(dgamma)
			}
			if affine[1] {
				beta, dbeta = h.rand(cols), h.rand(cols)
				bb, dbb = h.buf(beta), h.buf(dbeta)
			}
			y, mean, rstd := h.alloc(rows*cols), h.alloc(rows), h.alloc(rows)
			xb := h.buf(x)
			d.LayerNorm(y, mean, rstd, xb, gb, bb, rows, cols, eps)
			dx := h.alloc(rows * cols)
			d.LayerNormBackward(dx, dgb, dbb, h.buf(dy), xb, mean, rstd, gb, rows, cols)

			wantY, wantDx := make([]float64, rows*cols), make([]float64, rows*cols)
			wantM, wantR := make([]float64, rows), make([]float64, rows)
			var wantDg, wantDb []float64
			if affine[0] {
				wantDg = widen(dgamma)
			}
			if affine[1] {
				wantDb = widen(dbeta)
			}
			for r := 0; r < rows; r++ {
				xr := widen(x[r*cols : (r+1)*cols])
				yr, m, rs := layerNormRef(xr, widenOrNil(gamma), widenOrNil(beta), eps)
				copy(wantY[r*cols:], yr)
				wantM[r], wantR[r] = m, rs
				copy(wantDx[r*cols:], layerNormBackwardRef(widen(dy[r*cols:(r+1)*cols]), xr, widenOrNil(gamma), m, rs, wantDg, wantDb))
			}
			h.check(what+" y", h.get(y), wantY, 1e-4, 1e-4)
			h.check(what+" mean", h.get(mean), wantM, 1e-6, 0)
			h.check(what+" rstd", h.get(rstd), wantR, 1e-4, 0)
			h.check(what+" dx", h.get(dx), wantDx, 1e-4, 1e-4*maxAbs(wantDx))
			if affine[0] {
				h.check(what+" dgamma", h.get(dgb), wantDg, 1e-4, 1e-4*float64(rows))
			}
			if affine[1] {
				h.check(what+" dbeta", h.get(dbb), wantDb, 1e-4, 1e-5*float64(rows))
			}
		}
	}
}

func widenOrNil(v []float32) []float64 {
	if v == nil {
		return nil
	}
	return widen(v)
}

func maxAbs(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = math.Max(m, math.Abs(x))
	}
	return m
}
