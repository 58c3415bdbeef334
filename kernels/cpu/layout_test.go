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
			g, v := make([]float32, n), make([]float32, n)
			bkNormGo(g, x, nimg, hw, istride, mu, a, b, relu)
			simdBkNorm(v, x, nimg, hw, istride, mu, a, b, relu)
			sameBits(t, name("%v relu %v: norm", s, relu), v, g)
		}
		for _, mask := range [][]float32{nil, y} {
			g, v := make([]float32, n), make([]float32, n)
			bkDxGo(g, dy, x, mask, nimg, hw, istride, mu, a, k1, k2, sc)
			simdBkDx(v, dy, x, mask, nimg, hw, istride, mu, a, k1, k2, sc)
			sameBits(t, name("%v mask %v: dx", s, mask != nil), v, g)
		}
	}
}

// TestBlockedRepeats wants batch norm in Blocked16 to give the same bits
// whatever the threads: the batch is cut by its shape alone.
func TestBlockedRepeats(t *testing.T) {
	d, err := NewWithDNN("")
	if err != nil {
		t.Fatal(err)
	}
	if d.SetActivationLayout(kernels.Blocked16) != nil {
		t.Skip("no oneDNN")
	}
	const n, c, hw = 37, 32, 25
	x := d.Alloc(n * c * hw)
	d.Upload(x, finite(simdInputs(n*c*hw)))
	run := func(threads int) []float32 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(threads))
		y, sm, sr, rm, rv := d.Alloc(n*c*hw), d.Alloc(c), d.Alloc(c), d.Alloc(c), d.Alloc(c)
		d.BatchNormTrainIn(kernels.Blocked16, y, sm, sr, rm, rv, x, nil, nil, n, c, hw, 0.1, 1e-5)
		dx, dg, db := d.Alloc(n*c*hw), d.Alloc(c), d.Alloc(c)
		d.BatchNormBackwardIn(kernels.Blocked16, dx, dg, db, y, x, sm, sr, nil, n, c, hw)
		out := make([]float32, 0, 2*n*c*hw+2*c)
		for _, b := range []kernels.Buffer{y, dx, dg, db} {
			v := make([]float32, b.Len())
			d.Download(v, b)
			out = append(out, v...)
		}
		return out
	}
	one := run(1)
	sameBits(t, "4 threads", run(4), one)
	sameBits(t, "3 threads", run(3), one)
}

// TestAddSIMDMatchesGo wants Add's and AddReLU's bits from the AVX2 loop.
func TestAddSIMDMatchesGo(t *testing.T) {
	if !haveSIMD {
		t.Skip("no AVX2")
	}
	for _, n := range []int{1, 7, 8, 33, 1000} {
		a, b := simdInputs(n + 3)[3:], simdInputs(n)
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
