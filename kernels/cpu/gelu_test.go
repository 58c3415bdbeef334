package cpu

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// The float32 approximations behind GELU and GELUBackward, checked densely
// against float64 math: the conformance suite samples only a few thousand
// points.

func TestExp32(t *testing.T) {
	worst := 0.0
	for v := float32(-87.3); v < 88.37; v = math.Nextafter32(v, 100) + 1e-4*float32(math.Abs(float64(v))) {
		got, want := float64(exp32(v)), math.Exp(float64(v))
		if e := math.Abs(got-want) / want; e > worst {
			worst = e
		}
	}
	// Four float32 ulps (ulp/2 = 6e-8 relative).
	if worst > 4.8e-7 {
		t.Errorf("exp32: relative error %.3g, want ≤ 4.8e-7", worst)
	}
	if g := exp32(89); !math.IsInf(float64(g), 1) {
		t.Errorf("exp32(89) = %v, want +Inf", g)
	}
	if g := exp32(-200); g <= 0 || g > 2e-38 {
		t.Errorf("exp32(-200) = %v, want a tiny positive number", g)
	}
	if g := exp32(float32(math.NaN())); !math.IsNaN(float64(g)) {
		t.Errorf("exp32(NaN) = %v", g)
	}
}

func TestGELUApprox(t *testing.T) {
	type fn struct {
		name string
		got  func(float32) float32
		want func(float64) float64
	}
	cdf := func(x float64) float64 { return 0.5 * math.Erfc(-x/math.Sqrt2) }
	pdf := func(x float64) float64 { return math.Exp(-x*x/2) / math.Sqrt(2*math.Pi) }
	c := math.Sqrt(2 / math.Pi)
	th := func(x float64) float64 { return math.Tanh(c * (x + 0.044715*x*x*x)) }
	for _, f := range []fn{
		{"geluErf", geluErf, func(x float64) float64 { return x * cdf(x) }},
		{"geluErfGrad", geluErfGrad, func(x float64) float64 { return cdf(x) + x*pdf(x) }},
		{"geluTanh", geluTanh, func(x float64) float64 { return 0.5 * x * (1 + th(x)) }},
		{"geluTanhGrad", geluTanhGrad, func(x float64) float64 {
			u := th(x)
			return 0.5*(1+u) + 0.5*x*(1-u*u)*c*(1+3*0.044715*x*x)
		}},
	} {
		// A few float32 roundings of the value, or of the terms whose sum
		// it is: the gradients cross zero, where only an absolute error
		// can be asked for.
		worst := 0.0
		for x := -20.0; x <= 20; x += 1.0 / 4096 {
			x32 := float32(x)
			got, want := float64(f.got(x32)), f.want(float64(x32))
			worst = max(worst, math.Abs(got-want)/(1e-6*math.Abs(want)+1e-7))
		}
		if worst > 1 {
			t.Errorf("%s: error %.3g× the bound 1e-6·|want| + 1e-7", f.name, worst)
		}
		for _, x := range []float32{0, float32(math.Copysign(0, -1))} {
			if g := f.got(x); math.IsNaN(float64(g)) {
				t.Errorf("%s(%v) = NaN", f.name, x)
			}
		}
		if g := f.got(float32(math.NaN())); !math.IsNaN(float64(g)) {
			t.Errorf("%s(NaN) = %v, want NaN", f.name, g)
		}
	}
}

// TestFMA32 checks the emulated float32 fused multiply-add against the
// exact a·b + c rounded by math/big, on operands of every scale, the
// products' low bits lying on either side of c's, and the specials.
func TestFMA32(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	val := func() float32 {
		switch rng.IntN(8) {
		case 0:
			return []float32{0, float32(math.Copysign(0, -1)), 1, -1, 0.5, math.MaxFloat32, 1e-45, 1.1754944e-38}[rng.IntN(8)]
		case 1: // a float32 with few significant bits, so that sums tie
			return float32(rng.IntN(1<<8)-1<<7) * float32(math.Ldexp(1, rng.IntN(20)-10))
		}
		return math.Float32frombits(rng.Uint32()&^(0xff<<23)|uint32(100+rng.IntN(56))<<23) * float32(1-2*rng.IntN(2))
	}
	exact := func(a, b, c float32) float32 {
		x := new(big.Float).SetPrec(400).SetFloat64(float64(a))
		x.Mul(x, new(big.Float).SetPrec(400).SetFloat64(float64(b)))
		x.Add(x, new(big.Float).SetPrec(400).SetFloat64(float64(c)))
		f, _ := x.Float32()
		return f
	}
	for i := 0; i < 200000; i++ {
		a, b, c := val(), val(), val()
		if i%4 == 0 { // c just below the product's last bit
			c = float32(float64(a)*float64(b)) * float32(math.Ldexp(1, -25-rng.IntN(4)))
		}
		if math.IsInf(float64(a)*float64(b)+float64(c), 0) {
			continue
		}
		got, want := fma32(a, b, c), exact(a, b, c)
		if math.Float32bits(got) != math.Float32bits(want) && !(got == 0 && want == 0) {
			t.Fatalf("fma32(%g, %g, %g) = %g (%#08x), exact rounding %g (%#08x)", a, b, c,
				got, math.Float32bits(got), want, math.Float32bits(want))
		}
	}
	for _, c := range []struct{ a, b, c, want float32 }{
		{float32(math.Inf(1)), 2, 1, float32(math.Inf(1))},
		{float32(math.Inf(1)), 0, 1, float32(math.NaN())},
		{float32(math.NaN()), 1, 1, float32(math.NaN())},
		{math.MaxFloat32, 2, 0, float32(math.Inf(1))},
	} {
		got := fma32(c.a, c.b, c.c)
		if got != c.want && !(got != got && c.want != c.want) {
			t.Errorf("fma32(%g, %g, %g) = %g, want %g", c.a, c.b, c.c, got, c.want)
		}
	}
}
