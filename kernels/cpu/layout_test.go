package cpu

import (
	"math"
	"runtime"
	"slices"
	"testing"

	"github.com/macdist/macdist/kernels"
)

// TestBlockedSIMDMatchesGo wants the bits of the Go Blocked16 loops from
// their AVX2 versions, on finite inputs and, for the element-wise ones,
// the specials too.
func TestBlockedSIMDMatchesGo(t *testing.T) {
	if !haveSIMD {
		t.Skip("no AVX2")
	}
	for _, s := range [][3]int{{1, 1, 16}, {3, 7, 32}, {2, 64, 48}} {
		nimg, hw, cb := s[0], s[1], s[2]/16
		istride := cb * hw * 16
		n := (nimg-1)*istride + hw*16
		x, dy, y := simdInputs(n), simdInputs(n + 5)[5:], simdInputs(n + 9)[9:]
		fx, fdy := finite(slices.Clone(x)), finite(slices.Clone(dy))
		coef := func(seed int) []float32 {
			v := make([]float32, 16)
			for j := range v {
				v[j] = float32(math.Sin(float64(seed*16+j))) + 0.25
			}
			return v
		}
		mu, a, b, k1, k2, sc := coef(1), coef(2), coef(3), coef(4), coef(5), coef(6)

		var s1, q1, s2, q2 [16]float64
		bkSumsGo(s1[:], q1[:], fx, nimg, hw, istride)
		simdBkSums(s2[:], q2[:], fx, nimg, hw, istride)
		if s1 != s2 || q1 != q2 {
			t.Errorf("%v: sums %v %v, Go %v %v", s, s2, q2, s1, q1)
		}
		for _, mask := range [][]float32{nil, y} {
			bkGradSumsGo(s1[:], q1[:], fx, fdy, mask, nimg, hw, istride, mu, a)
			simdBkGradSums(s2[:], q2[:], fx, fdy, mask, nimg, hw, istride, mu, a)
			if s1 != s2 || q1 != q2 {
				t.Errorf("%v mask %v: grad sums %v %v, Go %v %v", s, mask != nil, s2, q2, s1, q1)
			}
		}
		for _, relu := range []bool{false, true} {
			for _, z := range [][]float32{nil, dy} {
				g, v := make([]float32, n), make([]float32, n)
				bkNormGo(g, x, z, nimg, hw, istride, mu, a, b, relu)
				simdBkNorm(v, x, z, nimg, hw, istride, mu, a, b, relu)
				sameBits(t, name("%v relu %v z %v: norm", s, relu, z != nil), v, g)
			}
		}
		for _, mask := range [][]float32{nil, y} {
			g, v := make([]float32, n), make([]float32, n)
			bkDxGo(g, dy, x, mask, nimg, hw, istride, mu, a, k1, k2, sc)
			simdBkDx(v, dy, x, mask, nimg, hw, istride, mu, a, k1, k2, sc)
			sameBits(t, name("%v mask %v: dx", s, mask != nil), v, g)
		}
	}
}

// TestBlockedRepeats wants batch norm in Blocked16 and NHWC to give the
// same bits whatever the threads: the batch is cut by its shape alone.
func TestBlockedRepeats(t *testing.T) {
	d, err := NewWithDNN("")
	if err != nil {
		t.Fatal(err)
	}
	if d.SetActivationLayout(kernels.Blocked16) != nil {
		t.Skip("no oneDNN")
	}
	const n, hw = 37, 25
	run := func(l kernels.Layout, c, threads int) []float32 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(threads))
		x, plain := d.Alloc(n*c*hw), d.Alloc(n*c*hw)
		d.Upload(plain, finite(simdInputs(n*c*hw)))
		d.Relayout(x, l, plain, kernels.NCHW, n, c, hw)
		y, sm, sr, rm, rv := d.Alloc(n*c*hw), d.Alloc(c), d.Alloc(c), d.Alloc(c), d.Alloc(c)
		d.BatchNormTrainIn(l, y, sm, sr, rm, rv, x, nil, nil, n, c, hw, 0.1, 1e-5)
		dx, dg, db := d.Alloc(n*c*hw), d.Alloc(c), d.Alloc(c)
		d.BatchNormBackwardIn(l, dx, dg, db, y, x, sm, sr, nil, n, c, hw)
		out := make([]float32, 0, 2*n*c*hw+2*c)
		for _, b := range []kernels.Buffer{y, dx} {
			p := d.Alloc(n * c * hw)
			d.Relayout(p, kernels.NCHW, b, l, n, c, hw)
			b = p
			v := make([]float32, b.Len())
			d.Download(v, b)
			out = append(out, v...)
		}
		for _, b := range []kernels.Buffer{dg, db} {
			v := make([]float32, b.Len())
			d.Download(v, b)
			out = append(out, v...)
		}
		return out
	}
	for _, s := range []struct {
		l kernels.Layout
		c int
	}{{kernels.Blocked16, 32}, {kernels.NHWC, 32}, {kernels.NHWC, 40}, {kernels.NHWC, 6}} {
		one := run(s.l, s.c, 1)
		for _, threads := range []int{3, 4} {
			sameBits(t, name("%v c=%d, %d threads", s.l, s.c, threads), run(s.l, s.c, threads), one)
		}
	}
}

