package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/models"
	"github.com/macdist/macdist/safetensors"
	"github.com/macdist/macdist/train"
)

const fashionDir = "/usr/share/datasets/fashion-mnist"

// mainEnv makes the test binary run main() with the arguments in the
// variable (separated by \x1f): a real `macdist` process, signals and exit
// status included, without building one.
const mainEnv = "MACDIST_TEST_MAIN_ARGS"

func TestMainChild(t *testing.T) {
	args := os.Getenv(mainEnv)
	if args == "" {
		t.Skip("run by the process tests")
	}
	os.Args = append([]string{"macdist"}, strings.Split(args, "\x1f")...)
	main()
}

// macdistProcess returns an unstarted `macdist args...` process.
func macdistProcess(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestMainChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), mainEnv+"="+strings.Join(args, "\x1f"))
	return cmd
}

func records(t *testing.T, out string) []train.EpochRecord {
	t.Helper()
	var recs []train.EpochRecord
	for _, ln := range strings.Split(strings.TrimSpace(out), "\n") {
		if ln == "" {
			continue
		}
		var r train.EpochRecord
		if err := json.Unmarshal([]byte(ln), &r); err != nil {
			t.Fatalf("stdout line %q: %v", ln, err)
		}
		recs = append(recs, r)
	}
	return recs
}

func needFashion(t *testing.T) {
	if _, err := os.Stat(filepath.Join(fashionDir, "train-images-idx3-ubyte.gz")); err != nil {
		t.Skipf("Fashion-MNIST is not installed (sudo apt-get install dataset-fashion-mnist): %v", err)
	}
}

