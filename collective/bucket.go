package collective

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/macdist/macdist/kernels"
)

const (
	// DefaultFirstBucketBytes is the size of the first bucket, which holds
	// the last layers' gradients: the first ready in backward, small so
	// that communication starts early.
	DefaultFirstBucketBytes = 1 << 20
	// DefaultBucketBytes is the size of the other buckets, as in PyTorch
	// DDP: large enough that per-collective latency is amortised, small
	// enough that several overlap with backward.
	DefaultBucketBytes = 25 << 20
)

// BucketConfig sizes a Bucketer's buckets. A bucket is closed as soon as it
// reaches its size, so it may exceed it by one gradient; a gradient larger
// than the size has a bucket of its own.
type BucketConfig struct {
	FirstBytes  int // 0 means DefaultFirstBucketBytes
	BucketBytes int // 0 means DefaultBucketBytes
}

// Bucketer averages a model's gradients, and an optimizer's statistics, over
// a Communicator, in buckets that are all-reduced while backward goes on.
//
// Gradients are packed in reverse parameter order, the order backward
// completes them. One step is:
//
//	b.Start(ctx)
//	... backward, calling b.MarkReady(i) as gradient i becomes final ...
//	err := b.Finish(opt.Stats())
//
// Start and MarkReady return at once: a bucket whose gradients are all ready
// is copied into its flat buffer and handed to a background goroutine that
// all-reduces buckets one after another, always in bucket order, so every
// rank issues the same collectives in the same order however its backward
// interleaves. Finish marks whatever is left ready, appends the statistics
// vector to the last bucket, waits, and copies the averages back into the
// gradients and the statistics. Reduce does a whole step at once, for a
// trainer without per-layer backward hooks.
//
// Device calls (the copies) happen on the caller's goroutine; the
// background goroutine only calls the Communicator.
type Bucketer struct {
	comm    Communicator
	dev     kernels.Device
	grads   []kernels.Buffer
	buckets []bucket
	where   []int // parameter → bucket

	// The current step, owned by the caller's goroutine.
	ctx     context.Context
	active  bool
	next    int // the next bucket to launch
	ready   []bool
	pending []int

	work    chan int
	results chan bucketResult
	quit    chan struct{}

	steps, bytes, lastBytes atomic.Int64
	reduceNanos, waitNanos  atomic.Int64
}

type bucket struct {
	params []int // in packing order
	offs   []int // each gradient's offset in flat
	n      int   // gradient elements
	// flat holds the packed gradients (and, in the last bucket, the
	// statistics); nil for a bucket of one gradient, which is reduced in
	// place. view is what this step reduces: flat, or a view of it whose
	// length depends on the statistics; views are cached by length.
	flat  kernels.Buffer
	view  kernels.Buffer
	views map[int]kernels.Buffer
}

type bucketResult struct {
	idx int
	err error
}

// BucketInfo describes one bucket, for tests and reports.
type BucketInfo struct {
	Params   []int // indices into the gradients given to NewBucketer, in packing order
	Elements int   // gradient elements (the statistics are not counted)
}

// BucketCounters are a Bucketer's running totals, for metrics.
type BucketCounters struct {
	Steps         int64   // completed steps
	Bytes         int64   // bytes all-reduced in all steps (this rank's payload)
	LastStepBytes int64   // bytes all-reduced in the last step, statistics included
	Buckets       int     // collectives per step
	ReduceSeconds float64 // time spent in AllReduce, overlapped or not
	WaitSeconds   float64 // time Finish waited: the all-reduce time not hidden behind backward
}

