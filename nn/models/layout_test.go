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
// mode with MAC's taps on, then evaluation mode) on a cpu Device that
// keeps activations in Blocked16 and on one that keeps them in NCHW, and
// wants the same logits, gradients and taps to 1e-5 of their scale. The
// models cover the layers that know layouts (ResNet-20's blocks, WRN's
// dropout and pre-activation, LeNet-5's and ResNet-50's max pools) and
// those that convert at their edge (LeNet-5's Flatten, Swin's patch
// convolution, left in NCHW for its channels-last permutation).
func TestDeviceLayoutMatchesNCHW(t *testing.T) {
	blocked := layoutDevice(t, kernels.Blocked16)
	plain := layoutDevice(t, kernels.NCHW)
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
			want := layoutRun(t, plain, tc.name, tc.cfg, tc.batch)
			got := layoutRun(t, blocked, tc.name, tc.cfg, tc.batch)
			for k, w := range want {
				g := got[k]
				scale, diff := 0.0, 0.0
				for i := range w {
					scale = math.Max(scale, math.Abs(float64(w[i])))
					diff = math.Max(diff, math.Abs(float64(w[i]-g[i])))
				}
				if diff > 1e-5*math.Max(scale, 1e-3) {
					t.Errorf("%s: max |Δ| %.3g on a scale of %.3g", k, diff, scale)
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
