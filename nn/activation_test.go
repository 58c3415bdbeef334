package nn_test

import (
	"testing"

	"github.com/macdist/macdist/internal/fixture"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/nntest"
)

// ReLU's parity with PyTorch is the "relu" case of TestPoolParity.

func TestReLUGradCheck(t *testing.T) {
	dev := cnnDevice()
	shape := []int{2, 3, 4, 5}
	// Inputs at least 0.05 from the kink, step 1e-2: every difference
	// stays on one side of it.
	x := cnnRandAway(cnnRNG(16), nn.Numel(shape), 0.05)
	nntest.GradCheck{Eps: 1e-2, Tol: 1e-3, Seed: 17}.Run(t, dev, nn.NewReLU(dev), x, shape)
}

func TestReLUValues(t *testing.T) {
	dev := cnnDevice()
	r := nn.NewReLU(dev)
	y := r.Forward(cnnUpload(dev, []float32{-1, 0, 2, -3, 4, 0.5}, []int{2, 3}))
	fixture.Close(t, "relu", cnnDownload(dev, y.Data), []float32{0, 0, 2, 0, 4, 0.5}, 0)
	dx := r.Backward(cnnUpload(dev, []float32{1, 2, 3, 4, 5, 6}, []int{2, 3}))
	fixture.Close(t, "relu backward", cnnDownload(dev, dx.Data), []float32{0, 0, 3, 0, 5, 6}, 0)
	if !dx.SameShape([]int{2, 3}) {
		t.Errorf("dx shape %v", dx.Shape)
	}
}
