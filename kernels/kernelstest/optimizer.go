package kernelstest

import "math"

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
