package train

import (
	"context"
	"io"
	"testing"

	"github.com/macdist/macdist/kernels"
)

// overlapRecorder is an OverlapReducer of one rank that records the order
// of the calls the training loop makes.
type overlapRecorder struct {
	Local
	grads   int
	steps   int
	ready   map[int]bool
	inStep  bool
	problem string
}

func (r *overlapRecorder) ReduceStep(kernels.Device, []kernels.Buffer, kernels.Buffer) error {
	r.problem = "ReduceStep called although the reducer overlaps"
	return nil
}

func (r *overlapRecorder) StartStep(_ kernels.Device, grads []kernels.Buffer) error {
	if r.inStep {
		r.problem = "StartStep twice without FinishStep"
	}
	r.inStep, r.grads, r.ready = true, len(grads), map[int]bool{}
	return nil
}

func (r *overlapRecorder) GradReady(i int) {
	if !r.inStep {
		r.problem = "GradReady outside a step"
	}
	if i < 0 || i >= r.grads {
		r.problem = "GradReady with an index out of range"
	}
	r.ready[i] = true
}

func (r *overlapRecorder) FinishStep(kernels.Buffer) error {
	if !r.inStep {
		r.problem = "FinishStep without StartStep"
	}
	if len(r.ready) != r.grads {
		r.problem = "FinishStep before every gradient was marked ready"
	}
	r.inStep = false
	r.steps++
	return nil
}

// TestBackwardOverlap checks that with an OverlapReducer the loop marks
// every gradient ready during backward, once per step, and finishes each
// step.
func TestBackwardOverlap(t *testing.T) {
	c := smallConfig(t, t.TempDir())
	c.MaxSteps = 4
	rec := &overlapRecorder{}
	c.Reducer = rec
	if err := Run(context.Background(), c, io.Discard); err != nil {
		t.Fatal(err)
	}
	if rec.problem != "" {
		t.Fatal(rec.problem)
	}
	if rec.steps != 4 || rec.grads == 0 {
		t.Errorf("%d steps with %d gradients; want 4 steps", rec.steps, rec.grads)
	}
}
