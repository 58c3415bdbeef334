package train

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/mac"
	"github.com/macdist/macdist/nn/models"
)

// ckptModel is a model big enough (about 3 MB of weights) that a
// checkpoint takes a few milliseconds to write, so that a kill at a random
// moment often lands inside a write.
func ckptModel(t testing.TB, dev kernels.Device) (*models.Model, mac.Optimizer) {
	t.Helper()
	m, err := models.New(dev, "mlp", models.Config{Width: 1024})
	if err != nil {
		t.Fatal(err)
	}
	opt, err := mac.NewSGD(dev, m, mac.Common{Momentum: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	return m, opt
}

// fillStep writes the checkpoint contents that belong to step: every
// weight equal to step, every momentum buffer to −step (through an SGD step
// on a known gradient, so the optimizer state is checked too).
func fillStep(dev kernels.Device, m *models.Model, opt mac.Optimizer, step int) error {
	st, err := opt.State()
	if err != nil {
		return err
	}
	for k, v := range st.Tensors {
		for i := range v {
			v[i] = -float32(step)
		}
		st.Tensors[k] = v
	}
	st.Meta["steps"] = strconv.Itoa(step)
	if err := opt.SetState(st); err != nil {
		return err
	}
	for _, p := range m.Params() {
		dev.Fill(p.Value.Data, float32(step))
	}
	return nil
}

// checkStep verifies that what a checkpoint loaded is step's contents.
func checkStep(dev kernels.Device, m *models.Model, opt mac.Optimizer, step int) error {
	for _, p := range m.Params() {
		v := make([]float32, p.Value.Len())
		dev.Download(v, p.Value.Data)
		for i, x := range v {
			if x != float32(step) {
				return fmt.Errorf("%s[%d] = %v, want %d", p.Name, i, x, step)
			}
		}
	}
	st, err := opt.State()
	if err != nil {
		return err
	}
	for k, v := range st.Tensors {
		for i, x := range v {
			if x != -float32(step) {
				return fmt.Errorf("optimizer %s[%d] = %v, want %d", k, i, x, -step)
			}
		}
	}
	if opt.Steps() != step {
		return fmt.Errorf("optimizer steps %d, want %d", opt.Steps(), step)
	}
	return nil
}

const writerEnv = "MACDIST_TEST_CKPT_WRITER"

// TestCheckpointWriterChild is the child of TestCheckpointKilledWriter: it
// writes checkpoints in a loop until it is killed.
func TestCheckpointWriterChild(t *testing.T) {
	root := os.Getenv(writerEnv)
	if root == "" {
		t.Skip("run by TestCheckpointKilledWriter")
	}
	dev := cpu.New()
	m, opt := ckptModel(t, dev)
	step, _ := strconv.Atoi(os.Getenv(writerEnv + "_FROM"))
	for ; ; step++ {
		if err := fillStep(dev, m, opt, step); err != nil {
			t.Fatal(err)
		}
		if _, err := SaveCheckpoint(root, dev, m.Params(), opt, RunState{Step: step}, 3); err != nil {
			t.Fatal(err)
		}
		fmt.Println("saved", step)
	}
}

// TestCheckpointKilledWriter kills a process that writes checkpoints at
// random moments, several times, and checks after each kill that the
// newest complete checkpoint loads with exactly the contents of its step.
func TestCheckpointKilledWriter(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	root := t.TempDir()
	dev := cpu.New()
	m, opt := ckptModel(t, dev)
	rng := rand.New(rand.NewPCG(7, 7))
	next, incomplete := 1, 0
	for round := range 8 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCheckpointWriterChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), writerEnv+"="+root, writerEnv+"_FROM="+strconv.Itoa(next))
		var out syncBuffer
		firstSave := make(chan struct{})
		out.onWrite = func(b []byte) {
			if bytes.Contains(b, []byte("saved")) {
				select {
				case <-firstSave:
				default:
					close(firstSave)
				}
			}
		}
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait for its first complete save (a loaded machine can take
		// seconds to start a process), then kill it at a moment that has
		// nothing to do with its progress.
		select {
		case <-firstSave:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("round %d: the writer saved nothing in 60 s", round)
		}
		time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: writer ended with %v, not by SIGKILL; output:\n%s", round, err, out.String())
		}
		dirs, _ := Checkpoints(root)
		for _, d := range dirs {
			if _, err := VerifyCheckpoint(d); err != nil {
				incomplete++
			}
		}
		var skipped []string
		dir, st, err := LatestCheckpoint(root, func(d string, err error) { skipped = append(skipped, d) })
		if err != nil {
			t.Fatal(err)
		}
		if dir == "" {
			t.Fatalf("round %d: no complete checkpoint after %d saves:\n%s", round, strings.Count(out.String(), "saved"), out.String())
		}
		// Load into a model that holds other values, so that a file that
		// was not read would show.
		if err := fillStep(dev, m, opt, -1); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadCheckpoint(dir, dev, m.Params(), opt); err != nil {
			t.Fatalf("round %d: newest complete checkpoint %s does not load: %v", round, dir, err)
		}
		if err := checkStep(dev, m, opt, st.Step); err != nil {
			t.Fatalf("round %d: checkpoint %s (step %d) loads wrong contents: %v", round, dir, st.Step, err)
		}
		if !strings.HasSuffix(dir, CheckpointName(st.Step)) {
			t.Fatalf("round %d: checkpoint %s says step %d", round, dir, st.Step)
		}
		t.Logf("round %d: killed after %d saves; newest complete step %d; skipped %v",
			round, strings.Count(out.String(), "saved"), st.Step, skipped)
		// The next writer starts past everything on disk, as a resumed
		// trainer does, so leftovers of a killed write are overwritten or
		// pruned, never trusted.
		next = st.Step + 1
		for _, d := range dirs {
			n, _ := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), ckptPrefix))
			next = max(next, n+1)
		}
	}
	t.Logf("incomplete checkpoint directories seen after kills: %d", incomplete)
}

