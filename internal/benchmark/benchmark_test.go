package benchmark

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/nn"
)

// toy is a linear classifier over 3×2×2 images, with a counter of forwards.
type toy struct {
	*nn.Sequential
	forwards int
	shape    func(batch int) []int
}

func (m *toy) Forward(x *nn.Tensor) *nn.Tensor { m.forwards++; return m.Sequential.Forward(x) }

func (m *toy) InputShape(batch int) []int {
	if m.shape != nil {
		return m.shape(batch)
	}
	return []int{batch, 3, 2, 2}
}

func newToy(dev kernels.Device, classes int) *toy {
	rng := rand.New(rand.NewPCG(3, 4))
	return &toy{Sequential: nn.NewSequential(nn.NewFlatten(dev), nn.NewLinear(dev, "fc", 12, classes, true, rng))}
}

func TestRun(t *testing.T) {
	dev := cpu.New()
	m := newToy(dev, 5)
	r, err := Run(context.Background(), dev, m, 8, 6, 2)
	if err != nil {
		t.Fatal(err)
	}
	if m.forwards != 8 {
		t.Errorf("%d forwards, want 2 warmup + 6 timed", m.forwards)
	}
	if r.Batch != 8 || r.Steps != 6 || r.Warmup != 2 {
		t.Errorf("result %+v does not echo batch 8, steps 6, warmup 2", r)
	}
	if r.StepMS <= 0 || r.MedianMS <= 0 || r.ImgPerS <= 0 {
		t.Errorf("non-positive times: %+v", r)
	}
	// img/s and step_ms describe the same total time.
	if got := r.ImgPerS * r.StepMS / 1000; math.Abs(got-8) > 1e-6*8 {
		t.Errorf("img_per_s·step_ms = %g images, want the batch 8", got)
	}
	// Small random weights on standard normal input: near ln 5.
	if r.Loss < 0.5 || r.Loss > 5 {
		t.Errorf("loss %g, want about ln 5 = 1.6", r.Loss)
	}
	// Each step ends by zeroing the gradients, as the caller's next step expects.
	for _, p := range m.Params() {
		for i, g := range cpu.Data(p.Grad.Data) {
			if g != 0 {
				t.Fatalf("%s.grad[%d] = %g after Run, want 0", p.Name, i, g)
			}
		}
	}
}

func TestRunCancelled(t *testing.T) {
	dev := cpu.New()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Run(ctx, dev, newToy(dev, 3), 4, 5, 1)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestRunBadArguments(t *testing.T) {
	dev := cpu.New()
	cases := []struct {
		name                 string
		batch, steps, warmup int
		shape                func(int) []int
		want                 string
	}{
		{"zero batch", 0, 1, 0, nil, "batch 0"},
		{"zero steps", 2, 0, 0, nil, "steps 0"},
		{"negative warmup", 2, 1, -1, nil, "warmup -1"},
		{"shape ignores the batch", 2, 1, 0, func(int) []int { return []int{1, 3, 2, 2} }, "input shape"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newToy(dev, 3)
			m.shape = c.shape
			_, err := Run(context.Background(), dev, m, c.batch, c.steps, c.warmup)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

// Logits must be [batch, classes]: a model that ends in a 4-D tensor is
// refused with its shape, not fed to the loss.
func TestRunBadLogits(t *testing.T) {
	dev := cpu.New()
	m := &toy{Sequential: nn.NewSequential(nn.NewReLU(dev))}
	_, err := Run(context.Background(), dev, m, 2, 1, 0)
	if err == nil || !strings.Contains(err.Error(), "[2 3 2 2]") {
		t.Errorf("error %v, want one naming the logits' shape [2 3 2 2]", err)
	}
}

// countingGate records how RunGated paces the timed steps, and fails
// after a given number of them when told to.
type countingGate struct {
	waits, forwardsAtWait []int
	done                  []time.Duration
	m                     *toy
	failAt                int // Wait fails on this call (1-based); 0: never
}

func (g *countingGate) Wait() error {
	g.waits = append(g.waits, len(g.waits)+1)
	g.forwardsAtWait = append(g.forwardsAtWait, g.m.forwards)
	if len(g.waits) == g.failAt {
		return errors.New("the other program went away")
	}
	return nil
}

func (g *countingGate) Done(d time.Duration) error { g.done = append(g.done, d); return nil }

func TestRunGated(t *testing.T) {
	dev := cpu.New()
	m := newToy(dev, 5)
	g := &countingGate{m: m}
	r, err := RunGated(context.Background(), dev, m, nil, 8, 4, 2, g)
	if err != nil {
		t.Fatal(err)
	}
	// One wait before each timed step, after the warmup's two forwards.
	if want := []int{2, 3, 4, 5}; !slices.Equal(g.forwardsAtWait, want) {
		t.Errorf("forwards done at each wait: %v, want %v", g.forwardsAtWait, want)
	}
	if len(g.done) != 4 {
		t.Fatalf("%d Done calls, want 4", len(g.done))
	}
	// The result's times are the steps' own, which Done was told.
	var total time.Duration
	for _, d := range g.done {
		total += d
	}
	if got := r.StepMS * 4; math.Abs(got-float64(total)/float64(time.Millisecond)) > 1e-6*got {
		t.Errorf("step_ms·steps = %g ms, the steps Done saw add up to %v", got, total)
	}

	g = &countingGate{m: newToy(dev, 5), failAt: 3}
	if _, err := RunGated(context.Background(), dev, g.m, nil, 8, 4, 1, g); err == nil || !strings.Contains(err.Error(), "went away") {
		t.Errorf("RunGated with a gate that fails: %v", err)
	}
}