// TestTrainFashionMNIST trains LeNet-5 with MAC on real Fashion-MNIST for
// two short epochs, then evaluates and exports the result.
func TestTrainFashionMNIST(t *testing.T) {
	needFashion(t)
	dir := t.TempDir()
	code, out, errOut := runArgs("train", "--subset", "3840", "--test-subset", "1000", "--batch", "64", "--epochs", "2",
		"--run-dir", dir, "--progress", "lines", "--workers", "2")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, errOut)
	}
	recs := records(t, out)
	if len(recs) != 2 {
		t.Fatalf("%d epoch records, want 2:\n%s", len(recs), out)
	}
	if !(recs[1].TrainLoss < recs[0].TrainLoss) || !(recs[1].TestLoss < 1.0) || recs[1].TestAcc < 0.65 || recs[1].Step != 120 {
		t.Errorf("LeNet-5 did not learn Fashion-MNIST: %+v", recs)
	}
	t.Logf("epoch records: %+v", recs)
	for _, want := range []string{"first-layer covariance of conv1.weight", "epoch 2/2", "final weights in"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	file, err := train.ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
	if err != nil || len(file) != 2 || file[1] != recs[1] {
		t.Errorf("metrics.jsonl: %v %+v", err, file)
	}
	f, err := os.Open(filepath.Join(dir, train.CurvesFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := png.Decode(f); err != nil {
		t.Errorf("curves.png: %v", err)
	}
	f.Close()
	final := filepath.Join(dir, train.FinalDir, "model.safetensors")
	dev := cpu.New()
	m, err := models.New(dev, "lenet5", models.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := nn.LoadParams(dev, final, m.Params()); err != nil {
		t.Fatalf("final model: %v", err)
	}

	// eval on the same 1000 test images gives the last epoch's numbers.
	code, out, errOut = runArgs("eval", "--checkpoint", dir, "--subset", "1000")
	if code != 0 {
		t.Fatalf("eval: exit %d: %s", code, errOut)
	}
	var ev struct {
		Checkpoint string
		Split      string
		train.EvalResult
	}
	if err := json.Unmarshal([]byte(out), &ev); err != nil {
		t.Fatalf("eval output %q: %v", out, err)
	}
	if ev.Accuracy != recs[1].TestAcc || math.Abs(ev.Loss-recs[1].TestLoss) > 1e-5 || ev.Samples != 1000 || ev.Split != "test" ||
		filepath.Base(ev.Checkpoint) != train.CheckpointName(120) {
		t.Errorf("eval %+v, want the last epoch's test loss %v and accuracy %v from step 120", ev, recs[1].TestLoss, recs[1].TestAcc)
	}

	// export writes the final weights, bit for bit, under PyTorch's names.
	exported := filepath.Join(t.TempDir(), "sub", "lenet5.safetensors")
	code, out, errOut = runArgs("export", "--checkpoint", dir, "--out", exported)
	if code != 0 || !strings.Contains(out, `"tensors":10`) {
		t.Fatalf("export: exit %d, %s %s", code, out, errOut)
	}
	got, err := safetensors.ReadFile(exported)
	if err != nil {
		t.Fatal(err)
	}
	want, err := safetensors.ReadFile(final)
	if err != nil {
		t.Fatal(err)
	}
	names := strings.Join(got.Names(), " ")
	if names != "conv1.weight conv1.bias conv2.weight conv2.bias fc1.weight fc1.bias fc2.weight fc2.bias fc3.weight fc3.bias" {
		t.Errorf("exported names %s", names)
	}
	for _, n := range want.Names() {
		a, _ := got.Float32s(n, nil)
		b, _ := want.Float32s(n, nil)
		if len(a) != len(b) {
			t.Fatalf("%s: %d vs %d elements", n, len(a), len(b))
		}
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("exported %s[%d] = %v, final %v", n, i, a[i], b[i])
			}
		}
	}
	if got.Metadata["format"] != "pt" {
		t.Errorf("exported metadata %v lacks format=pt (safetensors.torch needs it)", got.Metadata)
	}
}

// TestExportBuffers checks that an exported model with BatchNorm carries
// num_batches_tracked as int64, as torch's load_state_dict wants it.
func TestExportBuffers(t *testing.T) {
	dir := t.TempDir()
	code, _, errOut := runArgs("train", "--model", "resnet20", "--depth", "8", "--data", "synthetic:3x16x16:4:64:16",
		"--batch", "16", "--epochs", "1", "--run-dir", dir, "--progress", "none")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	out := filepath.Join(dir, "export.safetensors")
	if code, _, errOut := runArgs("export", "--checkpoint", filepath.Join(dir, "checkpoints", train.CheckpointName(4)), "--out", out); code != 0 {
		t.Fatalf("export: %s", errOut)
	}
	f, err := safetensors.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	tn, err := f.Tensor("bn1.num_batches_tracked")
	if err != nil {
		t.Fatal(err)
	}
	v, err := tn.Ints()
	if err != nil || tn.DType != safetensors.I64 || len(v) != 1 || v[0] != 4 {
		t.Errorf("bn1.num_batches_tracked: %s %v %v, want I64 [4]", tn.DType, v, err)
	}
}

// TestTrainSIGTERM sends SIGTERM to a training process: it finishes the
// step, writes a checkpoint, exits non-zero and prints the command that
// resumes, which then completes the run.
func TestTrainSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := filepath.Join(t.TempDir(), "run")
	args := []string{"train", "--model", "lenet5", "--data", "synthetic:1x28x28:10:4000:64", "--batch", "32", "--lr", "0.05", "--epochs", "1",
		"--run-dir", dir, "--progress", "lines", "--log-every", "1", "--workers", "1"}
	// The run holds before step 4 (MACDIST_HOLD_FILE), so that the
	// signal comes at step 3 however fast the machine trains.
	hold := filepath.Join(t.TempDir(), "hold")
	if err := os.WriteFile(hold, []byte("3"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := macdistProcess(args...)
	cmd.Env = append(cmd.Env, holdEnv+"="+hold)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var errText strings.Builder
	sc := bufio.NewScanner(stderr)
	signalled := false
	for sc.Scan() {
		errText.WriteString(sc.Text() + "\n")
		if !signalled && strings.Contains(sc.Text(), "holds before step 4") {
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			signalled = true
		}
	}
	err = cmd.Wait()
	msg := errText.String()
	if !signalled {
		t.Fatalf("never saw the run hold after step 3; stderr:\n%s", msg)
	}
	if err == nil || cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("exit %v after SIGTERM, want status 1; stderr:\n%s", err, msg)
	}
	ckpt, st, err := train.LatestCheckpoint(filepath.Join(dir, train.CheckpointsDir), nil)
	if err != nil || ckpt == "" || st.Step != 3 {
		t.Fatalf("checkpoint after SIGTERM: %q step %d, %v; stderr:\n%s", ckpt, st.Step, err, msg)
	}
	for _, want := range []string{"terminated: finishing the step", "checkpoint " + ckpt + " written", "to resume: "} {
		if !strings.Contains(msg, want) {
			t.Errorf("stderr lacks %q:\n%s", want, msg)
		}
	}
	// The printed command is this one with --resume: run it.
	_, resume, _ := strings.Cut(msg, "to resume: ")
	resume = strings.TrimSpace(resume)
	words := strings.Fields(resume)
	if len(words) < 3 || words[1] != "train" || words[len(words)-1] != "--resume" || !strings.Contains(resume, "--run-dir "+dir) {
		t.Fatalf("resume command %q", resume)
	}
	if strings.Join(words[1:len(words)-1], " ") != strings.Join(args, " ") {
		t.Errorf("resume command %q does not repeat the flags %q", resume, args)
	}
	res := macdistProcess(words[1:]...)
	var rOut, rErr bytes.Buffer
	res.Stdout, res.Stderr = &rOut, &rErr
	if err := res.Run(); err != nil {
		t.Fatalf("resuming: %v\n%s", err, rErr.String())
	}
	if !strings.Contains(rErr.String(), "resuming from "+ckpt) {
		t.Errorf("the resumed run did not start from %s:\n%s", ckpt, rErr.String())
	}
	if recs := records(t, rOut.String()); len(recs) != 1 || recs[0].Step != 125 {
		t.Errorf("resumed run's records: %+v", recs)
	}
}

// TestTrainBadInput checks the refusals of `macdist train` and its
// siblings: exit status and what the message says.
func TestTrainBadInput(t *testing.T) {
	empty := t.TempDir()
	// An --init file with a wrong shape and a stray tensor.
	dev := cpu.New()
	m, _ := models.New(dev, "lenet5", models.Config{})
	var ts []safetensors.Tensor
	for _, x := range nn.StateDict(dev, m.Params()) {
		if x.Name == "fc1.weight" {
			v, _ := x.Floats()
			x = safetensors.Float32(x.Name, []int{len(v)}, v)
		}
		ts = append(ts, x)
	}
	ts = append(ts, safetensors.Float32("head.weight", []int{2}, []float32{1, 2}))
	bad := filepath.Join(empty, "bad.safetensors")
	if err := safetensors.WriteFile(bad, ts, nil); err != nil {
		t.Fatal(err)
	}
	syn := "synthetic:1x28x28:10:64:16"
	cases := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"missing dataset", []string{"train", "--datasets-dir", empty, "--run-dir", filepath.Join(empty, "r1")}, 1,
			[]string{filepath.Join(empty, "fashion-mnist") + " does not exist", "apt-get install dataset-fashion-mnist", "--data fashion-mnist:DIR"}},
		{"init mismatch", []string{"train", "--data", syn, "--init", bad, "--run-dir", filepath.Join(empty, "r2")}, 1,
			[]string{"does not fit the model", "shape of fc1.weight: file [48000], model [120 400]", "not in the model: head.weight [2]"}},
		{"resume without run dir", []string{"train", "--resume"}, 2, []string{"--resume needs --run-dir"}},
		{"unknown optimizer", []string{"train", "--optimizer", "lbfgs"}, 2, []string{`"lbfgs"`, "kfac"}},
		{"unknown model", []string{"train", "--model", "alexnet"}, 2, []string{"alexnet", "resnet20"}},
		{"bad schedule", []string{"train", "--lr-schedule", "step"}, 2, []string{"--lr-schedule", "cosine"}},
		{"zero batch", []string{"train", "--batch", "0"}, 2, []string{"--batch 0"}},
		{"bad augment", []string{"train", "--augment", "flip"}, 2, []string{"--augment", `"flip"`, "crop-flip"}},
		{"bad normalize", []string{"train", "--normalize", "cifar"}, 2, []string{"--normalize", `"cifar"`, "cifar10"}},
		{"stray argument", []string{"train", "extra"}, 2, []string{`"extra"`}},
		{"eval without checkpoint", []string{"eval"}, 2, []string{"--checkpoint is required"}},
		{"eval of nothing", []string{"eval", "--checkpoint", empty}, 1, []string{"no complete checkpoint in " + empty}},
		{"export without out", []string{"export", "--checkpoint", empty}, 2, []string{"--out are required"}},
		{"export of a missing dir", []string{"export", "--checkpoint", filepath.Join(empty, "nope"), "--out", filepath.Join(empty, "x")}, 1, []string{"nope"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, errOut := runArgs(c.args...)
			if code != c.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, c.code, errOut)
			}
			for _, w := range c.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
		})
	}
}

