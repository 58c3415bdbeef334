package data

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
)

// LoaderConfig configures a Loader.
type LoaderConfig struct {
	// BatchSize is the per-rank batch size.
	BatchSize int
	// Rank and World shard the dataset as DistributedSampler does; World 0
	// means 1.
	Rank, World int
	// Shuffle draws each epoch's order from (Seed, epoch). Seed also keys
	// the augmentation of every sample.
	Shuffle bool
	Seed    uint64
	// DropLast is DistributedSampler's drop_last: cut the epoch's list to a
	// multiple of World instead of padding it with its head.
	DropLast bool
	// DropLastBatch is DataLoader's drop_last: leave out a rank's final
	// batch when it is short.
	DropLastBatch bool
	// NoAugment hands Dataset.Get a nil generator, so that a training set
	// decodes as for evaluation (to measure training accuracy, say).
	NoAugment bool
	// Workers decode samples concurrently; 0 means GOMAXPROCS.
	Workers int
	// Repeats, above 1, is repeated augmentation (DeiT's RASampler).
	Repeats int
	// Prefetch is how many batches may be decoded ahead of the one the
	// consumer holds; 0 means max(2, Workers). Memory is (Prefetch+1)
	// batches, allocated once.
	Prefetch int
}

// Batch is one per-rank batch, in NCHW. Its slices belong to the Loader and
// are valid until the Batch is released or the next call to Next.
type Batch struct {
	X          []float32 // N·C·H·W
	Y          []int32   // N labels
	Index      []int     // N dataset indices
	N, C, H, W int
	Epoch      int
	Step       int // batch number within the epoch, from 0
}

// ErrClosed is returned by a Loader used after Close.
var ErrClosed = errors.New("data: loader closed")

// Loader decodes a Dataset into batches ahead of the consumer.
//
// A ring of Prefetch+1 batch buffers is allocated once and recycled: batch b
// of an epoch is decoded by the workers into a free buffer, the consumer
// receives it from Next, and the buffer is free again when the consumer
// calls Release or the next Next. Batches arrive in order whatever the
// workers' timing, and every sample's contents depend only on (Seed, epoch,
// dataset index), never on the worker count.
//
// Next, Release, Start and Close are for one consumer goroutine.
type Loader struct {
	ds      Dataset
	cfg     LoaderConfig
	sampler Sampler
	chw     int
	c, h, w int
	slots   []slot
	indices []int // the epoch's per-rank order, reused
	ring
}

type slot struct {
	b       Batch
	x       []float32
	y       []int32
	index   []int
	pending atomic.Int32
	errMu   sync.Mutex
	err     error
}

type item struct{ slot, lo, hi int }

// epochRun is the goroutines and channels of one epoch.
type epochRun struct {
	ctx    context.Context
	cancel context.CancelFunc
	free   chan int     // slots the scheduler may fill
	order  chan int     // slots in batch order, as assigned
	dones  []chan error // per slot (cap 1): decoding finished, with its error
	work   chan item
	wg     sync.WaitGroup
	first  int // batch the epoch was started at
	next   int // batch the consumer gets next
	epoch  int
}

// ring is the consumer's side of a loader's batch buffers, the same for
// Loader and StreamLoader: the epoch running, the buffer the consumer
// holds, the error that ended an epoch, and Close.
type ring struct {
	what    string   // the loader's type, for errors
	batches []*Batch // each slot's batch, by slot
	nb      int      // batches per epoch

	run    *epochRun
	held   int // slot the consumer holds, −1 if none
	err    error
	closed bool
}

// next returns the epoch's next batch, releasing the previous one, or
// io.EOF at the end of the epoch.
func (l *ring) next() (*Batch, error) {
	if l.closed {
		return nil, ErrClosed
	}
	if l.err != nil {
		return nil, l.err
	}
	r := l.run
	if r == nil {
		return nil, fmt.Errorf("data: %s.Next before Start", l.what)
	}
	l.release()
	if r.next == l.nb {
		return nil, io.EOF
	}
	s, err := r.take()
	if err != nil {
		// Stop the epoch but do not wait: a worker may be inside a slow
		// decode. Start and Close wait for the goroutines before reusing
		// buffers.
		l.err = err
		r.cancel()
		return nil, err
	}
	r.next++
	l.held = s
	return l.batches[s], nil
}

