package cuda_test

import (
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cuda"
)

// cudnnDevice returns a Device and whether it has cuDNN, failing the test
// when that is not what MACDIST_TEST_CUDNN ("present" or "absent": set by
// emu/run.sh, and "present" by scripts/gpu-check.sh's cuDNN step) says it
// should be. MACDIST_TEST_FAKECUDNN=1 says it is emu's fakecudnn.cc.
func cudnnDevice(t *testing.T, opt cuda.Options) (*cuda.Device, bool) {
	t.Helper()
	d := newDevice(t, opt)
	on, why := d.CUDNN()
	switch want := os.Getenv("MACDIST_TEST_CUDNN"); {
	case want == "present" && !on:
		t.Fatalf("cuDNN expected but off: %v", why)
	case want == "absent" && on:
		t.Fatalf("cuDNN expected absent, but %s has it", d.Name())
	}
	return d, on
}

// convCase is one convolution: n images of c×h×w, out filters of
// c/groups×kh×kw.
type convCase struct {
	name            string
	n, c, h, w, out int
	kh, kw          int
	sh, sw, ph, pw  int
	dh, dw, groups  int
}

var convCases = []convCase{
	{"3x3 pad 1", 2, 3, 9, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1},
	{"1x1", 3, 8, 5, 5, 6, 1, 1, 1, 1, 0, 0, 1, 1, 1},
	{"1x1 stride 2", 2, 4, 7, 7, 5, 1, 1, 2, 2, 0, 0, 1, 1, 1},
	{"7x7 stride 2 pad 3 (ResNet stem)", 1, 3, 16, 15, 4, 7, 7, 2, 2, 3, 3, 1, 1, 1},
	{"rectangular, dilated, uneven strides", 2, 3, 10, 9, 2, 3, 2, 2, 1, 1, 2, 2, 1, 1},
	{"groups 2", 2, 4, 6, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2},
	{"depthwise", 2, 4, 6, 5, 4, 3, 3, 2, 2, 1, 1, 1, 1, 4},
	{"patchify 4x4 stride 4 (ViT)", 2, 3, 8, 8, 5, 4, 4, 4, 4, 0, 0, 1, 1, 1},
}

func (c convCase) geom() kernels.ConvGeom {
	return kernels.ConvGeom{C: c.c, H: c.h, W: c.w, KH: c.kh, KW: c.kw, StrideH: c.sh, StrideW: c.sw,
		PadH: c.ph, PadW: c.pw, DilH: c.dh, DilW: c.dw}
}

// refConv returns y = conv(x, w), dx = ∂/∂x ⟨y, dy⟩ and dw = ∂/∂w ⟨y, dy⟩
// in float64, by the definition (PyTorch's conv2d, a cross-correlation),
// and for each the sum of the magnitudes of its terms (the scale of its
// rounding error, whatever the algorithm).
func refConv(c convCase, x, w, dy []float32) (y, dx, dw, ya, dxa, dwa []float64) {
	g := c.geom()
	oh, ow := g.OutH(), g.OutW()
	cg, og := c.c/c.groups, c.out/c.groups
	y, ya = make([]float64, c.n*c.out*oh*ow), make([]float64, c.n*c.out*oh*ow)
	dx, dxa = make([]float64, len(x)), make([]float64, len(x))
	dw, dwa = make([]float64, len(w)), make([]float64, len(w))
	for i := 0; i < c.n; i++ {
		for o := 0; o < c.out; o++ {
			gi := o / og
			for p := 0; p < oh; p++ {
				for q := 0; q < ow; q++ {
					yi := ((i*c.out+o)*oh+p)*ow + q
					for ci := 0; ci < cg; ci++ {
						ch := gi*cg + ci
						for r := 0; r < c.kh; r++ {
							for s := 0; s < c.kw; s++ {
								yy, xx := p*c.sh-c.ph+r*c.dh, q*c.sw-c.pw+s*c.dw
								if yy < 0 || yy >= c.h || xx < 0 || xx >= c.w {
									continue
								}
								xi := ((i*c.c+ch)*c.h+yy)*c.w + xx
								wi := ((o*cg+ci)*c.kh+r)*c.kw + s
								y[yi] += float64(x[xi]) * float64(w[wi])
								dx[xi] += float64(dy[yi]) * float64(w[wi])
								dw[wi] += float64(dy[yi]) * float64(x[xi])
								ya[yi] += math.Abs(float64(x[xi]) * float64(w[wi]))
								dxa[xi] += math.Abs(float64(dy[yi]) * float64(w[wi]))
								dwa[wi] += math.Abs(float64(dy[yi]) * float64(x[xi]))
							}
						}
					}
				}
			}
		}
	}
	return y, dx, dw, ya, dxa, dwa
}

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