// NewBucketer lays out buckets for grads, the gradient buffers of the
// trainable parameters in model order (as the optimizer holds them), all
// on dev. The layout depends only on the gradients' lengths, so every rank
// of a data-parallel run gets the same one.
func NewBucketer(comm Communicator, dev kernels.Device, grads []kernels.Buffer, cfg BucketConfig) (*Bucketer, error) {
	if comm == nil || dev == nil {
		return nil, fmt.Errorf("collective: NewBucketer: nil communicator or device")
	}
	if cfg.FirstBytes < 0 || cfg.BucketBytes < 0 {
		return nil, fmt.Errorf("collective: NewBucketer: negative bucket size")
	}
	first, rest := cfg.FirstBytes, cfg.BucketBytes
	if first == 0 {
		first = DefaultFirstBucketBytes
	}
	if rest == 0 {
		rest = DefaultBucketBytes
	}
	b := &Bucketer{
		comm:  comm,
		dev:   dev,
		grads: grads,
		where: make([]int, len(grads)),
		ready: make([]bool, len(grads)),
		quit:  make(chan struct{}),
	}
	var cur bucket
	limit := first
	for i := len(grads) - 1; i >= 0; i-- {
		if grads[i] == nil {
			return nil, fmt.Errorf("collective: NewBucketer: gradient %d is nil", i)
		}
		b.where[i] = len(b.buckets)
		cur.params = append(cur.params, i)
		cur.offs = append(cur.offs, cur.n)
		cur.n += grads[i].Len()
		if 4*cur.n >= limit {
			b.buckets = append(b.buckets, cur)
			cur, limit = bucket{}, rest
		}
	}
	if len(cur.params) > 0 || len(b.buckets) == 0 {
		b.buckets = append(b.buckets, cur)
	}
	last := len(b.buckets) - 1
	for k := range b.buckets {
		bk := &b.buckets[k]
		if len(bk.params) == 1 && k != last {
			bk.view = grads[bk.params[0]]
			continue
		}
		bk.flat = dev.Alloc(bk.n)
		bk.view = bk.flat
		bk.views = map[int]kernels.Buffer{bk.n: bk.flat}
	}
	b.pending = make([]int, len(b.buckets))
	b.work = make(chan int, len(b.buckets))
	b.results = make(chan bucketResult, len(b.buckets))
	go b.worker()
	return b, nil
}

// Buckets returns the layout.
func (b *Bucketer) Buckets() []BucketInfo {
	out := make([]BucketInfo, len(b.buckets))
	for k, bk := range b.buckets {
		out[k] = BucketInfo{Params: append([]int(nil), bk.params...), Elements: bk.n}
	}
	return out
}

// Counters returns the running totals; it may be called from any goroutine.
func (b *Bucketer) Counters() BucketCounters {
	return BucketCounters{
		Steps:         b.steps.Load(),
		Bytes:         b.bytes.Load(),
		LastStepBytes: b.lastBytes.Load(),
		Buckets:       len(b.buckets),
		ReduceSeconds: time.Duration(b.reduceNanos.Load()).Seconds(),
		WaitSeconds:   time.Duration(b.waitNanos.Load()).Seconds(),
	}
}

// Start begins a step: every gradient is marked not ready.
func (b *Bucketer) Start(ctx context.Context) {
	if b.active {
		panic("collective: Bucketer.Start: the previous step was not finished")
	}
	b.ctx, b.active, b.next = ctx, true, 0
	clear(b.ready)
	for k := range b.buckets {
		b.pending[k] = len(b.buckets[k].params)
	}
}

// MarkReady says that gradient i is final for this step; it launches every
// bucket, in order, whose gradients are now all ready (except the last,
// which waits for the statistics in Finish). Marking a gradient twice is a
// no-op, so tied parameters need no care.
func (b *Bucketer) MarkReady(i int) {
	if !b.active {
		panic("collective: Bucketer.MarkReady outside a step (call Start first)")
	}
	if b.ready[i] {
		return
	}
	b.ready[i] = true
	b.pending[b.where[i]]--
	last := len(b.buckets) - 1
	for b.next < last && b.pending[b.next] == 0 {
		b.launch(b.next)
	}
}

// launch packs bucket k and hands it to the worker.
func (b *Bucketer) launch(k int) {
	bk := &b.buckets[k]
	if bk.flat != nil {
		for j, p := range bk.params {
			g := b.grads[p]
			b.dev.Copy2D(bk.flat, bk.offs[j], 0, g, 0, 0, 1, g.Len())
		}
	}
	b.next = k + 1
	b.work <- k
}

