package models_test

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"testing"

	"github.com/macdist/macdist/internal/allocs"
	"github.com/macdist/macdist/internal/fixture"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/models"
	"github.com/macdist/macdist/nn/nntest"
)

// Tolerances of a model's bf16 step against PyTorch's autocast, relative
// to each tensor's largest element. Every layer adds its bf16 roundings
// (2^-9 relative each) and the two sides sum in different orders, so the
// logits and loss stay within a few roundings, and a gradient within
// bf16GradTol, or within bf16GradSpread times how far PyTorch's own
// float32 step is from autocast's (the fixture's f32_err) where that is
// more: some gradients at these initialisations are ill-conditioned
// (autocast moves LeNet-5's convolution gradients by 10% from float32),
// and two bf16 implementations differ there by as much.
const (
	bf16GradSpread = 1.5
	bf16LogitsTol  = 2e-2
	bf16LossTol    = 5e-3
	bf16GradTol    = 5e-2
)

// bf16Cases are gen_bf16.py's model fixtures: LeNet-5, and a ResNet-8
// whose 16- and 32-channel stages run in the blocked layout where oneDNN
// keeps it.
var bf16Cases = []string{"lenet5", "resnet8"}

// bf16Step runs one training-mode step of the fixture's model on a fresh
// bf16 Device and returns the logits, the loss and the gradients in
// Params order.
func bf16Step(t *testing.T, name string, cfg models.Config, seed uint64, x []float32, labels []int32) ([]float32, float64, [][]float32, []*nn.Param) {
	t.Helper()
	d := nntest.BF16Device(t)
	m, err := models.New(d, name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ps := m.Params()
	nn.HashInit(d, ps, seed)
	in := nn.NewTensor(d, m.InputShape(len(labels))...)
	d.Upload(in.Data, x)
	logits := m.Forward(in)
	ce := nn.NewCrossEntropyLoss(d, 0)
	loss, _ := ce.Forward(logits, labels)
	m.Backward(ce.Backward())
	var grads [][]float32
	for _, p := range ps {
		if p.Trainable() {
			grads = append(grads, download(d, p.Grad))
		}
	}
	return download(d, logits), loss, grads, ps
}

// TestBF16ModelsAutocast compares one bf16 training step of each model
// with PyTorch's under torch.autocast("cpu", torch.bfloat16)
// (testdata/gen/gen_bf16.py), and wants a second run on another Device
// bit-identical to the first.
func TestBF16ModelsAutocast(t *testing.T) {
	t.Setenv("MACDIST_BF16", "emulate")
	for _, c := range bf16Cases {
		t.Run(c, func(t *testing.T) { checkBF16Model(t, "models_bf16_"+c) })
	}
}

// relL2 is ‖got − want‖ / ‖want‖: over a whole tensor, the measure a
// few elements that bf16 rounding flips (a ReLU, a max-pool's winner)
// move least.
func relL2(got, want []float32) float64 {
	var d, w float64
	for i := range want {
		e := float64(got[i]) - float64(want[i])
		d += e * e
		w += float64(want[i]) * float64(want[i])
	}
	if w == 0 {
		return math.Sqrt(d)
	}
	return math.Sqrt(d / w)
}

func checkBF16Model(t *testing.T, fixtureName string) {
	f := fixture.Load(t, fixtureName)
	var cfg models.Config
	if err := json.Unmarshal([]byte(f.Metadata["config"]), &cfg); err != nil {
		t.Fatal(err)
	}
	seed, err := strconv.ParseUint(f.Metadata["seed"], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	var f32Err map[string]float64
	if err := json.Unmarshal([]byte(f.Metadata["f32_err"]), &f32Err); err != nil {
		t.Fatal(err)
	}
	name := f.Metadata["model"]
	x, _ := fixture.Floats(t, f, "input")
	labels := fixture.Labels(t, f, "labels")
	logits, loss, grads, ps := bf16Step(t, name, cfg, seed, x, labels)

	report := func(what string, got []float32, tol float64) {
		want, _ := fixture.Floats(t, f, what)
		e, e32 := relL2(got, want), f32Err[what]
		if what != "logits" && what != "loss" {
			tol = max(tol, bf16GradSpread*e32)
		}
		t.Logf("%-28s vs autocast %.2e (PyTorch fp32 vs autocast %.2e), tolerance %.2g", what, e, e32, tol)
		if e > tol {
			t.Errorf("%s: relative error %.3g against autocast, above %g", what, e, tol)
		}
	}
	report("logits", logits, bf16LogitsTol)
	report("loss", []float32{float32(loss)}, bf16LossTol)
	i := 0
	for _, p := range ps {
		if p.Trainable() {
			report("grad."+p.Name, grads[i], bf16GradTol)
			i++
		}
	}

	logits2, loss2, grads2, _ := bf16Step(t, name, cfg, seed, x, labels)
	if !slices.Equal(logits, logits2) || loss != loss2 {
		t.Error("a second bf16 step gives other logits or loss")
	}
	for i := range grads {
		if !slices.Equal(grads[i], grads2[i]) {
			t.Errorf("a second bf16 step gives another gradient %d", i)
		}
	}
}

// TestBF16StepAllocs wants a steady bf16 training step to allocate
// nothing: the matmul primitives, the staging and the kept bf16 copies
// of the operands (kernels.KeptOperand) are made on the first step and
// reused.
func TestBF16StepAllocs(t *testing.T) {
	dev := nntest.BF16Device(t)
	for _, tc := range []struct {
		name string
		cfg  models.Config
	}{
		{"lenet5", models.Config{}},
		{"resnet20", models.Config{Depth: 8, ImageSize: 16}},
		{"vit-tiny-cifar", models.Config{Depth: 1, ImageSize: 16}},
	} {
		m := mustNew(t, dev, tc.name, tc.cfg)
		step := newStep(dev, m, 2)
		step()
		if n := allocs.Steady(3, step); n != 0 {
			t.Errorf("%s: %v allocations per bf16 training step", tc.name, n)
		}
	}
}
