package cpu

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/macdist/macdist/kernels"
)

func TestParseConvAlgorithm(t *testing.T) {
	for _, c := range []struct {
		in   string
		want ConvAlgorithm
		ok   bool
	}{{"direct", ConvDirect, true}, {"auto", ConvAuto, true}, {"winograd", 0, false}, {"", 0, false}, {"Auto", 0, false}} {
		got, err := ParseConvAlgorithm(c.in)
		if (err == nil) != c.ok || c.ok && got != c.want {
			t.Errorf("ParseConvAlgorithm(%q) = %v, %v; want %v, ok %v", c.in, got, err, c.want, c.ok)
		}
		if c.ok && got.String() != c.in {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
}

func TestConvAlgorithmEnv(t *testing.T) {
	t.Setenv("MACDIST_CONV_ALGO", "fast")
	if _, err := Open("", "none"); err == nil || !strings.Contains(err.Error(), "MACDIST_CONV_ALGO") {
		t.Errorf("Open with MACDIST_CONV_ALGO=fast: %v, want an error naming the variable", err)
	}
	t.Setenv("MACDIST_CONV_ALGO", "auto")
	d, err := Open("", "none")
	if err != nil || d.ConvAlgorithm() != ConvDirect {
		t.Errorf("im2col with MACDIST_CONV_ALGO=auto: %v, %v; want direct, no error", d, err)
	}
	if err := d.SetConvAlgorithm(ConvAuto); err == nil {
		t.Error("SetConvAlgorithm(ConvAuto) on im2col: no error")
	}
	if err := loadOneDNN(); err != nil {
		t.Skip(err)
	}
	d, err = Open("", "onednn")
	if err != nil || d.ConvAlgorithm() != ConvAuto {
		t.Errorf("oneDNN with MACDIST_CONV_ALGO=auto: %v, %v; want auto", d.ConvAlgorithm(), err)
	}
}

// TestConvAutoMatchesDirect convolves ResNet's 3×3 stride-1 shapes (and a
// strided one, which stays direct) forward and backward with oneDNN's
// own choice of algorithm and with its direct one. Where oneDNN has
// AVX-512 its choice for nChw16c is Winograd (on the ISAs it was
// measured on, avx512_core and _vnni, required), which must agree with the
// direct convolution to rounding (relative to the largest output, as
// Winograd's transforms spread a tile's rounding over the tile) and
// repeat itself bit for bit.
func TestConvAutoMatchesDirect(t *testing.T) {
	if err := loadOneDNN(); err != nil {
		t.Skip(err)
	}
	arena := newDNNArena()
	const n = 16
	for _, s := range []abConv{
		{16, 32, 16, 3, 1, 1, 1}, {16, 16, 32, 3, 1, 1, 1}, {32, 16, 32, 3, 1, 1, 1},
		{64, 8, 64, 3, 1, 1, 1}, {64, 56, 64, 3, 1, 1, 1},
		{256, 14, 256, 3, 1, 1, 1}, {512, 7, 512, 3, 1, 1, 1}, {32, 16, 64, 3, 2, 1, 1},
	} {
		oh := (s.hw+2*s.pad-s.k)/s.stride + 1
		q := [16]int64{n, int64(s.c), int64(s.hw), int64(s.hw), int64(s.out), 1, int64(s.k), int64(s.k),
			int64(s.stride), int64(s.stride), int64(s.pad), int64(s.pad), 1, 1, int64(oh), int64(oh)}
		r := rand.New(rand.NewPCG(uint64(s.c), uint64(s.hw)))
		rnd := func(k int, sc float64) []float32 {
			x := make([]float32, k)
			for i := range x {
				x[i] = float32(r.NormFloat64() * sc)
			}
			return x
		}
		nx, ny, nw := n*s.c*s.hw*s.hw, n*s.out*oh*oh, s.out*s.c*s.k*s.k
		x, w, dy, b := rnd(nx, 1), rnd(nw, math.Sqrt(2/float64(s.k*s.k*s.c))), rnd(ny, 1), rnd(s.out, 0.1)
		run := func(alg ConvAlgorithm) (outs [4][]float32, impl string) {
			cv, err := newDNNConv(arena, q, true, 2, kernels.Blocked16, kernels.Blocked16, kernels.FP32, convPassAlgorithms(alg, s.c, s.out))
			if err != nil {
				t.Fatalf("%+v %v: %v", s, alg, err)
			}
			y, dx, dw, db := make([]float32, ny), make([]float32, nx), make([]float32, nw), make([]float32, s.out)
			cv.forward(x, w, b, y, 2)
			cv.backward(x, dy, w, dx, dw, db, 2)
			return [4][]float32{y, dx, dw, db}, cv.impl()
		}
		direct, _ := run(ConvDirect)
		auto, impl := run(ConvAuto)
		again, _ := run(ConvAuto)
		t.Logf("%+v: %s", s, impl)
		// Measured on avx512_core_vnni; oneDNN's heuristics may judge
		// otherwise on other ISAs, where the results must still agree.
		if isa := isaName(oneDNNISA()); isa == "avx512_core" || isa == "avx512_core_vnni" {
			passes := strings.Split(impl, ", ")
			for i, a := range convPassAlgorithms(ConvAuto, s.c, s.out) {
				wino := strings.Contains(passes[i], "wino")
				if want := s.stride == 1 && a == ConvAuto; wino != want {
					t.Errorf("%+v: %s: Winograd %v, want %v", s, passes[i], wino, want)
				}
			}
		}
		for k, name := range []string{"y", "dx", "dw", "db"} {
			var big, diff float64
			for i, v := range direct[k] {
				big = max(big, math.Abs(float64(v)))
				diff = max(diff, math.Abs(float64(v-auto[k][i])))
				if math.Float32bits(auto[k][i]) != math.Float32bits(again[k][i]) {
					t.Fatalf("%+v %s[%d]: %v, then %v: not repeatable", s, name, i, auto[k][i], again[k][i])
				}
			}
			if diff > 1e-5*big {
				t.Errorf("%+v %s: max |auto − direct| %.3g, %.3g of the largest |%s|", s, name, diff, diff/big, name)
			}
		}
	}
}

func TestConvPassAlgorithms(t *testing.T) {
	d, a := ConvDirect, ConvAuto
	for _, tc := range []struct {
		alg    ConvAlgorithm
		c, out int
		want   [3]ConvAlgorithm
	}{
		{d, 64, 64, [3]ConvAlgorithm{d, d, d}},
		{a, 3, 16, [3]ConvAlgorithm{d, d, d}},    // a first layer
		{a, 16, 16, [3]ConvAlgorithm{d, d, a}},   // ResNet-20's first stage
		{a, 16, 32, [3]ConvAlgorithm{d, a, a}},   // forward sums 16 channels, backward-data 32
		{a, 32, 16, [3]ConvAlgorithm{a, d, a}},   //
		{a, 32, 32, [3]ConvAlgorithm{a, a, a}},   //
		{a, 512, 512, [3]ConvAlgorithm{a, a, a}}, //
		{a, 15, 64, [3]ConvAlgorithm{d, a, d}},   // too few inputs for backward-weights
	} {
		if got := convPassAlgorithms(tc.alg, tc.c, tc.out); got != tc.want {
			t.Errorf("convPassAlgorithms(%v, %d, %d) = %v, want %v", tc.alg, tc.c, tc.out, got, tc.want)
		}
	}
}
