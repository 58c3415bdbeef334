package cpu_test

import (
	"fmt"
	"testing"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
)

func benchDevice(b *testing.B, blas string) *cpu.Device {
	d, err := cpu.NewWithBLAS(blas)
	if err != nil {
		b.Skip(err)
	}
	return d
}

func ramp(d *cpu.Device, n int) kernels.Buffer {
	buf := d.Alloc(n)
	s := cpu.Data(buf)
	for i := range s {
		s[i] = float32(i%97)/97 - 0.5
	}
	return buf
}

func reportGFLOPS(b *testing.B, flopsPerOp float64) {
	b.ReportMetric(flopsPerOp*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// BenchmarkSgemm is C = A·B for square matrices through Device.Gemm.
func BenchmarkSgemm(b *testing.B) {
	for _, blas := range []string{"openblas", "gonum"} {
		for _, n := range []int{32, 128, 256, 512, 1024} {
			b.Run(fmt.Sprintf("%s/n=%d", blas, n), func(b *testing.B) {
				d := benchDevice(b, blas)
				x, y, z := ramp(d, n*n), ramp(d, n*n), d.Alloc(n*n)
				b.ReportAllocs()
				for b.Loop() {
					d.Gemm(false, false, n, n, n, 1, x, n, y, n, 0, z, n)
				}
				reportGFLOPS(b, 2*float64(n)*float64(n)*float64(n))
			})
		}
	}
}

// BenchmarkSgemmRaw is OpenBLAS's own speed: the same products called in a
// loop from C, with no Go in between, to compare BenchmarkSgemm/openblas to.
func BenchmarkSgemmRaw(b *testing.B) {
	for _, n := range []int{32, 128, 256, 512, 1024} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			d := benchDevice(b, "openblas")
			x, y, z := ramp(d, n*n), ramp(d, n*n), d.Alloc(n*n)
			b.ReportAllocs()
			b.ResetTimer()
			cpu.SgemmLoop(b.N, n, n, n, cpu.Data(x), cpu.Data(y), cpu.Data(z))
			reportGFLOPS(b, 2*float64(n)*float64(n)*float64(n))
		})
	}
}

// BenchmarkGemmStrided compares a batch of small products as one
// GemmStrided, which spreads them over goroutines, with a loop of Gemms.
func BenchmarkGemmStrided(b *testing.B) {
	for _, blas := range []string{"openblas", "gonum"} {
		for _, s := range []int{16, 32, 64} {
			const batch = 64
			flops := 2 * float64(s*s*s) * batch
			setup := func(b *testing.B) (*cpu.Device, kernels.Buffer, kernels.Buffer, kernels.Buffer) {
				d := benchDevice(b, blas)
				return d, ramp(d, batch*s*s), ramp(d, batch*s*s), d.Alloc(batch * s * s)
			}
			b.Run(fmt.Sprintf("%s/%d³x%d/strided", blas, s, batch), func(b *testing.B) {
				d, x, y, z := setup(b)
				b.ReportAllocs()
				for b.Loop() {
					d.GemmStrided(false, false, s, s, s, 1, x, 0, s, s*s, y, 0, s, s*s, 0, z, 0, s, s*s, batch)
				}
				reportGFLOPS(b, flops)
			})
			b.Run(fmt.Sprintf("%s/%d³x%d/loop", blas, s, batch), func(b *testing.B) {
				d, x, y, z := setup(b)
				views := make([][3]kernels.Buffer, batch)
				for i := range views {
					views[i] = [3]kernels.Buffer{d.View(x, i*s*s, s*s), d.View(y, i*s*s, s*s), d.View(z, i*s*s, s*s)}
				}
				b.ReportAllocs()
				for b.Loop() {
					for _, v := range views {
						d.Gemm(false, false, s, s, s, 1, v[0], s, v[1], s, 0, v[2], s)
					}
				}
				reportGFLOPS(b, flops)
			})
		}
	}
}

