// Package benchmark times training steps of a model on synthetic data, for
// `macdist bench` and its comparison with PyTorch (bench/compare.sh).
//
// A step is what a training step costs before the optimizer: forward,
// cross-entropy loss, backward, and zeroing the gradients, the same four
// things bench/torch_ref.py times in PyTorch. The optimizer is left out on
// purpose: the comparison is of the compute engines, and an optimizer step
// on either side is a few element-wise passes over the parameters.
package benchmark

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/mac"
	"github.com/macdist/macdist/nn"
)

// Model is what Run trains: a module and the input shape of a batch.
// models.Model satisfies it.
type Model interface {
	nn.Module
	InputShape(batch int) []int
}

// Result is one benchmark's outcome. Times are wall-clock over the timed
// steps only.
type Result struct {
	Batch    int     `json:"batch"`
	Steps    int     `json:"steps"`
	Warmup   int     `json:"warmup"`
	StepMS   float64 `json:"step_ms"`        // mean milliseconds per step
	MedianMS float64 `json:"median_step_ms"` // median, less sensitive to a noisy neighbour
	ImgPerS  float64 `json:"img_per_s"`      // batch·steps / total time
	Loss     float64 `json:"loss"`           // of the last step, to show the step computed something finite

	// With an optimizer (RunOptimizer) the step includes it, and these say
	// what it cost: mean milliseconds of Stats+Step, the optimizer's state,
	// and the bytes a data-parallel step all-reduces (gradients, and the
	// largest statistics of any step, early and late vectors together).
	Optimizer         string  `json:"optimizer,omitempty"`
	OptStepMS         float64 `json:"opt_step_ms,omitempty"`
	OptStateBytes     int64   `json:"opt_state_bytes,omitempty"`
	GradBytes         int64   `json:"allreduce_grad_bytes,omitempty"`
	StatsBytes        int64   `json:"allreduce_stats_bytes,omitempty"`
	StatsBytesPerStep float64 `json:"allreduce_stats_bytes_per_step,omitempty"`
}

// Run trains model on one fixed synthetic batch: warmup untimed steps (which
// also let every layer allocate its buffers), then steps timed ones. The
// input is standard normal and the labels uniform over the classes, both from
// a fixed seed. It checks ctx between steps.
func Run(ctx context.Context, dev kernels.Device, model Model, batch, steps, warmup int) (Result, error) {
	return RunOptimizer(ctx, dev, model, nil, batch, steps, warmup)
}

// RunOptimizer is Run with an optimizer step (learning rate 0.01) in every
// step, timed on its own as well. MAC's first-layer covariance, when on, is
// taken from the benchmark batch.
func RunOptimizer(ctx context.Context, dev kernels.Device, model Model, opt mac.Optimizer, batch, steps, warmup int) (Result, error) {
	return RunGated(ctx, dev, model, opt, batch, steps, warmup, nil)
}

// A Gate paces the timed steps of RunGated from outside: Wait is called
// before each and may block (bench/lockstep.py alternates the steps of two
// programs that way, so that a noisy neighbour's load falls on both
// alike), Done after each with its time.
type Gate interface {
	Wait() error
	Done(step time.Duration) error
}

