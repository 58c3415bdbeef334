package benchmark

import (
	"fmt"
	"testing"

	"github.com/macdist/macdist/kernels/cpu"
)

// BenchmarkGemm times the CPU device's Gemm with each BLAS on shapes that the
// benchmark models spend their time in, and reports GFLOP/s, so that `make
// bench` shows what OpenBLAS buys over the gonum fallback.
func BenchmarkGemm(b *testing.B) {
	shapes := []struct {
		name    string
		m, n, k int
		transB  bool
	}{
		{"square256", 256, 256, 256, false},
		// ResNet-20's first stage, one image: 16 filters × 3·3·16 patch rows
		// × 32·32 positions (im2col).
		{"resnet20-conv", 16, 1024, 144, false},
		// A CIFAR ViT-Tiny's qkv projection for 32 images of 65 tokens:
		// x [2080, 192] · Wᵀ, W [576, 192].
		{"vit-qkv", 2080, 576, 192, true},
	}
	for _, blas := range []string{"openblas", "gonum"} {
		dev, err := cpu.NewWithBLAS(blas)
		if err != nil {
			b.Logf("skipping %s: %v", blas, err)
			continue
		}
		for _, s := range shapes {
			b.Run(fmt.Sprintf("%s/%s", blas, s.name), func(b *testing.B) {
				a := dev.Alloc(s.m * s.k)
				w := dev.Alloc(s.k * s.n)
				c := dev.Alloc(s.m * s.n)
				dev.Fill(a, 0.5)
				dev.Fill(w, 0.25)
				ldb := s.n
				if s.transB {
					ldb = s.k
				}
				b.ResetTimer()
				for b.Loop() {
					dev.Gemm(false, s.transB, s.m, s.n, s.k, 1, a, s.k, w, ldb, 0, c, s.n)
				}
				flops := 2 * float64(s.m) * float64(s.n) * float64(s.k) * float64(b.N)
				b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
