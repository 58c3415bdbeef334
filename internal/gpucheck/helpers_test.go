package gpucheck

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/macdist/macdist/backend"
	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/mac"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/models"
)

func envString(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envInt(t testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, v)
	}
	return n
}

func envList(name, def string) []string {
	var out []string
	for _, s := range strings.Split(envString(name, def), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// openGPU opens the device under test (GPUCHECK_DEVICE, cuda:0 by
// default) or skips the test, saying why. cpuOK lets a test run on the
// CPU when GPUCHECK_DEVICE=cpu asks for it.
func openGPU(t testing.TB, cpuOK bool) kernels.Device {
	t.Helper()
	spec := envString("GPUCHECK_DEVICE", "cuda:0")
	s, err := backend.Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	if s.Kind == "cpu" && !cpuOK {
		t.Skipf("GPUCHECK_DEVICE=%s: this test compares a GPU with the CPU", spec)
	}
	d, err := backend.Open(spec)
	if err != nil {
		t.Skipf("no GPU (this test needs one; scripts/gpu-check.sh runs it on a lent GPU machine): %v", err)
	}
	t.Cleanup(func() {
		if err := backend.Close(d); err != nil {
			t.Errorf("closing %s: %v", spec, err)
		}
	})
	return d
}

// batch is one batch of synthetic data: standard normal images and
// uniform labels.
type batch struct {
	x []float32
	y []int32
}

func synthetic(seed uint64, n int, shape []int, classes int) []batch {
	rng := rand.New(rand.NewPCG(seed, 0x67707563))
	per := nn.Numel(shape)
	out := make([]batch, n)
	for i := range out {
		b := batch{x: make([]float32, per), y: make([]int32, shape[0])}
		for j := range b.x {
			b.x[j] = float32(rng.NormFloat64())
		}
		for j := range b.y {
			b.y[j] = int32(rng.IntN(classes))
		}
		out[i] = b
	}
	return out
}

// trainer is one model replica with its optimizer, stepping as train/run.go
// does: ZeroGrad, BeginStep, forward, loss, backward, Stats, Step.
type trainer struct {
	dev   kernels.Device
	model *models.Model
	opt   mac.Optimizer
	loss  *nn.CrossEntropyLoss
	x     *nn.Tensor
}

// newTrainer builds the named model on dev with weights from nn.HashInit
// (seed), and the named optimizer with its default options; MAC's
// first-layer covariance is accumulated over cov.
func newTrainer(dev kernels.Device, name string, cfg models.Config, batchSize int, method string, seed uint64, cov []batch) (*trainer, error) {
	m, err := models.New(dev, name, cfg)
	if err != nil {
		return nil, err
	}
	nn.HashInit(dev, m.Params(), seed)
	return newTrainerFor(dev, m, batchSize, method, cov)
}

// newTrainerFor makes a trainer of the named optimizer for m.
func newTrainerFor(dev kernels.Device, m *models.Model, batchSize int, method string, cov []batch) (*trainer, error) {
	opts, err := mac.DefaultOptions(method)
	if err != nil {
		return nil, err
	}
	opt, err := mac.New(method, dev, m, opts)
	if err != nil {
		return nil, err
	}
	tr := &trainer{dev: dev, model: m, opt: opt, loss: nn.NewCrossEntropyLoss(dev, 0),
		x: nn.NewTensor(dev, m.InputShape(batchSize)...)}
	if mo, ok := opt.(*mac.MAC); ok && mo.FirstLayer() != nil {
		acc, err := mac.NewCovarianceAccumulator(dev, mo.FirstLayer())
		if err != nil {
			return nil, err
		}
		for _, b := range cov {
			dev.Upload(tr.x.Data, b.x)
			acc.Add(tr.x)
		}
		sum, rows := acc.Sum()
		if err := mo.SetFirstLayerCovariance(sum, rows); err != nil {
			return nil, err
		}
	}
	return tr, nil
}

// phases are the times of one step's parts, each measured up to a Sync.
type phases struct {
	upload, forward, backward, opt time.Duration
}

func (p phases) total() time.Duration { return p.upload + p.forward + p.backward + p.opt }

// step trains on b with learning rate lr. With timed it waits for the
// device after each phase and returns their times; otherwise it queues
// everything and returns without waiting (the loss synchronises anyway).
func (tr *trainer) step(b batch, lr float64, timed bool) (float64, phases, error) {
	var ph phases
	t0 := time.Now()
	mark := func(d *time.Duration) error {
		if !timed {
			return nil
		}
		if err := tr.dev.Sync(); err != nil {
			return err
		}
		now := time.Now()
		*d = now.Sub(t0)
		t0 = now
		return nil
	}
	if b.x != nil { // a benchmark keeps one batch on the device
		tr.dev.Upload(tr.x.Data, b.x)
	}
	if err := mark(&ph.upload); err != nil {
		return 0, ph, err
	}
	nn.ZeroGrad(tr.dev, tr.model.Params())
	tr.opt.BeginStep()
	logits := tr.model.Forward(tr.x)
	l, _ := tr.loss.Forward(logits, b.y)
	if err := mark(&ph.forward); err != nil {
		return 0, ph, err
	}
	tr.model.Backward(tr.loss.Backward())
	tr.opt.Stats()
	if err := mark(&ph.backward); err != nil {
		return 0, ph, err
	}
	if err := tr.opt.Step(lr); err != nil {
		return 0, ph, err
	}
	if err := mark(&ph.opt); err != nil {
		return 0, ph, err
	}
	if math.IsNaN(l) || math.IsInf(l, 0) {
		return l, ph, fmt.Errorf("loss %v", l)
	}
	return l, ph, nil
}

// params downloads every parameter (buffers included), by name.
func (tr *trainer) params() map[string][]float32 {
	out := map[string][]float32{}
	for _, p := range tr.model.Params() {
		v := make([]float32, p.Value.Len())
		tr.dev.Download(v, p.Value.Data)
		out[p.Name] = v
	}
	return out
}

// relErr is max|got − want| / max|want|, fixture.Close's measure; NaNs
// make it infinite.
func relErr(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(d) {
			return math.Inf(1)
		}
		num = max(num, d)
		den = max(den, math.Abs(float64(want[i])))
	}
	if den == 0 {
		return num
	}
	return num / den
}

// emit prints v as one JSON line on standard output (go test -v keeps it
// whole) and appends it to $GPUCHECK_JSON when set.
func emit(t testing.TB, v any) {
	t.Helper()
	line, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("%s\n", line)
	if path := os.Getenv("GPUCHECK_JSON"); path != "" {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := fmt.Fprintf(f, "%s\n", line); err != nil {
			t.Fatal(err)
		}
	}
}

func ms(d time.Duration) float64 { return math.Round(d.Seconds()*1e6) / 1e3 }
