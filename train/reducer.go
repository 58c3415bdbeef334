package train

import "github.com/macdist/macdist/kernels"

// Reducer is what the training loop needs from a collective: averaging the
// gradients and the optimizer's statistics of every rank, and summing a few
// host numbers (the first-layer covariance, evaluation counts). Every rank
// calls the same methods in the same order with buffers of the same sizes;
// the data-parallel package supplies the implementation.
type Reducer interface {
	// AllReduceMean replaces each buffer, on every rank, with its mean
	// across ranks.
	AllReduceMean(bufs ...kernels.Buffer) error
	// AllReduceSum64 replaces vals, on every rank, with their sum across
	// ranks. float64 because the covariance sums count millions of rows.
	AllReduceSum64(vals []float64) error
}

// StepReducer is a Reducer that can average one step's gradients and
// statistics in a single collective pass (collective.StepReducer packs the
// statistics into the gradients' last bucket). The training loop uses it
// when the Reducer has it.
type StepReducer interface {
	Reducer
	// ReduceStep averages grads (the same buffers of dev every step) and
	// stats (nil on steps without statistics) across ranks.
	ReduceStep(dev kernels.Device, grads []kernels.Buffer, stats kernels.Buffer) error
}

// OverlapReducer is a StepReducer whose gradient all-reduces can start
// during backward, a bucket as soon as its gradients are final: the
// training loop calls StartStep before backward, GradReady(i) as gradient
// i is done, and FinishStep after.
type OverlapReducer interface {
	StepReducer
	StartStep(dev kernels.Device, grads []kernels.Buffer) error
	GradReady(i int)
	FinishStep(stats kernels.Buffer) error
}

// Local is the Reducer of a single process: there is nothing to average.
type Local struct{}

// AllReduceMean leaves bufs as they are.
func (Local) AllReduceMean(...kernels.Buffer) error { return nil }

// AllReduceSum64 leaves vals as they are.
func (Local) AllReduceSum64([]float64) error { return nil }

// Broadcaster is a Reducer that can also send bytes from one rank to every
// rank (collective.StepReducer can). With one, a resuming run reads its
// checkpoint on one rank only (the one holding the newest) and sends it to
// the others, so that after a re-formed generation every replica starts
// from the same state and no other rank needs the run directory: nodes need
// not share a file system. With Config.ReplicateCheckpoints, rank 0 also
// sends every checkpoint it writes, for the ranks with KeepReplicas to
// keep.
type Broadcaster interface {
	// BroadcastBytes returns rank root's b on every rank; the other ranks
	// pass nil.
	BroadcastBytes(root int, b []byte) ([]byte, error)
}
