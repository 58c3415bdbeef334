package cpu_test

import (
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/macdist/macdist/internal/allocs"
	"github.com/macdist/macdist/internal/fixture"
	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
)

// bf16Device returns a oneDNN Device in BF16, emulated where the CPU has
// no native bf16, or skips where libdnnl.so.2 cannot be loaded.
func bf16Device(t *testing.T) *cpu.Device {
	t.Helper()
	t.Setenv("MACDIST_BF16", "emulate")
	d := oneDNNDevice(t)
	if _, isa, _ := cpu.OneDNN(); !strings.HasPrefix(isa, "avx512_core") {
		t.Skipf("bf16 needs AVX-512 here, native or emulated; oneDNN's ISA is %s", isa)
	}
	if err := d.SetPrecision(kernels.BF16); err != nil {
		t.Fatal(err)
	}
	return d
}

// toBF16 rounds v to bfloat16, ties to even, as a reference
// independent of the package's own rounding.
func toBF16(v []float32) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		b := math.Float32bits(x)
		lsb := (b >> 16) & 1
		out[i] = math.Float32frombits((b + 0x7fff + lsb) & 0xffff0000)
	}
	return out
}

func wave(n int, f, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.Sin(float64(i)*f+0.3) * scale)
	}
	return v
}

// TestBF16ConvIsRoundedFP32 checks what BF16 means for a convolution:
// y, dx, dw and db are those of the float32 convolution of x, w and dy
// rounded to bf16 (a product of two bf16 numbers is exact in float32, so
// only the order of the sums differs), in both layouts the Device keeps.
func TestBF16ConvIsRoundedFP32(t *testing.T) {
	d := bf16Device(t)
	ref := oneDNNDevice(t)
	const tol = 1e-5 // float32 summation order, relative to the largest element
	for _, c := range []struct {
		g           kernels.ConvGeom
		out, groups int
		bias        bool
	}{
		{resnetGeom, 16, 1, false},
		{kernels.ConvGeom{C: 1, H: 12, W: 12, KH: 5, KW: 5, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1}, 6, 1, true},
		{kernels.ConvGeom{C: 32, H: 9, W: 9, KH: 3, KW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1, DilH: 1, DilW: 1}, 32, 2, true},
	} {
		const n = 4
		g, out := c.g, c.out
		xv := wave(n*g.C*g.H*g.W, 0.37, 1)
		wv := wave(out*g.C/c.groups*g.KH*g.KW, 1.3, 0.2)
		dyv := wave(n*out*g.OutH()*g.OutW(), 0.11, 1)
		bv := wave(out, 0.7, 0.5)
		run := func(d *cpu.Device, x, w, dy []float32, xl, yl kernels.Layout) [4][]float32 {
			if !d.Convolves(g, out, c.groups, n, c.bias) {
				t.Fatalf("%+v: Convolves = false", g)
			}
			var b, db kernels.Buffer
			r := [4][]float32{make([]float32, len(dy)), make([]float32, len(x)), make([]float32, len(w)), make([]float32, out)}
			if c.bias {
				b, db = d.Wrap(bv), d.Wrap(r[3])
			}
			xs, dys := d.Alloc(len(x)), d.Alloc(len(dy))
			d.Relayout(xs, xl, d.Wrap(x), kernels.NCHW, n, g.C, g.H*g.W)
			d.Relayout(dys, yl, d.Wrap(dy), kernels.NCHW, n, out, g.OutH()*g.OutW())
			y, dx := d.Alloc(len(dy)), d.Alloc(len(x))
			d.ConvForwardIn(xl, yl, y, xs, d.Wrap(w), b, g, out, c.groups, n)
			d.ConvBackwardIn(xl, yl, dx, d.Wrap(r[2]), db, xs, dys, d.Wrap(w), g, out, c.groups, n)
			d.Relayout(d.Wrap(r[0]), kernels.NCHW, y, yl, n, out, g.OutH()*g.OutW())
			d.Relayout(d.Wrap(r[1]), kernels.NCHW, dx, xl, n, g.C, g.H*g.W)
			return r
		}
		want := run(ref, toBF16(xv), toBF16(wv), toBF16(dyv), kernels.NCHW, kernels.NCHW)
		layouts := []kernels.Layout{kernels.NCHW}
		if l := d.ActivationLayout(out); l != kernels.NCHW && g.C%16 == 0 {
			layouts = append(layouts, l)
		}
		for _, l := range layouts {
			got := run(d, xv, wv, dyv, l, l)
			for i, name := range []string{"y", "dx", "dw", "db"} {
				if e := fixture.RelErr(got[i], want[i]); e > tol {
					t.Errorf("%+v out=%d groups=%d in %v: %s differs from fp32 on bf16-rounded inputs by %.2g (> %g)",
						g, out, c.groups, l, name, e, tol)
				}
			}
			if again := run(d, xv, wv, dyv, l, l); !slices.Equal(again[0], got[0]) || !slices.Equal(again[2], got[2]) {
				t.Errorf("%+v in %v: a second bf16 run differs from the first", g, l)
			}
		}
		// And bf16 is not fp32: the rounding shows.
		fp := run(ref, xv, wv, dyv, kernels.NCHW, kernels.NCHW)
		if e := fixture.RelErr(want[0], fp[0]); e < 1e-4 || e > 1e-1 {
			t.Errorf("%+v: bf16 and fp32 outputs differ by %.2g, want a bf16 rounding's 1e-4..1e-1", g, e)
		}
	}
}

