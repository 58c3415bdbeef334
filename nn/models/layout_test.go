package models_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/models"
)

// TestDeviceLayoutMatchesNCHW runs models forward and backward (training
// mode with MAC's taps on, then evaluation mode) on cpu Devices that
// keep activations in Blocked16 and in NHWC and on ones that keep them in
// NCHW, and wants the same logits, gradients and taps to 1e-5 of their
// scale.
//
// Blocked16 is compared with plain NCHW, whose convolutions oneDNN
// computes in nChw16c too: the same kernels, rounding alike. NHWC's
// convolutions run other kernels (brgconv), whose rounding moves a ReLU
// input that is within it of 0 to the other side now and then, and batch
// norm over a handful of values (ResNet-50's last stage at 64 px, batch
// 2) magnifies such differences to a few percent of a gradient: so NHWC
// is compared with NCHW whose convolutions compute in nhwc (nhwcConvs),
// which isolates what the layout changes in every other layer. The
// models cover the layers that know layouts (ResNet-20's blocks, WRN's
// dropout and pre-activation, LeNet-5's and ResNet-50's max pools) and
// those that convert at their edge (LeNet-5's Flatten, Swin's patch
// convolution, left in NCHW for its channels-last permutation).
func TestDeviceLayoutMatchesNCHW(t *testing.T) {
	pairs := []struct {
		ref, dev kernels.Device
		what     string
	}{
		{layoutDevice(t, kernels.NCHW), layoutDevice(t, kernels.Blocked16), "nChw16c"},
		{&nhwcConvs{Device: layoutDevice(t, kernels.NCHW)}, layoutDevice(t, kernels.NHWC), "nhwc"},
	}
	for _, tc := range []struct {
		name  string
		cfg   models.Config
		batch int
	}{
		{"resnet20", models.Config{Seed: 5}, 8},
		{"lenet5", models.Config{Seed: 5}, 4},
		{"wrn28-10", models.Config{Seed: 5, Depth: 10, Width: 2, ImageSize: 16, DropRate: 0.3}, 4},
		{"resnet50", models.Config{Seed: 5, ImageSize: 64, Classes: 10}, 2},
		{"swin-tiny", models.Config{Seed: 5, Classes: 10, Dim: 16, Heads: 2, ImageSize: 32, Patch: 1, Stages: []int{2, 2}, Window: 4}, 2},
	} {
		if testing.Short() && tc.name == "resnet50" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			for _, p := range pairs {
				want := layoutRun(t, p.ref, tc.name, tc.cfg, tc.batch)
				got := layoutRun(t, p.dev, tc.name, tc.cfg, tc.batch)
				for k, w := range want {
					g := got[k]
					scale, diff := 0.0, 0.0
					for i := range w {
						scale = math.Max(scale, math.Abs(float64(w[i])))
						diff = math.Max(diff, math.Abs(float64(w[i]-g[i])))
					}
					if diff > 1e-5*math.Max(scale, 1e-3) {
						t.Errorf("%s %s: max |Δ| %.3g on a scale of %.3g", p.what, k, diff, scale)
					}
				}
			}
		})
	}
}

// layoutDevice returns a cpu Device on the oneDNN path keeping l, or skips.
func layoutDevice(t *testing.T, l kernels.Layout) *cpu.Device {
	d, err := cpu.NewWithDNN("")
	if err != nil {
		t.Fatal(err)
	}
	if d.DNN() != "onednn" {
		t.Skip("oneDNN is not installed: activations are NCHW")
	}
	if l == kernels.Blocked16 && d.ActivationLayout(16) != kernels.Blocked16 {
		if err := d.SetActivationLayout(l); err != nil {
			t.Skip(err)
		}
	}
	if err := d.SetActivationLayout(l); err != nil {
		t.Fatal(err)
	}
	return d
}

