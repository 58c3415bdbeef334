package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/macdist/macdist/kernels"
)

func name(format string, args ...any) string { return fmt.Sprintf(format, args...) }

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

// finite replaces the specials and huge values of x, for the kernels whose
// sums are compared.
func finite(x []float32) []float32 {
	for i, v := range x {
		if v != v || math.IsInf(float64(v), 0) || math.Abs(float64(v)) > 1e6 {
			x[i] = 0.75
		}
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
	// GELU at both widths where the CPU has AVX-512.
	widths := []bool{false}
	if geluWide {
		widths = append(widths, true)
	}
	defer func(w bool) { geluWide = w }(geluWide)
	for _, n := range []int{1, 7, 8, 9, 15, 16, 17, 33, 1000, 4099} {
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
			for _, w := range widths {
				geluWide = w
				clear(got)
				simdGELUOp(c.op, got, x, dy)
				sameBits(t, fmt.Sprintf("%s (16 lanes %v)", c.name, w), got, want)
			}
		}

		reluBits(f32bits(want), f32bits(x))
		simdReLU(f32bits(got), f32bits(x))
		sameBits(t, "ReLU", got, want)

		copy(want, x)
		addTo(want, dy)
		copy(got, x)
		simdAddTo(got, dy)
		sameBits(t, "AddTo", got, want)

		reluMaskBits(f32bits(want), f32bits(dy), f32bits(x))
		simdReLUMask(f32bits(got), f32bits(dy), f32bits(x))
		sameBits(t, "ReLUBackward", got, want)
	}
}

func TestSIMDPlanesMatchGo(t *testing.T) {
	if !haveSIMD {
		t.Skip("no SIMD kernels in this build or on this CPU")
	}
	for _, c := range []struct{ n, hw, stride int }{{1, 1, 1}, {3, 5, 7}, {4, 64, 128}, {2, 100, 300}, {5, 196, 196}} {
		size := (c.n-1)*c.stride + c.hw
		x, dy := simdInputs(size + 40)[40:], simdInputs(size + 9)[9:]
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

func TestSIMDColSumsMatchGo(t *testing.T) {
	if !haveSIMD {
		t.Skip("no SIMD kernels in this build or on this CPU")
	}
	for _, c := range []struct{ rows, cols int }{{1, 1}, {3, 7}, {5, 8}, {300, 21}, {2, 192}, {7, 45}, {256, 576}, {3, 33}} {
		x := simdInputs(c.rows * c.cols)
		for i, v := range x {
			if v != v || math.IsInf(float64(v), 0) || math.Abs(float64(v)) > 1e6 {
				x[i] = 2.5
			}
		}
		got, want := make([]float64, c.cols), make([]float64, c.cols)
		simdColSums(got, x, c.rows, c.cols, c.cols)
		colSumsGo(want, x, c.rows, c.cols, c.cols)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%+v: column %d: %v, Go %v", c, i, got[i], want[i])
			}
		}
		// The first half of each row, rows cols apart.
		half := c.cols/2 + 1
		simdColSums(got, x, c.rows, half, c.cols)
		colSumsGo(want, x, c.rows, half, c.cols)
		for i := range want[:half] {
			if got[i] != want[i] {
				t.Fatalf("%+v, %d columns of each row: column %d: %v, Go %v", c, half, i, got[i], want[i])
			}
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%+v: column %d: %v, Go %v", c, i, got[i], want[i])
			}
		}
	}
}

