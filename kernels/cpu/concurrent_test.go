package cpu_test

import (
	"sync"
	"testing"

	"github.com/macdist/macdist/kernels/cpu"
)

// TestConcurrentDevices runs one Device per goroutine, as data-parallel
// replicas do, and checks that each gets the result a lone Device gets:
// OpenBLAS is entered from several threads at once, and the goroutine pool
// is shared.
func TestConcurrentDevices(t *testing.T) {
	for _, blas := range []string{"openblas", "gonum"} {
		t.Run(blas, func(t *testing.T) {
			const n, replicas, steps = 160, 3, 4
			run := func() []float32 {
				d, err := cpu.NewWithBLAS(blas)
				if err != nil {
					t.Skip(err)
				}
				a, b, c := d.Alloc(n*n), d.Alloc(n*n), d.Alloc(n*n)
				for i, s := range cpu.Data(a) {
					cpu.Data(a)[i] = s + float32(i%13)/13
					cpu.Data(b)[i] = float32(i%7) / 7
				}
				y := d.Alloc(n * n)
				for range steps {
					d.Gemm(false, true, n, n, n, 1, a, n, b, n, 0, c, n)
					d.GemmStrided(false, false, 8, 8, 8, 1, a, 0, 8, 64, b, 0, 8, 64, 1, y, 0, 8, 64, n*n/64)
					d.Softmax(c, c, n, n)
					d.Add(y, y, c)
				}
				return append([]float32(nil), cpu.Data(y)...)
			}
			want := run()
			got := make([][]float32, replicas)
			var wg sync.WaitGroup
			for r := range got {
				wg.Go(func() { got[r] = run() })
			}
			wg.Wait()
			for r, g := range got {
				for i := range g {
					if g[i] != want[i] {
						t.Fatalf("replica %d: y[%d] = %v, alone %v", r, i, g[i], want[i])
					}
				}
			}
		})
	}
}
