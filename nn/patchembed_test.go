package nn_test

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/nntest"
)

func TestPatchEmbedParity(t *testing.T) {
	for _, c := range []struct {
		fixture         string
		inC, dim, patch int
		warm            []int
	}{
		// 12×12 images in 4×4 patches: 9 tokens.
		{"patch_c3_p4", 3, 8, 4, []int{3, 3, 8, 8}},
		// 7×10 images in 2×2 patches: the last row is dropped, as by
		// PyTorch's convolution; 5 channels, 15 tokens.
		{"patch_c5_p2", 5, 6, 2, []int{1, 5, 4, 4}},
	} {
		t.Run(c.fixture, func(t *testing.T) {
			dev := cpu.New()
			p := nn.NewPatchEmbed(dev, "patch_embed", c.inC, c.dim, c.patch, rand.New(rand.NewPCG(1, 1)))
			vitParity(t, dev, c.fixture, p, "patch_embed.", c.warm, 1e-4)
		})
	}
}

// TestTransposeShapes runs PatchEmbed on shapes that take each of the three
// loop orders of its transpose (batch, tokens or width the longest axis) and
// checks the result against the convolution's own output.
func TestPatchEmbedTranspose(t *testing.T) {
	for _, shape := range [][]int{{9, 2, 4, 4}, {2, 2, 12, 12}, {2, 2, 2, 2}} {
		dev := cpu.New()
		rng := rand.New(rand.NewPCG(4, 4))
		const dim = 5
		p := nn.NewPatchEmbed(dev, "", shape[1], dim, 2, rng)
		x := vitTensor(dev, vitRandn(rng, nn.Numel(shape), 1), shape...)
		y := p.Forward(x)
		conv := p.Proj().Forward(x) // the same convolution, [B, D, gh, gw]
		B, N := shape[0], conv.Shape[2]*conv.Shape[3]
		if !slices.Equal(y.Shape, []int{B, N, dim}) {
			t.Fatalf("%v: output %v, want [%d %d %d]", shape, y.Shape, B, N, dim)
		}
		got, c := vitDownload(dev, y.Data, y.Len()), vitDownload(dev, conv.Data, conv.Len())
		for b := 0; b < B; b++ {
			for n := 0; n < N; n++ {
				for d := 0; d < dim; d++ {
					if got[(b*N+n)*dim+d] != c[(b*dim+d)*N+n] {
						t.Fatalf("%v: y[%d %d %d] = %v, conv[%d %d %d] = %v", shape, b, n, d, got[(b*N+n)*dim+d], b, d, n, c[(b*dim+d)*N+n])
					}
				}
			}
		}
	}
}

func TestPatchEmbedGradCheck(t *testing.T) {
	dev := cpu.New()
	rng := rand.New(rand.NewPCG(8, 8))
	p := nn.NewPatchEmbed(dev, "patch_embed", 3, 4, 2, rng)
	nntest.GradCheck{Seed: 4}.Run(t, dev, p, vitRandn(rng, 2*3*4*6, 1), []int{2, 3, 4, 6})
}

func TestPatchEmbedZeroAllocs(t *testing.T) {
	dev := cpu.New()
	vitZeroAllocs(t, dev, nn.NewPatchEmbed(dev, "patch_embed", 3, 8, 4, rand.New(rand.NewPCG(1, 1))), []int{2, 3, 8, 8})
}

func TestPatchEmbedShapePanics(t *testing.T) {
	dev := cpu.New()
	p := nn.NewPatchEmbed(dev, "patch_embed", 3, 8, 4, rand.New(rand.NewPCG(1, 1)))
	vitMustPanic(t, func() { p.Forward(nn.NewTensor(dev, 2, 1, 8, 8)) }, "patch_embed", "[2 1 8 8]", "[B 3 H≥4 W≥4]")
	vitMustPanic(t, func() { p.Forward(nn.NewTensor(dev, 2, 3, 3, 8)) }, "patch_embed", "[2 3 3 8]")
	vitMustPanic(t, func() { p.Forward(nn.NewTensor(dev, 3, 8, 8)) }, "patch_embed", "[3 8 8]")
	vitMustPanic(t, func() { p.Backward(nn.NewTensor(dev, 2, 4, 8)) }, "patch_embed", "Backward before Forward")
	p.Forward(nn.NewTensor(dev, 2, 3, 8, 8))
	vitMustPanic(t, func() { p.Backward(nn.NewTensor(dev, 2, 8, 4)) }, "patch_embed", "[2 8 4]", "[2 4 8]")
}
