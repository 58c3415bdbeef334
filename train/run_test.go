package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/macdist/macdist/data"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/models"
	"github.com/macdist/macdist/safetensors"
)

// smallConfig trains LeNet-5 with MAC (first-layer covariance included)
// on 640 synthetic 28×28 images: 20 steps of 32 per epoch.
func smallConfig(t testing.TB, runDir string) Config {
	t.Helper()
	c := DefaultConfig()
	c.Data = "synthetic:1x28x28:10:640:96"
	c.Epochs = 2
	c.Batch = 32
	c.RunDir = runDir
	c.Seed = 5
	c.Workers = 2
	c.ProgressMode = "none"
	return c
}

func readParams(t testing.TB, path string) map[string][]float32 {
	t.Helper()
	f, err := safetensors.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]float32{}
	for _, n := range f.Names() {
		tt, _ := f.Tensor(n)
		v, err := tt.Floats()
		if err != nil {
			t.Fatal(err)
		}
		out[n] = v
	}
	return out
}

// maxRelDiff is max|a−b| / max|b| over every tensor.
func maxRelDiff(t testing.TB, a, b map[string][]float32) float64 {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%d tensors vs %d", len(a), len(b))
	}
	var worst float64
	for name, va := range a {
		vb, ok := b[name]
		if !ok || len(vb) != len(va) {
			t.Fatalf("tensor %s differs in presence or size", name)
		}
		var d, m float64
		for i := range va {
			d = max(d, math.Abs(float64(va[i])-float64(vb[i])))
			m = max(m, math.Abs(float64(vb[i])))
		}
		if m > 0 {
			worst = max(worst, d/m)
		} else {
			worst = max(worst, d)
		}
	}
	return worst
}

const resumeEnv = "MACDIST_TEST_RESUME_CHILD"

// TestResumeChild is run by TestResumeExact in a fresh process: it trains
// smallConfig in the run directory it is given, with --max-steps and
// --resume as told.
func TestResumeChild(t *testing.T) {
	dir := os.Getenv(resumeEnv)
	if dir == "" {
		t.Skip("run by TestResumeExact")
	}
	c := smallConfig(t, dir)
	c.Resume = os.Getenv(resumeEnv+"_RESUME") == "1"
	if os.Getenv(resumeEnv+"_HALF") == "1" {
		c.MaxSteps = 25
	}
	if err := Run(context.Background(), c, os.Stdout); err != nil {
		t.Fatal(err)
	}
}

func runChild(t *testing.T, env ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestResumeChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child %v: %v\n%s", env, err, out)
	}
	return string(out)
}

