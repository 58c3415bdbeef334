package nn_test

import (
	"math/rand/v2"
	"testing"

	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/nntest"
)

func TestLayerNormParity(t *testing.T) {
	for _, c := range []struct {
		fixture string
		dim     int
		eps     float32
		warm    []int
	}{
		{"layernorm_d7", 7, 1e-5, []int{3, 7}},
		{"layernorm_d13", 13, 1e-6, nil},
		{"layernorm_d3", 3, 1e-5, []int{2, 2, 2, 3}},
	} {
		t.Run(c.fixture, func(t *testing.T) {
			dev := cpu.New()
			vitParity(t, dev, c.fixture, nn.NewLayerNorm(dev, "norm", c.dim, c.eps), "norm.", c.warm, 1e-4)
		})
	}
}

func TestLayerNormInit(t *testing.T) {
	dev := cpu.New()
	l := nn.NewLayerNorm(dev, "", 4, 1e-6)
	ps := l.Params()
	if len(ps) != 2 || ps[0].Name != "weight" || ps[1].Name != "bias" || ps[0].Kind != nn.KindNorm || ps[1].Kind != nn.KindNorm {
		t.Fatalf("params %+v %+v, want weight and bias of kind KindNorm", ps[0], ps[1])
	}
	for i, want := range []float32{1, 0} {
		for _, v := range vitDownload(dev, ps[i].Value.Data, 4) {
			if v != want {
				t.Errorf("%s starts at %v, want %v", ps[i].Name, v, want)
			}
		}
	}
}

func TestLayerNormGradCheck(t *testing.T) {
	dev := cpu.New()
	rng := rand.New(rand.NewPCG(6, 7))
	l := nn.NewLayerNorm(dev, "ln", 9, 1e-5)
	dev.Upload(l.Params()[0].Value.Data, vitRandn(rng, 9, 1))
	dev.Upload(l.Params()[1].Value.Data, vitRandn(rng, 9, 1))
	nntest.GradCheck{Seed: 2}.Run(t, dev, l, vitRandn(rng, 4*9, 1), []int{2, 2, 9})
}

func TestLayerNormShapePanics(t *testing.T) {
	dev := cpu.New()
	l := nn.NewLayerNorm(dev, "blocks.0.norm1", 8, 1e-6)
	vitMustPanic(t, func() { l.Forward(nn.NewTensor(dev, 2, 5, 7)) }, "blocks.0.norm1", "[2 5 7]", "[... 8]")
	vitMustPanic(t, func() { l.Backward(nn.NewTensor(dev, 2, 8)) }, "blocks.0.norm1", "Backward before Forward")
	l.Forward(nn.NewTensor(dev, 2, 5, 8))
	vitMustPanic(t, func() { l.Backward(nn.NewTensor(dev, 10, 8)) }, "blocks.0.norm1", "[10 8]", "[2 5 8]")
}
