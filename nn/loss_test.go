package nn_test

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/macdist/macdist/internal/fixture"
	"github.com/macdist/macdist/nn"
)

func TestCrossEntropyLossParity(t *testing.T) {
	f := fixture.Load(t, "layers_cnn_loss")
	dev := cnnDevice()
	for _, c := range []string{"plain", "smoothing", "smoothing_wide"} {
		t.Run(c, func(t *testing.T) {
			var meta struct{ Smoothing float32 }
			if err := json.Unmarshal([]byte(f.Metadata[c]), &meta); err != nil {
				t.Fatal(err)
			}
			smoothing := meta.Smoothing
			lv, ls := fixture.Floats(t, f, c+"/logits")
			labels := fixture.Labels(t, f, c+"/labels")
			wantLoss, _ := fixture.Floats(t, f, c+"/loss")
			wantCorrect, _ := fixture.Floats(t, f, c+"/correct")
			wantD, _ := fixture.Floats(t, f, c+"/dlogits")

			ce := nn.NewCrossEntropyLoss(dev, smoothing)
			logits := cnnUpload(dev, lv, ls)
			loss, correct := ce.Forward(logits, labels)
			if math.Abs(loss-float64(wantLoss[0])) > 1e-5*math.Abs(float64(wantLoss[0])) {
				t.Errorf("loss %.7g, want %.7g", loss, wantLoss[0])
			}
			if correct != int(wantCorrect[0]) {
				t.Errorf("correct %d, want %g", correct, wantCorrect[0])
			}
			d := ce.Backward()
			if !d.SameShape(ls) {
				t.Fatalf("dlogits shape %v, want %v", d.Shape, ls)
			}
			fixture.Close(t, "dlogits", cnnDownload(dev, d.Data), wantD, 1e-5)
		})
	}
}

func TestCrossEntropyLossNoAllocs(t *testing.T) {
	dev := cnnDevice()
	ce := nn.NewCrossEntropyLoss(dev, 0.1)
	logits := cnnUpload(dev, cnnRandn(cnnRNG(30), 16*10), []int{16, 10})
	labels := make([]int32, 16)
	for i := range labels {
		labels[i] = int32(i % 10)
	}
	step := func() { ce.Forward(logits, labels); ce.Backward() }
	step()
	if a := testing.AllocsPerRun(20, step); a != 0 {
		t.Errorf("steady-state Forward+Backward allocates %.0f times", a)
	}
}

func TestCrossEntropyLossPanics(t *testing.T) {
	dev := cnnDevice()
	ce := nn.NewCrossEntropyLoss(dev, 0)
	msg := cnnPanics(t, func() { ce.Forward(nn.NewTensor(dev, 4, 10), make([]int32, 3)) })
	cnnWantMsg(t, msg, "CrossEntropyLoss", "[4 10]", "4 rows", "3 labels")
	msg = cnnPanics(t, func() { nn.NewCrossEntropyLoss(dev, 0).Backward() })
	cnnWantMsg(t, msg, "CrossEntropyLoss", "before Forward")
}

// TestCrossEntropyLossFiniteDifference checks dlogits against central
// differences of the loss itself (the loss is not a Module, so
// nntest.GradCheck does not apply).
func TestCrossEntropyLossFiniteDifference(t *testing.T) {
	dev := cnnDevice()
	const rows, cols, eps = 5, 7, 1e-2
	rng := cnnRNG(31)
	lv := cnnRandn(rng, rows*cols)
	labels := []int32{0, 6, 3, 3, 1}
	for _, s := range []float32{0, 0.2} {
		ce := nn.NewCrossEntropyLoss(dev, s)
		logits := cnnUpload(dev, lv, []int{rows, cols})
		ce.Forward(logits, labels)
		grad := cnnDownload(dev, ce.Backward().Data)
		var worst, scale float64
		for i := range lv {
			v := append([]float32(nil), lv...)
			v[i] = lv[i] + eps
			dev.Upload(logits.Data, v)
			lp, _ := ce.Forward(logits, labels)
			v[i] = lv[i] - eps
			dev.Upload(logits.Data, v)
			lm, _ := ce.Forward(logits, labels)
			worst = math.Max(worst, math.Abs((lp-lm)/(2*eps)-float64(grad[i])))
			scale = math.Max(scale, math.Abs(float64(grad[i])))
		}
		if worst > 1e-3*scale {
			t.Errorf("smoothing %g: finite-difference error %.3g, max |grad| %.3g", s, worst, scale)
		}
	}
}