func BenchmarkIm2col(b *testing.B) {
	for _, g := range []kernels.ConvGeom{
		{C: 64, H: 56, W: 56, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1, DilH: 1, DilW: 1},
		{C: 3, H: 224, W: 224, KH: 7, KW: 7, StrideH: 2, StrideW: 2, PadH: 3, PadW: 3, DilH: 1, DilW: 1},
	} {
		const nimg = 2
		name := fmt.Sprintf("C=%d,H=%d,K=%d,S=%d", g.C, g.H, g.KH, g.StrideH)
		d := benchDevice(b, "gonum")
		x := ramp(d, nimg*g.C*g.H*g.W)
		col := d.Alloc(nimg * g.ColRows() * g.ColCols())
		b.Run("Im2col/"+name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(4 * nimg * g.ColRows() * g.ColCols()))
			for b.Loop() {
				d.Im2col(col, x, g, 0, nimg)
			}
		})
		b.Run("Col2im/"+name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(4 * nimg * g.ColRows() * g.ColCols()))
			for b.Loop() {
				d.Col2im(x, col, g, 0, nimg)
			}
		})
	}
}

// BenchmarkOps times a few kernels on transformer- and CNN-sized operands.
func BenchmarkOps(b *testing.B) {
	d := benchDevice(b, "gonum")
	const rows, cols = 512, 768
	const n = rows * cols
	x, y, z := ramp(d, n), ramp(d, n), d.Alloc(n)
	gamma, beta := ramp(d, cols), ramp(d, cols)
	mean, rstd := d.Alloc(rows), d.Alloc(rows)
	labels := make([]int32, rows)
	sm, sr, rm, rv := d.Alloc(64), d.Alloc(64), d.Alloc(64), d.Alloc(64)
	d.Fill(rv, 1)
	pg := kernels.PoolGeom{C: 64, H: 32, W: 32, KH: 3, KW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1}
	img := ramp(d, 4*64*32*32)
	pooled := d.Alloc(4 * 64 * pg.OutH() * pg.OutW())
	for _, op := range []struct {
		name  string
		bytes int
		f     func()
	}{
		{"Add", 12 * n, func() { d.Add(z, x, y) }},
		{"Axpby", 12 * n, func() { d.Axpby(z, 0.5, x, 0.5) }},
		{"ReLU", 8 * n, func() { d.ReLU(z, x) }},
		{"GELU", 8 * n, func() { d.GELU(z, x, false) }},
		{"GELUBackward", 12 * n, func() { d.GELUBackward(z, y, x, false) }},
		{"DropoutMask", 4 * n, func() { d.DropoutMask(z, 0.1, 1) }},
		{"Softmax", 8 * n, func() { d.Softmax(z, x, rows, cols) }},
		{"CrossEntropy", 8 * n, func() { d.CrossEntropy(z, x, labels, rows, cols, 0.1) }},
		{"LayerNorm", 8 * n, func() { d.LayerNorm(z, mean, rstd, x, gamma, beta, rows, cols, 1e-5) }},
		{"LayerNormBackward", 12 * n, func() { d.LayerNormBackward(z, gamma, beta, y, x, mean, rstd, gamma, rows, cols) }},
		{"ReduceSum", 4 * n, func() { d.ReduceSum(gamma, x, 1, rows, cols, 1, 0) }},
		{"BatchNormTrain", 8 * n, func() { d.BatchNormTrain(z, sm, sr, rm, rv, x, nil, nil, 6, 64, 1024, 0.1, 1e-5) }},
		{"BatchNormBackward", 12 * n, func() { d.BatchNormBackward(z, nil, nil, y, x, sm, sr, nil, 6, 64, 1024) }},
		{"MaxPool2d", 4 * 4 * 64 * 32 * 32, func() { d.MaxPool2d(pooled, img, pg, 4) }},
		{"Dot", 8 * n, func() { d.Dot(x, y) }},
	} {
		b.Run(op.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(op.bytes))
			for b.Loop() {
				op.f()
			}
		})
	}
}
