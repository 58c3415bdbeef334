package kernelstest

import (
	"math"

	"github.com/macdist/macdist/kernels"
)

// testAdamW checks AdamW against torch.optim.AdamW's update written out in
// float64, over several steps so that the bias corrections and the moments
// carried from one step to the next are exercised, and that mismatched
// lengths are refused.
func testAdamW(h *harness) {
	d := h.dev
	type hp struct{ lr, beta1, beta2, eps, wd float32 }
	for _, c := range []hp{{1e-3, 0.9, 0.999, 1e-8, 0.01}, {0.1, 0.8, 0.99, 1e-3, 0}, {3e-4, 0, 0.9, 1e-6, 0.5}} {
		for _, n := range elemSizes {
			p, m, v := h.rand(n), h.rand(n), h.uniform(n, 0, 1)
			pb, mb, vb := h.buf(p), h.buf(m), h.buf(v)
			pw, mw, vw := widen(p), widen(m), widen(v)
			for step := 1; step <= 3; step++ {
				g := h.rand(n)
				if step == 2 {
					g[0] = 0 // a zero gradient: m and v decay, p still moves
				}
				gb := h.buf(g)
				d.AdamW(pb, gb, mb, vb, c.lr, c.beta1, c.beta2, c.eps, c.wd, step)
				lr, b1, b2 := float64(c.lr), float64(c.beta1), float64(c.beta2)
				bc1 := 1 - math.Pow(b1, float64(step))
				bc2 := 1 - math.Pow(b2, float64(step))
				for i := range pw {
					gi := float64(g[i])
					pw[i] *= 1 - lr*float64(c.wd)
					mw[i] = b1*mw[i] + (1-b1)*gi
					vw[i] = b2*vw[i] + (1-b2)*gi*gi
					pw[i] -= lr / bc1 * mw[i] / (math.Sqrt(vw[i])/math.Sqrt(bc2) + float64(c.eps))
				}
				what := name("AdamW(n=%d lr=%g beta1=%g beta2=%g eps=%g wd=%g step=%d)", n, c.lr, c.beta1, c.beta2, c.eps, c.wd, step)
				// p moves by about lr per step, so its error is measured
				// against lr rather than against p.
				h.check(what+" p", h.get(pb), pw, rtolElem, 1e-5*float64(c.lr))
				h.check(what+" m", h.get(mb), mw, rtolElem, atolElem)
				h.check(what+" v", h.get(vb), vw, rtolElem, atolElem)
			}
		}
	}
	a, b := h.alloc(4), h.alloc(5)
	h.mustPanic("AdamW with a short moment", func() { d.AdamW(a, a, b, a, 1e-3, 0.9, 0.999, 1e-8, 0, 1) })
}

// testSGDStep checks that SGDStep moves p and the momentum buffer to the
// same bits as the Axpby and Scale calls it replaces, for every
// combination of momentum, Nesterov and coupled or decoupled weight decay,
// and that g is left as it was.
func testSGDStep(h *harness) {
	d := h.dev
	type hp struct {
		lr, mom, wd, decay float32
		nesterov, buf      bool
	}
	for _, c := range []hp{
		{lr: 0.1, mom: 0.9, buf: true},
		{lr: 0.05, mom: 0.9, wd: 5e-4, buf: true},
		{lr: 0.5, mom: 0.9, decay: float32(1 - 0.5*2e-5), buf: true},
		{lr: 0.1, mom: 0.9, wd: 1e-3, nesterov: true, buf: true},
		{lr: 0.01, wd: 1e-2},
		{lr: 0.3},
	} {
		if c.decay == 0 {
			c.decay = 1
		}
		for _, n := range elemSizes {
			p, bufv := h.rand(n), h.rand(n)
			pf, pu := h.buf(p), h.buf(p)
			var bf, bu kernels.Buffer
			if c.buf {
				bf, bu = h.buf(bufv), h.buf(bufv)
			}
			for step := 1; step <= 3; step++ {
				g := h.rand(n)
				gf, gu := h.buf(g), h.buf(g)
				d.SGDStep(pf, gf, bf, c.lr, c.mom, c.wd, c.decay, c.nesterov)
				// The unfused sequence, as mac's optimizers ran it.
				if c.decay != 1 {
					d.Scale(pu, c.decay)
				}
				if c.wd != 0 {
					d.Axpby(gu, c.wd, pu, 1)
				}
				s := gu
				if bu != nil {
					d.Axpby(bu, 1, gu, c.mom)
					if c.nesterov {
						d.Axpby(gu, c.mom, bu, 1)
					} else {
						s = bu
					}
				}
				d.Axpby(pu, -c.lr, s, 1)
				what := name("SGDStep(n=%d lr=%g momentum=%g wd=%g decay=%g nesterov=%v buf=%v step=%d)",
					n, c.lr, c.mom, c.wd, c.decay, c.nesterov, c.buf, step)
				h.checkExact(what+" p", h.get(pf), widen(h.get(pu)))
				if bf != nil {
					h.checkExact(what+" buf", h.get(bf), widen(h.get(bu)))
				}
				h.checkExact(what+" g unchanged", h.get(gf), widen(g))
			}
		}
	}
	a, b := h.alloc(4), h.alloc(5)
	h.mustPanic("SGDStep with a short buffer", func() { d.SGDStep(a, a, b, 0.1, 0.9, 0, 1, false) })
}
