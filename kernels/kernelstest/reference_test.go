package kernelstest

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The references are the suite's ground truth, so their backward formulas
// are checked here against central differences of their forward ones.

const fdStep = 1e-6

func closeEnough(got, want float64) bool { return math.Abs(got-want) <= 1e-6+1e-6*math.Abs(want) }

func TestGELUGradRef(t *testing.T) {
	for _, tanh := range []bool{false, true} {
		for _, x := range []float64{-5, -1.3, -0.1, 0, 0.7, 2, 4.5} {
			fd := (geluRef(x+fdStep, tanh) - geluRef(x-fdStep, tanh)) / (2 * fdStep)
			if g := geluGradRef(x, tanh); !closeEnough(g, fd) {
				t.Errorf("geluGradRef(%v, %v) = %v, central difference %v", x, tanh, g, fd)
			}
		}
	}
	// PyTorch: F.gelu(torch.tensor(1.0, dtype=torch.float64)), and with
	// approximate="tanh".
	if y := geluRef(1, false); math.Abs(y-0.8413447460685429) > 1e-15 {
		t.Errorf("geluRef(1) = %v", y)
	}
	if y := geluRef(1, true); math.Abs(y-0.8411919906082768) > 1e-15 {
		t.Errorf("geluRef(1, tanh) = %v", y)
	}
}

func TestCrossEntropyRef(t *testing.T) {
	// By hand: log-softmax of (1, 2, 3) and (4, 5, 6) is −(2.4076, 1.4076,
	// 0.4076); with smoothing 0.1, labels 2 and 0, the mean loss is
	// 0.9·(0.4076+2.4076)/2 + 0.1·1.4076.
	l0, _ := crossEntropyRef([]float64{1, 2, 3}, 2, 0.1)
	l1, _ := crossEntropyRef([]float64{4, 5, 6}, 0, 0.1)
	if got := (l0 + l1) / 2; math.Abs(got-1.4076059644443806) > 1e-12 {
		t.Errorf("mean loss = %v", got)
	}
	x := []float64{0.3, -1.2, 2.5, 0.1, 0.9}
	_, grad := crossEntropyRef(x, 3, 0.2)
	for j := range x {
		xp, xm := append([]float64(nil), x...), append([]float64(nil), x...)
		xp[j] += fdStep
		xm[j] -= fdStep
		lp, _ := crossEntropyRef(xp, 3, 0.2)
		lm, _ := crossEntropyRef(xm, 3, 0.2)
		if fd := (lp - lm) / (2 * fdStep); !closeEnough(grad[j], fd) {
			t.Errorf("grad[%d] = %v, central difference %v", j, grad[j], fd)
		}
	}
}

// loss is Σ y⊙w, whose gradient with respect to y is w.
func weighted(y, w []float64) float64 {
	var s float64
	for i := range y {
		s += y[i] * w[i]
	}
	return s
}

func randVec(r *rand.Rand, n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = 2*r.Float64() - 1
	}
	return v
}

func TestLayerNormBackwardRef(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const n, eps = 6, 1e-5
	x, gamma, beta, w := randVec(r, n), randVec(r, n), randVec(r, n), randVec(r, n)
	_, mean, rstd := layerNormRef(x, gamma, beta, eps)
	dgamma, dbeta := make([]float64, n), make([]float64, n)
	dx := layerNormBackwardRef(w, x, gamma, mean, rstd, dgamma, dbeta)
	f := func(x, gamma, beta []float64) float64 {
		y, _, _ := layerNormRef(x, gamma, beta, eps)
		return weighted(y, w)
	}
	for _, c := range []struct {
		name string
		v    []float64
		grad []float64
	}{{"dx", x, dx}, {"dgamma", gamma, dgamma}, {"dbeta", beta, dbeta}} {
		for j := range c.v {
			old := c.v[j]
			c.v[j] = old + fdStep
			lp := f(x, gamma, beta)
			c.v[j] = old - fdStep
			lm := f(x, gamma, beta)
			c.v[j] = old
			if fd := (lp - lm) / (2 * fdStep); !closeEnough(c.grad[j], fd) {
				t.Errorf("%s[%d] = %v, central difference %v", c.name, j, c.grad[j], fd)
			}
		}
	}
}

func TestBatchNormBackwardRef(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const n, c, hw, eps = 3, 2, 4, 1e-5
	x, gamma, beta, w := randVec(r, n*c*hw), randVec(r, c), randVec(r, c), randVec(r, n*c*hw)
	forward := func(x, gamma, beta []float64) float64 {
		mean, variance := batchNormStats(x, n, c, hw)
		y := make([]float64, len(x))
		for j, v := range x {
			ch := j / hw % c
			y[j] = (v-mean[ch])/math.Sqrt(variance[ch]+eps)*gamma[ch] + beta[ch]
		}
		return weighted(y, w)
	}
	mean, variance := batchNormStats(x, n, c, hw)
	rstd := make([]float64, c)
	for ch := range rstd {
		rstd[ch] = 1 / math.Sqrt(variance[ch]+eps)
	}
	dgamma, dbeta := make([]float64, c), make([]float64, c)
	dx := batchNormBackwardRef(w, x, gamma, mean, rstd, n, c, hw, dgamma, dbeta)
	for _, p := range []struct {
		name string
		v    []float64
		grad []float64
	}{{"dx", x, dx}, {"dgamma", gamma, dgamma}, {"dbeta", beta, dbeta}} {
		for j := range p.v {
			old := p.v[j]
			p.v[j] = old + fdStep
			lp := forward(x, gamma, beta)
			p.v[j] = old - fdStep
			lm := forward(x, gamma, beta)
			p.v[j] = old
			if fd := (lp - lm) / (2 * fdStep); !closeEnough(p.grad[j], fd) {
				t.Errorf("%s[%d] = %v, central difference %v", p.name, j, p.grad[j], fd)
			}
		}
	}
}
