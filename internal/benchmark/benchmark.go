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
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/macdist/macdist/kernels"
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
}

// Run trains model on one fixed synthetic batch: warmup untimed steps (which
// also let every layer allocate its buffers), then steps timed ones. The
// input is standard normal and the labels uniform over the classes, both from
// a fixed seed. It checks ctx between steps.
func Run(ctx context.Context, dev kernels.Device, model Model, batch, steps, warmup int) (Result, error) {
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
	var labels []int32
	step := func() (float64, error) {
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
		nn.ZeroGrad(dev, params)
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

	times := make([]time.Duration, 0, steps)
	var last float64
	start := time.Now()
	for range steps {
		if err := ctx.Err(); err != nil {
			return Result{}, fmt.Errorf("benchmark: after %d timed steps: %w", len(times), err)
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
	}
	total := time.Since(start)
	if math.IsNaN(last) || math.IsInf(last, 0) {
		return Result{}, errors.New("benchmark: the loss is not finite")
	}
	slices.Sort(times)
	med := times[len(times)/2]
	if len(times)%2 == 0 {
		med = (times[len(times)/2-1] + times[len(times)/2]) / 2
	}
	secs := total.Seconds()
	return Result{
		Batch:    batch,
		Steps:    steps,
		Warmup:   warmup,
		StepMS:   secs * 1000 / float64(steps),
		MedianMS: float64(med) / float64(time.Millisecond),
		ImgPerS:  float64(batch*steps) / secs,
		Loss:     last,
	}, nil
}
