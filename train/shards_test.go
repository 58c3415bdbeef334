package train

import (
	"bytes"
	"context"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/macdist/macdist/data"
)

// TestShardsResumeExact trains on a shard directory, once straight and once
// interrupted mid-epoch and resumed: the final weights are the same bit for
// bit, since the stream's batches are a function of (seed, epoch, rank,
// world) and the resumed loader restores the epoch's stream position. It
// does so plain and with the recipe's per-sample transforms (RandAugment,
// random erasing, repeated augmentation), which shards take as an
// ImageFolder does.
func TestShardsResumeExact(t *testing.T) {
	dir := goodShards(t)
	for _, recipe := range []bool{false, true} {
		cfg := func(run string) Config {
			c := smallConfig(t, run)
			c.Model, c.Data, c.Batch, c.Epochs = "mlp", "shards:"+dir, 4, 2
			if recipe {
				c.AutoAugment, c.RandomErase, c.RepeatedAug = "rand-m9-mstd0.5", 0.5, 2
			}
			return c
		}
		straight := t.TempDir()
		if err := Run(context.Background(), cfg(straight), io.Discard); err != nil {
			t.Fatal(err)
		}
		split := t.TempDir()
		c := cfg(split)
		c.MaxSteps = 6 // 4 steps per epoch (15 samples, batch 4): the middle of epoch 2
		if err := Run(context.Background(), c, io.Discard); err != nil {
			t.Fatal(err)
		}
		// The mid-epoch checkpoint holds the stream's position, which the
		// resumed run restores instead of re-reading the epoch's head.
		if _, st, err := LatestCheckpoint(filepath.Join(split, CheckpointsDir), nil); err != nil || st.EpochStep != 2 || len(st.Stream) == 0 {
			t.Fatalf("recipe %v: checkpoint at epoch step %d with a stream position of %d bytes (%v), want step 2 and a position", recipe, st.EpochStep, len(st.Stream), err)
		}
		c.MaxSteps, c.Resume = 0, true
		if err := Run(context.Background(), c, io.Discard); err != nil {
			t.Fatal(err)
		}
		a := readParams(t, filepath.Join(straight, FinalDir, modelFile))
		b := readParams(t, filepath.Join(split, FinalDir, modelFile))
		if d := maxRelDiff(t, b, a); d != 0 {
			t.Errorf("recipe %v: resumed run ends %.3g away from the straight one, want 0", recipe, d)
		}
	}
}

// goodShards writes imageFolder's tree, less its corrupt image, as shards
// of about 2.5 kB (several per epoch) and returns their directory.
func goodShards(t *testing.T) string {
	t.Helper()
	root, bad := imageFolder(t)
	if err := os.Remove(bad); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "shards")
	if _, err := data.WriteShards(root, dir, data.ShardOptions{ShardBytes: 2500}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestShardsSkipBad: a shard holding an image that does not decode stops
// the run naming the shard and offset; with --skip-bad the run completes
// and counts it.
func TestShardsSkipBad(t *testing.T) {
	root, _ := imageFolder(t) // one corrupt PNG among the training images
	dir := filepath.Join(t.TempDir(), "shards")
	if _, err := data.WriteShards(root, dir, data.ShardOptions{}); err != nil {
		t.Fatal(err)
	}
	c := smallConfig(t, t.TempDir())
	c.Model, c.Data, c.Batch, c.Epochs = "mlp", "shards:"+dir, 4, 1
	err := Run(context.Background(), c, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "train-000000.tar at offset") {
		t.Fatalf("a corrupt image without --skip-bad: %v", err)
	}
	var prog bytes.Buffer
	c.RunDir, c.SkipBad, c.Progress = t.TempDir(), true, &prog
	if err := Run(context.Background(), c, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(prog.String(), "--skip-bad: 1 undecodable training samples were replaced") {
		t.Errorf("progress:\n%s", prog.String())
	}
}

// TestShardsWorldChange resumes a two-rank run on shards with one rank, as
// an elastic launch does after losing a node: the checkpoint's stream
// position belongs to the old world, so the resumed rank is dealt the
// epoch's shards anew and finishes the run, instead of failing on the
// position or reading another rank's samples.
func TestShardsWorldChange(t *testing.T) {
	if testing.Short() {
		t.Skip("a two-rank run and its resumption")
	}
	dir := goodShards(t)
	dirs := []string{t.TempDir(), t.TempDir()}
	errs := runRanks(t, context.Background(), dirs, false, func(c *Config) {
		c.Model, c.Data, c.Batch, c.Epochs = "mlp", "shards:"+dir, 2, 2
		c.MaxSteps = 6 // 3 steps per epoch of 14 samples at a global batch of 4: mid epoch 2
	})
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	_, st, err := LatestCheckpoint(filepath.Join(dirs[0], CheckpointsDir), nil)
	if err != nil || st.EpochStep == 0 || len(st.Stream) == 0 {
		t.Fatalf("checkpoint at epoch step %d with a stream position of %d bytes (%v), want one mid-epoch with a position", st.EpochStep, len(st.Stream), err)
	}
	var log bytes.Buffer
	c := smallConfig(t, dirs[0])
	c.Model, c.Data, c.Batch, c.Epochs, c.Resume = "mlp", "shards:"+dir, 4, 2, true
	c.Logger = NewLogger(&log)
	if err := Run(context.Background(), c, io.Discard); err != nil {
		t.Fatalf("resuming with one rank: %v\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "dealt anew") {
		t.Errorf("the resumed run did not say that the shards were dealt anew:\n%s", log.String())
	}
	for name, v := range readParams(t, filepath.Join(dirs[0], FinalDir, modelFile)) {
		for _, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				t.Fatalf("%s holds %v", name, x)
			}
		}
	}
}
