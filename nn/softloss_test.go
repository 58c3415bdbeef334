package nn_test

import (
	"math"
	"testing"

	"github.com/macdist/macdist/internal/fixture"
	"github.com/macdist/macdist/nn"
)

// TestSoftTargetCrossEntropyParity checks loss and gradient against timm's
// SoftTargetCrossEntropy (testdata/gen/gen_recipe.py) on mixed, smoothed
// targets.
func TestSoftTargetCrossEntropyParity(t *testing.T) {
	f := fixture.Load(t, "recipe")
	dev := cnnDevice()
	lv, ls := fixture.Floats(t, f, "soft.logits")
	tv, _ := fixture.Floats(t, f, "soft.targets")
	want, _ := fixture.Floats(t, f, "soft.loss")
	wantD, _ := fixture.Floats(t, f, "soft.grad")
	l := nn.NewSoftTargetCrossEntropy(dev)
	loss, _ := l.Forward(cnnUpload(dev, lv, ls), tv)
	if math.Abs(loss-float64(want[0])) > 1e-5*math.Abs(float64(want[0])) {
		t.Errorf("loss %.7g, want %.7g", loss, want[0])
	}
	fixture.Close(t, "dlogits", cnnDownload(dev, l.Backward().Data), wantD, 1e-5)
}

// TestSoftTargetOneHotIsCrossEntropy: on label-smoothed one-hot targets
// the soft loss is CrossEntropyLoss with that smoothing, loss, gradient
// and accuracy.
func TestSoftTargetOneHotIsCrossEntropy(t *testing.T) {
	dev := cnnDevice()
	const rows, k, eps = 16, 10, 0.1
	logits := cnnUpload(dev, cnnRandn(cnnRNG(31), rows*k), []int{rows, k})
	labels := make([]int32, rows)
	targets := make([]float32, rows*k)
	for i := range labels {
		labels[i] = int32((i * 7) % k)
		for j := range k {
			targets[i*k+j] = eps / k
		}
		targets[i*k+int(labels[i])] += 1 - eps
	}
	ce := nn.NewCrossEntropyLoss(dev, eps)
	wantLoss, wantCorrect := ce.Forward(logits, labels)
	soft := nn.NewSoftTargetCrossEntropy(dev)
	loss, correct := soft.Forward(logits, targets)
	if math.Abs(loss-wantLoss) > 1e-6*math.Abs(wantLoss) || correct != wantCorrect {
		t.Errorf("soft loss %.7g (%d correct), cross-entropy %.7g (%d)", loss, correct, wantLoss, wantCorrect)
	}
	fixture.Close(t, "dlogits", cnnDownload(dev, soft.Backward().Data), cnnDownload(dev, ce.Backward().Data), 1e-5)
}

func TestSoftTargetCrossEntropyNoAllocs(t *testing.T) {
	dev := cnnDevice()
	logits := cnnUpload(dev, cnnRandn(cnnRNG(32), 16*10), []int{16, 10})
	targets := make([]float32, 16*10)
	for i := range 16 {
		targets[i*10+i%10] = 1
	}
	l := nn.NewSoftTargetCrossEntropy(dev)
	step := func() { l.Forward(logits, targets); l.Backward() }
	step()
	if a := testing.AllocsPerRun(20, step); a != 0 {
		t.Errorf("steady-state Forward+Backward allocates %.0f times", a)
	}
}