// far returns the first element of got farther than tol·(scale+1) from
// want, or -1.
func far(got []float32, want, scale []float64, tol float64) int {
	for i := range want {
		if d := math.Abs(float64(got[i]) - want[i]); !(d <= tol*(scale[i]+1)) {
			return i
		}
	}
	return -1
}

// With cuDNN, the three directions agree with the definition in float64
// to float32 rounding for every kind of convolution the models use; the
// forward and backward-data results overwrite their outputs (NaNs there
// do not leak in) and the filter gradient accumulates. Without it, each
// reports false and writes nothing.
func TestConvCUDNN(t *testing.T) {
	d, on := cudnnDevice(t, cuda.Options{})
	t.Log(d.Name())
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range convCases {
		g := c.geom()
		ylen := c.n * c.out * g.OutH() * g.OutW()
		x := randSlice(r, c.n*c.c*c.h*c.w)
		w := randSlice(r, c.out*c.c/c.groups*c.kh*c.kw)
		dy := randSlice(r, ylen)
		dw0 := randSlice(r, len(w))
		wantY, wantDx, wantDw, sY, sDx, sDw := refConv(c, x, w, dy)
		for i := range wantDw {
			wantDw[i] += float64(dw0[i])
			sDw[i] += math.Abs(float64(dw0[i]))
		}
		up := func(s []float32) kernels.Buffer {
			b := d.Alloc(len(s))
			d.Upload(b, s)
			return b
		}
		nan := func(n int) kernels.Buffer {
			b := d.Alloc(n)
			d.Fill(b, float32(math.NaN()))
			return b
		}
		xb, wb, dyb, dwb := up(x), up(w), up(dy), up(dw0)
		yb, dxb := nan(ylen), nan(len(x))
		ran := [3]bool{
			d.CUDNNForward(yb, xb, wb, g, c.n, c.out, c.groups),
			d.CUDNNBackwardData(dxb, dyb, wb, g, c.n, c.out, c.groups),
			d.CUDNNBackwardFilter(dwb, xb, dyb, g, c.n, c.out, c.groups),
		}
		if err := d.Sync(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if ran != [3]bool{on, on, on} {
			t.Fatalf("%s: ran %v with cuDNN %v", c.name, ran, on)
		}
		gotY, gotDx, gotDw := make([]float32, ylen), make([]float32, len(x)), make([]float32, len(w))
		d.Download(gotY, yb)
		d.Download(gotDx, dxb)
		d.Download(gotDw, dwb)
		if !on {
			if !math.IsNaN(float64(gotY[0])) || !math.IsNaN(float64(gotDx[0])) || gotDw[0] != dw0[0] {
				t.Fatalf("%s: a convolution that reported false wrote its output", c.name)
			}
			continue
		}
		// A few float32 roundings of the terms' scale: what a summation
		// in float32 by any algorithm (FFT and Winograd included) keeps to
		// at these sizes; the emulator, summing in float64, does far better.
		const tol = 1e-5
		for _, o := range []struct {
			what        string
			got         []float32
			want, scale []float64
		}{{"y", gotY, wantY, sY}, {"dx", gotDx, wantDx, sDx}, {"dw", gotDw, wantDw, sDw}} {
			if i := far(o.got, o.want, o.scale, tol); i >= 0 {
				t.Errorf("%s: %s[%d] = %v, want %v", c.name, o.what, i, o.got[i], o.want[i])
			}
		}
	}
	if on && os.Getenv("MACDIST_TEST_FAKECUDNN") == "1" {
		// The fake's heuristics rank an unsupported algorithm first, or a
		// non-deterministic one before algorithm 1, which is deterministic
		// and needs a workspace: that is the one to take, with its size.
		algos, ws := d.Algos()
		for i := range algos {
			if algos[i] != [3]int{1, 1, 1} || ws[i][0] <= 0 || ws[i][1] <= 0 || ws[i][2] <= 0 {
				t.Errorf("plan %d: algorithms %v, workspaces %v; want 1, 1, 1 with workspaces", i, algos[i], ws[i])
			}
		}
	}
	if on {
		// One plan per shape, reused: the cases above have distinct shapes.
		if got := d.Plans(); got != len(convCases) {
			t.Errorf("%d plans for %d shapes", got, len(convCases))
		}
		c := convCases[0]
		g := c.geom()
		y := d.Alloc(c.n * c.out * g.OutH() * g.OutW())
		x, w := d.Alloc(c.n*c.c*c.h*c.w), d.Alloc(c.out*c.c*c.kh*c.kw)
		d.CUDNNForward(y, x, w, g, c.n, c.out, c.groups)
		if got := d.Plans(); got != len(convCases) {
			t.Errorf("a shape seen before was planned again: %d plans", got)
		}
		dx, dw := d.Alloc(x.Len()), d.Alloc(w.Len())
		// A planned convolution allocates nothing: it runs every step.
		if n := testing.AllocsPerRun(5, func() {
			d.CUDNNForward(y, x, w, g, c.n, c.out, c.groups)
			d.CUDNNBackwardData(dx, y, w, g, c.n, c.out, c.groups)
			d.CUDNNBackwardFilter(dw, x, y, g, c.n, c.out, c.groups)
		}); n != 0 {
			t.Errorf("%v allocations per forward and backward", n)
		}
		d.CUDNNForward(d.Alloc(y.Len()/c.n), x, w, g, 1, c.out, c.groups)
		if got := d.Plans(); got != len(convCases)+1 {
			t.Errorf("another batch size did not get a plan of its own: %d plans", got)
		}
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
}

// Without cuDNN, New still works, convolutions report false, and the
// warning is given once however many Devices are made.
func TestCUDNNFallbackWarnsOnce(t *testing.T) {
	if os.Getenv("MACDIST_TEST_CUDNN") != "absent" {
		t.Skip("only where cuDNN is absent (emu/run.sh's first pass)")
	}
	cudnnDevice(t, cuda.Options{})
	cudnnDevice(t, cuda.Options{})
	w := cuda.Warnings()
	if n := strings.Count(w, "cuDNN not found"); n != 1 {
		t.Errorf("%d warnings about the missing cuDNN, want 1:\n%s", n, w)
	}
	if !strings.Contains(w, "im2col + cuBLAS") {
		t.Errorf("the warning does not say what is used instead:\n%s", w)
	}
	if r := cuda.Probe(); r.CUDNN.Err == nil || r.CUDNNVersion != "" || !strings.Contains(r.String(), "cuDNN (optional") {
		t.Errorf("Probe without cuDNN: %+v\n%s", r.CUDNN, r)
	}
}

// Options.NoCUDNN turns cuDNN off on one Device only.
func TestNoCUDNNOption(t *testing.T) {
	d := newDevice(t, cuda.Options{NoCUDNN: true})
	if on, why := d.CUDNN(); on || why == nil {
		t.Fatalf("NoCUDNN: CUDNN() = %v, %v", on, why)
	}
	if strings.Contains(d.Name(), "cuDNN") {
		t.Errorf("name %q claims cuDNN", d.Name())
	}
	c := convCases[0]
	g := c.geom()
	if d.CUDNNForward(d.Alloc(c.n*c.out*g.OutH()*g.OutW()), d.Alloc(c.n*c.c*c.h*c.w), d.Alloc(c.out*c.c*9), g, c.n, c.out, 1) {
		t.Error("ConvForward ran with cuDNN off")
	}
}

// Every cuDNN call's failure is handled: in making the handle, the Device
// falls back to im2col + cuBLAS; in making a plan, that shape does (with a
// warning naming the call); in running a convolution, Sync returns the
// error naming it. The emulated cuDNN fails the call FAKECUDNN_FAIL names.
func TestCUDNNErrors(t *testing.T) {
	if os.Getenv("MACDIST_TEST_FAKECUDNN") != "1" {
		t.Skip("needs emu/run.sh's fake cuDNN (MACDIST_TEST_FAKECUDNN=1)")
	}
	c := convCases[0]
	g := c.geom()
	for _, tc := range []struct {
		call  string
		phase string // "open", "plan" or "run"
		dir   int
	}{
		{"cudnnCreate", "open", 0},
		{"cudnnSetStream", "open", 0},
		{"cudnnCreateTensorDescriptor", "plan", 0},
		{"cudnnCreateFilterDescriptor", "plan", 0},
		{"cudnnCreateConvolutionDescriptor", "plan", 0},
		{"cudnnSetTensor4dDescriptor", "plan", 0},
		{"cudnnSetFilter4dDescriptor", "plan", 0},
		{"cudnnSetConvolution2dDescriptor", "plan", 0},
		{"cudnnSetConvolutionGroupCount", "plan", 0},
		{"cudnnSetConvolutionMathType", "plan", 0},
		{"cudnnGetConvolution2dForwardOutputDim", "plan", 0},
		{"cudnnGetConvolutionForwardAlgorithm_v7", "plan", 0},
		{"cudnnGetConvolutionForwardWorkspaceSize", "plan", 0},
		{"cudnnGetConvolutionBackwardDataAlgorithm_v7", "plan", 1},
		{"cudnnGetConvolutionBackwardDataWorkspaceSize", "plan", 1},
		{"cudnnGetConvolutionBackwardFilterAlgorithm_v7", "plan", 2},
		{"cudnnGetConvolutionBackwardFilterWorkspaceSize", "plan", 2},
		{"cudnnConvolutionForward", "run", 0},
		{"cudnnConvolutionBackwardData", "run", 1},
		{"cudnnConvolutionBackwardFilter", "run", 2},
	} {
		t.Run(tc.call, func(t *testing.T) {
			t.Setenv("FAKECUDNN_FAIL", tc.call)
			d := newDevice(t, cuda.Options{})
			on, why := d.CUDNN()
			if tc.phase == "open" {
				if on || why == nil || !strings.Contains(why.Error(), tc.call) {
					t.Errorf("CUDNN() = %v, %v; want off, naming %s", on, why, tc.call)
				}
				return
			}
			if !on {
				t.Fatalf("cuDNN off: %v", why)
			}
			x, w := d.Alloc(c.n*c.c*c.h*c.w), d.Alloc(c.out*c.c*c.kh*c.kw)
			y := d.Alloc(c.n * c.out * g.OutH() * g.OutW())
			before := strings.Count(cuda.Warnings(), tc.call)
			ran := [3]bool{
				d.CUDNNForward(y, x, w, g, c.n, c.out, 1),
				d.CUDNNBackwardData(x, y, w, g, c.n, c.out, 1),
				d.CUDNNBackwardFilter(w, x, y, g, c.n, c.out, 1),
			}
			err := d.Sync()
			if tc.phase == "plan" {
				// The plan covers all three directions: none runs.
				if ran != [3]bool{} || err != nil {
					t.Errorf("ran %v, Sync %v; want nothing run and no error", ran, err)
				}
				if strings.Count(cuda.Warnings(), tc.call) != before+1 {
					t.Errorf("no one warning naming %s:\n%s", tc.call, cuda.Warnings())
				}
				return
			}
			if ran != [3]bool{true, true, true} || err == nil || !strings.Contains(err.Error(), tc.call) ||
				!strings.Contains(err.Error(), "CUDNN_STATUS_INTERNAL_ERROR") {
				t.Errorf("ran %v, Sync %v; want all run and an error naming %s", ran, err, tc.call)
			}
		})
	}
}

// Arguments no convolution has are programmer errors, caught before cuDNN.
func TestConvCUDNNPanics(t *testing.T) {
	d := newDevice(t, cuda.Options{})
	g := convCases[0].geom()
	x, w, y := d.Alloc(2*3*9*8), d.Alloc(4*3*9), d.Alloc(2*4*9*8)
	for name, f := range map[string]func(){
		"groups not dividing": func() { d.CUDNNForward(y, x, w, g, 2, 4, 2) },
		"short x":             func() { d.CUDNNForward(y, x, w, g, 3, 4, 1) },
		"short dw":            func() { d.CUDNNBackwardFilter(d.Alloc(5), x, y, g, 2, 4, 1) },
		"zero stride": func() {
			bad := g
			bad.StrideH = 0
			d.CUDNNBackwardData(x, y, w, bad, 2, 4, 1)
		},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

// BenchmarkConv times one ResNet-50 3×3 convolution (stage 3: 256
// channels of 14×14, batch 32) forward and backward, through cuDNN and
// through im2col + cuBLAS (forward: Im2col and one GemmStrided per chunk
// of images, as nn.Conv2d does), for scripts/gpu-check.sh.
func BenchmarkConv(b *testing.B) {
	const n, ch = 32, 256
	g := kernels.ConvGeom{C: ch, H: 14, W: 14, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1, DilH: 1, DilW: 1}
	cols, rows := g.ColCols(), g.ColRows()
	flop := 2 * float64(n) * float64(ch) * float64(rows) * float64(cols)
	for _, path := range []string{"cudnn", "im2col"} {
		b.Run(path, func(b *testing.B) {
			d := newDevice(b, cuda.Options{NoCUDNN: path == "im2col"})
			x, w := d.Alloc(n*ch*14*14), d.Alloc(ch*rows)
			y, dx, dw := d.Alloc(n*ch*cols), d.Alloc(n*ch*14*14), d.Alloc(ch*rows)
			col := d.Alloc(8 * rows * cols)
			step := func() {
				if path == "cudnn" {
					if !d.CUDNNForward(y, x, w, g, n, ch, 1) || !d.CUDNNBackwardData(dx, y, w, g, n, ch, 1) ||
						!d.CUDNNBackwardFilter(dw, x, y, g, n, ch, 1) {
						b.Skip("no cuDNN")
					}
					return
				}
				for i0 := 0; i0 < n; i0 += 8 {
					d.Im2col(col, x, g, i0, 8)
					d.GemmStrided(false, false, ch, cols, rows, 1, w, 0, rows, 0, col, 0, cols, rows*cols,
						0, y, i0*ch*cols, cols, ch*cols, 8)
				}
			}
			step()
			if err := d.Sync(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				step()
			}
			if err := d.Sync(); err != nil {
				b.Fatal(err)
			}
			passes := 1.0
			if path == "cudnn" {
				passes = 3
			}
			b.ReportMetric(passes*flop*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
