package cpu_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/macdist/macdist/kernels/cpu"
)

// TestGemmOnDNN runs products large enough for oneDNN's sgemm (Gemm and
// GemmStrided, every transposition, gapped leading dimensions, beta 0 and
// not, a batch accumulating into one C) on a Device that sends them
// there, against the same sums in float64, and twice, for the same bits.
func TestGemmOnDNN(t *testing.T) {
	d, err := cpu.NewWithDNN("onednn")
	if err != nil {
		t.Skip(err)
	}
	if err := d.SetGemmOnDNN(true); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	rnd := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(r.NormFloat64())
		}
		return s
	}
	const m, n, k = 300, 200, 100 // m·n·k = 6e6
	for _, c := range []struct {
		transA, transB bool
		gap            int // added to every leading dimension
		alpha, beta    float32
		batch          int
		overlapC       bool // C's stride 0: the batch's products add up
	}{
		{false, false, 0, 1, 0, 1, false},
		{true, false, 3, 0.5, 1.5, 1, false},
		{false, true, 0, 2, 0, 2, false},
		{true, true, 5, 1, -1, 2, false},
		{false, true, 1, 1, 1, 3, true},
	} {
		ra, ca := m, k
		if c.transA {
			ra, ca = k, m
		}
		rb, cb := k, n
		if c.transB {
			rb, cb = n, k
		}
		lda, ldb, ldc := ca+c.gap, cb+c.gap, n+c.gap
		sa, sb, sc := ra*lda, rb*ldb, m*ldc
		if c.overlapC {
			sc = 0
		}
		a, b, c0 := rnd(c.batch*sa), rnd(c.batch*sb), rnd(max(1, c.batch*sc)+m*ldc)
		want := make([]float64, len(c0))
		for i, v := range c0 {
			want[i] = float64(v)
		}
		at := func(x []float32, off, ld int, trans bool, i, j int) float64 {
			if trans {
				i, j = j, i
			}
			return float64(x[off+i*ld+j])
		}
		for p := 0; p < c.batch; p++ {
			for i := 0; i < m; i++ {
				for j := 0; j < n; j++ {
					var s float64
					for l := 0; l < k; l++ {
						s += at(a, p*sa, lda, c.transA, i, l) * at(b, p*sb, ldb, c.transB, l, j)
					}
					o := p*sc + i*ldc + j
					want[o] = float64(c.alpha)*s + float64(c.beta)*want[o]
				}
			}
		}
		var runs [2][]float32
		for run := range runs {
			cs := append([]float32(nil), c0...)
			if c.batch == 1 {
				d.Gemm(c.transA, c.transB, m, n, k, c.alpha, d.Wrap(a), lda, d.Wrap(b), ldb, c.beta, d.Wrap(cs), ldc)
			} else {
				d.GemmStrided(c.transA, c.transB, m, n, k, c.alpha, d.Wrap(a), 0, lda, sa, d.Wrap(b), 0, ldb, sb,
					c.beta, d.Wrap(cs), 0, ldc, sc, c.batch)
			}
			runs[run] = cs
		}
		var worst float64
		for i, w := range want {
			if math.Float32bits(runs[0][i]) != math.Float32bits(runs[1][i]) {
				t.Fatalf("%+v: C[%d] %v, then %v", c, i, runs[0][i], runs[1][i])
			}
			// float32 rounding of sums of k products of unit normals.
			worst = max(worst, math.Abs(float64(runs[0][i])-w)/(math.Sqrt(k*float64(c.batch))+math.Abs(w)))
		}
		if worst > 1e-5 {
			t.Errorf("%+v: error %.3g of the scale, want at most 1e-5", c, worst)
		}
	}
}
