package models_test

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/macdist/macdist/internal/fixture"
	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/models"
)

// Tolerances of LeNet-5's bf16 step against PyTorch's autocast, relative
// to each tensor's largest element. Five layers of bf16 roundings, each
// 2^-9 relative, and the different summation orders: the logits and loss
// stay within a few bf16 roundings, a gradient within 5e-2, or within
// bf16GradSpread times how far PyTorch's own float32 gradient is from
// autocast's where that is more: the convolutions' gradients at this
// initialisation are ill-conditioned (autocast moves them by about 10%
// from float32), so two bf16 implementations differ by as much.
const (
	bf16GradSpread = 1.5

	bf16LogitsTol = 2e-2
	bf16LossTol   = 5e-3
	bf16GradTol   = 5e-2
)

// bf16Step runs one training-mode step of the fixture's model on a fresh
// bf16 Device and returns the logits, the loss and the gradients in
// Params order.
func bf16Step(t *testing.T, cfg models.Config, seed uint64, x []float32, labels []int32) ([]float32, float64, [][]float32, []*nn.Param) {
	t.Helper()
	d, err := cpu.NewWithDNN("onednn")
	if err != nil {
		t.Skipf("bf16 needs oneDNN: %v", err)
	}
	if _, isa, _ := cpu.OneDNN(); !strings.HasPrefix(isa, "avx512_core") {
		t.Skipf("bf16 needs AVX-512 here, native or emulated; oneDNN's ISA is %s", isa)
	}
	if err := d.SetPrecision(kernels.BF16); err != nil {
		t.Fatal(err)
	}
	m, err := models.New(d, "lenet5", cfg)
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

// TestBF16LeNet5Autocast compares one bf16 training step of LeNet-5 with
// PyTorch's under torch.autocast("cpu", torch.bfloat16)
// (testdata/gen/gen_bf16.py), and wants a second run on another Device
// bit-identical to the first.
func TestBF16LeNet5Autocast(t *testing.T) {
	t.Setenv("MACDIST_BF16", "emulate")
	f := fixture.Load(t, "models_bf16_lenet5")
	var cfg models.Config
	if err := json.Unmarshal([]byte(f.Metadata["config"]), &cfg); err != nil {
		t.Fatal(err)
	}
	seed, err := strconv.ParseUint(f.Metadata["seed"], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	x, _ := fixture.Floats(t, f, "input")
	labels := fixture.Labels(t, f, "labels")
	logits, loss, grads, ps := bf16Step(t, cfg, seed, x, labels)

	report := func(what string, got []float32, tol float64) {
		want, _ := fixture.Floats(t, f, what)
		f32, _ := fixture.Floats(t, f, "f32."+what)
		e, e32 := fixture.RelErr(got, want), fixture.RelErr(f32, want)
		if what != "logits" && what != "loss" {
			tol = max(tol, bf16GradSpread*e32)
		}
		t.Logf("%-18s vs autocast %.2e (PyTorch fp32 vs autocast %.2e), tolerance %.2g", what, e, e32, tol)
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

	logits2, loss2, grads2, _ := bf16Step(t, cfg, seed, x, labels)
	if !slices.Equal(logits, logits2) || loss != loss2 {
		t.Error("a second bf16 step gives other logits or loss")
	}
	for i := range grads {
		if !slices.Equal(grads[i], grads2[i]) {
			t.Errorf("a second bf16 step gives another gradient %d", i)
		}
	}
}
