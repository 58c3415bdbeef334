package nn_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/nntest"
)

// swinCases are window geometries: a shifted partition whose windows wrap
// on both axes, a non-square map, and a map one window wide (no shift, as
// torchvision does there).
var swinCases = []struct {
	name               string
	b, h, w, dim, head int
	ws, shift          int
}{
	{"shifted", 2, 6, 6, 6, 2, 3, 1},
	{"shifted_rect", 1, 4, 8, 4, 1, 2, 1},
	{"one_window", 2, 3, 3, 4, 2, 3, 1},
	{"unshifted", 2, 4, 4, 4, 2, 2, 0},
}

func TestWindowAttentionGradCheck(t *testing.T) {
	dev := cpu.New()
	for _, tc := range swinCases {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(21, 21))
			a := nn.NewWindowAttention(dev, "attn", tc.dim, tc.head, tc.ws, tc.shift, rng)
			// A bias table far from zero, so that its gradient and the
			// mask's effect are both visible.
			for _, p := range a.Params() {
				if p.Kind == nn.KindEmbedding {
					dev.Upload(p.Value.Data, vitRandn(rng, p.Value.Len(), 0.5))
				}
			}
			nntest.GradCheck{Seed: 5}.Run(t, dev, a, vitRandn(rng, tc.b*tc.h*tc.w*tc.dim, 1), []int{tc.b, tc.h, tc.w, tc.dim})
		})
	}
}

func TestSwinBlockAndMergingGradCheck(t *testing.T) {
	dev := cpu.New()
	rng := rand.New(rand.NewPCG(22, 22))
	blk := nn.NewSwinBlock(dev, "features.1.1", 4, 2, 2, 1, 2, rng)
	for _, p := range blk.Params() {
		if p.Kind == nn.KindNorm || p.Kind == nn.KindEmbedding {
			dev.Upload(p.Value.Data, vitRandn(rng, p.Value.Len(), 1))
		}
	}
	nntest.GradCheck{Seed: 6}.Run(t, dev, blk, vitRandn(rng, 2*4*4*4, 1), []int{2, 4, 4, 4})
	pm := nn.NewPatchMerging(dev, "features.2", 3, rng)
	nntest.GradCheck{Seed: 7}.Run(t, dev, pm, vitRandn(rng, 2*4*6*3, 1), []int{2, 4, 6, 3})
}

// TestSwinWithoutPermuter checks that the window partition and the patch
// merging give the same results through Copy2D as through CopyStrided.
func TestSwinWithoutPermuter(t *testing.T) {
	base := cpu.New()
	devs := []kernels.Device{base, noPermuter{base}}
	for _, tc := range swinCases {
		t.Run(tc.name, func(t *testing.T) {
			var outs [2][]float32
			for k, dev := range devs {
				blk := nn.NewSwinBlock(dev, "b", tc.dim, tc.head, tc.ws, tc.shift, 2, rand.New(rand.NewPCG(3, 3)))
				pm := nn.NewPatchMerging(dev, "m", tc.dim, rand.New(rand.NewPCG(4, 4)))
				shape := []int{tc.b, tc.h, tc.w, tc.dim}
				x := vitTensor(dev, vitRandn(rand.New(rand.NewPCG(5, 5)), nn.Numel(shape), 1), shape...)
				y := blk.Forward(x)
				var dx *nn.Tensor
				if tc.h%2 == 0 && tc.w%2 == 0 {
					z := pm.Forward(y)
					dz := vitTensor(dev, vitRandn(rand.New(rand.NewPCG(6, 6)), z.Len(), 1), z.Shape...)
					dx = blk.Backward(pm.Backward(dz))
				} else {
					dx = blk.Backward(vitTensor(dev, vitRandn(rand.New(rand.NewPCG(6, 6)), y.Len(), 1), y.Shape...))
				}
				outs[k] = append(cnnDownload(dev, y.Data), cnnDownload(dev, dx.Data)...)
			}
			closeTo(t, "SwinBlock y and dx", outs[0], outs[1], 0)
		})
	}
}

// TestWindowAttentionTap checks X̄ and t̄ of the window rule by their
// definitions: with one window per map and no shift, X̄ is the batch mean
// of the input tokens; t̄ sums to 1; and a shift permutes X̄'s rows as the
// cyclic roll moves tokens into window positions.
func TestWindowAttentionTap(t *testing.T) {
	dev := cpu.New()
	const b, s, dim = 3, 4, 4
	rng := rand.New(rand.NewPCG(9, 9))
	xv := vitRandn(rng, b*s*s*dim, 1)
	x := vitTensor(dev, xv, b, s, s, dim)
	for _, shift := range []int{0, 1} {
		// A window as large as the map: torchvision does not shift it.
		a := nn.NewWindowAttention(dev, "attn", dim, 2, s, shift, rand.New(rand.NewPCG(1, 1)))
		a.SetAttentionTap(true)
		a.Forward(x)
		xbar, tbar, tokens := a.AttentionTap()
		if tokens != s*s {
			t.Fatalf("%d tokens, want %d", tokens, s*s)
		}
		xb, tb := cnnDownload(dev, xbar), cnnDownload(dev, tbar)
		for j := range tokens {
			for c := range dim {
				var want float64
				for i := range b {
					want += float64(xv[(i*tokens+j)*dim+c]) / b
				}
				if math.Abs(float64(xb[j*(dim+1)+c])-want) > 1e-6 {
					t.Fatalf("shift %d: X̄[%d][%d] = %g, want %g", shift, j, c, xb[j*(dim+1)+c], want)
				}
			}
			if xb[j*(dim+1)+dim] != 1 {
				t.Fatalf("X̄[%d]'s last column %g, want 1", j, xb[j*(dim+1)+dim])
			}
		}
		var sum float64
		for _, v := range tb {
			sum += float64(v)
		}
		if math.Abs(sum-1) > 1e-5 {
			t.Errorf("Σ t̄ = %g, want 1", sum)
		}
	}
	// 2 × 2 windows of a 4 × 4 map, shifted by 1: window position 0 of
	// window 0 holds map token (1, 1).
	a := nn.NewWindowAttention(dev, "attn", dim, 2, 2, 1, rand.New(rand.NewPCG(1, 1)))
	a.SetAttentionTap(true)
	a.Forward(x)
	xbar, _, tokens := a.AttentionTap()
	if tokens != 4 {
		t.Fatalf("%d tokens, want 4", tokens)
	}
	xb := cnnDownload(dev, xbar)
	// Position (r, q) of the windows takes map tokens (2·wh + r + 1) mod 4,
	// (2·ww + q + 1) mod 4 over the four windows and the batch.
	for r := range 2 {
		for q := range 2 {
			var want float64
			for i := range b {
				for wh := range 2 {
					for ww := range 2 {
						y, z := (2*wh+r+1)%s, (2*ww+q+1)%s
						want += float64(xv[((i*s+y)*s+z)*dim]) / (4 * b)
					}
				}
			}
			if got := xb[(r*2+q)*(dim+1)]; math.Abs(float64(got)-want) > 1e-6 {
				t.Errorf("X̄[%d][0] = %g, want %g", r*2+q, got, want)
			}
		}
	}
}

func TestRelativePositionIndex(t *testing.T) {
	// torchvision's define_relative_position_index for a 2 × 2 window.
	want := []int{4, 3, 1, 0, 5, 4, 2, 1, 7, 6, 4, 3, 8, 7, 5, 4}
	if got := nn.RelativePositionIndex(2); !slices.Equal(got, want) {
		t.Errorf("RelativePositionIndex(2) = %v, want %v", got, want)
	}
}