func TestSIMDRowsMatchGo(t *testing.T) {
	if !haveSIMD {
		t.Skip("no SIMD kernels in this build or on this CPU")
	}
	for _, c := range []struct{ rows, cols int }{{1, 1}, {3, 7}, {2, 8}, {5, 65}, {4, 192}} {
		n := c.rows * c.cols
		x, dy := finite(simdInputs(n + 11)[11:]), finite(simdInputs(n + 3)[3:])
		gamma, beta := finite(simdInputs(c.cols + 1)[1:]), finite(simdInputs(c.cols + 2)[2:])
		got, want := make([]float32, n), make([]float32, n)

		simdSoftmaxRows(got, x, c.rows, c.cols)
		for r := 0; r < c.rows; r++ {
			softmaxRow(want[r*c.cols:(r+1)*c.cols], x[r*c.cols:(r+1)*c.cols])
		}
		sameBits(t, "Softmax", got, want)
		raw := simdInputs(n) // NaNs and infinities
		simdSoftmaxRows(got, raw, c.rows, c.cols)
		for r := 0; r < c.rows; r++ {
			softmaxRow(want[r*c.cols:(r+1)*c.cols], raw[r*c.cols:(r+1)*c.cols])
		}
		sameBits(t, "Softmax of specials", got, want)

		for _, affine := range []bool{false, true} {
			g, b := gamma, beta
			if !affine {
				g, b = nil, nil
			}
			gm, gr := make([]float32, c.rows), make([]float32, c.rows)
			wm, wr := make([]float32, c.rows), make([]float32, c.rows)
			simdLayerNormRows(got, gm, gr, x, g, b, c.rows, c.cols, 1e-5)
			for r := 0; r < c.rows; r++ {
				wm[r], wr[r] = layerNormRow(want[r*c.cols:(r+1)*c.cols], x[r*c.cols:(r+1)*c.cols], g, b, 1e-5)
			}
			sameBits(t, "LayerNorm", got, want)
			sameBits(t, "LayerNorm mean", gm, wm)
			sameBits(t, "LayerNorm rstd", gr, wr)

			simdLayerNormBackRows(got, dy, x, wm, wr, g, c.rows, c.cols)
			for r := 0; r < c.rows; r++ {
				layerNormBackwardRow(want[r*c.cols:(r+1)*c.cols], dy[r*c.cols:(r+1)*c.cols], x[r*c.cols:(r+1)*c.cols], wm[r], wr[r], g)
			}
			sameBits(t, "LayerNormBackward", got, want)

			// The parameter gradients of the columns [1, cols).
			if c.cols > 1 {
				k := c.cols - 1
				gg, gb := make([]float64, k), make([]float64, k)
				simdLNParam(gg, gb, dy[1:], x[1:], wm, wr, c.rows, k, c.cols)
				wg, wb := make([]float64, k), make([]float64, k)
				for r := 0; r < c.rows; r++ {
					for j := 0; j < k; j++ {
						v, d := x[r*c.cols+1+j], dy[r*c.cols+1+j]
						wg[j] += float64(d) * float64((v-wm[r])*wr[r])
						wb[j] += float64(d)
					}
				}
				for j := range wg {
					if gg[j] != wg[j] || gb[j] != wb[j] {
						t.Fatalf("%+v: LayerNorm parameter sums of column %d: %v %v, Go %v %v", c, 1+j, gg[j], gb[j], wg[j], wb[j])
					}
				}
			}
		}
	}
}

func TestSIMDConvPlaneMatchesGo(t *testing.T) {
	if !haveSIMD {
		t.Skip("no SIMD kernels in this build or on this CPU")
	}
	for _, g := range []kernels.ConvGeom{
		{C: 1, H: 7, W: 5, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1, DilH: 1, DilW: 1},
		{C: 1, H: 9, W: 7, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 2, PadW: 2, DilH: 2, DilW: 2},
		{C: 1, H: 6, W: 5, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 0, PadW: 1, DilH: 1, DilW: 1},
		{C: 1, H: 8, W: 9, KH: 3, KW: 2, StrideH: 2, StrideW: 3, PadH: 1, PadW: 2, DilH: 1, DilW: 1},
		{C: 1, H: 8, W: 8, KH: 3, KW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1, DilH: 1, DilW: 1},
		{C: 1, H: 2, W: 2, KH: 3, KW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1, DilH: 1, DilW: 1},
		{C: 1, H: 10, W: 10, KH: 5, KW: 5, StrideH: 1, StrideW: 1, PadH: 4, PadW: 4, DilH: 1, DilW: 1},
		{C: 1, H: 5, W: 13, KH: 3, KW: 5, StrideH: 2, StrideW: 1, PadH: 3, PadW: 2, DilH: 3, DilW: 1},
	} {
		rows := g.KH * g.KW * g.OutH() * g.OutW()
		x := simdInputs(g.H * g.W)
		got, want := simdInputs(rows), simdInputs(rows)
		simdConvPlane(false, got, x, g)
		convPlane(false, want, x, g)
		sameBits(t, name("im2col %+v", g), got, want)

		col := simdInputs(rows + 3)[3:]
		gx, wx := simdInputs(g.H*g.W), simdInputs(g.H*g.W)
		simdConvPlane(true, col, gx, g)
		convPlane(true, col, wx, g)
		sameBits(t, name("col2im %+v", g), gx, wx)
	}
}