// Finish launches the remaining buckets, with extra (the optimizer's
// statistics, or nil) appended to the last one, waits for them, and leaves
// the averages over ranks in the gradients and in extra. extra's length
// must be the same on every rank for the step, but may change from step to
// step. On error the gradients and extra hold unspecified values (a
// collective that fails halfway leaves partial sums): the step must not be
// applied, and the Communicator is broken; the supervisor restores the
// last checkpoint in the next generation.
func (b *Bucketer) Finish(extra kernels.Buffer) error {
	if !b.active {
		panic("collective: Bucketer.Finish without Start")
	}
	last := len(b.buckets) - 1
	for b.next < last {
		b.launch(b.next)
	}
	lb := &b.buckets[last]
	ne := 0
	if extra != nil {
		ne = extra.Len()
	}
	b.lastView(lb, ne)
	if extra != nil {
		b.dev.Copy2D(lb.flat, lb.n, 0, extra, 0, 0, 1, ne)
	}
	b.launch(last)

	t0 := time.Now()
	var first error
	for range b.buckets {
		if res := <-b.results; res.err != nil && first == nil {
			first = fmt.Errorf("collective: bucket %d of %d: %w", res.idx, len(b.buckets), res.err)
		}
	}
	b.waitNanos.Add(int64(time.Since(t0)))
	b.active, b.ctx = false, nil
	if first != nil {
		return first
	}
	var elems int64
	for k := range b.buckets {
		bk := &b.buckets[k]
		elems += int64(bk.view.Len())
		if bk.flat == nil {
			continue
		}
		for j, p := range bk.params {
			g := b.grads[p]
			b.dev.Copy2D(g, 0, 0, bk.flat, bk.offs[j], 0, 1, g.Len())
		}
	}
	if extra != nil {
		b.dev.Copy2D(extra, 0, 0, lb.flat, lb.n, 0, 1, ne)
	}
	b.steps.Add(1)
	b.bytes.Add(4 * elems)
	b.lastBytes.Store(4 * elems)
	return nil
}

// lastView makes lb.view the first lb.n+ne elements of its flat buffer,
// growing the buffer when the statistics outgrow it.
func (b *Bucketer) lastView(lb *bucket, ne int) {
	n := lb.n + ne
	if n > lb.flat.Len() {
		b.dev.Free(lb.flat)
		lb.flat = b.dev.Alloc(n)
		lb.views = map[int]kernels.Buffer{n: lb.flat}
	}
	v, ok := lb.views[n]
	if !ok {
		v = b.dev.View(lb.flat, 0, n)
		lb.views[n] = v
	}
	lb.view = v
}

// Reduce averages every gradient and extra over the ranks in one call:
// Start, then Finish. The buckets still go out in order and pipelined, but
// nothing overlaps with backward.
func (b *Bucketer) Reduce(ctx context.Context, extra kernels.Buffer) error {
	b.Start(ctx)
	return b.Finish(extra)
}

func (b *Bucketer) worker() {
	for {
		select {
		case k := <-b.work:
			t0 := time.Now()
			err := b.comm.AllReduce(b.ctx, b.buckets[k].view, Avg)
			b.reduceNanos.Add(int64(time.Since(t0)))
			b.results <- bucketResult{k, err}
		case <-b.quit:
			return
		}
	}
}

// Close stops the background goroutine and frees the buckets; it does not
// close the Communicator. During a step (a trainer giving up halfway) it
// first waits for the buckets already launched: abort the Communicator
// before, so that they fail at once.
func (b *Bucketer) Close() {
	select {
	case <-b.quit:
		return
	default:
	}
	if b.active {
		for range b.next {
			<-b.results
		}
		b.active = false
	}
	close(b.quit)
	for k := range b.buckets {
		if f := b.buckets[k].flat; f != nil {
			b.dev.Free(f)
		}
	}
}