// TestTrainMethodDefaults checks that hyperparameters not given take the
// chosen method's defaults and given ones are kept, as config.json records.
func TestTrainMethodDefaults(t *testing.T) {
	cases := []struct {
		args []string
		want map[string]any
	}{
		{[]string{"--optimizer", "adamw"}, map[string]any{"optimizer": "adamw", "lr": 0.001, "weight_decay": 0.01, "beta2": 0.999, "decoupled_wd": true}},
		{[]string{"--optimizer", "adamw", "--lr", "0.01", "--weight-decay", "5e-4"}, map[string]any{"lr": 0.01, "weight_decay": 0.0005}},
		{[]string{"--optimizer", "kfac"}, map[string]any{"damping": 0.03, "lr": 0.1, "kl_clip": 0.001, "first_layer_cov": false}},
		{[]string{}, map[string]any{"optimizer": "mac", "damping": 1.0, "tinv": 50.0, "first_layer_cov": true, "lr_schedule": "cosine", "global_batch": 128.0}},
	}
	for _, c := range cases {
		dir := t.TempDir()
		args := append([]string{"train", "--data", "synthetic:1x28x28:10:64:16", "--max-steps", "1", "--run-dir", dir, "--progress", "none"}, c.args...)
		if code, _, errOut := runArgs(args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", c.args, code, errOut)
		}
		raw, err := os.ReadFile(filepath.Join(dir, train.ConfigFile))
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatal(err)
		}
		for k, v := range c.want {
			if got[k] != v {
				t.Errorf("%v: %s = %v, want %v", c.args, k, got[k], v)
			}
		}
	}
}

