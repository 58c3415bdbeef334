package cpu

import (
	"math"
	"testing"
)

// TestReduceSumMidColumns sums down the columns of outer×mid matrices (the
// inner == 1 case, which reads row after row in blocks of columns) and
// wants, bit for bit, each column's float64 sum in row order, as summing
// one strided plane per column gives.
func TestReduceSumMidColumns(t *testing.T) {
	d := New()
	for _, c := range []struct{ outer, mid int }{{2, 1}, {3, 7}, {128, 300}, {5, midCols}, {17, 2*midCols + 33}} {
		x := simdInputs(c.outer * c.mid)
		for i, v := range x {
			if v != v || math.IsInf(float64(v), 0) || math.Abs(float64(v)) > 1e6 {
				x[i] = 0.5
			}
		}
		for _, beta := range []float32{0, 0.5} {
			dst := make([]float32, c.mid)
			for j := range dst {
				dst[j] = float32(j%5) - 2
			}
			want := make([]float32, c.mid)
			for j := range want {
				want[j] = combine(0.25, sumPlanesGo(x[j:], c.outer, 1, c.mid), beta, dst[j])
			}
			d.ReduceSumMid(d.Wrap(dst), d.Wrap(x), c.outer, c.mid, 1, 0.25, beta)
			for j := range want {
				if math.Float32bits(dst[j]) != math.Float32bits(want[j]) {
					t.Fatalf("%+v beta %v: column %d: %v, want %v", c, beta, j, dst[j], want[j])
				}
			}
		}
	}
}
