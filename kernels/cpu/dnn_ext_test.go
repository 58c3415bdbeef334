package cpu_test

import (
	"math"
	"slices"
	"sync"
	"testing"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
)

// oneDNNDevice returns a Device on the oneDNN path, or skips where
// libdnnl.so.2 cannot be loaded.
func oneDNNDevice(t *testing.T) *cpu.Device {
	t.Helper()
	d, err := cpu.NewWithDNN("onednn")
	if err != nil {
		t.Skip(err)
	}
	return d
}

// resnetGeom is ResNet-20's first stage: 16 channels of 32×32, 3×3, "same".
var resnetGeom = kernels.ConvGeom{C: 16, H: 32, W: 32, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1, DilH: 1, DilW: 1}

// TestOneDNNConvolves checks that the oneDNN path takes the convolutions
// of the models, so that the conformance suite's Convolver tests and the
// nn fixtures do run on it.
func TestOneDNNConvolves(t *testing.T) {
	d := oneDNNDevice(t)
	if d.DNN() != "onednn" {
		t.Fatalf("DNN() = %q", d.DNN())
	}
	for _, g := range []kernels.ConvGeom{
		resnetGeom,
		{C: 3, H: 224, W: 224, KH: 7, KW: 7, StrideH: 2, StrideW: 2, PadH: 3, PadW: 3, DilH: 1, DilW: 1},
		{C: 1, H: 28, W: 28, KH: 5, KW: 5, StrideH: 1, StrideW: 1, PadH: 2, PadW: 2, DilH: 1, DilW: 1},
		{C: 64, H: 8, W: 8, KH: 1, KW: 1, StrideH: 2, StrideW: 2, DilH: 1, DilW: 1},
	} {
		for _, bias := range []bool{false, true} {
			if !d.Convolves(g, 16, 1, 8, bias) {
				t.Errorf("Convolves(%+v, bias %v) = false", g, bias)
			}
		}
	}
	none, err := cpu.NewWithDNN("none")
	if err != nil {
		t.Fatal(err)
	}
	if none.Convolves(resnetGeom, 16, 1, 8, false) {
		t.Error("the im2col Device says it convolves")
	}
}

// TestOneDNNDeterministic runs each pass twice, on one Device and on a
// second one, and wants the same bits: a run must repeat itself with the
// same seed and threads, and backward-weights reduces over the batch
// across threads.
func TestOneDNNDeterministic(t *testing.T) {
	const n, out = 32, 16
	g := resnetGeom
	run := func(d *cpu.Device) (y, dx, dw, db []float32) {
		if !d.Convolves(g, out, 1, n, true) {
			t.Fatal("Convolves = false")
		}
		xv := make([]float32, n*g.C*g.H*g.W)
		dyv := make([]float32, n*out*g.OutH()*g.OutW())
		wv := make([]float32, out*g.C*9)
		for i := range xv {
			xv[i] = float32(math.Sin(float64(i) * 0.37))
		}
		for i := range dyv {
			dyv[i] = float32(math.Cos(float64(i) * 0.11))
		}
		for i := range wv {
			wv[i] = float32(math.Sin(float64(i)*1.3)) * 0.1
		}
		x, dyb, w, b := d.Wrap(xv), d.Wrap(dyv), d.Wrap(wv), d.Wrap(wv[:out])
		y = make([]float32, len(dyv))
		dx = make([]float32, len(xv))
		dw = make([]float32, len(wv))
		db = make([]float32, out)
		d.ConvForward(d.Wrap(y), x, w, b, g, out, 1, n)
		d.ConvBackward(d.Wrap(dx), d.Wrap(dw), d.Wrap(db), x, dyb, w, g, out, 1, n)
		return
	}
	d := oneDNNDevice(t)
	y0, dx0, dw0, db0 := run(d)
	for i, dev := range []*cpu.Device{d, oneDNNDevice(t)} {
		y, dx, dw, db := run(dev)
		for _, c := range []struct {
			what      string
			got, want []float32
		}{{"y", y, y0}, {"dx", dx, dx0}, {"dw", dw, dw0}, {"db", db, db0}} {
			if !slices.Equal(c.got, c.want) {
				t.Errorf("run %d: %s differs from the first run's", i+1, c.what)
			}
		}
	}
}

func TestOpenUnknown(t *testing.T) {
	for _, c := range [][2]string{{"mkl", ""}, {"", "mkldnn"}, {"gonum", "cudnn"}} {
		if d, err := cpu.Open(c[0], c[1]); err == nil || d != nil {
			t.Errorf("Open(%q, %q) = %v, %v; want an error", c[0], c[1], d, err)
		}
	}
	d, err := cpu.Open("gonum", "none")
	if err != nil || d.BLAS() != "gonum" || d.DNN() != "none" {
		t.Errorf("Open(gonum, none) = %v (BLAS %s, DNN %s)", err, d.BLAS(), d.DNN())
	}
}

// TestOneDNNConcurrentDevices runs one Device per goroutine, as
// data-parallel replicas do, each convolving forward and back, and wants
// each to get what a lone Device gets.
func TestOneDNNConcurrentDevices(t *testing.T) {
	oneDNNDevice(t)
	const n, out, replicas = 8, 16, 3
	g := resnetGeom
	run := func() []float32 {
		d := oneDNNDevice(t)
		xv := make([]float32, n*g.C*g.H*g.W)
		for i := range xv {
			xv[i] = float32(i%17)/17 - 0.5
		}
		wv := make([]float32, out*g.C*9)
		for i := range wv {
			wv[i] = float32(i%5)/50 - 0.04
		}
		x, w := d.Wrap(xv), d.Wrap(wv)
		y, dx, dw := d.Alloc(n*out*g.OutH()*g.OutW()), d.Alloc(len(xv)), d.Alloc(len(wv))
		if !d.Convolves(g, out, 1, n, false) {
			t.Error("Convolves = false")
			return nil
		}
		for range 3 {
			d.ConvForward(y, x, w, nil, g, out, 1, n)
			d.ConvBackward(dx, dw, nil, x, y, w, g, out, 1, n)
		}
		return append(append(append([]float32(nil), cpu.Data(y)...), cpu.Data(dx)...), cpu.Data(dw)...)
	}
	want := run()
	got := make([][]float32, replicas)
	var wg sync.WaitGroup
	for r := range got {
		wg.Go(func() { got[r] = run() })
	}
	wg.Wait()
	for r, v := range got {
		if !slices.Equal(v, want) {
			t.Errorf("replica %d differs from a lone Device", r)
		}
	}
}
