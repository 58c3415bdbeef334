// Package nntest holds test helpers for modules: finite-difference gradient
// checks that work on any kernels.Device.
package nntest

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/nn"
)

// GradCheck compares a module's Backward with central finite differences.
//
// The scalar checked is L = Σ r⊙Forward(x) for a fixed random r, so every
// output element takes part. Differences are taken in float32 with step Eps
// on at most Samples elements of the input and of each trainable parameter,
// chosen at random; the largest error, relative to the largest analytic
// gradient of that tensor, must stay within Tol. Float32 rounding limits the
// accuracy to about 1e-3 relative, so tolerances near 1e-2 are the norm.
type GradCheck struct {
	Eps     float32 // default 1e-2
	Tol     float64 // default 2e-2
	Samples int     // default 40
	Seed    uint64
	// SkipInput skips the input gradient (for modules whose input is integer
	// data or whose first layer has none, such as a model's data input).
	SkipInput bool
}

// Run checks m at input x of the given shape. The module must be in a mode
// whose Forward is deterministic for a fixed x (dropout off).
func (g GradCheck) Run(t *testing.T, dev kernels.Device, m nn.Module, x []float32, shape []int) {
	t.Helper()
	if g.Eps == 0 {
		g.Eps = 1e-2
	}
	if g.Tol == 0 {
		g.Tol = 2e-2
	}
	if g.Samples == 0 {
		g.Samples = 40
	}
	rng := rand.New(rand.NewPCG(g.Seed, 7))
	in := nn.NewTensor(dev, shape...)
	dev.Upload(in.Data, x)

	y := m.Forward(in)
	r := make([]float32, y.Len())
	for i := range r {
		r[i] = float32(rng.NormFloat64())
	}
	loss := func() float64 {
		y := m.Forward(in)
		out := make([]float32, y.Len())
		dev.Download(out, y.Data)
		var s float64
		for i := range out {
			s += float64(r[i]) * float64(out[i])
		}
		return s
	}

	params := m.Params()
	nn.ZeroGrad(dev, params)
	y = m.Forward(in)
	dy := nn.NewTensor(dev, y.Shape...)
	dev.Upload(dy.Data, r)
	dx := m.Backward(dy)
	gotX := make([]float32, dx.Len())
	dev.Download(gotX, dx.Data)

	check := func(what string, buf kernels.Buffer, analytic []float32) {
		vals := make([]float32, len(analytic))
		dev.Download(vals, buf)
		var scale, worst float64
		for _, a := range analytic {
			scale = math.Max(scale, math.Abs(float64(a)))
		}
		if scale == 0 {
			scale = 1
		}
		n := len(vals)
		for s := 0; s < g.Samples && s < n; s++ {
			i := s
			if n > g.Samples {
				i = rng.IntN(n)
			}
			orig := vals[i]
			vals[i] = orig + g.Eps
			dev.Upload(buf, vals)
			lp := loss()
			vals[i] = orig - g.Eps
			dev.Upload(buf, vals)
			lm := loss()
			vals[i] = orig
			dev.Upload(buf, vals)
			num := (lp - lm) / (2 * float64(g.Eps))
			if e := math.Abs(num-float64(analytic[i])) / scale; e > worst {
				worst = e
			}
		}
		if worst > g.Tol || math.IsNaN(worst) {
			t.Errorf("gradcheck %s: finite-difference error %.3g relative to max |grad| %.3g exceeds %.3g", what, worst, scale, g.Tol)
		}
	}
	if !g.SkipInput {
		check("input", in.Data, gotX)
	}
	for _, p := range params {
		if p.Grad == nil {
			continue
		}
		grad := make([]float32, p.Grad.Len())
		dev.Download(grad, p.Grad.Data)
		check(p.Name, p.Value.Data, grad)
	}
}
