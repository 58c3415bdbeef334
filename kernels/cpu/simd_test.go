package cpu

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The SIMD kernels must give the bits the Go loops give (any NaN for a
// NaN), so that a result does not depend on the build or the CPU.

func simdInputs(n int) []float32 {
	rng := rand.New(rand.NewPCG(3, 4))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * 4)
	}
	specials := []float32{0, float32(math.Copysign(0, -1)), float32(math.NaN()),
		math.Float32frombits(0xffc00000), // the negative NaN x86 makes of 0/0
		float32(math.Inf(1)), float32(math.Inf(-1)), 1e-30, -1e-30, 1e-40, -1e-40,
		math.MaxFloat32, -math.MaxFloat32, 30, -30, 90, -90, 0.5, -0.5}
	for i, v := range specials {
		x[i*7%n] = v
	}
	return x
}

func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	for i := range want {
		g, w := got[i], want[i]
		if g != g && w != w {
			continue // NaN payloads may differ
		}
		if math.Float32bits(g) != math.Float32bits(w) {
			t.Fatalf("%s: [%d] = %v (%#08x), the Go loop gives %v (%#08x)",
				what, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
}

func TestSIMDMatchesGo(t *testing.T) {
	if !haveSIMD {
		t.Skip("no SIMD kernels in this build or on this CPU")
	}
	for _, n := range []int{1, 7, 8, 9, 1000, 4099} {
		x := simdInputs(n)
		dy := simdInputs(n + 5)[5:]
		got, want := make([]float32, n), make([]float32, n)
		for _, c := range []struct {
			name string
			op   int
			f    func(float32) float32
		}{
			{"GELU", simdGELU, geluErf},
			{"GELUBackward", simdGELUGrad, geluErfGrad},
			{"GELU tanh", simdGELUTanh, geluTanh},
			{"GELUBackward tanh", simdGELUTanhGrad, geluTanhGrad},
		} {
			grad := c.op == simdGELUGrad || c.op == simdGELUTanhGrad
			for i, v := range x {
				want[i] = c.f(v)
				if grad {
					want[i] *= dy[i]
				}
			}
			simdGELUOp(c.op, got, x, dy)
			sameBits(t, c.name, got, want)
		}

		reluBits(f32bits(want), f32bits(x))
		simdReLU(f32bits(got), f32bits(x))
		sameBits(t, "ReLU", got, want)

		reluMaskBits(f32bits(want), f32bits(dy), f32bits(x))
		simdReLUMask(f32bits(got), f32bits(dy), f32bits(x))
		sameBits(t, "ReLUBackward", got, want)
	}

	// Rows of 5 out of rows of 7 into rows of 9.
	src := simdInputs(7 * 4)
	dst := simdInputs(9*4 + 3)
	want := append([]float32(nil), dst...)
	for r := range 4 {
		for j := range 5 {
			want[r*9+j] += src[r*7+j]
		}
	}
	simdAddRows(dst, src, 4, 5, 9, 7)
	sameBits(t, "AddRows", dst, want)
}

func TestSIMDPlanesMatchGo(t *testing.T) {
	if !haveSIMD {
		t.Skip("no SIMD kernels in this build or on this CPU")
	}
	for _, c := range []struct{ n, hw, stride int }{{1, 1, 1}, {3, 5, 7}, {4, 64, 128}, {2, 100, 300}, {5, 196, 196}} {
		size := (c.n-1)*c.stride + c.hw
		x, dy := simdInputs(size+40)[40:], simdInputs(size+9)[9:]
		for i := range x { // finite values: the sums are what is compared
			if v := x[i]; v != v || math.IsInf(float64(v), 0) || math.Abs(float64(v)) > 1e6 {
				x[i] = 1.5
			}
			if v := dy[i]; v != v || math.IsInf(float64(v), 0) || math.Abs(float64(v)) > 1e6 {
				dy[i] = -0.25
			}
		}
		if g, w := simdSumPlanes(x, c.n, c.hw, c.stride), sumPlanesGo(x, c.n, c.hw, c.stride); g != w {
			t.Errorf("%+v: sumPlanes %v, Go %v", c, g, w)
		}
		if g, w := simdSqDevPlanes(x, c.n, c.hw, c.stride, 0.3), sqDevPlanesGo(x, c.n, c.hw, c.stride, 0.3); g != w {
			t.Errorf("%+v: sqDevPlanes %v, Go %v", c, g, w)
		}
		ga, gb := simdBNGradSums(x, dy, c.n, c.hw, c.stride, 0.3, 1.7)
		wa, wb := bnGradSumsGo(x, dy, c.n, c.hw, c.stride, 0.3, 1.7)
		if ga != wa || gb != wb {
			t.Errorf("%+v: bnGradSums %v %v, Go %v %v", c, ga, gb, wa, wb)
		}
		got, want := simdInputs(size), simdInputs(size)
		simdBNNorm(got, x, c.n, c.hw, c.stride, 0.3, 1.7, -0.2)
		bnNormGo(want, x, c.n, c.hw, c.stride, 0.3, 1.7, -0.2)
		sameBits(t, "bnNorm", got, want)
		simdBNDx(got, dy, x, c.n, c.hw, c.stride, 0.3, 1.7, 0.01, -0.02, 0.9)
		bnDxGo(want, dy, x, c.n, c.hw, c.stride, 0.3, 1.7, 0.01, -0.02, 0.9)
		sameBits(t, "bnDx", got, want)
	}
}
