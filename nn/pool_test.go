package nn_test

import (
	"encoding/json"
	"testing"

	"github.com/macdist/macdist/internal/fixture"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/nntest"
)

// TestPoolParity covers MaxPool2d, AvgPool2d, GlobalAvgPool2d and ReLU
// against PyTorch, on odd sizes with and without padding.
func TestPoolParity(t *testing.T) {
	f := fixture.Load(t, "layers_cnn_pool")
	cases, metas := cnnCases(t, f)
	dev := cnnDevice()
	for _, c := range cases {
		t.Run(c, func(t *testing.T) {
			var cfg struct {
				Kind                    string
				Kernel, Stride, Padding int
			}
			if err := json.Unmarshal(metas[c].Cfg, &cfg); err != nil {
				t.Fatal(err)
			}
			var m nn.Module
			switch cfg.Kind {
			case "max":
				m = nn.NewMaxPool2d(dev, cfg.Kernel, cfg.Stride, cfg.Padding)
			case "avg":
				m = nn.NewAvgPool2d(dev, cfg.Kernel, cfg.Stride, cfg.Padding)
			case "gap":
				m = nn.NewGlobalAvgPool2d(dev)
			case "relu":
				m = nn.NewReLU(dev)
			default:
				t.Fatalf("unknown kind %q", cfg.Kind)
			}
			cnnParity(t, f, c, metas[c], m, 1e-5)
		})
	}
}

func TestPoolGradCheck(t *testing.T) {
	dev := cnnDevice()
	for _, tc := range []struct {
		name  string
		m     nn.Module
		shape []int
	}{
		{"max_k3s2p1", nn.NewMaxPool2d(dev, 3, 2, 1), []int{2, 2, 7, 5}},
		{"max_k2", nn.NewMaxPool2d(dev, 2, 0, 0), []int{1, 3, 5, 4}},
		{"avg_k3s2p1", nn.NewAvgPool2d(dev, 3, 2, 1), []int{2, 2, 7, 5}},
		{"avg_k2", nn.NewAvgPool2d(dev, 2, 0, 0), []int{1, 3, 5, 4}},
		{"gap", nn.NewGlobalAvgPool2d(dev), []int{2, 3, 3, 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Inputs spaced 2/n apart (≥ 0.028 here) with a step of 1e-2:
			// no window's maximum changes hands within ±step.
			x := cnnDistinct(cnnRNG(13), nn.Numel(tc.shape))
			nntest.GradCheck{Eps: 1e-2, Tol: 1e-2, Seed: 14}.Run(t, dev, tc.m, x, tc.shape)
		})
	}
}

// TestPoolStrideDefault checks that stride 0 means the kernel size.
func TestPoolStrideDefault(t *testing.T) {
	dev := cnnDevice()
	y := nn.NewMaxPool2d(dev, 2, 0, 0).Forward(nn.NewTensor(dev, 1, 1, 6, 4))
	if !y.SameShape([]int{1, 1, 3, 2}) {
		t.Errorf("MaxPool2d(2) of 6×4 gives %v, want [1 1 3 2]", y.Shape)
	}
	y = nn.NewAvgPool2d(dev, 3, 0, 1).Forward(nn.NewTensor(dev, 1, 1, 6, 4))
	if !y.SameShape([]int{1, 1, 2, 2}) {
		t.Errorf("AvgPool2d(3, padding 1) of 6×4 gives %v, want [1 1 2 2]", y.Shape)
	}
}

func TestPoolNoAllocs(t *testing.T) {
	dev := cnnDevice()
	rng := cnnRNG(15)
	x := cnnUpload(dev, cnnRandn(rng, 2*3*8*8), []int{2, 3, 8, 8})
	for _, m := range []nn.Module{nn.NewMaxPool2d(dev, 3, 2, 1), nn.NewAvgPool2d(dev, 2, 2, 0), nn.NewGlobalAvgPool2d(dev), nn.NewReLU(dev)} {
		y := m.Forward(x)
		dy := cnnUpload(dev, cnnRandn(rng, y.Len()), y.Shape)
		step := func() { m.Forward(x); m.Backward(dy) }
		step()
		if a := testing.AllocsPerRun(20, step); a != 0 {
			t.Errorf("%T: steady-state Forward+Backward allocates %.0f times", m, a)
		}
	}
}

func TestPoolShapePanics(t *testing.T) {
	dev := cnnDevice()
	msg := cnnPanics(t, func() { nn.NewMaxPool2d(dev, 3, 2, 1).Forward(nn.NewTensor(dev, 2, 3, 8)) })
	cnnWantMsg(t, msg, "MaxPool2d", "[2 3 8]", "[N C H W]")
	msg = cnnPanics(t, func() { nn.NewAvgPool2d(dev, 5, 1, 0).Forward(nn.NewTensor(dev, 1, 1, 4, 8)) })
	cnnWantMsg(t, msg, "AvgPool2d", "[1 1 4 8]")
	msg = cnnPanics(t, func() { nn.NewMaxPool2d(dev, 3, 2, 0).Forward(nn.NewTensor(dev, 1, 1, 2, 8)) })
	cnnWantMsg(t, msg, "MaxPool2d", "[1 1 2 8]")
	msg = cnnPanics(t, func() { nn.NewGlobalAvgPool2d(dev).Forward(nn.NewTensor(dev, 2, 3)) })
	cnnWantMsg(t, msg, "GlobalAvgPool2d", "[2 3]")
	p := nn.NewMaxPool2d(dev, 2, 2, 0)
	p.Forward(nn.NewTensor(dev, 1, 2, 4, 4))
	msg = cnnPanics(t, func() { p.Backward(nn.NewTensor(dev, 1, 2, 4, 4)) })
	cnnWantMsg(t, msg, "MaxPool2d", "[1 2 4 4]", "[1 2 2 2]")
	msg = cnnPanics(t, func() { nn.NewMaxPool2d(dev, 2, 2, 2) })
	cnnWantMsg(t, msg, "MaxPool2d", "padding 2")
}
