package kernelstest

import "math"

// dropoutUniformRef restates kernels.DropoutUniform from its definition, so
// that a change to either shows up here: the splitmix64 finaliser of
// seed + (i+1)·golden, top 24 bits over 2²⁴.
func dropoutUniformRef(seed uint64, i int) float64 {
	z := seed + uint64(i+1)*0x9E3779B97F4A7C15
	z = (z ^ z>>30) * 0xBF58476D1CE4E5B9
	z = (z ^ z>>27) * 0x94D049BB133111EB
	z ^= z >> 31
	return float64(z>>40) / (1 << 24)
}

func testDropout(h *harness) {
	d := h.dev
	const n = 100003
	// The draws themselves are fixed for every device: pin a few. The
	// first two are the top bits of splitmix64's first outputs from state
	// 0, 0xE220A8397B1DCDAF and 0x6E789E6AA1B965F4.
	for _, c := range []struct {
		seed uint64
		i    int
		u    float64
	}{
		{0, 0, 0.88331079483032227},
		{0, 1, 0.43152797222137451},
		{12345, 99, 0.17731744050979614},
	} {
		if u := dropoutUniformRef(c.seed, c.i); u != c.u {
			h.t.Errorf("dropoutUniformRef(%d, %d) = %v, want %v", c.seed, c.i, u, c.u)
		}
	}
	for _, p := range []float32{0, 0.1, 0.5, 0.9, 1} {
		for _, seed := range []uint64{0, 42, 1 << 63} {
			m := h.buf(filled(n, nan32))
			d.DropoutMask(m, p, seed)
			want := make([]float64, n)
			kept := 0
			for i := range want {
				if dropoutUniformRef(seed, i) >= float64(p) {
					want[i] = float64(float32(1) / (1 - p))
					kept++
				}
			}
			h.check(name("DropoutMask(p=%g seed=%d)", p, seed), h.get(m), want, 1e-6, 0)
			// The draws are uniform: the kept fraction is within 5σ of 1−p.
			frac := float64(kept) / n
			if sd := math.Sqrt(float64(p) * float64(1-p) / n); math.Abs(frac-float64(1-p)) > 5*sd+1e-9 {
				h.t.Errorf("DropoutMask(p=%g seed=%d) keeps %.4f", p, seed, frac)
			}
		}
	}
	// A view's mask is the start of a whole buffer's mask: the counter is
	// the index within the buffer passed.
	a, b := h.alloc(100), h.alloc(200)
	d.DropoutMask(a, 0.5, 7)
	d.DropoutMask(d.View(b, 50, 100), 0.5, 7)
	h.checkExact("DropoutMask of a view", h.get(d.View(b, 50, 100)), widen(h.get(a)))
}
