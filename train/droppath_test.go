package train

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

// dropPathConfig is a two-block ViT on 8×8 images with stochastic depth.
func dropPathConfig(t testing.TB, dir string, rate float64) Config {
	c := smallConfig(t, dir)
	c.Data = "synthetic:1x8x8:4:256:32"
	c.Model, c.Depth, c.Patch = "vit-tiny-cifar", 2, 4
	c.Optimizer, c.LR, c.Momentum = "sgd", 0.05, 0.9
	c.DropPath = rate
	return c
}

// TestDropPath: --drop-path reaches the model (a run with it ends elsewhere
// than one without), an interrupted run resumes onto the same masks (its
// seeds advance with the steps, as dropout's do), and a model without
// residual blocks to drop refuses it.
func TestDropPath(t *testing.T) {
	if testing.Short() {
		t.Skip("four short runs")
	}
	ctx := context.Background()
	run := func(c Config) map[string][]float32 {
		t.Helper()
		if err := Run(ctx, c, io.Discard); err != nil {
			t.Fatal(err)
		}
		return readParams(t, filepath.Join(c.RunDir, FinalDir, modelFile))
	}
	straight := run(dropPathConfig(t, t.TempDir(), 0.5))
	none := run(dropPathConfig(t, t.TempDir(), 0))
	if d := maxRelDiff(t, straight, none); d < 1e-3 {
		t.Errorf("--drop-path 0.5 ends %.3g from a run without it: not applied", d)
	}
	split := t.TempDir()
	c := dropPathConfig(t, split, 0.5)
	c.MaxSteps = 11
	run(c)
	c = dropPathConfig(t, split, 0.5)
	c.Resume = true
	if d := maxRelDiff(t, run(c), straight); d > 1e-6 {
		t.Errorf("resumed with drop path: %.3g from the uninterrupted run", d)
	}

	c = smallConfig(t, t.TempDir())
	c.Model, c.DropPath = "lenet5", 0.1
	if err := Run(ctx, c, io.Discard); err == nil || !strings.Contains(err.Error(), "--drop-path") {
		t.Errorf("lenet5 with --drop-path: %v", err)
	}
}
