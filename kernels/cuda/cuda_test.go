package cuda_test

import (
	"math"
	"strings"
	"testing"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/kernels/cuda"
	"github.com/macdist/macdist/kernels/kernelstest"
)

// newDevice returns a Device on GPU 0, closed when the test ends, or skips
// the test with New's explanation where there is no usable GPU.
func newDevice(t testing.TB, opt cuda.Options) *cuda.Device {
	t.Helper()
	d, err := cuda.NewWithOptions(0, opt)
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return d
}

// TestConformance runs the kernels conformance suite on GPU 0.
func TestConformance(t *testing.T) {
	d := newDevice(t, cuda.Options{})
	t.Log(d.Name())
	t.Log("\n" + cuda.Probe().String())
	kernelstest.Run(t, d)
}

// A block handed out again by the caching allocator is zeroed like a new
// one, and a steady alloc/free cycle takes nothing more from the driver.
func TestAllocatorOnDevice(t *testing.T) {
	d := newDevice(t, cuda.Options{})
	b := d.Alloc(1000)
	d.Fill(b, 7)
	d.Free(b)
	before := d.MemStats()
	for i := 0; i < 10; i++ {
		c := d.Alloc(1000)
		got := make([]float32, 1000)
		d.Download(got, c)
		for j, v := range got {
			if v != 0 {
				t.Fatalf("reused block not zeroed: [%d] = %v", j, v)
			}
		}
		d.Fill(c, 3)
		d.Free(c)
	}
	after := d.MemStats()
	if after.Allocs != before.Allocs {
		t.Errorf("alloc/free of one size took %d more blocks from the driver", after.Allocs-before.Allocs)
	}
	if after.InUse != before.InUse || after.Cached != before.Cached {
		t.Errorf("MemStats moved: before %+v, after %+v", before, after)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("use of a freed buffer did not panic")
			}
		}()
		d.Fill(b, 1)
	}()
	if err := d.EmptyCache(); err != nil {
		t.Error(err)
	}
	if s := d.MemStats(); s.Cached != 0 {
		t.Errorf("EmptyCache left %d bytes cached", s.Cached)
	}
	if err := d.Sync(); err != nil {
		t.Error(err)
	}
}

// A training step's kernels allocate nothing on the Go heap once their
// buffers exist, including those that wait for the device.
func TestNoAllocs(t *testing.T) {
	d := newDevice(t, cuda.Options{})
	const rows, cols = 32, 10
	x, y, g := d.Alloc(rows*cols), d.Alloc(rows*cols), d.Alloc(rows*cols)
	w, mean, rstd := d.Alloc(cols*cols), d.Alloc(rows), d.Alloc(rows)
	labels := make([]int32, rows)
	host := make([]float32, rows*cols)
	geom := kernels.ConvGeom{C: 2, H: 4, W: 5, KH: 1, KW: 2, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1}
	col := d.Alloc(geom.ColRows() * geom.ColCols() * 2)
	pg := kernels.PoolGeom{C: 2, H: 4, W: 5, KH: 2, KW: 2, StrideH: 2, StrideW: 2}
	pool := d.Alloc(2 * 2 * pg.OutH() * pg.OutW())
	runMean, runVar := d.View(mean, 0, 2), d.View(rstd, 0, 2)
	step := func() {
		d.Upload(x, host)
		d.Gemm(false, true, rows, cols, cols, 1, x, cols, w, cols, 0, y, cols)
		d.GemmStrided(false, false, 4, cols, 8, 1, x, 0, cols, 0, w, 0, cols, 0, 0, y, 0, cols, 40, 8)
		d.ReLU(y, y)
		d.Softmax(g, y, rows, cols)
		d.LayerNorm(g, mean, rstd, y, nil, nil, rows, cols, 1e-5)
		d.ReduceSum(mean, y, rows, cols, 1, 1, 0)
		d.BatchNormTrain(g, mean, rstd, runMean, runVar, y, nil, nil, 4, 2, 40, 0.1, 1e-5)
		d.Im2col(col, x, geom, 0, 2)
		d.MaxPool2d(pool, x, pg, 2)
		d.DropoutMask(g, 0.5, 1)
		_ = d.Dot(x, y)
		_, _ = d.CrossEntropy(g, y, labels, rows, cols, 0.1)
		d.Download(host, y)
	}
	step() // the scratch space grows on first use
	if n := testing.AllocsPerRun(20, step); n != 0 {
		t.Errorf("a step allocates %v times", n)
	}
	if err := d.Sync(); err != nil {
		t.Error(err)
	}
}

