package kernelstest

import "math"

func geluRef(x float64, tanh bool) float64 {
	if tanh {
		return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
	}
	return 0.5 * x * (1 + math.Erf(x/math.Sqrt2))
}

func geluGradRef(x float64, tanh bool) float64 {
	if tanh {
		c := math.Sqrt(2 / math.Pi)
		u := c * (x + 0.044715*x*x*x)
		t := math.Tanh(u)
		return 0.5*(1+t) + 0.5*x*(1-t*t)*c*(1+3*0.044715*x*x)
	}
	return 0.5*(1+math.Erf(x/math.Sqrt2)) + x*math.Exp(-x*x/2)/math.Sqrt(2*math.Pi)
}

func testActivation(h *harness) {
	d := h.dev
	for _, n := range elemSizes {
		x := h.uniform(n, -6, 6)
		if n > 4 {
			// ReLU passes a NaN through, as PyTorch's does.
			x[0], x[1], x[2], x[3] = 0, float32(math.Copysign(0, -1)), 1e-30, nan32
		}
		dy := h.rand(n)
		want := make([]float64, n)

		y := h.alloc(n)
		d.ReLU(y, h.buf(x))
		for i, v := range x {
			want[i] = math.Max(float64(v), 0) // NaN for a NaN
		}
		h.checkExact(name("ReLU(n=%d)", n), h.get(y), want)
		yv := h.get(y)
		xb := h.buf(x)
		d.ReLU(xb, xb)
		h.checkExact(name("ReLU in place (n=%d)", n), h.get(xb), want)

		dx := h.alloc(n)
		d.ReLUBackward(dx, h.buf(dy), h.buf(yv))
		for i := range want {
			want[i] = 0
			if yv[i] > 0 {
				want[i] = float64(dy[i])
			}
		}
		h.checkExact(name("ReLUBackward(n=%d)", n), h.get(dx), want)

		for _, tanh := range []bool{false, true} {
			d.GELU(y, h.buf(x), tanh)
			for i, v := range x {
				want[i] = geluRef(float64(v), tanh)
			}
			h.check(name("GELU(n=%d tanh=%v)", n, tanh), h.get(y), want, rtolElem, atolElem)

			dyb := h.buf(dy)
			d.GELUBackward(dyb, dyb, h.buf(x), tanh) // in place
			for i, v := range x {
				want[i] = float64(dy[i]) * geluGradRef(float64(v), tanh)
			}
			h.check(name("GELUBackward(n=%d tanh=%v)", n, tanh), h.get(dyb), want, rtolElem, atolElem)
		}
	}
}