// Release hands b's buffer back for decoding ahead, before the next Next.
// Releasing a batch that is not the one held does nothing.
func (l *ring) Release(b *Batch) {
	if l.held >= 0 && b == l.batches[l.held] {
		l.release()
	}
}

func (l *ring) release() {
	if l.held < 0 {
		return
	}
	l.run.free <- l.held // never blocks: the channel holds every slot
	l.held = -1
}

// stop cancels the running epoch and waits for its goroutines.
func (l *ring) stop() {
	if l.run == nil {
		return
	}
	l.run.cancel()
	l.run.wg.Wait()
	l.run = nil
	l.held = -1
}

// Close stops the loader's goroutines. It is safe to call more than once.
func (l *ring) Close() error {
	l.stop()
	l.closed = true
	return nil
}

// nextItem is a decoder's next piece of work, or false when the epoch has
// no more or was cancelled.
func (r *epochRun) nextItem() (item, bool) {
	select {
	case it, ok := <-r.work:
		return it, ok
	case <-r.ctx.Done():
		return item{}, false
	}
}

// take waits for the next batch's slot to be decoded and returns it, or
// the error that ended the epoch.
func (r *epochRun) take() (int, error) {
	var s int
	var err error
	select {
	case s = <-r.order:
		select {
		case err = <-r.dones[s]:
		case <-r.ctx.Done():
			err = r.ctx.Err()
		}
	case <-r.ctx.Done():
		err = r.ctx.Err()
	}
	if err == nil {
		// A decoded batch and a cancellation can race; cancellation wins, so
		// that Next after cancel reliably reports it.
		err = r.ctx.Err()
	}
	return s, err
}

// NewLoader checks cfg against ds and allocates the batch ring.
func NewLoader(ds Dataset, cfg LoaderConfig) (*Loader, error) {
	if cfg.World == 0 {
		cfg.World = 1
	}
	if cfg.BatchSize <= 0 {
		return nil, fmt.Errorf("data: loader batch size %d", cfg.BatchSize)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = max(2, cfg.Workers)
	}
	s := Sampler{Len: ds.Len(), Rank: cfg.Rank, World: cfg.World, Shuffle: cfg.Shuffle, Seed: cfg.Seed, DropLast: cfg.DropLast, Repeats: cfg.Repeats}
	if err := s.check(); err != nil {
		return nil, err
	}
	l := &Loader{ds: ds, cfg: cfg, sampler: s, ring: ring{what: "Loader", held: -1}}
	l.c, l.h, l.w = ds.Shape()
	l.chw = l.c * l.h * l.w
	per := s.NumSamples()
	l.nb = per / cfg.BatchSize
	if !cfg.DropLastBatch && per%cfg.BatchSize != 0 {
		l.nb++
	}
	if l.nb == 0 {
		return nil, fmt.Errorf("data: %d samples per rank make no batch of %d with DropLastBatch", per, cfg.BatchSize)
	}
	l.slots = make([]slot, cfg.Prefetch+1)
	l.batches = make([]*Batch, len(l.slots))
	for i := range l.slots {
		sl := &l.slots[i]
		l.batches[i] = &sl.b
		sl.x = make([]float32, cfg.BatchSize*l.chw)
		sl.y = make([]int32, cfg.BatchSize)
		sl.index = make([]int, cfg.BatchSize)
	}
	return l, nil
}

// Len is the number of batches per epoch.
func (l *Loader) Len() int { return l.nb }

// Sampler returns the sampler the loader draws indices from.
func (l *Loader) Sampler() Sampler { return l.sampler }

// Start begins decoding epoch ahead of Next, abandoning any epoch in
// progress (its batches, including a held one, become invalid). Cancelling
// ctx stops the epoch; Next then returns the context's error.
func (l *Loader) Start(ctx context.Context, epoch int) error {
	return l.StartAt(ctx, epoch, 0)
}

