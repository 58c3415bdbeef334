package collective

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
)

// StepReducer is what a data-parallel training loop needs from a
// Communicator: one step's gradients and optimizer statistics averaged in a
// single pipelined pass of buckets (the statistics riding in the last
// bucket, so they cost no round trip of their own), plain averages of other
// buffers, and exact float64 sums of a few host numbers. It implements
// train.Reducer and train.StepReducer.
type StepReducer struct {
	// SkipStats leaves the statistics out of the all-reduce, so that every
	// replica preconditions with its own, as the authors' code does. It
	// exists for the test that shows why the statistics must be averaged;
	// a real run never sets it.
	SkipStats bool

	ctx  context.Context
	comm Communicator
	dev  kernels.Device
	cfg  BucketConfig

	bucketer *Bucketer
	grads    []kernels.Buffer // the buffers the bucketer was built for

	host *cpu.Device
	bufs []kernels.Buffer // per rank, reused by AllReduceSum64
}

// NewStepReducer returns a StepReducer over comm. Every
// collective it issues is bounded by ctx and by the Communicator's own
// timeout.
func NewStepReducer(ctx context.Context, comm Communicator, cfg BucketConfig) *StepReducer {
	return &StepReducer{ctx: ctx, comm: comm, cfg: cfg}
}

// ReduceStep averages grads and stats (nil when the step has none), buffers
// of dev, across ranks. The device and the gradient buffers must be the
// same on every call: the buckets are laid out once, on the first.
func (r *StepReducer) ReduceStep(dev kernels.Device, grads []kernels.Buffer, stats kernels.Buffer) error {
	if err := r.StartStep(dev, grads); err != nil {
		return err
	}
	return r.FinishStep(stats)
}

// StartStep begins a step whose gradient all-reduces start during backward:
// call GradReady(i) as gradient i becomes final, then FinishStep. The same
// rules as ReduceStep's hold for dev and grads.
func (r *StepReducer) StartStep(dev kernels.Device, grads []kernels.Buffer) error {
	if r.comm.Size() == 1 {
		return nil
	}
	if r.bucketer == nil {
		r.dev = dev
		b, err := NewBucketer(r.comm, r.dev, grads, r.cfg)
		if err != nil {
			return err
		}
		r.bucketer, r.grads = b, grads
	} else if !sameBuffers(r.grads, grads) {
		panic("collective: StepReducer called with other gradient buffers than on its first step")
	}
	r.bucketer.Start(r.ctx)
	return nil
}

// GradReady says gradient i (an index into StartStep's grads) is final for
// this step: the buckets it completes go out at once, in order.
func (r *StepReducer) GradReady(i int) {
	if r.bucketer != nil {
		r.bucketer.MarkReady(i)
	}
}

// FinishStep all-reduces what is left, with stats (nil on steps without
// statistics) in the last bucket, and waits for every bucket.
func (r *StepReducer) FinishStep(stats kernels.Buffer) error {
	if r.comm.Size() == 1 {
		return nil
	}
	if r.SkipStats {
		stats = nil
	}
	return r.bucketer.Finish(stats)
}

func sameBuffers(a, b []kernels.Buffer) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Counters reports the bucketer's traffic (zero before the first step).
func (r *StepReducer) Counters() BucketCounters {
	if r.bucketer == nil {
		return BucketCounters{}
	}
	return r.bucketer.Counters()
}

// AllReduceMean replaces each buffer with its mean across ranks, one
// collective per buffer.
func (r *StepReducer) AllReduceMean(bufs ...kernels.Buffer) error {
	for _, b := range bufs {
		if err := r.comm.AllReduce(r.ctx, b, Avg); err != nil {
			return err
		}
	}
	return nil
}

// AllReduceSum64 sums vals across ranks in float64, which the float32
// collectives cannot: every rank broadcasts the bits of its values (a
// broadcast copies, never adds) and every rank adds the same numbers in
// rank order, so all end with the same bits.
func (r *StepReducer) AllReduceSum64(vals []float64) error {
	size := r.comm.Size()
	if size == 1 || len(vals) == 0 {
		return nil
	}
	if r.host == nil {
		r.host = cpu.New()
	}
	n := 2 * len(vals)
	if len(r.bufs) == 0 || r.bufs[0].Len() < n {
		r.bufs = r.bufs[:0]
		for range size {
			r.bufs = append(r.bufs, r.host.Alloc(n))
		}
	}
	for root := range size {
		b := r.host.View(r.bufs[root], 0, n)
		d := cpu.Data(b)
		if root == r.comm.Rank() {
			for i, v := range vals {
				bits := math.Float64bits(v)
				d[2*i] = math.Float32frombits(uint32(bits))
				d[2*i+1] = math.Float32frombits(uint32(bits >> 32))
			}
		}
		if err := r.comm.Broadcast(r.ctx, b, root); err != nil {
			return fmt.Errorf("collective: float64 sum: %w", err)
		}
	}
	for i := range vals {
		var s float64
		for root := range size {
			d := cpu.Data(r.bufs[root])
			s += math.Float64frombits(uint64(math.Float32bits(d[2*i])) | uint64(math.Float32bits(d[2*i+1]))<<32)
		}
		vals[i] = s
	}
	return nil
}

// BroadcastBytes sends rank src's b to every rank and returns it there (b
// is ignored on the other ranks): its length first, then its bytes, as the
// bits of float32s, which a broadcast copies and never computes with.
func (r *StepReducer) BroadcastBytes(src int, b []byte) ([]byte, error) {
	if src < 0 || src >= r.comm.Size() {
		panic(fmt.Sprintf("collective: BroadcastBytes from rank %d of %d", src, r.comm.Size()))
	}
	if r.comm.Size() == 1 {
		return b, nil
	}
	if r.host == nil {
		r.host = cpu.New()
	}
	root := r.comm.Rank() == src
	hdr := r.host.Alloc(2)
	defer r.host.Free(hdr)
	h := cpu.Data(hdr)
	if root {
		n := uint64(len(b))
		h[0], h[1] = math.Float32frombits(uint32(n)), math.Float32frombits(uint32(n>>32))
	}
	if err := r.comm.Broadcast(r.ctx, hdr, src); err != nil {
		return nil, fmt.Errorf("collective: broadcast of a length: %w", err)
	}
	n := int(uint64(math.Float32bits(h[0])) | uint64(math.Float32bits(h[1]))<<32)
	if n == 0 {
		return []byte{}, nil
	}
	buf := r.host.Alloc((n + 3) / 4)
	defer r.host.Free(buf)
	words := cpu.Data(buf)
	if root {
		for i := range words {
			var w [4]byte
			copy(w[:], b[4*i:])
			words[i] = math.Float32frombits(binary.LittleEndian.Uint32(w[:]))
		}
	}
	if err := r.comm.Broadcast(r.ctx, buf, src); err != nil {
		return nil, fmt.Errorf("collective: broadcast of %d bytes: %w", n, err)
	}
	if root {
		return b, nil
	}
	out := make([]byte, 4*len(words))
	for i, w := range words {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(w))
	}
	return out[:n], nil
}

// Close releases the bucketer's buffers.
func (r *StepReducer) Close() {
	if r.bucketer != nil {
		r.bucketer.Close()
	}
}