// saveSteps writes complete checkpoints for the given steps.
func saveSteps(t *testing.T, root string, dev kernels.Device, m *models.Model, opt mac.Optimizer, steps ...int) {
	t.Helper()
	for _, s := range steps {
		if err := fillStep(dev, m, opt, s); err != nil {
			t.Fatal(err)
		}
		if _, err := SaveCheckpoint(root, dev, m.Params(), opt, RunState{Step: s}, 0); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCheckpointDamageFallsBack damages the newest checkpoint in each way
// the issue names and checks that it is refused with a reason and the
// previous complete one is used.
func TestCheckpointDamageFallsBack(t *testing.T) {
	dev := cpu.New()
	m, err := models.New(dev, "mlp", models.Config{Width: 16})
	if err != nil {
		t.Fatal(err)
	}
	opt, err := mac.NewSGD(dev, m, mac.Common{Momentum: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	damage := []struct {
		name string
		do   func(dir string) error
		want string // in the reason
	}{
		{"truncated model", func(d string) error { return truncate(filepath.Join(d, modelFile), 100) }, "corrupt or truncated"},
		{"truncated optimizer", func(d string) error { return truncate(filepath.Join(d, optimizerFile), 7) }, "corrupt or truncated"},
		{"flipped byte", func(d string) error { return flip(filepath.Join(d, modelFile), 200) }, "corrupt or truncated"},
		{"edited state", func(d string) error {
			return os.WriteFile(filepath.Join(d, stateFile), []byte(`{"step": 99}`), 0o644)
		}, "corrupt or truncated"},
		{"missing MANIFEST", func(d string) error { return os.Remove(filepath.Join(d, manifestFile)) }, "incomplete"},
		{"garbage MANIFEST", func(d string) error {
			return os.WriteFile(filepath.Join(d, manifestFile), []byte("{not json"), 0o644)
		}, "bad MANIFEST"},
		{"wrong checksum in MANIFEST", func(d string) error {
			raw, err := os.ReadFile(filepath.Join(d, manifestFile))
			if err != nil {
				return err
			}
			i := bytes.Index(raw, []byte(`"sha256": "`)) + len(`"sha256": "`)
			raw[i] ^= 1
			return os.WriteFile(filepath.Join(d, manifestFile), raw, 0o644)
		}, "corrupt or truncated"},
		{"MANIFEST lists too little", func(d string) error {
			return os.WriteFile(filepath.Join(d, manifestFile), []byte(`{"files": {}}`), 0o644)
		}, "does not list"},
		{"missing model", func(d string) error { return os.Remove(filepath.Join(d, modelFile)) }, "no such file"},
	}
	for _, c := range damage {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			saveSteps(t, root, dev, m, opt, 1, 2, 3)
			newest := filepath.Join(root, CheckpointName(3))
			if err := c.do(newest); err != nil {
				t.Fatal(err)
			}
			var reasons []string
			dir, st, err := LatestCheckpoint(root, func(d string, err error) {
				reasons = append(reasons, d+": "+err.Error())
			})
			if err != nil {
				t.Fatal(err)
			}
			if st.Step != 2 || dir != filepath.Join(root, CheckpointName(2)) {
				t.Fatalf("LatestCheckpoint = %s (step %d), want step 2", dir, st.Step)
			}
			if len(reasons) != 1 || !strings.Contains(reasons[0], newest) || !strings.Contains(reasons[0], c.want) {
				t.Errorf("skip reasons %q, want one for %s containing %q", reasons, newest, c.want)
			}
			if _, err := LoadCheckpoint(newest, dev, m.Params(), opt); err == nil {
				t.Errorf("LoadCheckpoint of the damaged checkpoint succeeded")
			}
			if _, err := LoadCheckpoint(dir, dev, m.Params(), opt); err != nil {
				t.Fatal(err)
			}
			if err := checkStep(dev, m, opt, 2); err != nil {
				t.Error(err)
			}
		})
	}
}

func truncate(path string, n int64) error { return os.Truncate(path, n) }

func flip(path string, at int) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	raw[at] ^= 0x40
	return os.WriteFile(path, raw, 0o644)
}

// TestCheckpointKeep checks pruning: the newest keep complete checkpoints
// stay, an incomplete one newer than them stays (it may be being written),
// older incomplete ones go.
func TestCheckpointKeep(t *testing.T) {
	dev := cpu.New()
	m, err := models.New(dev, "mlp", models.Config{Width: 8})
	if err != nil {
		t.Fatal(err)
	}
	opt, err := mac.NewSGD(dev, m, mac.Common{})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	saveSteps(t, root, dev, m, opt, 1, 2)
	// An abandoned write at step 3, then complete ones at 4 and 5.
	if err := os.MkdirAll(filepath.Join(root, CheckpointName(3)), 0o755); err != nil {
		t.Fatal(err)
	}
	saveSteps(t, root, dev, m, opt, 4)
	if err := os.MkdirAll(filepath.Join(root, CheckpointName(6)), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := SaveCheckpoint(root, dev, m.Params(), opt, RunState{Step: 5}, 2); err != nil {
		t.Fatal(err)
	}
	dirs, _ := Checkpoints(root)
	var got []string
	for _, d := range dirs {
		got = append(got, filepath.Base(d))
	}
	want := []string{CheckpointName(4), CheckpointName(5), CheckpointName(6)}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("after keep=2: %v, want %v", got, want)
	}
}

// TestRunStateRoundTrip checks that what a checkpoint records besides the
// tensors survives: settings, running sums and history.
func TestRunStateRoundTrip(t *testing.T) {
	dev := cpu.New()
	m, err := models.New(dev, "mlp", models.Config{Width: 8})
	if err != nil {
		t.Fatal(err)
	}
	opt, err := mac.NewSGD(dev, m, mac.Common{})
	if err != nil {
		t.Fatal(err)
	}
	set := DefaultConfig().settings()
	st := RunState{Step: 7, Epoch: 1, EpochStep: 2, Seed: 3, ConfigHash: set.Hash(), Model: "mlp", Optimizer: "sgd",
		Settings: &set, Running: EpochSums{LossSum: 1.5, Correct: 3, Samples: 4, Seen: 5, Seconds: 0.25, NaNSkips: 1},
		History: []EpochRecord{{Epoch: 1, Step: 5, TrainLoss: 0.5, TestAcc: 0.75}}}
	dir, err := SaveCheckpoint(t.TempDir(), dev, m.Params(), opt, st, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := LoadCheckpoint(dir, dev, m.Params(), opt)
	if err != nil {
		t.Fatal(err)
	}
	if got.Settings == nil || *got.Settings != set || got.Running != st.Running || len(got.History) != 1 || got.History[0] != st.History[0] ||
		got.Step != 7 || got.Epoch != 1 || got.EpochStep != 2 || got.ConfigHash != st.ConfigHash {
		t.Errorf("state after the round trip:\n%+v\nwant\n%+v", got, st)
	}
}

// syncBuffer is a bytes.Buffer a child process writes to while the test
// reads it, calling onWrite with each write.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	onWrite func([]byte)
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.onWrite != nil {
		b.onWrite(p)
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