// The GPU agrees with the CPU device on the results that must match
// exactly (the dropout mask, im2col, max pooling, AdamW) and on a float64
// Dot to float64 rounding, and its Dot is the same on every call.
func TestMatchesCPU(t *testing.T) {
	d := newDevice(t, cuda.Options{})
	c := cpu.New()
	const n = 70001
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.Sin(float64(i))) * 3
	}
	up := func(dev kernels.Device, s []float32) kernels.Buffer {
		b := dev.Alloc(len(s))
		dev.Upload(b, s)
		return b
	}
	get := func(dev kernels.Device, b kernels.Buffer) []float32 {
		s := make([]float32, b.Len())
		dev.Download(s, b)
		return s
	}
	gm, cm := d.Alloc(n), c.Alloc(n)
	d.DropoutMask(gm, 0.3, 12345)
	c.DropoutMask(cm, 0.3, 12345)
	if g, w := get(d, gm), get(c, cm); !equal(g, w) {
		t.Error("DropoutMask differs from the CPU device's")
	}
	gd1, gd2 := d.Dot(up(d, v), up(d, v)), d.Dot(up(d, v), up(d, v))
	cd := c.Dot(up(c, v), up(c, v))
	if gd1 != gd2 {
		t.Errorf("Dot is not deterministic: %v then %v", gd1, gd2)
	}
	if math.Abs(gd1-cd) > 1e-12*math.Abs(cd) {
		t.Errorf("Dot = %v, CPU %v", gd1, cd)
	}
	geom := kernels.ConvGeom{C: 3, H: 9, W: 8, KH: 3, KW: 3, StrideH: 2, StrideW: 1, PadH: 1, PadW: 1, DilH: 1, DilW: 2}
	img := v[:2*3*9*8]
	gcol, ccol := d.Alloc(2*geom.ColRows()*geom.ColCols()), c.Alloc(2*geom.ColRows()*geom.ColCols())
	d.Im2col(gcol, up(d, img), geom, 0, 2)
	c.Im2col(ccol, up(c, img), geom, 0, 2)
	if !equal(get(d, gcol), get(c, ccol)) {
		t.Error("Im2col differs from the CPU device's")
	}
	pg := kernels.PoolGeom{C: 3, H: 9, W: 8, KH: 3, KW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1}
	gp, cp := d.Alloc(2*3*pg.OutH()*pg.OutW()), c.Alloc(2*3*pg.OutH()*pg.OutW())
	d.MaxPool2d(gp, up(d, img), pg, 2)
	c.MaxPool2d(cp, up(c, img), pg, 2)
	if !equal(get(d, gp), get(c, cp)) {
		t.Error("MaxPool2d differs from the CPU device's")
	}
	// AdamW: the same float32 operations in the same order, so the same
	// bits, step after step.
	gbuf, cbuf := [4]kernels.Buffer{}, [4]kernels.Buffer{}
	for i := range gbuf {
		s := v[i*1000 : (i+1)*1000]
		if i == 3 {
			s = make([]float32, 1000) // v starts at 0, as in torch
		}
		gbuf[i], cbuf[i] = up(d, s), up(c, s)
	}
	for step := 1; step <= 3; step++ {
		d.AdamW(gbuf[0], gbuf[1], gbuf[2], gbuf[3], 1e-3, 0.9, 0.999, 1e-8, 0.01, step)
		c.AdamW(cbuf[0], cbuf[1], cbuf[2], cbuf[3], 1e-3, 0.9, 0.999, 1e-8, 0.01, step)
	}
	for i, what := range []string{"p", "g", "m", "v"} {
		if !equal(get(d, gbuf[i]), get(c, cbuf[i])) {
			t.Errorf("AdamW: %s differs from the CPU device's", what)
		}
	}
	if err := d.Sync(); err != nil {
		t.Error(err)
	}
}

func equal(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] && !(a[i] != a[i] && b[i] != b[i]) {
			return false
		}
	}
	return true
}

// With TF32 allowed the name says so and a GEMM is still close.
func TestTF32Option(t *testing.T) {
	d := newDevice(t, cuda.Options{AllowTF32: true})
	if !strings.Contains(d.Name(), "TF32") {
		t.Errorf("Name %q does not mention TF32", d.Name())
	}
	const m = 64
	a := make([]float32, m*m)
	for i := range a {
		a[i] = float32(i%7) - 3
	}
	ab, cb := d.Alloc(m*m), d.Alloc(m*m)
	d.Upload(ab, a)
	d.Gemm(false, false, m, m, m, 1, ab, m, ab, m, 0, cb, m)
	got := make([]float32, m*m)
	d.Download(got, cb)
	// Small integers are exact in TF32 too.
	for i := 0; i < m; i++ {
		for j := 0; j < m; j++ {
			var s float32
			for k := 0; k < m; k++ {
				s += a[i*m+k] * a[k*m+j]
			}
			if got[i*m+j] != s {
				t.Fatalf("C[%d,%d] = %v, want %v", i, j, got[i*m+j], s)
			}
		}
	}
	if err := d.Sync(); err != nil {
		t.Error(err)
	}
}

// BenchmarkGemm is a 1024³ SGEMM, float32 (and with TF32 allowed); it
// reports the rate as GFLOP/s.
func BenchmarkGemm(b *testing.B) {
	for _, tf32 := range []bool{false, true} {
		name := "fp32"
		if tf32 {
			name = "tf32"
		}
		b.Run(name, func(b *testing.B) {
			d := newDevice(b, cuda.Options{AllowTF32: tf32})
			const n = 1024
			x, y, z := d.Alloc(n*n), d.Alloc(n*n), d.Alloc(n*n)
			d.Fill(x, 0.5)
			d.Fill(y, 0.25)
			d.Gemm(false, false, n, n, n, 1, x, n, y, n, 0, z, n)
			if err := d.Sync(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				d.Gemm(false, false, n, n, n, 1, x, n, y, n, 0, z, n)
			}
			if err := d.Sync(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(2*n*n*n*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
