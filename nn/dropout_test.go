package nn_test

import (
	"math"
	"testing"

	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/nntest"
)

func TestDropoutTraining(t *testing.T) {
	dev := cnnDevice()
	const p, n = 0.3, 20000
	d := nn.NewDropout(dev, p, 99)
	xv := make([]float32, n)
	for i := range xv {
		xv[i] = 1 + float32(i%7)
	}
	x := cnnUpload(dev, xv, []int{4, n / 4})
	y := cnnDownload(dev, d.Forward(x).Data)
	zeros := 0
	for i, v := range y {
		switch {
		case v == 0:
			zeros++
		case math.Abs(float64(v)-float64(xv[i])/(1-p)) > 1e-5*float64(xv[i]):
			t.Fatalf("y[%d] = %g, want 0 or x/(1-p) = %g", i, v, xv[i]/(1-p))
		}
	}
	// Binomial: 6000 ± 65 expected zeros; 5σ either way.
	if frac := float64(zeros) / n; math.Abs(frac-p) > 5*math.Sqrt(p*(1-p)/n) {
		t.Errorf("dropped %.4f of the elements, want %.2f", frac, p)
	}
	// Backward applies the same mask.
	ones := make([]float32, n)
	for i := range ones {
		ones[i] = 1
	}
	dx := cnnDownload(dev, d.Backward(cnnUpload(dev, ones, []int{4, n / 4})).Data)
	for i := range dx {
		if (dx[i] == 0) != (y[i] == 0) || (dx[i] != 0 && math.Abs(float64(dx[i])-1/(1-p)) > 1e-6) {
			t.Fatalf("dx[%d] = %g for y[%d] = %g: not the forward mask", i, dx[i], i, y[i])
		}
	}
	// The seed advances: the next mask differs.
	if d.Seed != 100 {
		t.Errorf("seed %d after one Forward, want 100", d.Seed)
	}
	y2 := cnnDownload(dev, d.Forward(x).Data)
	same := 0
	for i := range y {
		if (y[i] == 0) == (y2[i] == 0) {
			same++
		}
	}
	if same == n {
		t.Error("two Forward calls drew the same mask")
	}
	// The same seed gives the same mask.
	y3 := cnnDownload(dev, nn.NewDropout(dev, p, 99).Forward(x).Data)
	for i := range y {
		if y3[i] != y[i] {
			t.Fatalf("seed 99 gives another mask at %d", i)
		}
	}
}

func TestDropoutEvalIsIdentity(t *testing.T) {
	dev := cnnDevice()
	d := nn.NewDropout(dev, 0.5, 1)
	d.SetTraining(false)
	x := nn.NewTensor(dev, 3, 4)
	if y := d.Forward(x); y != x {
		t.Error("eval Forward does not return its input")
	}
	dy := nn.NewTensor(dev, 3, 4)
	if dx := d.Backward(dy); dx != dy {
		t.Error("eval Backward does not return dy")
	}
	if d.Seed != 1 {
		t.Errorf("eval Forward advanced the seed to %d", d.Seed)
	}
	z := nn.NewDropout(dev, 0, 5)
	if z.Forward(x) != x || z.Seed != 6 {
		t.Errorf("p = 0: not the identity, or seed %d not advanced", z.Seed)
	}
	msg := cnnPanics(t, func() { nn.NewDropout(dev, 1, 0) })
	cnnWantMsg(t, msg, "Dropout", "1")
}

// TestDropoutGradCheck checks both modes: evaluation (the identity), and
// training with the mask frozen by resetting the seed before every
// Forward through a wrapper.
func TestDropoutGradCheck(t *testing.T) {
	dev := cnnDevice()
	shape := []int{3, 8}
	x := cnnRandn(cnnRNG(18), nn.Numel(shape))
	d := nn.NewDropout(dev, 0.4, 3)
	d.SetTraining(false)
	nntest.GradCheck{Seed: 19}.Run(t, dev, d, x, shape)
	d.SetTraining(true)
	nntest.GradCheck{Seed: 19}.Run(t, dev, frozenSeed{d, 3}, x, shape)
}

// frozenSeed makes a training-mode Dropout deterministic by resetting its
// seed before every Forward.
type frozenSeed struct {
	*nn.Dropout
	seed uint64
}

func (f frozenSeed) Forward(x *nn.Tensor) *nn.Tensor {
	f.Dropout.Seed = f.seed
	return f.Dropout.Forward(x)
}

func TestDropoutNoAllocs(t *testing.T) {
	dev := cnnDevice()
	d := nn.NewDropout(dev, 0.2, 1)
	x := nn.NewTensor(dev, 8, 32)
	dy := nn.NewTensor(dev, 8, 32)
	step := func() { d.Forward(x); d.Backward(dy) }
	step()
	if a := testing.AllocsPerRun(20, step); a != 0 {
		t.Errorf("steady-state Forward+Backward allocates %.0f times", a)
	}
}
