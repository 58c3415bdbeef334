package train

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/macdist/macdist/collective"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/models"
	"github.com/macdist/macdist/safetensors"
)

// runRanks trains cfg on len(dirs) in-process ranks joined by a Local
// group, rank r in dirs[r]; hide makes the reducers lose BroadcastBytes.
func runRanks(t *testing.T, ctx context.Context, dirs []string, hide bool, edit func(*Config)) []error {
	t.Helper()
	comms := collective.NewLocal(len(dirs))
	errs := make([]error, len(dirs))
	var wg sync.WaitGroup
	for r, dir := range dirs {
		c := smallConfig(t, dir)
		c.Batch, c.Rank, c.World = c.Batch/len(dirs), r, len(dirs)
		edit(&c)
		sr := collective.NewStepReducer(ctx, comms[r], collective.BucketConfig{})
		c.Reducer = sr
		if hide {
			c.Reducer = struct{ StepReducer }{sr}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer sr.Close()
			errs[r] = Run(ctx, c, io.Discard)
			if errs[r] != nil {
				comms[r].Abort(errs[r])
			}
		}()
	}
	wg.Wait()
	return errs
}

// TestResumeBroadcastsCheckpoint resumes a two-rank run whose rank 1 has
// lost its run directory (another node, no shared file system): rank 0
// sends its checkpoint, and the run ends where an uninterrupted one does.
// Without the broadcast, rank 1 would start from scratch: the ranks then
// disagree, which the last part shows.
func TestResumeBroadcastsCheckpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("three two-rank runs")
	}
	ctx := context.Background()
	tmp := t.TempDir()
	d := func(name string) string { return filepath.Join(tmp, name) }
	none := func(*Config) {}

	for r, err := range runRanks(t, ctx, []string{d("straight0"), d("straight1")}, false, none) {
		if err != nil {
			t.Fatalf("straight run, rank %d: %v", r, err)
		}
	}
	half := func(c *Config) { c.MaxSteps = 25 }
	for r, err := range runRanks(t, ctx, []string{d("split0"), d("split1")}, false, half) {
		if err != nil {
			t.Fatalf("first half, rank %d: %v", r, err)
		}
	}
	if ck, _ := Checkpoints(filepath.Join(d("split1"), CheckpointsDir)); len(ck) != 0 {
		t.Fatalf("rank 1 wrote checkpoints: %v", ck)
	}
	resume := func(c *Config) { c.Resume = true }
	for r, err := range runRanks(t, ctx, []string{d("split0"), d("fresh1")}, false, resume) {
		if err != nil {
			t.Fatalf("resumed run, rank %d: %v", r, err)
		}
	}
	a := readParams(t, filepath.Join(d("straight0"), FinalDir, modelFile))
	b := readParams(t, filepath.Join(d("split0"), FinalDir, modelFile))
	if diff := maxRelDiff(t, b, a); diff > 1e-6 {
		t.Errorf("resumed two-rank run ends %.3g away from the straight one (want ≤ 1e-6)", diff)
	} else {
		t.Logf("resumed vs straight: max relative difference %.3g", diff)
	}

	// The control: the same resume without the broadcast fails.
	for r, err := range runRanks(t, ctx, []string{d("split0-copy"), d("other1")}, false, half) {
		if err != nil {
			t.Fatalf("second first half, rank %d: %v", r, err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	errs := runRanks(t, cctx, []string{d("split0-copy"), d("fresh3")}, true, resume)
	err := errors.Join(errs...)
	if err == nil || !strings.Contains(err.Error(), "collective") {
		t.Fatalf("without the broadcast, a rank without checkpoints resumed: %v; want a collective error", err)
	}
	t.Logf("without the broadcast: %v", err)
}

// TestStartBroadcastsInitialWeights starts two-rank runs from --init
// weights that only rank 0 is given: rank 0 sends them, and the run ends
// exactly where one whose ranks both read the file does. Without the
// broadcast, rank 1 starts from its seeded weights and the runs differ.
func TestStartBroadcastsInitialWeights(t *testing.T) {
	if testing.Short() {
		t.Skip("three two-rank runs")
	}
	ctx := context.Background()
	tmp := t.TempDir()
	d := func(name string) string { return filepath.Join(tmp, name) }
	dev := cpu.New()
	m, err := models.New(dev, "lenet5", models.Config{Seed: 77, InChannels: 1, ImageSize: 28, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	initFile := d("init.safetensors")
	if err := safetensors.WriteFile(initFile, nn.StateDict(dev, m.Params()), nil); err != nil {
		t.Fatal(err)
	}
	bothRead := func(c *Config) { c.Init, c.Epochs = initFile, 1 }
	onlyRank0 := func(c *Config) {
		c.Epochs = 1
		if c.Rank == 0 {
			c.Init = initFile
		}
	}
	for name, run := range map[string]struct {
		edit func(*Config)
		hide bool
	}{"both": {bothRead, false}, "rank0": {onlyRank0, false}, "rank0-hidden": {onlyRank0, true}} {
		for r, err := range runRanks(t, ctx, []string{d(name + "0"), d(name + "1")}, run.hide, run.edit) {
			if err != nil {
				t.Fatalf("%s, rank %d: %v", name, r, err)
			}
		}
	}
	want := readParams(t, filepath.Join(d("both0"), FinalDir, modelFile))
	if diff := maxRelDiff(t, readParams(t, filepath.Join(d("rank00"), FinalDir, modelFile)), want); diff != 0 {
		t.Errorf("with --init on rank 0 only, the run ends %.3g away from one where both ranks read it", diff)
	}
	if diff := maxRelDiff(t, readParams(t, filepath.Join(d("rank0-hidden0"), FinalDir, modelFile)), want); diff == 0 {
		t.Error("without the broadcast the runs still agree: the test cannot tell")
	} else {
		t.Logf("without the broadcast: %.3g apart", diff)
	}
}