// TestBF16MatMul checks MatMul and MatMulStrided in BF16 against Gemm on
// rounded operands (to float32's summation order: oneDNN's matmul sums in
// another), and that FP32 is Gemm itself, bit for bit.
func TestBF16MatMul(t *testing.T) {
	d := bf16Device(t)
	const m, n, k, batch = 7, 9, 33, 3
	a, b := wave(batch*m*k+5, 0.77, 1), wave(batch*k*n, 0.31, 1)
	c := func() []float32 { return wave(batch*m*n, 0.5, 1) }
	got, want := c(), c()
	d.MatMulAt(false, true, m, n, k, 0.5, d.Wrap(a[5:5+m*k]), k, d.Wrap(b[:n*k]), k, 1, d.Wrap(got[:m*n]), n)
	d.Gemm(false, true, m, n, k, 0.5, d.Wrap(toBF16(a[5:5+m*k])), k, d.Wrap(toBF16(b[:n*k])), k, 1, d.Wrap(want[:m*n]), n)
	const tol = 1e-5
	if e := fixture.RelErr(got, want); e > tol {
		t.Errorf("MatMul: relative error %.2g against Gemm on rounded operands", e)
	}
	got, want = c(), c()
	d.MatMulStridedAt(true, false, m, n, k, 1, d.Wrap(a), 5, m, m*k, d.Wrap(b), 0, n, k*n, 0, d.Wrap(got), 0, n, m*n, batch)
	d.GemmStrided(true, false, m, n, k, 1, d.Wrap(toBF16(a)), 5, m, m*k, d.Wrap(toBF16(b)), 0, n, k*n, 0, d.Wrap(want), 0, n, m*n, batch)
	if e := fixture.RelErr(got, want); e > tol {
		t.Errorf("MatMulStrided: relative error %.2g against GemmStrided on rounded operands", e)
	}
	// A per-head view, as attention's: rows lda = k+3 apart, the gaps
	// (other heads' columns) never read, so a NaN there must not matter.
	const lda = k + 3
	gapped := wave(batch*m*lda, 0.53, 1)
	for i := range gapped {
		if i%lda >= k {
			gapped[i] = float32(math.NaN())
		}
	}
	got, want = c(), c()
	d.MatMulStridedAt(false, false, m, n, k, 1, d.Wrap(gapped), 0, lda, m*lda, d.Wrap(b), 0, n, 0, 0, d.Wrap(got), 0, n, m*n, batch)
	d.GemmStrided(false, false, m, n, k, 1, d.Wrap(toBF16(gapped)), 0, lda, m*lda, d.Wrap(toBF16(b)), 0, n, 0, 0, d.Wrap(want), 0, n, m*n, batch)
	if e := fixture.RelErr(got, want); e > tol {
		t.Errorf("MatMulStrided on a gapped view: relative error %.2g", e)
	}
	if err := d.SetPrecision(kernels.FP32); err != nil {
		t.Fatal(err)
	}
	got, want = c(), c()
	d.MatMulAt(false, false, m, n, k, 1, d.Wrap(a), k, d.Wrap(b), n, 0, d.Wrap(got[:m*n]), n)
	d.Gemm(false, false, m, n, k, 1, d.Wrap(a), k, d.Wrap(b), n, 0, d.Wrap(want[:m*n]), n)
	if !slices.Equal(got, want) {
		t.Error("MatMul in FP32 is not Gemm")
	}
}

