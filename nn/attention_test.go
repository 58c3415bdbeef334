package nn_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/macdist/macdist/internal/fixture"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/nntest"
)

var vitAttnCases = []struct {
	dim, heads, tokens int
	bias               bool
}{
	{6, 1, 5, true},
	{6, 2, 17, false},
	{12, 3, 5, false},
	{12, 3, 17, true},
	{8, 2, 1, true},
}

func vitAttnFixture(dim, heads, tokens int, bias bool) string {
	b := "nobias"
	if bias {
		b = "bias"
	}
	return fmt.Sprintf("attn_d%d_h%d_n%d_%s", dim, heads, tokens, b)
}

// TestAttentionParity compares outputs, gradients and MAC's attention
// statistics with timm's Attention. Tolerance 1e-4: the float32 sums are
// short (at most 17 terms per dot product).
func TestAttentionParity(t *testing.T) {
	for _, c := range vitAttnCases {
		name := vitAttnFixture(c.dim, c.heads, c.tokens, c.bias)
		t.Run(name, func(t *testing.T) {
			dev := cpu.New()
			rng := rand.New(rand.NewPCG(1, 1))
			a := nn.NewMultiHeadSelfAttention(dev, "blocks.1.attn", c.dim, c.heads, c.bias, rng)
			a.SetAttentionTap(true)
			// The warm-up step has other batch and token counts, so the
			// compared step (and its taps) runs on reallocated buffers.
			f := vitParity(t, dev, name, a, "blocks.1.attn.", []int{4, c.tokens + 2, c.dim}, 1e-4)

			xbar, tbar, tokens := a.AttentionTap()
			if tokens != c.tokens {
				t.Fatalf("AttentionTap: %d tokens, want %d", tokens, c.tokens)
			}
			width := a.QKV().TapDim()
			wx, xs := fixture.Floats(t, f, "tap.xbar")
			if !slices.Equal(xs, []int{c.tokens, width}) {
				t.Fatalf("fixture X̄ is %v, want [%d %d] from QKV().TapDim()", xs, c.tokens, width)
			}
			fixture.Close(t, "X̄", vitDownload(dev, xbar, xbar.Len()), wx, 1e-5)
			wt, _ := fixture.Floats(t, f, "tap.tbar")
			gt := vitDownload(dev, tbar, tbar.Len())
			fixture.Close(t, "t̄", gt, wt, 1e-5)
			var sum float64
			for _, v := range gt {
				sum += float64(v)
			}
			if sum < 1-1e-5 || sum > 1+1e-5 {
				t.Errorf("Σ t̄ = %v, want 1", sum)
			}
		})
	}
}

// TestAttentionTapModes checks that X̄ and t̄ are recorded only in training
// mode with the tap on.
func TestAttentionTapModes(t *testing.T) {
	dev := cpu.New()
	rng := rand.New(rand.NewPCG(2, 2))
	a := nn.NewMultiHeadSelfAttention(dev, "attn", 6, 2, true, rng)
	x := vitTensor(dev, vitRandn(rng, 2*5*6, 1), 2, 5, 6)
	if xb, tb, n := a.AttentionTap(); xb != nil || tb != nil || n != 0 {
		t.Fatalf("AttentionTap before any Forward = %v, %v, %d; want nil, nil, 0", xb, tb, n)
	}
	a.Forward(x)
	if _, _, n := a.AttentionTap(); n != 0 {
		t.Errorf("tap recorded %d tokens while off", n)
	}
	a.SetAttentionTap(true)
	a.QKV().SetTap(true)
	qkvTap := vitDownload(dev, a.QKV().Tap(), 7)
	a.SetTraining(false)
	a.Forward(x)
	if _, _, n := a.AttentionTap(); n != 0 {
		t.Errorf("tap recorded %d tokens in evaluation mode", n)
	}
	// SetTraining reaches qkv, which then leaves its ā alone.
	if got := vitDownload(dev, a.QKV().Tap(), 7); !slices.Equal(got, qkvTap) {
		t.Errorf("qkv's ā changed from %v to %v by an evaluation-mode Forward", qkvTap, got)
	}
	a.SetTraining(true)
	a.Forward(x)
	xb, _, n := a.AttentionTap()
	if n != 5 || xb.Len() != 5*7 {
		t.Fatalf("training-mode tap: %d tokens, X̄ of %d elements; want 5 and 35", n, xb.Len())
	}
	// The tap must not change when the tap is then switched off.
	before := vitDownload(dev, xb, xb.Len())
	a.SetAttentionTap(false)
	a.Forward(vitTensor(dev, vitRandn(rng, 2*5*6, 1), 2, 5, 6))
	if !slices.Equal(before, vitDownload(dev, xb, xb.Len())) {
		t.Error("X̄ changed by a Forward with the tap off")
	}
}

