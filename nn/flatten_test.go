package nn_test

import (
	"testing"

	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/nntest"
)

// TestFlattenSharesBuffers checks the shapes and that neither direction
// copies.
func TestFlattenSharesBuffers(t *testing.T) {
	dev := cnnDevice()
	f := nn.NewFlatten(dev)
	x := nn.NewTensor(dev, 2, 3, 4, 5)
	y := f.Forward(x)
	if !y.SameShape([]int{2, 60}) || y.Data != x.Data {
		t.Fatalf("Forward: shape %v, shares input: %v", y.Shape, y.Data == x.Data)
	}
	dy := nn.NewTensor(dev, 2, 60)
	dx := f.Backward(dy)
	if !dx.SameShape([]int{2, 3, 4, 5}) || dx.Data != dy.Data {
		t.Fatalf("Backward: shape %v, shares dy: %v", dx.Shape, dx.Data == dy.Data)
	}
	x2 := nn.NewTensor(dev, 3, 7)
	if y := f.Forward(x2); !y.SameShape([]int{3, 7}) || y.Data != x2.Data {
		t.Errorf("Forward of a new shape: %v", y.Shape)
	}
	if dx := f.Backward(nn.NewTensor(dev, 3, 7)); !dx.SameShape([]int{3, 7}) {
		t.Errorf("Backward after a new shape: %v", dx.Shape)
	}
	step := func() { f.Forward(x2); f.Backward(dy) }
	dy = nn.NewTensor(dev, 3, 7)
	if a := testing.AllocsPerRun(20, step); a != 0 {
		t.Errorf("steady state allocates %.0f times", a)
	}
	msg := cnnPanics(t, func() { f.Backward(nn.NewTensor(dev, 3, 8)) })
	cnnWantMsg(t, msg, "Flatten", "[3 8]", "[3 7]")
}

func TestFlattenGradCheck(t *testing.T) {
	dev := cnnDevice()
	shape := []int{2, 3, 2, 2}
	nntest.GradCheck{Seed: 32}.Run(t, dev, nn.NewFlatten(dev), cnnRandn(cnnRNG(33), nn.Numel(shape)), shape)
}
