package train

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
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

// TestReplicatedCheckpointsSurviveRankZero loses the disk of rank 0 (its
// node) after half a two-rank run: with ReplicateCheckpoints, rank 1 kept
// copies of rank 0's checkpoints in its own run directory, so the
// re-formed run resumes from rank 1's copy, runs only the steps left, and
// ends where an uninterrupted run does. Without replication the new rank
// 0 has nothing to resume from and every step runs again.
func TestReplicatedCheckpointsSurviveRankZero(t *testing.T) {
	if testing.Short() {
		t.Skip("five two-rank runs")
	}
	ctx := context.Background()
	tmp := t.TempDir()
	d := func(name string) string { return filepath.Join(tmp, name) }
	var mu sync.Mutex
	var steps []int
	edit := func(replicate bool, maxSteps int, resume bool) func(*Config) {
		return func(c *Config) {
			c.MaxSteps, c.Resume = maxSteps, resume
			c.ReplicateCheckpoints, c.KeepReplicas = replicate, replicate && c.Rank == 1
			if c.Rank == 0 {
				c.OnStep = func(s int) { mu.Lock(); steps = append(steps, s); mu.Unlock() }
			}
		}
	}
	run := func(name string, dirs []string, e func(*Config)) {
		t.Helper()
		steps = nil
		for r, err := range runRanks(t, ctx, dirs, false, e) {
			if err != nil {
				t.Fatalf("%s, rank %d: %v", name, r, err)
			}
		}
	}

	run("straight", []string{d("straight0"), d("straight1")}, edit(false, 0, false))
	total := len(steps)
	run("first half", []string{d("half0"), d("half1")}, edit(true, 25, false))
	ck0, _ := Checkpoints(filepath.Join(d("half0"), CheckpointsDir))
	ck1, _ := Checkpoints(filepath.Join(d("half1"), CheckpointsDir))
	if len(ck0) != 2 || len(ck1) != len(ck0) {
		t.Fatalf("rank 0 wrote %v, rank 1 kept %v: want the same two", ck0, ck1)
	}
	for i := range ck0 {
		m0, _ := os.ReadFile(filepath.Join(ck0[i], manifestFile))
		m1, err := os.ReadFile(filepath.Join(ck1[i], manifestFile))
		if err != nil || !bytes.Equal(m0, m1) || filepath.Base(ck0[i]) != filepath.Base(ck1[i]) {
			t.Errorf("rank 1's copy %s differs from rank 0's %s (%v)", ck1[i], ck0[i], err)
		}
	}

	// Rank 0's node is gone; a new node takes rank 0 with an empty run
	// directory, and rank 1 has its copies.
	run("resumed", []string{d("new0"), d("half1")}, edit(true, 0, true))
	if len(steps) != total-25 || steps[0] != 26 {
		t.Errorf("the resumed run ran steps %v, want 26…%d", steps, total)
	}
	a := readParams(t, filepath.Join(d("straight0"), FinalDir, modelFile))
	b := readParams(t, filepath.Join(d("new0"), FinalDir, modelFile))
	if diff := maxRelDiff(t, b, a); diff > 1e-6 {
		t.Errorf("the run resumed from rank 1's copy ends %.3g away from the straight one (want ≤ 1e-6)", diff)
	}
	recs, err := os.ReadFile(filepath.Join(d("new0"), metricsFile))
	if err != nil || strings.Count(string(recs), "\n") != 2 {
		t.Errorf("the new rank 0's metrics.jsonl holds %q (%v): want both epochs, the first from the checkpoint", recs, err)
	}

	// The control: without replication, rank 1 holds nothing and the run
	// starts over.
	run("first half, no copies", []string{d("solo0"), d("solo1")}, edit(false, 25, false))
	if ck, _ := Checkpoints(filepath.Join(d("solo1"), CheckpointsDir)); len(ck) != 0 {
		t.Fatalf("rank 1 kept checkpoints without replication: %v", ck)
	}
	run("resumed, no copies", []string{d("new0-solo"), d("solo1")}, edit(false, 0, true))
	if len(steps) != total {
		t.Errorf("without replication the resumed run ran %d steps, want all %d again", len(steps), total)
	}
}

