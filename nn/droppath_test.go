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

// TestDropPath checks timm's drop_path: each sample's whole row is either
// zero or scaled by 1/(1−p), at rate p, the backward pass applies the same
// factors, the seed advances, and evaluation mode is the identity.
func TestDropPath(t *testing.T) {
	dev := cpu.New()
	const p, batch, width = 0.3, 4000, 5
	d := nn.NewDropPath(dev, p, 42)
	xv := vitRandn(rand.New(rand.NewPCG(1, 2)), batch*width, 1)
	x := vitTensor(dev, xv, batch, 1, width)
	y := cnnDownload(dev, d.Forward(x).Data)
	mask := d.Mask()
	if len(mask) != batch {
		t.Fatalf("mask of %d factors, want one per sample (%d)", len(mask), batch)
	}
	dropped := 0
	for b, m := range mask {
		switch m {
		case 0:
			dropped++
		case 1 / (1 - float32(p)):
		default:
			t.Fatalf("sample %d: factor %g, want 0 or 1/(1-p)", b, m)
		}
		for i := range width {
			if got, want := y[b*width+i], xv[b*width+i]*m; got != want {
				t.Fatalf("y[%d][%d] = %g, want %g (factor %g)", b, i, got, want, m)
			}
		}
	}
	// Binomial: 1200 ± 29 dropped; 5σ either way.
	if frac := float64(dropped) / batch; math.Abs(frac-p) > 5*math.Sqrt(p*(1-p)/batch) {
		t.Errorf("dropped %.4f of the samples, want %.2f", frac, p)
	}
	dyv := vitRandn(rand.New(rand.NewPCG(3, 4)), batch*width, 1)
	dx := cnnDownload(dev, d.Backward(vitTensor(dev, dyv, x.Shape...)).Data)
	for i := range dx {
		if want := dyv[i] * mask[i/width]; dx[i] != want {
			t.Fatalf("dx[%d] = %g, want %g", i, dx[i], want)
		}
	}
	if d.Seed != 43 {
		t.Errorf("seed %d after one Forward, want 43", d.Seed)
	}
	d.Forward(x)
	if slices.Equal(mask, d.Mask()) {
		t.Error("two Forward calls drew the same mask")
	}
	if again := nn.NewDropPath(dev, p, 42); !slices.Equal(cnnDownload(dev, again.Forward(x).Data), y) {
		t.Error("the same seed drew another mask")
	}

	d.SetTraining(false)
	if d.Forward(x) != x || d.Mask() != nil {
		t.Error("evaluation mode is not the identity")
	}
	if dy := vitTensor(dev, dyv, x.Shape...); d.Backward(dy) != dy {
		t.Error("evaluation mode's Backward is not the identity")
	}
	if z := nn.NewDropPath(dev, 0, 1); z.Forward(x) != x {
		t.Error("p = 0 is not the identity")
	}
}

// fixedMasks runs a ViTBlock with drop path whose seeds are reset before
// every Forward, so that finite differences see one fixed pair of masks.
type fixedMasks struct {
	*nn.ViTBlock
	s1, s2 uint64
}

func (f fixedMasks) Forward(x *nn.Tensor) *nn.Tensor {
	a, m := f.DropPath()
	a.Seed, m.Seed = f.s1, f.s2
	return f.ViTBlock.Forward(x)
}

// TestViTBlockDropPath checks stochastic depth inside the block: samples
// whose two branches are both dropped pass through unchanged, others do
// not, and Backward is the gradient of the masked block.
func TestViTBlockDropPath(t *testing.T) {
	dev := cpu.New()
	const batch, tokens, dim = 24, 3, 6
	b := nn.NewViTBlock(dev, "blocks.0", dim, 2, 2, rand.New(rand.NewPCG(5, 5)))
	b.SetDropPath(0.5, 1000)
	xv := vitRandn(rand.New(rand.NewPCG(6, 6)), batch*tokens*dim, 1)
	x := vitTensor(dev, xv, batch, tokens, dim)
	y := cnnDownload(dev, b.Forward(x).Data)
	a, m := b.DropPath()
	ma, mm := a.Mask(), m.Mask()
	if slices.Equal(ma, mm) {
		t.Error("both branches drew the same mask")
	}
	row := tokens * dim
	identity, both := 0, 0
	for s := range batch {
		same := slices.Equal(y[s*row:(s+1)*row], xv[s*row:(s+1)*row])
		if ma[s] == 0 && mm[s] == 0 {
			both++
			if !same {
				t.Errorf("sample %d: both branches dropped, but the block changed it", s)
			}
		} else if same {
			t.Errorf("sample %d: a branch kept (factors %g, %g), but the block is the identity", s, ma[s], mm[s])
		}
		if same {
			identity++
		}
	}
	if both == 0 || both == batch {
		t.Fatalf("%d of %d samples dropped in both branches: the test needs some of each", both, batch)
	}
	b.SetTraining(false)
	if yEval := cnnDownload(dev, b.Forward(x).Data); slices.Equal(yEval[:row], xv[:row]) {
		t.Error("evaluation mode dropped a branch")
	}
	b.SetTraining(true)
	// Small batch for the gradient check; seeds 1000 and 1000+2³² give,
	// among four samples, kept and dropped branches of both kinds.
	nntest.GradCheck{Seed: 3}.Run(t, dev, fixedMasks{b, 1000, 1000 + 1<<32}, xv[:4*row], []int{4, tokens, dim})
}
