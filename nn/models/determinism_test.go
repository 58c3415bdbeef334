package models_test

import (
	"slices"
	"testing"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/models"
)

// TestRunRepeats trains a small ResNet and LeNet-5 for a few steps twice,
// each time on a fresh Device, and wants the same bits: a run is identical
// to itself with the same seed and threads, on both convolution paths
// (oneDNN's backward-weights reduces over the batch across threads), and
// on oneDNN's in NHWC besides the default layout.
func TestRunRepeats(t *testing.T) {
	for _, path := range []string{"", "none", "nhwc", "auto"} {
		for _, tc := range []struct {
			name string
			cfg  models.Config
		}{
			{"resnet20", models.Config{Depth: 8, ImageSize: 16, Seed: 3}},
			{"lenet5", models.Config{Seed: 3}},
		} {
			t.Run(tc.name+"/"+map[string]string{"": "default", "none": "im2col", "nhwc": "nhwc", "auto": "auto"}[path], func(t *testing.T) {
				first := trainBits(t, path, tc.name, tc.cfg)
				if again := trainBits(t, path, tc.name, tc.cfg); !slices.Equal(first, again) {
					t.Error("a second run from the same seed ends with other weights")
				}
			})
		}
	}
}

// trainBits runs three steps of plain SGD (batch 16) on a fresh Device with
// the convolution path dnn ("nhwc": the default one, keeping NHWC; "auto":
// keeping Blocked16, with oneDNN's choice of algorithm) and
// returns the weights and the last logits.
func trainBits(t *testing.T, dnn, name string, cfg models.Config) []float32 {
	variant := dnn
	if dnn == "nhwc" || dnn == "auto" {
		dnn = ""
	}
	dev, err := cpu.NewWithDNN(dnn)
	if err != nil {
		t.Fatal(err)
	}
	switch variant {
	case "nhwc":
		if err := dev.SetActivationLayout(kernels.NHWC); err != nil {
			t.Skip(err)
		}
	case "auto":
		if err := dev.SetActivationLayout(kernels.Blocked16); err != nil {
			t.Skip(err)
		}
		if err := dev.SetConvAlgorithm(cpu.ConvAuto); err != nil {
			t.Skip(err)
		}
	}
	m := mustNew(t, dev, name, cfg)
	x := randInput(dev, m.InputShape(16), 9)
	labels := make([]int32, 16)
	for i := range labels {
		labels[i] = int32(i * 7 % m.Config.Classes)
	}
	ce := nn.NewCrossEntropyLoss(dev, 0)
	ps := m.Params()
	var logits *nn.Tensor
	for range 3 {
		nn.ZeroGrad(dev, ps)
		logits = m.Forward(x)
		ce.Forward(logits, labels)
		m.Backward(ce.Backward())
		for _, p := range ps {
			if p.Trainable() {
				dev.Axpby(p.Value.Data, -0.05, p.Grad.Data, 1)
			}
		}
	}
	var out []float32
	for _, b := range append([]kernels.Buffer{logits.Data}, paramValues(ps)...) {
		v := make([]float32, b.Len())
		dev.Download(v, b)
		out = append(out, v...)
	}
	return out
}

func paramValues(ps []*nn.Param) []kernels.Buffer {
	var bs []kernels.Buffer
	for _, p := range ps {
		bs = append(bs, p.Value.Data)
	}
	return bs
}