// layoutRun returns, by name, what layoutRun's two modes compute.
func layoutRun(t *testing.T, dev kernels.Device, name string, cfg models.Config, batch int) map[string][]float32 {
	m := mustNew(t, dev, name, cfg)
	for _, tp := range m.Tapped() {
		tp.SetTap(true)
	}
	x := randInput(dev, m.InputShape(batch), 7)
	if nc, ok := dev.(*nhwcConvs); ok {
		nc.input = x.Data
	}
	labels := make([]int32, batch)
	for i := range labels {
		labels[i] = int32(i * 3 % m.Config.Classes)
	}
	ce := nn.NewCrossEntropyLoss(dev, 0)
	out := map[string][]float32{}
	get := func(key string, b kernels.Buffer) {
		v := make([]float32, b.Len())
		dev.Download(v, b)
		out[key] = v
	}
	for _, mode := range []string{"train", "eval"} {
		m.SetTraining(mode == "train")
		ps := m.Params()
		nn.ZeroGrad(dev, ps)
		logits := m.Forward(x)
		ce.Forward(logits, labels)
		dx := m.Backward(ce.Backward())
		get(mode+"/logits", logits.Data)
		get(mode+"/dx", dx.Data)
		for _, p := range ps {
			if p.Grad != nil {
				get(mode+"/grad "+p.Name, p.Grad.Data)
			}
		}
		if mode == "train" {
			for i, tp := range m.Tapped() {
				get(fmt.Sprintf("tap %d", i), tp.Tap())
			}
			for _, p := range ps {
				if !p.Trainable() {
					get("buffer "+p.Name, p.Value.Data)
				}
			}
		}
	}
	return out
}

// nhwcConvs is a cpu Device that keeps NCHW but computes its NCHW
// convolutions as one keeping NHWC does: with x reordered to nhwc (but
// for the model's input, which such a device takes as NCHW) and y and dy
// in nhwc, so that both run oneDNN's same kernels.
type nhwcConvs struct {
	*cpu.Device
	input kernels.Buffer
}

// in returns b, n×c×hw, in the layout an NHWC device would have it (the
// model's input stays NCHW), and a function that frees the copy.
func (d *nhwcConvs) in(b kernels.Buffer, n, c, hw int) (kernels.Buffer, kernels.Layout, func()) {
	if b == d.input {
		return b, kernels.NCHW, func() {}
	}
	t := d.Alloc(b.Len())
	d.Relayout(t, kernels.NHWC, b, kernels.NCHW, n, c, hw)
	return t, kernels.NHWC, func() { d.Free(t) }
}

func (d *nhwcConvs) ConvForwardIn(xl, yl kernels.Layout, y, x, w, bias kernels.Buffer, g kernels.ConvGeom, out, groups, n int) {
	if xl != kernels.NCHW || yl != kernels.NCHW {
		panic("nhwcConvs: a layout other than NCHW")
	}
	xt, xl, free := d.in(x, n, g.C, g.H*g.W)
	defer free()
	yt := d.Alloc(y.Len())
	defer d.Free(yt)
	d.Device.ConvForwardIn(xl, kernels.NHWC, yt, xt, w, bias, g, out, groups, n)
	d.Relayout(y, kernels.NCHW, yt, kernels.NHWC, n, out, g.OutH()*g.OutW())
}

func (d *nhwcConvs) ConvBackwardIn(xl, yl kernels.Layout, dx, dw, db, x, dy, w kernels.Buffer, g kernels.ConvGeom, out, groups, n int) {
	if xl != kernels.NCHW || yl != kernels.NCHW {
		panic("nhwcConvs: a layout other than NCHW")
	}
	xt, xl, free := d.in(x, n, g.C, g.H*g.W)
	defer free()
	dyt := d.Alloc(dy.Len())
	defer d.Free(dyt)
	d.Relayout(dyt, kernels.NHWC, dy, kernels.NCHW, n, out, g.OutH()*g.OutW())
	var dxt kernels.Buffer
	if dx != nil {
		dxt = d.Alloc(dx.Len())
		defer d.Free(dxt)
	}
	d.Device.ConvBackwardIn(xl, kernels.NHWC, dxt, dw, db, xt, dyt, w, g, out, groups, n)
	if dx != nil {
		d.Relayout(dx, kernels.NCHW, dxt, xl, n, g.C, g.H*g.W)
	}
}