// RunGated is RunOptimizer with its timed steps paced by g (none if nil).
// With a gate, the result's times are those of the steps alone, without
// the waits.
func RunGated(ctx context.Context, dev kernels.Device, model Model, opt mac.Optimizer, batch, steps, warmup int, g Gate) (Result, error) {
	if batch <= 0 || steps <= 0 || warmup < 0 {
		return Result{}, fmt.Errorf("benchmark: batch %d, steps %d, warmup %d: want batch and steps > 0, warmup ≥ 0", batch, steps, warmup)
	}
	shape := model.InputShape(batch)
	if len(shape) == 0 || shape[0] != batch {
		return Result{}, fmt.Errorf("benchmark: model input shape %v for batch %d", shape, batch)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	host := make([]float32, nn.Numel(shape))
	for i := range host {
		host[i] = float32(rng.NormFloat64())
	}
	x := nn.NewTensor(dev, shape...)
	defer dev.Free(x.Data)
	dev.Upload(x.Data, host)

	model.SetTraining(true)
	params := model.Params()
	loss := nn.NewCrossEntropyLoss(dev, 0)
	var res Result
	if opt != nil {
		res.Optimizer = opt.Name()
		for _, p := range params {
			if p.Trainable() {
				res.GradBytes += int64(p.Value.Len()) * 4
			}
		}
		if m, ok := opt.(*mac.MAC); ok && m.FirstLayer() != nil {
			acc, err := mac.NewCovarianceAccumulator(dev, m.FirstLayer())
			if err != nil {
				return Result{}, err
			}
			acc.Add(x)
			if err := m.SetFirstLayerCovariance(acc.Sum()); err != nil {
				return Result{}, err
			}
		}
	}
	var optTime time.Duration
	var statsTotal int64
	var labels []int32
	step := func() (float64, error) {
		if opt != nil {
			nn.ZeroGrad(dev, params)
			opt.BeginStep()
		}
		logits := model.Forward(x)
		if labels == nil {
			// The class count is the logits' last dimension, known only now.
			if len(logits.Shape) != 2 || logits.Shape[0] != batch {
				return 0, fmt.Errorf("benchmark: logits of shape %v, want [%d classes]", logits.Shape, batch)
			}
			labels = make([]int32, batch)
			for i := range labels {
				labels[i] = int32(rng.IntN(logits.Shape[1]))
			}
		}
		l, _ := loss.Forward(logits, labels)
		model.Backward(loss.Backward())
		if opt == nil {
			nn.ZeroGrad(dev, params)
			return l, nil
		}
		if err := dev.Sync(); err != nil {
			return 0, err
		}
		t0 := time.Now()
		var n int64
		if es, ok := opt.(mac.EarlyStatser); ok {
			if e := es.EarlyStats(); e != nil {
				n += int64(e.Len()) * 4
			}
		}
		if st := opt.Stats(); st != nil {
			n += int64(st.Len()) * 4
		}
		statsTotal += n
		res.StatsBytes = max(res.StatsBytes, n)
		if err := opt.Step(0.01); err != nil {
			return 0, err
		}
		if err := dev.Sync(); err != nil {
			return 0, err
		}
		optTime += time.Since(t0)
		return l, nil
	}

	for range warmup {
		if err := ctx.Err(); err != nil {
			return Result{}, fmt.Errorf("benchmark: warmup: %w", err)
		}
		if _, err := step(); err != nil {
			return Result{}, err
		}
	}
	if err := dev.Sync(); err != nil {
		return Result{}, fmt.Errorf("benchmark: warmup: %w", err)
	}

	optTime, statsTotal = 0, 0
	times := make([]time.Duration, 0, steps)
	var last float64
	start := time.Now()
	for range steps {
		if err := ctx.Err(); err != nil {
			return Result{}, fmt.Errorf("benchmark: after %d timed steps: %w", len(times), err)
		}
		if g != nil {
			if err := g.Wait(); err != nil {
				return Result{}, fmt.Errorf("benchmark: before timed step %d: %w", len(times), err)
			}
		}
		t0 := time.Now()
		l, err := step()
		if err != nil {
			return Result{}, err
		}
		// A GPU device queues work: sync so each step's time is its own.
		if err := dev.Sync(); err != nil {
			return Result{}, fmt.Errorf("benchmark: step %d: %w", len(times), err)
		}
		times = append(times, time.Since(t0))
		last = l
		if g != nil {
			if err := g.Done(times[len(times)-1]); err != nil {
				return Result{}, fmt.Errorf("benchmark: after timed step %d: %w", len(times)-1, err)
			}
		}
	}
	total := time.Since(start)
	if g != nil {
		total = 0
		for _, t := range times {
			total += t
		}
	}
	if math.IsNaN(last) || math.IsInf(last, 0) {
		return Result{}, errors.New("benchmark: the loss is not finite")
	}
	slices.Sort(times)
	med := times[len(times)/2]
	if len(times)%2 == 0 {
		med = (times[len(times)/2-1] + times[len(times)/2]) / 2
	}
	secs := total.Seconds()
	res.Batch, res.Steps, res.Warmup = batch, steps, warmup
	res.StepMS = secs * 1000 / float64(steps)
	res.MedianMS = float64(med) / float64(time.Millisecond)
	res.ImgPerS = float64(batch*steps) / secs
	res.Loss = last
	if opt != nil {
		res.OptStepMS = optTime.Seconds() * 1000 / float64(steps)
		res.OptStateBytes = opt.StateBytes()
		res.StatsBytesPerStep = float64(statsTotal) / float64(steps)
	}
	return res, nil
}

// LineGate is the Gate of a program run in lockstep by bench/lockstep.py:
// it writes "ready" to out before the first timed step, waits for a line
// from in before each, and writes "step_ms T" after each.
func LineGate(in io.Reader, out io.Writer) Gate {
	return &lineGate{in: bufio.NewReader(in), out: out}
}

type lineGate struct {
	in    *bufio.Reader
	out   io.Writer
	ready bool
}

func (g *lineGate) Wait() error {
	if !g.ready {
		g.ready = true
		if _, err := fmt.Fprintln(g.out, "ready"); err != nil {
			return err
		}
	}
	if _, err := g.in.ReadString('\n'); err != nil {
		return fmt.Errorf("lockstep: waiting for the go-ahead: %w", err)
	}
	return nil
}

func (g *lineGate) Done(d time.Duration) error {
	_, err := fmt.Fprintf(g.out, "step_ms %.3f\n", float64(d)/float64(time.Millisecond))
	return err
}