// A rank that shares rank 0's run directory (one node, or a shared file
// system) finds each checkpoint already there and writes nothing.
func TestReplicaInSharedDirectory(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "ckpt")
	dev := cpu.New()
	m, opt := ckptModel(t, dev)
	saved, err := SaveCheckpoint(dir, dev, m.Params(), opt, RunState{Step: 7}, 0)
	if err != nil {
		t.Fatal(err)
	}
	packed, err := packCheckpoint(saved)
	if err != nil {
		t.Fatal(err)
	}
	files, err := unpackCheckpoint(packed[1:])
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(filepath.Join(saved, modelFile))
	got, err := installCheckpoint(dir, files, 0)
	if err != nil || got != saved {
		t.Fatalf("installCheckpoint = %q, %v; want %s", got, err, saved)
	}
	after, _ := os.Stat(filepath.Join(saved, modelFile))
	if !after.ModTime().Equal(before.ModTime()) {
		t.Error("the copy was written over rank 0's checkpoint")
	}

	// Into another directory it is written, and verifies; a tar missing a
	// file or holding a stranger is refused.
	other := filepath.Join(root, "other")
	if got, err := installCheckpoint(other, files, 1); err != nil || filepath.Base(got) != CheckpointName(7) {
		t.Fatalf("installCheckpoint elsewhere = %q, %v", got, err)
	}
	if _, err := VerifyCheckpoint(filepath.Join(other, CheckpointName(7))); err != nil {
		t.Errorf("the copy does not verify: %v", err)
	}
	delete(files, optimizerFile)
	if _, err := unpackCheckpoint(mustPack(t, files)); err == nil || !strings.Contains(err.Error(), optimizerFile) {
		t.Errorf("a tar without %s: %v", optimizerFile, err)
	}
	files[optimizerFile], files["../evil"] = []byte("x"), []byte("y")
	if _, err := unpackCheckpoint(mustPack(t, files)); err == nil || !strings.Contains(err.Error(), "evil") {
		t.Errorf("a tar with a stranger: %v", err)
	}
}

func mustPack(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, b := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	tw.Close()
	return buf.Bytes()
}

// othersSay is a Reducer whose AllReduceSum64 adds what the other ranks
// report, slot by slot.
type othersSay struct {
	Local
	others []float64
}

func (o othersSay) AllReduceSum64(v []float64) error {
	for i := range v {
		v[i] += o.others[i]
	}
	return nil
}

func TestResumeSource(t *testing.T) {
	failed := errors.New("other settings")
	for _, tc := range []struct {
		name   string
		rank   int
		mine   findResult
		others []float64 // the other ranks' slots (0 none, −1 failed, step+1)
		want   int
	}{
		{"nobody has one", 1, findResult{}, []float64{0, 0, 0}, -1},
		{"rank 0 has the newest", 0, findResult{dir: "d", step: 50}, []float64{0, 26, 0}, 0},
		{"a copy is newer", 0, findResult{dir: "d", step: 25}, []float64{0, 51, 0}, 1},
		{"rank 0 lost its disk", 2, findResult{dir: "d", step: 50}, []float64{0, 26, 0}, 2},
		{"ties go to the lowest rank", 2, findResult{dir: "d", step: 50}, []float64{0, 51, 0}, 1},
		{"rank 0 failing is everyone's error", 0, findResult{err: failed}, []float64{0, 51, 51}, 0},
		{"another rank failing counts as none", 1, findResult{err: failed}, []float64{0, 0, 26}, 2},
	} {
		got, err := resumeSource(othersSay{others: tc.others}, tc.rank, len(tc.others), tc.mine)
		if err != nil || got != tc.want {
			t.Errorf("%s: resumeSource = %d, %v; want %d", tc.name, got, err, tc.want)
		}
	}
}