// StartAt is Start from batch step of the epoch, for resuming from a
// checkpoint taken mid-epoch: the batches are those Start would give from
// that step on, identical in order and content.
func (l *Loader) StartAt(ctx context.Context, epoch, step int) error {
	if l.closed {
		return ErrClosed
	}
	if step < 0 || step > l.nb {
		return fmt.Errorf("data: start at batch %d of an epoch of %d", step, l.nb)
	}
	l.stop()
	l.err = nil
	l.indices = l.sampler.Indices(epoch, l.indices)
	k := len(l.slots)
	r := &epochRun{
		free:  make(chan int, k),
		order: make(chan int, k),
		dones: make([]chan error, k),
		work:  make(chan item, k*l.cfg.Workers),
		epoch: epoch,
		first: step,
		next:  step,
	}
	r.ctx, r.cancel = context.WithCancel(ctx)
	for i := range k {
		r.free <- i
		r.dones[i] = make(chan error, 1)
	}
	l.run = r
	r.wg.Add(1 + l.cfg.Workers)
	go l.schedule(r)
	for range l.cfg.Workers {
		go l.decode(r)
	}
	return nil
}

// schedule assigns batches to free slots in order and splits them into
// work items for the decoders.
func (l *Loader) schedule(r *epochRun) {
	defer r.wg.Done()
	bs := l.cfg.BatchSize
	chunk := max(1, (bs+l.cfg.Workers-1)/l.cfg.Workers)
	for b := r.first; b < l.nb; b++ {
		var s int
		select {
		case s = <-r.free:
		case <-r.ctx.Done():
			return
		}
		lo, hi := b*bs, min((b+1)*bs, len(l.indices))
		n := hi - lo
		sl := &l.slots[s]
		copy(sl.index, l.indices[lo:hi])
		sl.b = Batch{
			X: sl.x[:n*l.chw], Y: sl.y[:n], Index: sl.index[:n],
			N: n, C: l.c, H: l.h, W: l.w, Epoch: r.epoch, Step: b,
		}
		sl.err = nil
		sl.pending.Store(int32((n + chunk - 1) / chunk))
		r.order <- s // never blocks: at most len(slots) are assigned
		for i := 0; i < n; i += chunk {
			select {
			case r.work <- item{s, i, min(i+chunk, n)}:
			case <-r.ctx.Done():
				return
			}
		}
	}
	close(r.work)
}

// decode is a worker: it fills samples of the items it receives.
func (l *Loader) decode(r *epochRun) {
	defer r.wg.Done()
	pcg := new(rand.PCG)
	rng := rand.New(pcg)
	if l.cfg.NoAugment {
		rng = nil
	}
	ek := epochKey(tagAugment, l.cfg.Seed, r.epoch)
	for {
		it, ok := r.nextItem()
		if !ok {
			return
		}
		sl := &l.slots[it.slot]
		for j := it.lo; j < it.hi; j++ {
			// A repeated sample's key (rasampler.go) seeds its copy's
			// draws; the batch reports the dataset index.
			key := sl.index[j]
			idx := key % l.ds.Len()
			sl.index[j] = idx
			seedSample(pcg, ek, key)
			y, err := l.ds.Get(idx, sl.x[j*l.chw:(j+1)*l.chw], rng)
			if err == nil && (y < 0 || y >= l.ds.Classes()) {
				err = fmt.Errorf("data: sample %d has label %d outside [0, %d)", idx, y, l.ds.Classes())
			}
			if err != nil {
				sl.errMu.Lock()
				if sl.err == nil {
					sl.err = fmt.Errorf("data: epoch %d, batch %d: %w", r.epoch, sl.b.Step, err)
				}
				sl.errMu.Unlock()
				break
			}
			sl.y[j] = int32(y)
		}
		if sl.pending.Add(-1) == 0 {
			sl.errMu.Lock()
			err := sl.err
			sl.errMu.Unlock()
			r.dones[it.slot] <- err
		}
	}
}

// Next returns the epoch's next batch, releasing the previous one. At the
// end of the epoch it returns io.EOF; call Start for the next epoch. A
// sample that fails to decode ends the epoch with its error (a
// *SampleError inside, naming file and index).
func (l *Loader) Next() (*Batch, error) { return l.next() }

// NumReal is the rank's samples per epoch that are not padding
// (Sampler.NumReal).
func (l *Loader) NumReal() int { return l.sampler.NumReal() }
