package nn_test

import (
	"testing"

	"github.com/macdist/macdist/internal/fixture"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/nntest"
)

// TestBatchNorm2dParity compares training mode (output, gradients, and the
// running statistics and batch count after the step) and evaluation mode.
func TestBatchNorm2dParity(t *testing.T) {
	f := fixture.Load(t, "layers_cnn_batchnorm")
	cases, metas := cnnCases(t, f)
	for _, c := range cases {
		t.Run(c, func(t *testing.T) {
			_, shape := fixture.Floats(t, f, c+"/x")
			bn := nn.NewBatchNorm2d(cnnDevice(), "layer", shape[1])
			cnnParity(t, f, c, metas[c], bn, 1e-4)
		})
	}
}

func TestBatchNorm2dDefaults(t *testing.T) {
	dev := cnnDevice()
	bn := nn.NewBatchNorm2d(dev, "bn", 3)
	want := map[string][]float32{
		"bn.weight": {1, 1, 1}, "bn.bias": {0, 0, 0},
		"bn.running_mean": {0, 0, 0}, "bn.running_var": {1, 1, 1}, "bn.num_batches_tracked": {0},
	}
	kinds := map[string]nn.ParamKind{"bn.weight": nn.KindNorm, "bn.bias": nn.KindNorm,
		"bn.running_mean": nn.KindBuffer, "bn.running_var": nn.KindBuffer, "bn.num_batches_tracked": nn.KindBuffer}
	for _, p := range bn.Params() {
		fixture.Close(t, p.Name, cnnDownload(dev, p.Value.Data), want[p.Name], 0)
		if p.Kind != kinds[p.Name] || (p.Grad != nil) != (p.Kind == nn.KindNorm) {
			t.Errorf("%s: kind %v, grad %v", p.Name, p.Kind, p.Grad != nil)
		}
	}
	if nbt := bn.Params()[4].Value; len(nbt.Shape) != 0 || nbt.Len() != 1 {
		t.Errorf("num_batches_tracked has shape %v, want [] (a scalar)", nbt.Shape)
	}
	// Each training Forward counts one batch, and an evaluation one none.
	x := cnnUpload(dev, cnnRandn(cnnRNG(1), 2*3*2*2), []int{2, 3, 2, 2})
	bn.Forward(x)
	bn.Forward(x)
	bn.SetTraining(false)
	bn.Forward(x)
	fixture.Close(t, "num_batches_tracked", cnnDownload(dev, bn.Params()[4].Value.Data), []float32{2}, 0)
}

func TestBatchNorm2dGradCheck(t *testing.T) {
	dev := cnnDevice()
	for _, train := range []bool{true, false} {
		name := map[bool]string{true: "train", false: "eval"}[train]
		t.Run(name, func(t *testing.T) {
			rng := cnnRNG(9)
			bn := nn.NewBatchNorm2d(dev, "bn", 3)
			nn.HashInit(dev, bn.Params(), 11)
			bn.SetTraining(train)
			shape := []int{4, 3, 3, 2}
			// Training-mode BN is smooth but curved (through the batch
			// variance): a step of 1e-2 on unit-scale inputs keeps the
			// truncation error well under the tolerance.
			nntest.GradCheck{Eps: 1e-2, Tol: 1e-2, Seed: 12}.Run(t, dev, bn, cnnRandn(rng, nn.Numel(shape)), shape)
		})
	}
}

func TestBatchNorm2dNoAllocs(t *testing.T) {
	dev := cnnDevice()
	rng := cnnRNG(10)
	for _, train := range []bool{true, false} {
		bn := nn.NewBatchNorm2d(dev, "bn", 8)
		bn.SetTraining(train)
		x := cnnUpload(dev, cnnRandn(rng, 4*8*6*6), []int{4, 8, 6, 6})
		dy := cnnUpload(dev, cnnRandn(rng, 4*8*6*6), []int{4, 8, 6, 6})
		step := func() { bn.Forward(x); bn.Backward(dy) }
		step()
		if a := testing.AllocsPerRun(20, step); a != 0 {
			t.Errorf("training %v: steady-state Forward+Backward allocates %.0f times", train, a)
		}
	}
}

func TestBatchNorm2dShapePanics(t *testing.T) {
	dev := cnnDevice()
	bn := nn.NewBatchNorm2d(dev, "layer1.0.bn1", 16)
	msg := cnnPanics(t, func() { bn.Forward(nn.NewTensor(dev, 2, 8, 4, 4)) })
	cnnWantMsg(t, msg, "nn: layer1.0.bn1:", "[2 8 4 4]", "[N 16 H W]")
	bn.Forward(nn.NewTensor(dev, 2, 16, 4, 4))
	msg = cnnPanics(t, func() { bn.Backward(nn.NewTensor(dev, 2, 16, 4, 5)) })
	cnnWantMsg(t, msg, "layer1.0.bn1", "[2 16 4 5]", "[2 16 4 4]")
}