// TestResumeCommand checks the quoting and the flags of the printed
// command.
func TestResumeCommand(t *testing.T) {
	got := resumeCommand([]string{"--model", "lenet5", "--resume", "--data", "fashion-mnist:/data/my set", "--lr=0.05"}, "runs/x", true)
	want := os.Args[0] + ` train --model lenet5 --data 'fashion-mnist:/data/my set' --lr=0.05 --run-dir runs/x --resume`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := resumeCommand([]string{"-run-dir=a b", "-resume=true"}, "ignored", true); !strings.HasSuffix(got, ` train '-run-dir=a b' --resume`) {
		t.Errorf("got %s", got)
	}
	if s := shellQuote("it's"); s != `'it'\''s'` {
		t.Errorf("shellQuote: %s", s)
	}
}

// TestPlot draws two runs' metrics into one PNG.
func TestPlot(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, d := range []string{a, b} {
		os.MkdirAll(d, 0o755)
		line := `{"epoch":1,"step":10,"train_loss":1,"train_acc":0.5,"test_loss":0.9,"test_acc":0.6}` + "\n" +
			`{"epoch":2,"step":20,"train_loss":0.5,"train_acc":0.8,"test_loss":0.6,"test_acc":0.75}` + "\n"
		if err := os.WriteFile(filepath.Join(d, "metrics.jsonl"), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "cmp.png")
	code, stdout, errOut := runArgs("plot", "--out", out, "--title", "lenet5", "MAC="+a, filepath.Join(b, "metrics.jsonl"))
	if code != 0 || !strings.Contains(stdout, "2 runs") {
		t.Fatalf("exit %d: %s %s", code, stdout, errOut)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Error(err)
	}
	if code, _, errOut := runArgs("plot", "--out", out, filepath.Join(dir, "missing")); code != 1 || !strings.Contains(errOut, "missing") {
		t.Errorf("plot of a missing run: exit %d, %s", code, errOut)
	}
	if code, _, _ := runArgs("plot", "--out", out); code != 2 {
		t.Errorf("plot without runs: exit %d, want 2", code)
	}
}
