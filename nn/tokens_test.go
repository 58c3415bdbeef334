package nn_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/nntest"
)

func TestTokenEmbedParity(t *testing.T) {
	dev := cpu.New()
	e := nn.NewTokenEmbed(dev, "", 4, 6, rand.New(rand.NewPCG(1, 1)))
	vitParity(t, dev, "tokens_t4_d6", e, "", []int{1, 4, 6}, 1e-4)
}

func TestTokenEmbedParams(t *testing.T) {
	dev := cpu.New()
	e := nn.NewTokenEmbed(dev, "", 64, 192, rand.New(rand.NewPCG(1, 1)))
	ps := e.Params()
	if len(ps) != 2 || ps[0].Name != "cls_token" || ps[1].Name != "pos_embed" {
		t.Fatalf("params %q, %q; want cls_token, pos_embed", ps[0].Name, ps[1].Name)
	}
	for i, shape := range [][]int{{1, 1, 192}, {1, 65, 192}} {
		p := ps[i]
		if p.Kind != nn.KindEmbedding || !slices.Equal(p.Value.Shape, shape) {
			t.Errorf("%s: kind %v shape %v, want KindEmbedding %v", p.Name, p.Kind, p.Value.Shape, shape)
		}
		// trunc_normal σ 0.02: the sample's deviation within 10%, nothing
		// beyond 6σ.
		v := vitDownload(dev, p.Value.Data, p.Value.Len())
		var ss, worst float64
		for _, x := range v {
			ss += float64(x) * float64(x)
			worst = math.Max(worst, math.Abs(float64(x)))
		}
		if sd := math.Sqrt(ss / float64(len(v))); sd < 0.018 || sd > 0.022 || worst > 0.12 {
			t.Errorf("%s: σ %.4f, max |x| %.3f; want trunc_normal σ 0.02", p.Name, sd, worst)
		}
	}
	if got := nn.NewTokenEmbed(dev, "vit", 1, 2, rand.New(rand.NewPCG(1, 1))).Params()[1].Name; got != "vit.pos_embed" {
		t.Errorf("prefixed name %q, want vit.pos_embed", got)
	}
}

func TestTokenEmbedGradCheck(t *testing.T) {
	dev := cpu.New()
	rng := rand.New(rand.NewPCG(9, 9))
	e := nn.NewTokenEmbed(dev, "", 3, 5, rng)
	nntest.GradCheck{Seed: 5}.Run(t, dev, e, vitRandn(rng, 2*3*5, 1), []int{2, 3, 5})
}

func TestTokenEmbedShapePanics(t *testing.T) {
	dev := cpu.New()
	e := nn.NewTokenEmbed(dev, "", 4, 6, rand.New(rand.NewPCG(1, 1)))
	vitMustPanic(t, func() { e.Forward(nn.NewTensor(dev, 2, 5, 6)) }, "TokenEmbed", "[2 5 6]", "[B 4 6]")
	vitMustPanic(t, func() { e.Forward(nn.NewTensor(dev, 2, 4, 7)) }, "TokenEmbed", "[2 4 7]", "[B 4 6]")
	vitMustPanic(t, func() { e.Backward(nn.NewTensor(dev, 2, 5, 6)) }, "TokenEmbed", "Backward before Forward")
	e.Forward(nn.NewTensor(dev, 2, 4, 6))
	vitMustPanic(t, func() { e.Backward(nn.NewTensor(dev, 2, 4, 6)) }, "TokenEmbed", "[2 4 6]", "[2 5 6]")
}

func TestTakeTokenParity(t *testing.T) {
	for _, c := range []struct {
		fixture string
		index   int
	}{{"take_i0", 0}, {"take_i2", 2}} {
		t.Run(c.fixture, func(t *testing.T) {
			dev := cpu.New()
			// The warm-up batch is larger, so dx is then a view of a
			// buffer whose other rows hold the warm-up's gradient.
			vitParity(t, dev, c.fixture, nn.NewTakeToken(dev, c.index), "", []int{5, 7, 4}, 0)
		})
	}
}

func TestTakeTokenGradCheck(t *testing.T) {
	dev := cpu.New()
	rng := rand.New(rand.NewPCG(10, 10))
	nntest.GradCheck{Seed: 6}.Run(t, dev, nn.NewTakeToken(dev, 1), vitRandn(rng, 2*3*4, 1), []int{2, 3, 4})
}

func TestTokenZeroAllocs(t *testing.T) {
	dev := cpu.New()
	vitZeroAllocs(t, dev, nn.NewTokenEmbed(dev, "", 4, 6, rand.New(rand.NewPCG(1, 1))), []int{3, 4, 6})
	vitZeroAllocs(t, dev, nn.NewTakeToken(dev, 0), []int{3, 5, 6})
}

func TestTakeTokenShapePanics(t *testing.T) {
	dev := cpu.New()
	tk := nn.NewTakeToken(dev, 3)
	vitMustPanic(t, func() { tk.Forward(nn.NewTensor(dev, 2, 3, 4)) }, "TakeToken", "[2 3 4]", "N>3")
	vitMustPanic(t, func() { tk.Forward(nn.NewTensor(dev, 2, 12)) }, "TakeToken", "[2 12]")
	tk.Forward(nn.NewTensor(dev, 2, 5, 4))
	vitMustPanic(t, func() { tk.Backward(nn.NewTensor(dev, 2, 5)) }, "TakeToken", "[2 5]", "[2 4]")
}
