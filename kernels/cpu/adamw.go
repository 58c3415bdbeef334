package cpu

import (
	"fmt"
	"math"

	"github.com/macdist/macdist/kernels"
)

// adamwTask is one AdamW step over a range of elements. The scalars are
// computed once per call, in float64 as torch computes them in Python, and
// rounded to float32, the precision the element-wise work is done in.
type adamwTask struct {
	p, g, m, v []float32
	decay      float32 // 1 − lr·wd
	beta1, c1  float32 // c1 = 1 − beta1
	beta2, c2  float32 // c2 = 1 − beta2
	stepSize   float32 // lr / bc1
	bc2Sqrt    float32
	eps        float32
}

func (t *adamwTask) run(lo, hi int) {
	p := t.p[lo:hi]
	g, m, v := t.g[lo:hi], t.m[lo:hi], t.v[lo:hi]
	g, m, v = g[:len(p)], m[:len(p)], v[:len(p)]
	for i := range p {
		gi := g[i]
		pi := p[i] * t.decay
		mi := m[i]*t.beta1 + t.c1*gi
		vi := v[i]*t.beta2 + t.c2*gi*gi
		denom := float32(math.Sqrt(float64(vi)))/t.bc2Sqrt + t.eps
		p[i] = pi - t.stepSize*(mi/denom)
		m[i], v[i] = mi, vi
	}
}

// AdamW applies one torch.optim.AdamW step (see kernels.Device).
func (d *Device) AdamW(p, g, m, v kernels.Buffer, lr, beta1, beta2, eps, weightDecay float32, step int) {
	ps, gs := d.slice(p, "AdamW", "p"), d.slice(g, "AdamW", "g")
	ms, vs := d.slice(m, "AdamW", "m"), d.slice(v, "AdamW", "v")
	sameLen("AdamW", len(ps), len(gs))
	sameLen("AdamW", len(ps), len(ms))
	sameLen("AdamW", len(ps), len(vs))
	if step < 1 {
		panic(fmt.Sprintf("cpu: AdamW: step %d, want ≥ 1", step))
	}
	bc1 := 1 - math.Pow(float64(beta1), float64(step))
	bc2 := 1 - math.Pow(float64(beta2), float64(step))
	d.mu.Lock()
	defer d.mu.Unlock()
	d.adamw = adamwTask{
		p: ps, g: gs, m: ms, v: vs,
		decay: float32(1 - float64(lr)*float64(weightDecay)),
		beta1: beta1, c1: float32(1 - float64(beta1)),
		beta2: beta2, c2: float32(1 - float64(beta2)),
		stepSize: float32(float64(lr) / bc1),
		bc2Sqrt:  float32(math.Sqrt(bc2)),
		eps:      eps,
	}
	d.parallel(&d.adamw, len(ps), grainMath)
	d.adamw = adamwTask{} // drop references to the operands
}