// TestNHWCSIMDMatchesGo wants the bits of the Go NHWC loops from their
// AVX2 versions, for channels in whole vectors and not.
func TestNHWCSIMDMatchesGo(t *testing.T) {
	if !haveSIMD {
		t.Skip("no AVX2")
	}
	for _, c := range []int{6, 8, 16, 20, 40, 64} {
		const rows = 13
		n := rows * c
		x, dy, y := simdInputs(n), simdInputs(n + 5)[5:], simdInputs(n + 9)[9:]
		fx, fdy := finite(slices.Clone(x)), finite(slices.Clone(dy))
		coef := func(seed int) []float32 {
			v := make([]float32, c)
			for j := range v {
				v[j] = float32(math.Sin(float64(seed*c+j))) + 0.25
			}
			return v
		}
		mu, a, b, k1, k2, sc := coef(1), coef(2), coef(3), coef(4), coef(5), coef(6)
		s1, q1, s2, q2 := make([]float64, c), make([]float64, c), make([]float64, c), make([]float64, c)
		nhwcSumsGo(s1, q1, fx)
		simdNHWCSums(s2, q2, fx)
		if !slices.Equal(s1, s2) || !slices.Equal(q1, q2) {
			t.Errorf("c=%d: sums %v %v, Go %v %v", c, s2, q2, s1, q1)
		}
		for _, mask := range [][]float32{nil, y} {
			nhwcGradSumsGo(s1, q1, fx, fdy, mask, mu, a)
			simdNHWCGradSums(s2, q2, fx, fdy, mask, mu, a)
			if !slices.Equal(s1, s2) || !slices.Equal(q1, q2) {
				t.Errorf("c=%d mask %v: grad sums %v %v, Go %v %v", c, mask != nil, s2, q2, s1, q1)
			}
		}
		for _, relu := range []bool{false, true} {
			for _, z := range [][]float32{nil, dy} {
				g, v := make([]float32, n), make([]float32, n)
				nhwcNormGo(g, x, z, mu, a, b, relu)
				simdNHWCNorm(v, x, z, mu, a, b, relu)
				sameBits(t, name("c=%d relu %v z %v: norm", c, relu, z != nil), v, g)
			}
		}
		for _, mask := range [][]float32{nil, y} {
			g, v := make([]float32, n), make([]float32, n)
			nhwcDxGo(g, dy, x, mask, mu, a, k1, k2, sc)
			simdNHWCDx(v, dy, x, mask, mu, a, k1, k2, sc)
			sameBits(t, name("c=%d mask %v: dx", c, mask != nil), v, g)
		}
	}
}

// TestAddSIMDMatchesGo wants Add's and AddReLU's bits from the AVX2 loop.
func TestAddSIMDMatchesGo(t *testing.T) {
	if !haveSIMD {
		t.Skip("no AVX2")
	}
	for _, n := range []int{1, 7, 8, 33, 1000} {
		a, b := simdInputs(n + 3)[3:], simdInputs(n)
		// −0 + −0 is −0, which ReLU makes +0; −Inf + Inf is a NaN it keeps.
		a[0], b[0] = float32(math.Copysign(0, -1)), float32(math.Copysign(0, -1))
		a[n-1], b[n-1] = float32(math.Inf(-1)), float32(math.Inf(1))
		for _, relu := range []bool{false, true} {
			want := make([]float32, n)
			for i := range want {
				want[i] = a[i] + b[i]
			}
			if relu {
				reluBits(f32bits(want), f32bits(want))
			}
			got := make([]float32, n)
			simdAdd(got, a, b, relu)
			sameBits(t, name("n=%d relu=%v", n, relu), got, want)
		}
	}
}