// TestResumeExact trains 40 steps straight, and 25 steps then the rest
// resumed in a fresh process (from inside the second epoch), and checks
// that both end with the same parameters to 1e-6 and log the same epochs.
func TestResumeExact(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	straight := t.TempDir()
	if err := Run(context.Background(), smallConfig(t, straight), io.Discard); err != nil {
		t.Fatal(err)
	}
	split := t.TempDir()
	runChild(t, resumeEnv+"="+split, resumeEnv+"_HALF=1")
	if _, st, _ := LatestCheckpoint(filepath.Join(split, CheckpointsDir), nil); st.Step != 25 || st.Epoch != 1 || st.EpochStep != 5 {
		t.Fatalf("after the first half: checkpoint at step %d (epoch %d, batch %d), want 25 (1, 5)", st.Step, st.Epoch, st.EpochStep)
	}
	out := runChild(t, resumeEnv+"="+split, resumeEnv+"_RESUME=1")
	if !strings.Contains(out, `"epoch":2`) {
		t.Errorf("the resumed run printed no record of epoch 2:\n%s", out)
	}
	a := readParams(t, filepath.Join(straight, FinalDir, modelFile))
	b := readParams(t, filepath.Join(split, FinalDir, modelFile))
	if d := maxRelDiff(t, b, a); d > 1e-6 {
		t.Errorf("resumed run ends %.3g away from the straight one (want ≤ 1e-6)", d)
	} else {
		t.Logf("resumed vs straight: max relative difference %.3g", d)
	}
	ra, err := ReadMetrics(filepath.Join(straight, metricsFile))
	if err != nil {
		t.Fatal(err)
	}
	rb, err := ReadMetrics(filepath.Join(split, metricsFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(ra) != 2 || len(rb) != 2 {
		t.Fatalf("metrics.jsonl holds %d and %d records, want 2 each (the partial one of the first half replaced)", len(ra), len(rb))
	}
	for i := range ra {
		x, y := ra[i], rb[i]
		if x.Epoch != y.Epoch || x.Step != y.Step || math.Abs(x.TrainLoss-y.TrainLoss) > 1e-6 || x.TrainAcc != y.TrainAcc ||
			math.Abs(x.TestLoss-y.TestLoss) > 1e-6 || x.TestAcc != y.TestAcc || x.LR != y.LR {
			t.Errorf("epoch %d: straight %+v, resumed %+v", i+1, x, y)
		}
	}
}

// TestInterruptAndResume cancels the context in the middle of an epoch and
// at an epoch's last step, checks the checkpoint and the error, and that
// resuming ends where an uninterrupted run does.
func TestInterruptAndResume(t *testing.T) {
	if testing.Short() {
		t.Skip("long; the -race pass runs the short tests")
	}
	straight := t.TempDir()
	if err := Run(context.Background(), smallConfig(t, straight), io.Discard); err != nil {
		t.Fatal(err)
	}
	want := readParams(t, filepath.Join(straight, FinalDir, modelFile))
	for _, at := range []int{13, 20} {
		dir := t.TempDir()
		ctx, cancel := context.WithCancelCause(context.Background())
		tr, err := newTrainer(smallConfig(t, dir), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		tr.hookStep = func(tr *trainer) {
			if tr.st.Step == at {
				cancel(errors.New("test signal"))
			}
		}
		err = tr.run(ctx)
		tr.close()
		var intr *Interrupted
		if !errors.As(err, &intr) {
			t.Fatalf("at %d: Run returned %v, want *Interrupted", at, err)
		}
		if intr.Step != at || intr.Checkpoint == "" || !strings.Contains(err.Error(), "test signal") {
			t.Errorf("at %d: %+v", at, intr)
		}
		st, err := VerifyCheckpoint(intr.Checkpoint)
		if err != nil {
			t.Fatal(err)
		}
		// At step 20 the epoch's batches are done but its evaluation is
		// not: the checkpoint says so, and the resumed run evaluates.
		wantEpoch, wantES := 0, at
		if st.Step != at || st.Epoch != wantEpoch || st.EpochStep != wantES {
			t.Errorf("at %d: checkpoint state step %d epoch %d batch %d, want %d %d %d", at, st.Step, st.Epoch, st.EpochStep, at, wantEpoch, wantES)
		}
		c := smallConfig(t, dir)
		c.Resume = true
		if err := Run(context.Background(), c, io.Discard); err != nil {
			t.Fatal(err)
		}
		if d := maxRelDiff(t, readParams(t, filepath.Join(dir, FinalDir, modelFile)), want); d > 1e-6 {
			t.Errorf("interrupted at %d and resumed: %.3g away from the straight run", at, d)
		}
	}
}

// TestInterruptDuringEvaluation stops a run while it evaluates at the end
// of an epoch: the checkpoint records the epoch's batches as done, and the
// resumed run evaluates and records that epoch exactly once.
func TestInterruptDuringEvaluation(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	c := smallConfig(t, dir)
	tr, err := newTrainer(c, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	tr.hookStep = func(tr *trainer) {
		if tr.st.Step == 20 {
			cancel() // seen first by the evaluation's loader
		}
	}
	// Let the step loop miss the cancellation: it checks ctx only before a
	// step, and step 20 is the epoch's last.
	err = tr.run(ctx)
	tr.close()
	var intr *Interrupted
	if !errors.As(err, &intr) {
		t.Fatalf("Run returned %v, want *Interrupted", err)
	}
	st, err := VerifyCheckpoint(intr.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	if st.Epoch != 0 || st.EpochStep != 20 || len(st.History) != 0 {
		t.Fatalf("checkpoint state epoch %d batch %d, %d records; want 0, 20, none", st.Epoch, st.EpochStep, len(st.History))
	}
	c.Resume = true
	var out bytes.Buffer
	if err := Run(context.Background(), c, &out); err != nil {
		t.Fatal(err)
	}
	recs, err := ReadMetrics(filepath.Join(dir, metricsFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Epoch != 1 || recs[1].Epoch != 2 || strings.Count(out.String(), "\n") != 2 {
		t.Errorf("records %+v, stdout %q: want epochs 1 and 2 once each", recs, out.String())
	}
}

// TestRunOutputs checks a complete short run's files and records.
func TestRunOutputs(t *testing.T) {
	dir := t.TempDir()
	var out, prog bytes.Buffer
	c := smallConfig(t, dir)
	c.Epochs = 3
	c.Progress = &prog
	c.ProgressMode = "lines"
	c.LogEvery = 5
	c.Keep = 2
	c.CheckpointEvery = 7
	if err := Run(context.Background(), c, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("stdout: %d lines, want 3:\n%s", len(lines), out.String())
	}
	var recs []EpochRecord
	for i, ln := range lines {
		var r EpochRecord
		var keys map[string]any
		if err := json.Unmarshal([]byte(ln), &r); err != nil {
			t.Fatal(err)
		}
		json.Unmarshal([]byte(ln), &keys)
		for _, k := range []string{"epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "epoch_time_s", "img_per_s"} {
			if _, ok := keys[k]; !ok {
				t.Errorf("line %d lacks %q: %s", i, k, ln)
			}
		}
		if r.Epoch != i+1 || r.Step != 20*(i+1) || r.EpochTime <= 0 || r.ImgPerS <= 0 || r.TestAcc < 0 || r.TestAcc > 1 {
			t.Errorf("record %d: %+v", i, r)
		}
		recs = append(recs, r)
	}
	// Synthetic classes are separable: a working trainer learns them.
	if !(recs[2].TrainLoss < recs[0].TrainLoss) || recs[2].TestAcc < 0.5 {
		t.Errorf("no learning: %+v", recs)
	}
	if recs[2].LR > 1e-3 {
		t.Errorf("cosine schedule ends at lr %v", recs[2].LR)
	}
	file, err := ReadMetrics(filepath.Join(dir, metricsFile))
	if err != nil || len(file) != 3 || file[2] != recs[2] {
		t.Errorf("metrics.jsonl: %v, %+v", err, file)
	}
	f, err := os.Open(filepath.Join(dir, CurvesFile))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil || img.Bounds().Dx() < 500 {
		t.Errorf("curves.png: %v", err)
	}
	dirs, _ := Checkpoints(filepath.Join(dir, CheckpointsDir))
	if len(dirs) != 2 || filepath.Base(dirs[1]) != CheckpointName(60) {
		t.Errorf("checkpoints %v, want 2 (keep) ending at step 60", dirs)
	}
	if _, err := os.Stat(filepath.Join(dir, FinalDir, modelFile)); err != nil {
		t.Error(err)
	}
	var cfgJSON map[string]any
	raw, _ := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err := json.Unmarshal(raw, &cfgJSON); err != nil || cfgJSON["optimizer"] != "mac" || cfgJSON["config_hash"] == "" {
		t.Errorf("config.json: %v %s", err, raw)
	}
	p := prog.String()
	for _, want := range []string{"first-layer covariance of conv1.weight", "epoch 1/3  step 5/20", "done: 60 steps"} {
		if !strings.Contains(p, want) {
			t.Errorf("progress output lacks %q:\n%s", want, p)
		}
	}
	if strings.Contains(p, "\r") {
		t.Errorf("plain lines contain a carriage return")
	}

	// A second run into the same directory must not clobber it.
	err = Run(context.Background(), c, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--resume") {
		t.Errorf("second run into %s: %v", dir, err)
	}
	// Resuming a finished run does nothing more and succeeds.
	c.Resume = true
	out.Reset()
	if err := Run(context.Background(), c, &out); err != nil || out.Len() != 0 {
		t.Errorf("resuming a finished run: %v, %q", err, out.String())
	}
	// Resuming with other settings is refused with the differences.
	c.LR, c.Batch = 0.05, 16
	err = Run(context.Background(), c, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "lr: 0.1 → 0.05") || !strings.Contains(err.Error(), "global_batch: 32 → 16") {
		t.Errorf("resume with other settings: %v", err)
	}
}

// TestResumeSkipsDamagedCheckpoint corrupts the newest checkpoint of an
// interrupted run: resuming warns, takes the one before and still ends
// exactly where a straight run does.
func TestResumeSkipsDamagedCheckpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("long; the -race pass runs the short tests")
	}
	straight := t.TempDir()
	if err := Run(context.Background(), smallConfig(t, straight), io.Discard); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := smallConfig(t, dir)
	c.CheckpointEvery = 5
	c.MaxSteps = 27
	c.Keep = 0
	if err := Run(context.Background(), c, io.Discard); err != nil {
		t.Fatal(err)
	}
	newest := filepath.Join(dir, CheckpointsDir, CheckpointName(27))
	if err := flip(filepath.Join(newest, modelFile), 300); err != nil {
		t.Fatal(err)
	}
	var prog bytes.Buffer
	c.MaxSteps, c.Resume, c.Progress = 0, true, &prog
	if err := Run(context.Background(), c, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(prog.String(), "skipping a checkpoint") || !strings.Contains(prog.String(), newest) ||
		!strings.Contains(prog.String(), "resuming from "+filepath.Join(dir, CheckpointsDir, CheckpointName(25))) {
		t.Errorf("no warning about %s, or not resumed from step 25:\n%s", newest, prog.String())
	}
	if d := maxRelDiff(t, readParams(t, filepath.Join(dir, FinalDir, modelFile)), readParams(t, filepath.Join(straight, FinalDir, modelFile))); d > 1e-6 {
		t.Errorf("resumed past a damaged checkpoint: %.3g away from the straight run", d)
	}
}

// nanData is a memory dataset whose samples listed in bad are NaN.
func nanData(t testing.TB, n int, bad ...int) (data.Dataset, data.Dataset) {
	t.Helper()
	syn, err := data.NewSynthetic(3, 8, 8, 4, n, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, n*3*8*8)
	y := make([]int32, n)
	for i := range n {
		l, _ := syn.Get(i, x[i*192:(i+1)*192], nil)
		y[i] = int32(l)
	}
	for _, i := range bad {
		x[i*192+5] = float32(math.NaN())
	}
	tr, err := data.NewMemory(x, y, 3, 8, 8, 4)
	if err != nil {
		t.Fatal(err)
	}
	te, err := data.NewMemory(x[:16*192], y[:16], 3, 8, 8, 4)
	if err != nil {
		t.Fatal(err)
	}
	return tr, te
}

// TestNaNStepSkipped feeds a batch holding a NaN to a model with BatchNorm:
// the step is skipped and counted, the running statistics keep their
// values, and no checkpoint or final weight holds a NaN.
func TestNaNStepSkipped(t *testing.T) {
	dir := t.TempDir()
	c := smallConfig(t, dir)
	c.Model, c.Depth, c.Batch, c.Epochs = "resnet20", 8, 8, 1
	c.FirstLayerCov = false // the covariance pass would see the NaN first
	c.Shuffle = false
	c.CheckpointEvery = 1
	c.Keep = 0
	c.openData = func() (data.Dataset, data.Dataset, error) {
		tr, te := nanData(t, 48, 19) // in the third batch
		return tr, te, nil
	}
	var out bytes.Buffer
	var bufBefore map[string][]float32
	tr, err := newTrainer(c, &out)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.close()
	tr.hookStep = func(tr *trainer) {
		if tr.st.Step == 2 {
			bufBefore = map[string][]float32{}
			for _, p := range tr.bufParams {
				v := make([]float32, p.Value.Len())
				tr.dev.Download(v, p.Value.Data)
				bufBefore[p.Name] = v
			}
		}
		if tr.st.Step == 3 {
			if tr.opt.Skipped() != 1 {
				t.Errorf("optimizer skipped %d steps, want 1", tr.opt.Skipped())
			}
			for _, p := range tr.bufParams {
				v := make([]float32, p.Value.Len())
				tr.dev.Download(v, p.Value.Data)
				for i := range v {
					if v[i] != bufBefore[p.Name][i] {
						t.Fatalf("buffer %s[%d] changed by the skipped step: %v → %v", p.Name, i, bufBefore[p.Name][i], v[i])
					}
				}
			}
		}
	}
	if err := tr.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var r EpochRecord
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if r.NaNSkips != 1 || math.IsNaN(r.TrainLoss) {
		t.Errorf("record %+v: want nan_skips 1 and a finite train loss", r)
	}
	dirs, _ := Checkpoints(filepath.Join(dir, CheckpointsDir))
	if len(dirs) != 6 {
		t.Errorf("%d checkpoints, want 6", len(dirs))
	}
	for _, d := range append(dirs, filepath.Join(dir, FinalDir)) {
		for name, v := range readParams(t, filepath.Join(d, modelFile)) {
			for _, x := range v {
				if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
					t.Fatalf("%s: %s holds %v", d, name, x)
				}
			}
		}
	}
}

// TestInitMismatchListsDifferences checks --init: a fitting file loads; one
// with a renamed, a reshaped and an extra tensor is refused with all three
// named and leaves the model alone.
func TestInitMismatchListsDifferences(t *testing.T) {
	dev := cpu.New()
	m, err := models.New(dev, "lenet5", models.Config{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	tensors := nn.StateDict(dev, m.Params())
	good := filepath.Join(t.TempDir(), "good.safetensors")
	if err := safetensors.WriteFile(good, tensors, nil); err != nil {
		t.Fatal(err)
	}
	m2, _ := models.New(dev, "lenet5", models.Config{Seed: 2})
	if err := LoadInit(dev, good, m2.Params()); err != nil {
		t.Fatal(err)
	}
	if d := maxRelDiff(t, toMap(t, dev, m2), toMap(t, dev, m)); d != 0 {
		t.Errorf("--init loaded weights %.3g away from the file's", d)
	}

	var bad []safetensors.Tensor
	for _, x := range tensors {
		switch x.Name {
		case "conv1.weight":
			x.Name = "features.0.weight"
		case "fc3.weight":
			v, _ := x.Floats()
			x = safetensors.Float32(x.Name, []int{5, len(v) / 5}, v)
		}
		bad = append(bad, x)
	}
	bad = append(bad, safetensors.Float32("extra.bias", []int{3}, []float32{1, 2, 3}))
	path := filepath.Join(t.TempDir(), "bad.safetensors")
	if err := safetensors.WriteFile(path, bad, nil); err != nil {
		t.Fatal(err)
	}
	m3, _ := models.New(dev, "lenet5", models.Config{Seed: 3})
	before := toMap(t, dev, m3)
	err = LoadInit(dev, path, m3.Params())
	if err == nil {
		t.Fatal("a mismatched --init file was accepted")
	}
	for _, want := range []string{path, "4 difference", "missing from the file: conv1.weight [6 1 5 5]",
		"shape of fc3.weight: file [5 168], model [10 84]", "not in the model: features.0.weight [6 1 5 5]", "not in the model: extra.bias [3]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if d := maxRelDiff(t, toMap(t, dev, m3), before); d != 0 {
		t.Errorf("a refused --init changed the model")
	}

	// Through Run: the same refusal, before any training.
	c := smallConfig(t, t.TempDir())
	c.Init = path
	if err := Run(context.Background(), c, io.Discard); err == nil || !strings.Contains(err.Error(), "fc3.weight") {
		t.Errorf("Run with a bad --init: %v", err)
	}
}

func toMap(t testing.TB, dev *cpu.Device, m *models.Model) map[string][]float32 {
	out := map[string][]float32{}
	for _, p := range m.Params() {
		v := make([]float32, p.Value.Len())
		dev.Download(v, p.Value.Data)
		out[p.Name] = v
	}
	return out
}

// TestMissingDataset checks the bad-input messages for a dataset that is
// not there: where it was looked for and what provides it.
func TestMissingDataset(t *testing.T) {
	empty := t.TempDir()
	cases := []struct {
		spec, dir string
		want      []string
	}{
		{"fashion-mnist", empty, []string{filepath.Join(empty, "fashion-mnist") + " does not exist", "dataset-fashion-mnist", "--data fashion-mnist:DIR"}},
		{"fashion-mnist:" + filepath.Join(empty, "x"), "", []string{filepath.Join(empty, "x") + " does not exist", "dataset-fashion-mnist"}},
		{"fashion-mnist:" + empty, "", []string{empty, "train-images-idx3-ubyte", "dataset-fashion-mnist"}},
		{"mnist:/nonexistent/mnist", "", []string{"/nonexistent/mnist does not exist", "--data mnist:DIR"}},
		{"cifar10:/nonexistent/c10", "", []string{"/nonexistent/c10 does not exist", "cifar-10-binary.tar.gz"}},
		{"imagefolder:/nonexistent/in", "", []string{"/nonexistent/in does not exist", "PATH/train/CLASS"}},
	}
	for _, c := range cases {
		_, _, err := OpenData(DataSpec{Spec: c.spec, DatasetsDir: c.dir})
		if err == nil {
			t.Errorf("%s: no error", c.spec)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error lacks %q:\n%v", c.spec, w, err)
			}
		}
	}
}

// TestMetricsEndpoint scrapes /metrics during a run and checks that every
// series docs/metrics.md documents is served, and every macdist_ series
// served is documented.
func TestMetricsEndpoint(t *testing.T) {
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(macdist_[a-z_]+)`").FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
	}
	if len(documented) < 10 {
		t.Fatalf("docs/metrics.md documents %d series", len(documented))
	}
	c := smallConfig(t, t.TempDir())
	c.Epochs, c.MetricsAddr, c.CheckpointEvery = 1, "127.0.0.1:0", 3
	tr, err := newTrainer(c, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.close()
	var body string
	tr.hookStep = func(tr *trainer) {
		if tr.st.Step != 10 {
			return
		}
		resp, err := http.Get("http://" + tr.metrics.addr() + "/metrics")
		if err != nil {
			t.Error(err)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
	}
	if err := tr.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (macdist_[a-z_]+) `).FindAllStringSubmatch(body, -1) {
		served[m[1]] = true
	}
	var missing, undocumented []string
	for n := range documented {
		// A single process has no all-reduce to count.
		if !served[n] && !strings.HasPrefix(n, "macdist_allreduce_") {
			missing = append(missing, n)
		}
	}
	for n := range served {
		if !documented[n] {
			undocumented = append(undocumented, n)
		}
	}
	sort.Strings(missing)
	sort.Strings(undocumented)
	if len(missing)+len(undocumented) > 0 {
		t.Errorf("documented but not served: %v; served but not documented: %v", missing, undocumented)
	}
	for _, want := range []string{`macdist_steps_total{rank="0"} 10`, `macdist_samples_total{rank="0"} 320`, `macdist_step{rank="0"} 10`,
		`macdist_epoch{rank="0"} 1`, `macdist_checkpoints_total{rank="0"} 3`, `macdist_step_seconds_count{rank="0"} 10`,
		`macdist_run_info{data="synthetic:1x28x28:10:640:96",model="lenet5",optimizer="mac",rank="0"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestPlotCurvesSeries draws several runs into one PNG.
func TestPlotCurvesSeries(t *testing.T) {
	recs := []EpochRecord{{Epoch: 1, TrainLoss: 1, TestLoss: 0.9, TrainAcc: 0.6, TestAcc: 0.65}, {Epoch: 2, TrainLoss: 0.5, TestLoss: 0.6, TrainAcc: 0.8, TestAcc: 0.78}}
	raw, err := PlotCurves("lenet5", Series{"mac", recs}, Series{"sgd", recs[:1]}, Series{"empty", nil})
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() <= b.Dy() {
		t.Errorf("curves are %v: want loss and accuracy side by side", b)
	}
}

// TestDefaults holds DefaultConfig to shared/MAC.md and checks that every
// method's defaults build an optimizer and that HyperFields name real
// fields.
func TestDefaults(t *testing.T) {
	c := DefaultConfig()
	if c.Optimizer != "mac" || c.LR != 0.1 || c.Momentum != 0.9 || c.WeightDecay != 5e-4 || c.DecoupledWD ||
		c.Damping != 1 || c.StatDecay != 0.95 || c.TCov != 5 || c.TInv != 50 || !c.FirstLayerCov || !c.AttentionV ||
		c.Batch != 128 || c.Schedule != "cosine" || !c.Shuffle || c.Model != "lenet5" || c.Data != "fashion-mnist" {
		t.Errorf("DefaultConfig is not MAC's defaults: %+v", c)
	}
	dev := cpu.New()
	m, err := models.New(dev, "lenet5", models.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, method := range Optimizers {
		d, err := OptimizerDefaults(method)
		if err != nil {
			t.Fatal(err)
		}
		if d.Optimizer != method || !(d.LR > 0) {
			t.Errorf("%s: defaults %+v", method, d)
		}
		if _, err := newOptimizer(dev, m, d.withDefaults()); err != nil {
			t.Errorf("%s with its defaults: %v", method, err)
		}
	}
	if d, _ := OptimizerDefaults("adamw"); d.LR != 1e-3 || d.Beta2 != 0.999 || !d.DecoupledWD {
		t.Errorf("adamw defaults %+v", d)
	}
	if _, err := OptimizerDefaults("lbfgs"); err == nil || !strings.Contains(err.Error(), "lbfgs") {
		t.Errorf("unknown method: %v", err)
	}
	ty := reflect.TypeOf(Config{})
	for flag, field := range HyperFields {
		if _, ok := ty.FieldByName(field); !ok {
			t.Errorf("HyperFields[%q] = %q is no Config field", flag, field)
		}
	}
}

// TestEveryOptimizerResumes trains ten steps with each method, straight
// and stopped at step 6 then resumed in the same epoch, and checks that
// both end alike: every method's state goes through the checkpoint.
func TestEveryOptimizerResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("long; the -race pass runs the short tests")
	}
	for _, method := range Optimizers {
		t.Run(method, func(t *testing.T) {
			d, err := OptimizerDefaults(method)
			if err != nil {
				t.Fatal(err)
			}
			cfg := func(dir string) Config {
				c := smallConfig(t, dir)
				for _, f := range HyperFields {
					reflect.ValueOf(&c).Elem().FieldByName(f).Set(reflect.ValueOf(d).FieldByName(f))
				}
				c.Optimizer, c.Epochs, c.Subset, c.TInv = method, 1, 320, min(c.TInv, 4)
				return c
			}
			straight := t.TempDir()
			var out bytes.Buffer
			if err := Run(context.Background(), cfg(straight), &out); err != nil {
				t.Fatal(err)
			}
			var r EpochRecord
			if err := json.Unmarshal(out.Bytes(), &r); err != nil {
				t.Fatal(err)
			}
			if r.Step != 10 || r.NaNSkips != 0 || !(r.TrainLoss > 0) {
				t.Errorf("%s: %+v", method, r)
			}
			split := t.TempDir()
			c := cfg(split)
			c.MaxSteps = 6
			if err := Run(context.Background(), c, io.Discard); err != nil {
				t.Fatal(err)
			}
			c.MaxSteps, c.Resume = 0, true
			if err := Run(context.Background(), c, io.Discard); err != nil {
				t.Fatal(err)
			}
			if d := maxRelDiff(t, readParams(t, filepath.Join(split, FinalDir, modelFile)), readParams(t, filepath.Join(straight, FinalDir, modelFile))); d > 1e-6 {
				t.Errorf("%s resumed at step 6 ends %.3g away from the straight run", method, d)
			}
		})
	}
}

// imageFolder writes a tiny ImageFolder tree (two classes of 8×8 PNGs) with
// one corrupt file among the training images, and returns its root and the
// corrupt file's path.
func imageFolder(t *testing.T) (string, string) {
	t.Helper()
	root := t.TempDir()
	for _, split := range []string{"train", "val"} {
		for c, class := range []string{"cat", "dog"} {
			d := filepath.Join(root, split, class)
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			for i := range 8 {
				img := image.NewRGBA(image.Rect(0, 0, 8, 8))
				for p := range img.Pix {
					img.Pix[p] = uint8(40*c + 7*i + p%5)
				}
				var buf bytes.Buffer
				if err := png.Encode(&buf, img); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("%d.png", i)), buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	bad := filepath.Join(root, "train", "dog", "3.png")
	if err := os.WriteFile(bad, []byte("\x89PNG\r\n\x1a\nnot really"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root, bad
}

// TestSkipBad trains on an ImageFolder holding a corrupt image: without
// --skip-bad the run stops naming the file; with it, the run completes
// and reports the file once.
func TestSkipBad(t *testing.T) {
	root, bad := imageFolder(t)
	c := smallConfig(t, t.TempDir())
	c.Model, c.Data, c.Batch, c.Epochs, c.Augment = "mlp", "imagefolder:"+root, 4, 2, "none"
	err := Run(context.Background(), c, io.Discard)
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("a corrupt image without --skip-bad: %v", err)
	}
	var prog bytes.Buffer
	c.RunDir, c.SkipBad, c.Progress = t.TempDir(), true, &prog
	var out bytes.Buffer
	if err := Run(context.Background(), c, &out); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(prog.String(), "skipping an unreadable sample"); n != 1 || !strings.Contains(prog.String(), bad) ||
		!strings.Contains(prog.String(), "1 unreadable training and 0 evaluation samples were replaced") {
		t.Errorf("%d warnings; progress:\n%s", n, prog.String())
	}
	if recs := records(t, out.String()); len(recs) != 2 {
		t.Errorf("%d records", len(recs))
	}
}

func records(t *testing.T, s string) []EpochRecord {
	t.Helper()
	var out []EpochRecord
	for _, ln := range strings.Split(strings.TrimSpace(s), "\n") {
		var r EpochRecord
		if err := json.Unmarshal([]byte(ln), &r); err != nil {
			t.Fatalf("%q: %v", ln, err)
		}
		out = append(out, r)
	}
	return out
}
