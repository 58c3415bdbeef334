package nn_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/macdist/macdist/internal/fixture"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/nntest"
)

func TestLinearParity(t *testing.T) {
	f := fixture.Load(t, "layers_cnn_linear")
	cases, metas := cnnCases(t, f)
	for _, c := range cases {
		t.Run(c, func(t *testing.T) {
			var cfg struct {
				In, Out int
				Bias    bool
			}
			if err := json.Unmarshal(metas[c].Cfg, &cfg); err != nil {
				t.Fatal(err)
			}
			l := nn.NewLinear(cnnDevice(), "layer", cfg.In, cfg.Out, cfg.Bias, cnnRNG(1))
			cnnParity(t, f, c, metas[c], l, 1e-4)
		})
	}
}

func TestLinearGradCheck(t *testing.T) {
	dev := cnnDevice()
	for _, tc := range []struct {
		name  string
		shape []int
		out   int
		bias  bool
	}{
		{"2d_bias", []int{5, 7}, 4, true},
		{"3d_nobias", []int{2, 3, 6}, 5, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := cnnRNG(2)
			l := nn.NewLinear(dev, "fc", tc.shape[len(tc.shape)-1], tc.out, tc.bias, rng)
			x := cnnRandn(rng, nn.Numel(tc.shape))
			// Linear is linear in x and in W: the central difference is
			// exact up to float32 rounding, so a large step is fine.
			nntest.GradCheck{Eps: 5e-2, Tol: 1e-2, Seed: 3}.Run(t, dev, l, x, tc.shape)
		})
	}
}

// TestLinearTapOnlyInTraining checks that ā is recorded only in training
// mode with the tap on, and that the trailing 1 is there.
func TestLinearTapOnlyInTraining(t *testing.T) {
	dev := cnnDevice()
	l := nn.NewLinear(dev, "fc", 3, 2, true, cnnRNG(1))
	if l.Tap() != nil {
		t.Fatal("a tap buffer exists before the tap was turned on")
	}
	x := cnnUpload(dev, []float32{1, 2, 3, 5, 6, 7}, []int{2, 3})
	l.SetTap(true)
	l.Forward(x)
	fixture.Close(t, "tap", cnnDownload(dev, l.Tap()), []float32{3, 4, 5, 1}, 0)

	y := cnnUpload(dev, []float32{0, 0, 0, 0, 0, 0}, []int{2, 3})
	l.SetTraining(false)
	l.Forward(y)
	fixture.Close(t, "tap after an eval Forward", cnnDownload(dev, l.Tap()), []float32{3, 4, 5, 1}, 0)
	l.SetTraining(true)
	l.SetTap(false)
	l.Forward(y)
	fixture.Close(t, "tap after a Forward with the tap off", cnnDownload(dev, l.Tap()), []float32{3, 4, 5, 1}, 0)
	l.SetTap(true)
	l.Forward(y)
	fixture.Close(t, "tap of zeros", cnnDownload(dev, l.Tap()), []float32{0, 0, 0, 1}, 0)
	if l.TapDim() != 4 || nn.NewLinear(dev, "", 3, 2, false, cnnRNG(1)).TapDim() != 3 {
		t.Error("TapDim is not in (+1 with a bias)")
	}
}

func TestLinearNoAllocs(t *testing.T) {
	dev := cnnDevice()
	rng := cnnRNG(4)
	for _, tap := range []bool{false, true} {
		l := nn.NewLinear(dev, "fc", 64, 32, true, rng)
		l.SetTap(tap)
		x := cnnUpload(dev, cnnRandn(rng, 8*64), []int{8, 64})
		dy := cnnUpload(dev, cnnRandn(rng, 8*32), []int{8, 32})
		step := func() { l.Forward(x); l.Backward(dy) }
		step()
		if a := testing.AllocsPerRun(20, step); a != 0 {
			t.Errorf("tap %v: steady-state Forward+Backward allocates %.0f times", tap, a)
		}
	}
}

// cnnPanics runs fn and returns its panic message, or fails.
func cnnPanics(t *testing.T, fn func()) (msg string) {
	t.Helper()
	defer func() {
		r := recover()
		if r == nil {
			t.Fatal("no panic")
		}
		msg, _ = r.(string)
		if msg == "" {
			t.Fatalf("panic with a %T, not a message: %v", r, r)
		}
	}()
	fn()
	return ""
}

// cnnWantMsg checks that a panic message holds every part.
func cnnWantMsg(t *testing.T, msg string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			t.Errorf("panic %q does not mention %q", msg, p)
		}
	}
}

func TestLinearShapePanics(t *testing.T) {
	dev := cnnDevice()
	l := nn.NewLinear(dev, "head", 6, 3, true, cnnRNG(1))
	msg := cnnPanics(t, func() { l.Forward(nn.NewTensor(dev, 4, 5)) })
	cnnWantMsg(t, msg, "nn: head:", "[4 5]", "[... 6]")
	l.Forward(nn.NewTensor(dev, 4, 6))
	msg = cnnPanics(t, func() { l.Backward(nn.NewTensor(dev, 4, 2)) })
	cnnWantMsg(t, msg, "head", "[4 2]", "[4 3]")
	msg = cnnPanics(t, func() { nn.NewLinear(dev, "", 6, 3, true, cnnRNG(1)).Forward(nn.NewTensor(dev, 2)) })
	cnnWantMsg(t, msg, "Linear", "[2]")
}
