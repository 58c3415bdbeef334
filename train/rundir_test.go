package train

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// snapshot is every file under dir with its contents' hash, and every
// directory: what "nothing was changed" means.
func snapshot(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			out[rel+"/"] = [32]byte{}
			return nil
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out[rel] = sha256.Sum256(raw)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTree(t *testing.T, what string, before, after map[string][32]byte) {
	t.Helper()
	for p, h := range before {
		if g, ok := after[p]; !ok {
			t.Errorf("%s: %s is gone", what, p)
		} else if g != h {
			t.Errorf("%s: %s changed", what, p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s: %s appeared", what, p)
		}
	}
}

func copyTree(t *testing.T, dst, src string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

// TestResumeNeverOverwritesFinishedRun is issue 12's case: a finished run
// whose every checkpoint is damaged, each in its own way. `--resume
// --max-steps 3` and a fresh start are refused with each checkpoint and
// why, and leave every file as it was, with or without checkpoints/;
// --overwrite starts over and leaves none of the old checkpoints behind.
func TestResumeNeverOverwritesFinishedRun(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "run")
	c := smallConfig(t, dir)
	c.CheckpointEvery, c.Keep = 5, 0
	if err := Run(context.Background(), c, io.Discard); err != nil {
		t.Fatal(err)
	}
	pristine := filepath.Join(tmp, "pristine")
	copyTree(t, pristine, dir)
	ck := func(step int) string { return filepath.Join(dir, CheckpointsDir, CheckpointName(step)) }
	damage := []struct {
		step   int
		do     func(dir string) error
		reason string
	}{
		{5, func(d string) error { return os.Remove(filepath.Join(d, manifestFile)) }, "incomplete: no MANIFEST"},
		{10, func(d string) error { return flip(filepath.Join(d, modelFile), 300) }, "model.safetensors is corrupt or truncated"},
		{15, func(d string) error { return truncate(filepath.Join(d, optimizerFile), 100) }, "optimizer.safetensors is corrupt or truncated (size 100"},
		{20, func(d string) error { return os.WriteFile(filepath.Join(d, manifestFile), []byte("{"), 0o644) }, "bad MANIFEST"},
		{25, func(d string) error { return os.Remove(filepath.Join(d, stateFile)) }, "incomplete: no state.json"},
		{30, func(d string) error { return flip(filepath.Join(d, stateFile), 10) }, "state.json is corrupt or truncated"},
		{35, func(d string) error { return os.Remove(filepath.Join(d, modelFile)) }, "incomplete: no model.safetensors"},
		{40, func(d string) error { return truncate(filepath.Join(d, modelFile), 0) }, "model.safetensors is corrupt or truncated (size 0"},
	}
	for _, d := range damage {
		if err := d.do(ck(d.step)); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := Checkpoints(filepath.Join(dir, CheckpointsDir)); len(got) != len(damage) {
		t.Fatalf("checkpoints %v, want the %d damaged above", got, len(damage))
	}
	before := snapshot(t, dir)
	for _, want := range []string{metricsFile, filepath.Join(FinalDir, modelFile), CurvesFile, ConfigFile} {
		if _, ok := before[want]; !ok {
			t.Fatalf("the finished run lacks %s", want)
		}
	}

	resume := c
	resume.Resume, resume.MaxSteps = true, 3
	err := Run(context.Background(), resume, io.Discard)
	if err == nil {
		t.Fatal("--resume with every checkpoint damaged started over")
	}
	t.Logf("refused resume:\n%v", err)
	msg := err.Error()
	for _, want := range []string{"cannot resume", "metrics.jsonl with 2 records", "final/model.safetensors", "7 checkpoints", "nothing was changed", "--overwrite", "--run-dir"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the refusal lacks %q", want)
		}
	}
	for _, d := range damage {
		if !strings.Contains(msg, ck(d.step)+": "+d.reason) {
			t.Errorf("the refusal does not say %q of %s", d.reason, ck(d.step))
		}
	}
	sameTree(t, "refused resume", before, snapshot(t, dir))

	fresh := c
	fresh.MaxSteps = 3
	err = Run(context.Background(), fresh, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "already holds a run") || !strings.Contains(err.Error(), "--resume") ||
		!strings.Contains(err.Error(), "--overwrite") || !strings.Contains(err.Error(), ck(10)+": model.safetensors") {
		t.Errorf("a fresh start over the run: %v", err)
	}
	sameTree(t, "refused fresh start", before, snapshot(t, dir))

	// Without checkpoints/ at all, metrics.jsonl and final/ still hold the run.
	if err := os.RemoveAll(filepath.Join(dir, CheckpointsDir)); err != nil {
		t.Fatal(err)
	}
	before = snapshot(t, dir)
	for _, cfg := range []Config{resume, fresh} {
		if err := Run(context.Background(), cfg, io.Discard); err == nil || !strings.Contains(err.Error(), "metrics.jsonl with 2 records, final/model.safetensors)") {
			t.Errorf("resume %v without checkpoints/: %v", cfg.Resume, err)
		}
	}
	sameTree(t, "refused without checkpoints/", before, snapshot(t, dir))

	// --overwrite starts over: over the damaged run with --resume, and over
	// an intact one (whose newer checkpoints a later resume must not find).
	if err := Run(context.Background(), func() Config { c := resume; c.Overwrite = true; return c }(), io.Discard); err != nil {
		t.Fatalf("--resume --overwrite without a usable checkpoint: %v", err)
	}
	var prog bytes.Buffer
	over := fresh
	over.RunDir, over.Overwrite, over.Progress, over.ProgressMode = pristine, true, &prog, "lines"
	if err := Run(context.Background(), over, io.Discard); err != nil {
		t.Fatalf("--overwrite: %v", err)
	}
	if !strings.Contains(prog.String(), "--overwrite: deleted the earlier run in "+pristine+" (metrics.jsonl with 2 records, final/model.safetensors, 8 checkpoints)") {
		t.Errorf("--overwrite does not say what it deleted:\n%s", prog.String())
	}
	for _, d := range []string{dir, pristine} {
		got, _ := Checkpoints(filepath.Join(d, CheckpointsDir))
		if len(got) != 1 || filepath.Base(got[0]) != CheckpointName(3) {
			t.Errorf("after --overwrite, %s holds checkpoints %v, want only step 3's", d, got)
		}
		recs, err := ReadMetrics(filepath.Join(d, metricsFile))
		if err != nil || len(recs) != 1 || !recs[0].Partial || recs[0].Step != 3 {
			t.Errorf("after --overwrite, %s's metrics.jsonl: %+v, %v; want the new run's one partial record", d, recs, err)
		}
	}
}

// TestResumeStartsFreshWithNothingToLose: a directory left by a run
// interrupted before its first step, or by a writer killed in its first
// checkpoint (no MANIFEST), holds nothing a new run would lose; --resume
// there starts from scratch, as a re-formed launch generation needs.
func TestResumeStartsFreshWithNothingToLose(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{ConfigFile, metricsFile} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	half := filepath.Join(dir, CheckpointsDir, CheckpointName(7))
	if err := os.MkdirAll(half, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(half, modelFile), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := smallConfig(t, dir)
	c.Resume, c.MaxSteps = true, 2
	if err := Run(context.Background(), c, io.Discard); err != nil {
		t.Fatalf("--resume over an interrupted start: %v", err)
	}
	if recs, err := ReadMetrics(filepath.Join(dir, metricsFile)); err != nil || len(recs) != 1 || recs[0].Step != 2 {
		t.Errorf("records %+v, %v: want the new run's", recs, err)
	}
}

// TestMultiRankResumeRefusal: with every rank-0 checkpoint of a finished
// two-rank run damaged and no copies elsewhere, a resumed generation is
// refused on both ranks — rank 0 listing the checkpoints, rank 1 pointing
// to it — and rank 0's directory is left as it was.
func TestMultiRankResumeRefusal(t *testing.T) {
	if testing.Short() {
		t.Skip("two two-rank runs")
	}
	ctx := context.Background()
	tmp := t.TempDir()
	dirs := []string{filepath.Join(tmp, "r0"), filepath.Join(tmp, "r1")}
	for r, err := range runRanks(t, ctx, dirs, false, func(c *Config) { c.Epochs = 1 }) {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	cks, _ := Checkpoints(filepath.Join(dirs[0], CheckpointsDir))
	if len(cks) == 0 {
		t.Fatal("no checkpoint")
	}
	for _, d := range cks {
		if err := flip(filepath.Join(d, modelFile), 200); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshot(t, dirs[0])
	errs := runRanks(t, ctx, dirs, false, func(c *Config) { c.Epochs, c.Resume, c.MaxSteps = 1, true, 3 })
	if errs[0] == nil || !strings.Contains(errs[0].Error(), cks[len(cks)-1]+": model.safetensors is corrupt") {
		t.Errorf("rank 0: %v", errs[0])
	}
	if errs[1] == nil || !strings.Contains(errs[1].Error(), "rank 0 refuses") {
		t.Errorf("rank 1: %v", errs[1])
	}
	var intr *Interrupted
	if errors.As(errs[1], &intr) {
		t.Errorf("rank 1 was interrupted instead of refused: %v", errs[1])
	}
	sameTree(t, "refused two-rank resume", before, snapshot(t, dirs[0]))

	// Starting over is a choice, which rank 0 alone may make: its directory
	// holds the run.
	errs = runRanks(t, ctx, dirs, false, func(c *Config) { c.Epochs, c.Resume, c.MaxSteps, c.Overwrite = 1, true, 3, c.Rank == 0 })
	for r, err := range errs {
		if err != nil {
			t.Fatalf("--overwrite on rank 0, rank %d: %v", r, err)
		}
	}
	if got, _ := Checkpoints(filepath.Join(dirs[0], CheckpointsDir)); len(got) != 1 || filepath.Base(got[0]) != CheckpointName(3) {
		t.Errorf("after --overwrite, rank 0 holds checkpoints %v, want only step 3's", got)
	}
}

// TestResumeBehindRecordsRefused: the newest checkpoint of a finished run
// is damaged, an older one is not. Resuming from it would drop the second
// epoch's record and, with --max-steps 3, put the older weights in final/:
// refused, with nothing changed. With --overwrite it resumes and, run to
// the end, ends where the finished run did.
func TestResumeBehindRecordsRefused(t *testing.T) {
	dir := t.TempDir()
	c := smallConfig(t, dir)
	c.Keep = 0
	if err := Run(context.Background(), c, io.Discard); err != nil {
		t.Fatal(err)
	}
	finalPath := filepath.Join(dir, FinalDir, modelFile)
	want := readParams(t, finalPath)
	newest := filepath.Join(dir, CheckpointsDir, CheckpointName(40))
	if err := flip(filepath.Join(newest, optimizerFile), 500); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	for _, maxSteps := range []int{3, 0} {
		r := c
		r.Resume, r.MaxSteps = true, maxSteps
		err := Run(context.Background(), r, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "is behind the run") ||
			!strings.Contains(err.Error(), CheckpointName(20)+" (step 20, 1 epoch done)") ||
			!strings.Contains(err.Error(), newest+": optimizer.safetensors is corrupt") || !strings.Contains(err.Error(), "--overwrite") {
			t.Errorf("--resume --max-steps %d from behind the records: %v", maxSteps, err)
		}
		sameTree(t, "refused resume from behind", before, snapshot(t, dir))
	}
	c.Resume, c.Overwrite = true, true
	if err := Run(context.Background(), c, io.Discard); err != nil {
		t.Fatal(err)
	}
	if d := maxRelDiff(t, readParams(t, finalPath), want); d > 1e-6 {
		t.Errorf("resumed with --overwrite from step 20: %.3g away from the finished run", d)
	}
	if recs, err := ReadMetrics(filepath.Join(dir, metricsFile)); err != nil || len(recs) != 2 {
		t.Errorf("records %+v, %v: want both epochs", recs, err)
	}
}