func TestSIMDMaxPoolMatchesGo(t *testing.T) {
	if !haveSIMD {
		t.Skip("no SIMD kernels in this build or on this CPU")
	}
	for _, c := range []struct{ n, h, w int }{{1, 2, 2}, {3, 5, 6}, {2, 28, 28}, {4, 7, 9}, {2, 10, 10}, {2, 8, 14},
		{3, 16, 16}, {1, 4, 34}, {2, 6, 33}, {1, 3, 17}, {2, 12, 8}} {
		g := kernels.PoolGeom{C: 1, H: c.h, W: c.w, KH: 2, KW: 2, StrideH: 2, StrideW: 2}
		oh, ow := g.OutH(), g.OutW()
		x := simdInputs(c.n * c.h * c.w)
		for i := range x { // ties, signed zeros, NaNs and infinities
			if i%5 == 1 {
				x[i] = x[i-1]
			}
			if i%11 == 3 {
				x[i] = float32(math.Copysign(0, -1))
			}
		}
		got, want := make([]float32, c.n*oh*ow), make([]float32, c.n*oh*ow)
		simdMaxPool2x2(got, x, nil, c.n, c.h, c.w, oh, ow)
		for p := 0; p < c.n; p++ {
			maxPoolPlane(want[p*oh*ow:(p+1)*oh*ow], x[p*c.h*c.w:(p+1)*c.h*c.w], nil, g)
		}
		sameBits(t, name("MaxPool2d %+v", c), got, want)
		dy := simdInputs(c.n*oh*ow + 1)[1:]
		gdx, wdx := simdInputs(c.n*c.h*c.w), simdInputs(c.n*c.h*c.w)
		simdMaxPool2x2(dy, x, gdx, c.n, c.h, c.w, oh, ow)
		for p := 0; p < c.n; p++ {
			maxPoolPlane(dy[p*oh*ow:(p+1)*oh*ow], x[p*c.h*c.w:(p+1)*c.h*c.w], wdx[p*c.h*c.w:(p+1)*c.h*c.w], g)
		}
		sameBits(t, name("MaxPool2dBackward %+v", c), gdx, wdx)
	}
}

// BenchmarkAddTo times dst += src on one ring chunk (64Ki floats, 256 KiB),
// in Go and, where the build has it, in AVX2.
func BenchmarkAddTo(b *testing.B) {
	dst, src := make([]float32, 64<<10), make([]float32, 64<<10)
	for _, c := range []struct {
		name string
		f    func(dst, src []float32)
		ok   bool
	}{{"go", addTo, true}, {"avx2", simdAddTo, haveSIMD}} {
		b.Run(c.name, func(b *testing.B) {
			if !c.ok {
				b.Skip("no SIMD kernels in this build or on this CPU")
			}
			b.SetBytes(int64(8 * len(dst)))
			for b.Loop() {
				c.f(dst, src)
			}
		})
	}
}

// TestSIMDLNParamMatchesGo checks LayerNorm's parameter sums against the
// Go loop of lnParamTask, bit for bit: rows not a multiple of the four
// the SIMD loop takes together, columns not of its eight, a row stride
// wider than the columns summed, and either sum alone.
func TestSIMDLNParamMatchesGo(t *testing.T) {
	if !haveSIMD {
		t.Skip("no SIMD kernels in this build or on this CPU")
	}
	for _, c := range []struct{ rows, cols, ld int }{{1, 3, 3}, {4, 8, 8}, {7, 19, 24}, {13, 40, 41}, {64, 192, 192}} {
		x := finite(simdInputs(c.rows * c.ld))
		dy := finite(simdInputs(c.rows*c.ld + 3)[3:])
		mean, rstd := finite(simdInputs(c.rows + 11)[11:]), finite(simdInputs(c.rows + 17)[17:])
		wantG, wantB := make([]float64, c.cols), make([]float64, c.cols)
		for r := 0; r < c.rows; r++ {
			for j := 0; j < c.cols; j++ {
				g := dy[r*c.ld+j]
				wantG[j] += float64(g) * float64((x[r*c.ld+j]-mean[r])*rstd[r])
				wantB[j] += float64(g)
			}
		}
		for _, both := range [][2]bool{{true, true}, {true, false}, {false, true}} {
			var g, b []float64
			if both[0] {
				g = make([]float64, c.cols)
			}
			if both[1] {
				b = make([]float64, c.cols)
			}
			simdLNParam(g, b, dy, x, mean, rstd, c.rows, c.cols, c.ld)
			for j := range c.cols {
				if (g != nil && math.Float64bits(g[j]) != math.Float64bits(wantG[j])) ||
					(b != nil && math.Float64bits(b[j]) != math.Float64bits(wantB[j])) {
					t.Fatalf("%+v, sums %v: column %d differs from the Go loop's (%v, %v)", c, both, j, wantG[j], wantB[j])
				}
			}
		}
	}
}
