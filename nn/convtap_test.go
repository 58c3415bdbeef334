package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
)

// TestPatchMeanMatchesUnfold checks ā from the mean image against the mean
// of the unfolded columns, the definition (and macdist's tap until the
// im2col-free version), on geometries with stride, padding, dilation,
// non-square images and kernels larger than the padded border allows.
func TestPatchMeanMatchesUnfold(t *testing.T) {
	d := cpu.New()
	cases := []kernels.ConvGeom{
		{C: 3, H: 32, W: 32, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1, DilH: 1, DilW: 1},
		{C: 16, H: 8, W: 8, KH: 3, KW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1, DilH: 1, DilW: 1},
		{C: 3, H: 29, W: 23, KH: 7, KW: 7, StrideH: 2, StrideW: 2, PadH: 3, PadW: 3, DilH: 1, DilW: 1},
		{C: 4, H: 9, W: 11, KH: 1, KW: 1, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1},
		{C: 4, H: 9, W: 11, KH: 1, KW: 1, StrideH: 2, StrideW: 2, DilH: 1, DilW: 1},
		{C: 2, H: 12, W: 10, KH: 3, KW: 3, StrideH: 1, StrideW: 3, PadH: 2, PadW: 0, DilH: 2, DilW: 2},
		{C: 5, H: 6, W: 6, KH: 5, KW: 5, StrideH: 1, StrideW: 1, PadH: 0, PadW: 0, DilH: 1, DilW: 1},
		{C: 1, H: 5, W: 7, KH: 3, KW: 3, StrideH: 4, StrideW: 4, PadH: 2, PadW: 2, DilH: 1, DilW: 1},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, g := range cases {
		t.Run(fmt.Sprintf("C%d_%dx%d_k%d_s%d,%d_p%d,%d_d%d", g.C, g.H, g.W, g.KH, g.StrideH, g.StrideW, g.PadH, g.PadW, g.DilH), func(t *testing.T) {
			const n = 5
			xs := make([]float32, n*g.C*g.H*g.W)
			for i := range xs {
				xs[i] = rng.Float32()*2 - 0.5
			}
			x := d.Alloc(len(xs))
			d.Upload(x, xs)
			rows, cols := g.ColRows(), g.ColCols()
			col := d.Alloc(n * rows * cols)
			d.Im2col(col, x, g, 0, n)
			want := d.Alloc(rows)
			d.ReduceSumMid(want, col, n, rows, cols, 1/float32(n*cols), 0)

			got := d.Alloc(rows)
			xt := &Tensor{Shape: []int{n, g.C, g.H, g.W}, Data: x}
			var p patchMean
			p.compute(d, got, xt, g)
			w, gv := make([]float32, rows), make([]float32, rows)
			d.Download(w, want)
			d.Download(gv, got)
			for i := range w {
				if diff := math.Abs(float64(w[i] - gv[i])); diff > 1e-6 {
					t.Fatalf("ā[%d] = %v, unfolded mean %v (|Δ| %.2g)", i, gv[i], w[i], diff)
				}
			}
			// A second call on the same geometry reuses the selections.
			sh := p.sh
			p.compute(d, got, xt, g)
			if p.sh != sh {
				t.Error("the selections were made again for the same geometry")
			}
		})
	}
}
