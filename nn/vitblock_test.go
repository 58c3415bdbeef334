package nn_test

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/nntest"
)

// TestViTBlockParity compares a whole block with timm's Block. Tolerance
// 1e-4 still holds: the widest float32 sum has 48 terms.
func TestViTBlockParity(t *testing.T) {
	for _, c := range []struct {
		fixture    string
		dim, heads int
		ratio      float64
		tokens     int
	}{
		{"block_d12_h3_n5", 12, 3, 4, 5},
		{"block_d8_h2_n17", 8, 2, 2.5, 17},
		// Tokens of variance near 1e-6, where norm1's eps shows.
		{"block_d12_h3_n5_small", 12, 3, 4, 5},
	} {
		t.Run(c.fixture, func(t *testing.T) {
			dev := cpu.New()
			b := nn.NewViTBlock(dev, "blocks.7", c.dim, c.heads, c.ratio, rand.New(rand.NewPCG(1, 1)))
			vitParity(t, dev, c.fixture, b, "blocks.7.", []int{3, c.tokens + 1, c.dim}, 1e-4)
		})
	}
}

func TestViTBlockStructure(t *testing.T) {
	dev := cpu.New()
	b := nn.NewViTBlock(dev, "blocks.0", 8, 2, 4, rand.New(rand.NewPCG(1, 1)))
	var names []string
	for _, p := range b.Params() {
		names = append(names, p.Name)
	}
	want := []string{
		"blocks.0.norm1.weight", "blocks.0.norm1.bias",
		"blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias",
		"blocks.0.attn.proj.weight", "blocks.0.attn.proj.bias",
		"blocks.0.norm2.weight", "blocks.0.norm2.bias",
		"blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc1.bias",
		"blocks.0.mlp.fc2.weight", "blocks.0.mlp.fc2.bias",
	}
	if !slices.Equal(names, want) {
		t.Errorf("params %v\nwant %v", names, want)
	}
	if got := b.Params()[8].Value.Shape; !slices.Equal(got, []int{32, 8}) {
		t.Errorf("fc1 weight %v, want [32 8]", got)
	}
	var tapped, attn int
	nn.Walk(b, func(m nn.Module) {
		if _, ok := m.(nn.Tapped); ok {
			tapped++
		}
		if _, ok := m.(nn.AttentionTapped); ok {
			attn++
		}
	})
	if tapped != 4 || attn != 1 {
		t.Errorf("Walk finds %d Tapped and %d AttentionTapped modules, want 4 (qkv, proj, fc1, fc2) and 1", tapped, attn)
	}
}

func TestViTBlockGradCheck(t *testing.T) {
	dev := cpu.New()
	rng := rand.New(rand.NewPCG(11, 11))
	b := nn.NewViTBlock(dev, "blocks.0", 6, 2, 2, rng)
	// Unit-scale norm parameters, so that their gradients are checked away
	// from the special point weight 1, bias 0.
	for _, p := range b.Params() {
		if p.Kind == nn.KindNorm {
			dev.Upload(p.Value.Data, vitRandn(rng, p.Value.Len(), 1))
		}
	}
	nntest.GradCheck{Seed: 7}.Run(t, dev, b, vitRandn(rng, 2*4*6, 1), []int{2, 4, 6})
}

func TestViTBlockZeroAllocs(t *testing.T) {
	dev := cpu.New()
	b := nn.NewViTBlock(dev, "blocks.0", 12, 3, 4, rand.New(rand.NewPCG(1, 1)))
	// With every tap on, as MAC's statistics steps run.
	nn.Walk(b, func(m nn.Module) {
		if tm, ok := m.(nn.Tapped); ok {
			tm.SetTap(true)
		}
		if am, ok := m.(nn.AttentionTapped); ok {
			am.SetAttentionTap(true)
		}
	})
	vitZeroAllocs(t, dev, b, []int{2, 9, 12})
}

func TestViTBlockShapePanics(t *testing.T) {
	dev := cpu.New()
	b := nn.NewViTBlock(dev, "blocks.2", 8, 2, 4, rand.New(rand.NewPCG(1, 1)))
	vitMustPanic(t, func() { b.Forward(nn.NewTensor(dev, 2, 5, 6)) }, "blocks.2", "[2 5 6]", "[B N 8]")
	vitMustPanic(t, func() { b.Backward(nn.NewTensor(dev, 2, 5, 8)) }, "blocks.2", "Backward before Forward")
	b.Forward(nn.NewTensor(dev, 2, 5, 8))
	vitMustPanic(t, func() { b.Backward(nn.NewTensor(dev, 5, 2, 8)) }, "blocks.2", "[5 2 8]", "[2 5 8]")
}

// BenchmarkViTBlock is one DeiT-Tiny block at CIFAR resolution (4 px
// patches on 32 px images: 64 patches and the class token) on a batch of
// 128, forward and backward.
func BenchmarkViTBlock(b *testing.B) {
	dev := cpu.New()
	rng := rand.New(rand.NewPCG(1, 1))
	blk := nn.NewViTBlock(dev, "blocks.0", 192, 3, 4, rng)
	x := vitTensor(dev, vitRandn(rng, 128*65*192, 1), 128, 65, 192)
	y := blk.Forward(x)
	dy := vitTensor(dev, vitRandn(rng, y.Len(), 1), y.Shape...)
	blk.Backward(dy)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		blk.Forward(x)
		blk.Backward(dy)
	}
	if err := dev.Sync(); err != nil {
		b.Fatal(err)
	}
}