func TestAttentionStructure(t *testing.T) {
	dev := cpu.New()
	a := nn.NewMultiHeadSelfAttention(dev, "blocks.3.attn", 8, 2, true, rand.New(rand.NewPCG(1, 1)))
	var names []string
	for _, p := range a.Params() {
		names = append(names, p.Name)
	}
	want := []string{"blocks.3.attn.qkv.weight", "blocks.3.attn.qkv.bias", "blocks.3.attn.proj.weight", "blocks.3.attn.proj.bias"}
	if !slices.Equal(names, want) {
		t.Errorf("params %v, want %v", names, want)
	}
	var _ nn.AttentionTapped = a
	var _ nn.Container = a
	ch := a.Children()
	if len(ch) != 2 || ch[0] != nn.Module(a.QKV()) {
		t.Errorf("Children %v, want [qkv proj] with qkv == QKV()", ch)
	}
	if got := a.QKV().Weight().Value.Shape; !slices.Equal(got, []int{24, 8}) {
		t.Errorf("qkv weight %v, want [24 8]", got)
	}
	noBias := nn.NewMultiHeadSelfAttention(dev, "", 8, 2, false, rand.New(rand.NewPCG(1, 1)))
	names = names[:0]
	for _, p := range noBias.Params() {
		names = append(names, p.Name)
	}
	if want := []string{"qkv.weight", "proj.weight", "proj.bias"}; !slices.Equal(names, want) {
		t.Errorf("params without qkv bias %v, want %v", names, want)
	}
}

func TestAttentionGradCheck(t *testing.T) {
	for _, c := range []struct {
		dim, heads, tokens int
		bias               bool
	}{{6, 1, 3, true}, {6, 3, 5, false}, {8, 2, 4, true}} {
		t.Run(fmt.Sprintf("d%d_h%d_n%d", c.dim, c.heads, c.tokens), func(t *testing.T) {
			dev := cpu.New()
			rng := rand.New(rand.NewPCG(uint64(c.dim), uint64(c.heads)))
			a := nn.NewMultiHeadSelfAttention(dev, "attn", c.dim, c.heads, c.bias, rng)
			nntest.GradCheck{Seed: 3}.Run(t, dev, a, vitRandn(rng, 2*c.tokens*c.dim, 1), []int{2, c.tokens, c.dim})
		})
	}
}

func TestAttentionZeroAllocs(t *testing.T) {
	dev := cpu.New()
	a := nn.NewMultiHeadSelfAttention(dev, "attn", 12, 3, true, rand.New(rand.NewPCG(1, 1)))
	a.SetAttentionTap(true)
	a.QKV().SetTap(true)
	vitZeroAllocs(t, dev, a, []int{3, 9, 12})
}

func TestAttentionShapePanics(t *testing.T) {
	dev := cpu.New()
	rng := rand.New(rand.NewPCG(1, 1))
	a := nn.NewMultiHeadSelfAttention(dev, "blocks.1.attn", 8, 2, true, rng)
	vitMustPanic(t, func() { a.Forward(nn.NewTensor(dev, 2, 5, 6)) }, "blocks.1.attn", "[2 5 6]", "[B N 8]")
	vitMustPanic(t, func() { a.Forward(nn.NewTensor(dev, 10, 8)) }, "blocks.1.attn", "[10 8]", "[B N 8]")
	vitMustPanic(t, func() { a.Backward(nn.NewTensor(dev, 2, 5, 8)) }, "blocks.1.attn", "Backward before Forward")
	a.Forward(nn.NewTensor(dev, 2, 5, 8))
	vitMustPanic(t, func() { a.Backward(nn.NewTensor(dev, 2, 4, 8)) }, "blocks.1.attn", "[2 4 8]", "[2 5 8]")
	vitMustPanic(t, func() { nn.NewMultiHeadSelfAttention(dev, "attn", 8, 3, true, rng) }, "attn", "3 heads", "8")
}