// TestBF16NoAllocs: MatMul's rounded copies and the bf16 convolutions'
// primitives and staging are made once per shape, not per step.
func TestBF16NoAllocs(t *testing.T) {
	d := bf16Device(t)
	const m, n, k = 64, 48, 96
	a, b, c := d.Alloc(m*k), d.Alloc(k*n), d.Alloc(m*n)
	g := resnetGeom
	x, y := d.Alloc(2*g.C*g.H*g.W), d.Alloc(2*16*g.OutH()*g.OutW())
	dx, w, dw := d.Alloc(2*g.C*g.H*g.W), d.Alloc(16*g.C*9), d.Alloc(16*g.C*9)
	l := d.ActivationLayout(16)
	for _, op := range []struct {
		name string
		f    func()
	}{
		{"MatMul", func() { d.MatMulAt(false, true, m, n, k, 1, a, k, b, k, 0, c, n) }},
		{"MatMulStrided", func() {
			d.MatMulStridedAt(false, false, m/2, n, k, 1, a, 0, k, m/2*k, b, 0, n, 0, 0, c, 0, n, m/2*n, 2)
		}},
		{"ConvForward", func() { d.ConvForwardIn(l, l, y, x, w, nil, g, 16, 1, 2) }},
		{"ConvBackward", func() { d.ConvBackwardIn(l, l, dx, dw, nil, x, y, w, g, 16, 1, 2) }},
	} {
		if !d.Convolves(g, 16, 1, 2, false) {
			t.Fatal("Convolves = false")
		}
		op.f() // make the primitives and grow the staging, at the threads AllocsPerRun will use
		if n := allocs.Steady(3, op.f); n != 0 {
			t.Errorf("%s in bf16: %.0f allocations per call", op.name, n)
		}
	}
}

// TestBF16ConcurrentDevices runs one bf16 Device per goroutine, as
// data-parallel replicas do, each convolving and multiplying, and wants
// each to get what a lone Device gets: the Devices share oneDNN's engine
// and nothing else.
func TestBF16ConcurrentDevices(t *testing.T) {
	const replicas, n, out = 3, 4, 16
	g := resnetGeom
	run := func(d *cpu.Device) []float32 {
		if !d.Convolves(g, out, 1, n, false) {
			t.Error("Convolves = false")
			return nil
		}
		x, w := d.Wrap(wave(n*g.C*g.H*g.W, 0.37, 1)), d.Wrap(wave(out*g.C*9, 1.3, 0.2))
		y := make([]float32, n*out*g.OutH()*g.OutW())
		d.ConvForward(d.Wrap(y), x, w, nil, g, out, 1, n)
		c := make([]float32, 64*32)
		d.MatMulAt(false, true, 64, 32, 48, 1, d.Wrap(wave(64*48, 0.21, 1)), 48, d.Wrap(wave(32*48, 0.9, 1)), 48, 0, d.Wrap(c), 32)
		return append(y, c...)
	}
	want := run(bf16Device(t))
	got := make([][]float32, replicas)
	devs := make([]*cpu.Device, replicas)
	for i := range devs {
		devs[i] = bf16Device(t)
	}
	var wg sync.WaitGroup
	for i := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				got[i] = run(devs[i])
			}
		}()
	}
	wg.Wait()
	for i := range got {
		if !slices.Equal(got[i], want) {
			t.Errorf("replica %d differs from a lone Device", i)
		}
	}
}
