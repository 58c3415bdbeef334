package mac_test

import (
	"fmt"
	"testing"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/mac"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/models"
)

// TestAttentionDistributedSeam checks the attention rule across ranks: two
// ranks that average EarlyStats (the mean attention t̄), then Stats (each
// rank's ā_V = X̄ᵀ·t̄ and every layer's ā) and the gradients take the step
// one process takes on the whole batch. Averaging only Stats, each rank
// forming ā_V from its own t̄, does not: the mean of products is not the
// product of means, which the second case shows.
func TestAttentionDistributedSeam(t *testing.T) {
	for _, tc := range []struct {
		model string
		cfg   models.Config
		early int // floats of EarlyStats
	}{
		// Two blocks of 5 tokens (4 patches and the class token).
		{"vit-tiny-cifar", models.Config{InChannels: 1, ImageSize: 8, Classes: 3, Depth: 2, Dim: 16, Heads: 2, Patch: 4, MLPRatio: 2, Seed: 5}, 2 * 5},
		// Window attention: four blocks of 2 × 2 windows (4 tokens), the
		// second block of the first stage shifted.
		{"swin-tiny", models.Config{InChannels: 1, ImageSize: 8, Classes: 3, Dim: 8, Heads: 2, Patch: 2, MLPRatio: 2,
			Stages: []int{2, 2}, Window: 2, Seed: 5}, 4 * 4},
	} {
		for _, early := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/early=%v", tc.model, early), func(t *testing.T) {
				testAttentionSeam(t, tc.model, tc.cfg, tc.early, early)
			})
		}
	}
}

func testAttentionSeam(t *testing.T, model string, mcfg models.Config, wantEarly int, early bool) {
	dev := cpu.New()
	vit := func() *models.Model {
		m, err := models.New(dev, model, mcfg)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	cfg := mac.Config{Common: mac.Common{Momentum: 0.9, WeightDecay: 1e-3}, StatDecay: 0.95, Damping: 0.5,
		TCov: 1, TInv: 1, AttentionV: true}
	full := vit()
	ranks := []*models.Model{vit(), vit()}
	oFull, err := mac.NewMAC(dev, full, cfg)
	if err != nil {
		t.Fatal(err)
	}
	oRank := make([]*mac.MAC, 2)
	for r := range ranks {
		if oRank[r], err = mac.NewMAC(dev, ranks[r], cfg); err != nil {
			t.Fatal(err)
		}
	}
	lossFull := nn.NewCrossEntropyLoss(dev, 0)
	losses := []*nn.CrossEntropyLoss{nn.NewCrossEntropyLoss(dev, 0), nn.NewCrossEntropyLoss(dev, 0)}
	shape, half := full.InputShape(8), full.InputShape(4)
	per := nn.Numel(half)
	var earlyLen int
	var statsErr float64
	for k := range 5 {
		x, y := batch(k, 8, per/4, 3)
		for i := per; i < 2*per; i++ {
			// The second rank's images are brighter: the ranks'
			// attention and token means differ clearly.
			x[i] += 1.5
		}
		forwardBackward(dev, full, lossFull, oFull, x, shape, y)
		sFull := get(dev, oFull.Stats())
		if err := oFull.Step(0.1); err != nil {
			t.Fatal(err)
		}
		var earlies, stats []kernels.Buffer
		for r := range 2 {
			forwardBackward(dev, ranks[r], losses[r], oRank[r], x[r*per:(r+1)*per], half, y[r*4:(r+1)*4])
			earlies = append(earlies, oRank[r].EarlyStats())
		}
		if earlies[0] == nil {
			t.Fatal("EarlyStats is nil on a collecting step of a model with attention")
		}
		earlyLen = earlies[0].Len()
		if early {
			allReduceMean(dev, earlies[0], earlies[1])
		}
		for r := range 2 {
			stats = append(stats, oRank[r].Stats())
		}
		allReduceMean(dev, stats[0], stats[1])
		statsErr = max(statsErr, relErr(get(dev, stats[0]), sFull))
		averageGrads(dev, ranks[0].Params(), ranks[1].Params())
		for r := range 2 {
			if err := oRank[r].Step(0.1); err != nil {
				t.Fatal(err)
			}
		}
	}
	if earlyLen != wantEarly {
		t.Errorf("EarlyStats holds %d floats, want %d (t̄ of every attention layer)", earlyLen, wantEarly)
	}
	want := snapshot(dev, full.Params())
	worst := 0.0
	for r := range 2 {
		got := snapshot(dev, ranks[r].Params())
		for k, w := range want {
			worst = max(worst, relErr(got[k], w))
		}
	}
	t.Logf("largest relative difference from the full batch: statistics %.3g, parameters %.3g", statsErr, worst)
	if early && (statsErr > 1e-5 || worst > 1e-5) {
		t.Errorf("with t̄ averaged first, the ranks differ from the full batch by %.3g (statistics) and %.3g (parameters); want ≤ 1e-5", statsErr, worst)
	}
	// At initialisation the attention is nearly uniform, so the
	// mean of products misses the product of means by little; still
	// by a thousand times more than float32 rounding does.
	if !early && statsErr < 1e-5 {
		t.Errorf("without averaging t̄ first the ranks' statistics still match the full batch's within 1e-5 (%.3g): the test cannot tell", statsErr)
	}
}
