package data

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
)

// ShardSet is one split of a shard directory: the shards in index order
// and the transform its samples get.
type ShardSet struct {
	dir    string
	ix     *ShardIndex
	shards []ShardEntry
	total  int
	eval   bool
	tf     *ImageFolder // the transform only: size, resize, augmentation, normalisation
	post   *recipe      // RandAugment, TrivialAugment, random erasing: nil for none
	desc   string
}

// WithRecipe returns the set with timm's per-sample transforms after the
// crop and flip, as NewAugmented adds them to an indexed dataset: the same
// code, drawing from the same generator right after the crop and flip. An
// evaluation set is returned unchanged, as Augmented leaves evaluation
// samples alone.
func (s *ShardSet) WithRecipe(auto *AutoAugment, erase RandomErasing) (*ShardSet, error) {
	r, err := newRecipe(auto, erase, s.tf.luts)
	if err != nil || s.eval {
		return s, err
	}
	c := *s
	if auto != nil || erase.P > 0 {
		c.post = r
	}
	return &c, nil
}

// transform decodes one sample's encoded image into dst with the split's
// transforms: what Get, then Augmented, do for an ImageFolder sample.
func (s *ShardSet) transform(enc []byte, dst []float32, rng *rand.Rand) error {
	if err := s.tf.transformEncoded(enc, dst, rng); err != nil {
		return err
	}
	if s.post != nil && rng != nil {
		s.post.apply(dst, 3, s.tf.size, s.tf.size, rng)
	}
	return nil
}

func (s *ShardSet) Shape() (c, h, w int) { return 3, s.tf.size, s.tf.size }
func (s *ShardSet) Classes() int         { return len(s.ix.Classes) }
func (s *ShardSet) Len() int             { return s.total }
func (s *ShardSet) String() string       { return s.desc }

// ClassNames returns the class names, index = label.
func (s *ShardSet) ClassNames() []string { return append([]string(nil), s.ix.Classes...) }

// OpenShards opens the shard directory dir (index.json written by
// WriteShards) as a training and an evaluation set.
func OpenShards(dir string, o Options) (train, eval *ShardSet, err error) {
	ix, err := ReadShardIndex(dir)
	if err != nil {
		return nil, nil, err
	}
	size := o.ImageSize
	if size <= 0 {
		size = ix.ImageSize
	}
	resize, luts, err := imageTransforms("shards", size, o)
	if err != nil {
		return nil, nil, err
	}
	// The same decoder as an ImageFolder's: libjpeg-turbo at a DCT scale
	// when it is there, so that a sample decodes to the same pixels either way.
	jpeg, err := defaultJPEG()
	if err != nil {
		return nil, nil, err
	}
	var scales []scaleFactor
	if jpeg == jpegTurbo {
		scales = turboFactors
	}
	mk := func(split string, shards []ShardEntry, aug Augment, eval bool) *ShardSet {
		s := &ShardSet{dir: dir, ix: ix, shards: shards, eval: eval,
			tf: &ImageFolder{classes: ix.Classes, size: size, resize: resize, augment: aug, luts: luts, scales: scales}}
		for _, e := range shards {
			s.total += e.Samples
		}
		s.desc = fmt.Sprintf("shards %s %s: %d images in %d shards, %d classes, 3x%dx%d", dir, split, s.total, len(shards), len(ix.Classes), size, size)
		return s
	}
	return mk("train", ix.Train, o.Augment, false), mk(ix.EvalSplit, ix.Eval, AugmentNone, true), nil
}

// StreamConfig configures a StreamLoader.
type StreamConfig struct {
	LoaderConfig
	// Readers is the number of sequential shard readers (each reads its own
	// shards, one sample at a time); 0 means 2.
	Readers int
	// ReadAhead is how many samples each reader may read ahead; 0 means 16.
	ReadAhead int
	// ShuffleBuffer is the size of the shuffle buffer of a training stream;
	// 0 means 1000, negative means no shuffle buffer.
	ShuffleBuffer int
	// SkipBad skips samples whose image cannot be decoded, replacing each
	// by a good sample of its batch, and counts them (Skipped), instead of
	// failing the epoch. A broken tar stream (a truncated shard, a member
	// that is not KEY.jpg/KEY.cls, a bad label) is an error either way: the
	// rank could not keep its count of samples in step with the others.
	SkipBad bool
}

// segment is a run of samples of one shard that a rank reads in an epoch.
type segment struct {
	shard       int
	skip, count int // samples to skip from the shard's start, then to read
}

// StreamLoader streams a ShardSet into batches, as Loader does a Dataset.
//
// Each epoch the shards are permuted from (Seed, epoch) (evaluation: index
// order) and their concatenation is cut into World equal ranges of
// floor(total/World) samples, one per rank (evaluation: ranges differ by at
// most one sample and the shorter ranks pad with one blank sample (zeros,
// label 0), so that
// NumReal counts every sample exactly once). A rank thus reads whole shards
// except at most one at each end of its range, which it shares with its
// neighbour (disjoint samples). The rank's segments are dealt round-robin
// to Readers sequential readers, whose samples are interleaved round-robin
// and mixed by a shuffle buffer drawn from (Seed, epoch, Rank). The
// batches are thus a function of (Seed, epoch, Rank, World, Readers,
// ShuffleBuffer), and every rank has the same number of steps, so that no
// rank waits in a collective for one that ran out.
type StreamLoader struct {
	set   *ShardSet
	cfg   StreamConfig
	chw   int
	per   int // samples per rank per epoch (NumSamples)
	slots []streamSlot
	ring
	skipped atomic.Int64
	bufs    sync.Pool // *[]byte: encoded samples, recycled once decoded

	// The producer's positions at batch boundaries (streamstate.go).
	snapMu sync.Mutex
	snaps  []*streamState
	spare  []*streamState
	taken  atomic.Int64 // batches the consumer has taken this epoch
}

type streamSlot struct {
	b       Batch
	x       []float32
	y       []int32
	index   []int
	enc     [][]byte
	buf     []*[]byte // enc's pooled buffers
	bad     []bool
	shard   []int   // where each sample is, for errors: shard index…
	offset  []int64 // …and byte offset
	pad     []bool  // evaluation padding: zeros, counted by no one
	pending atomic.Int32
	errMu   sync.Mutex
	err     error
}

// NewStreamLoader checks cfg and allocates the batch ring.
func NewStreamLoader(set *ShardSet, cfg StreamConfig) (*StreamLoader, error) {
	if cfg.World == 0 {
		cfg.World = 1
	}
	if cfg.BatchSize <= 0 {
		return nil, fmt.Errorf("data: loader batch size %d", cfg.BatchSize)
	}
	if cfg.Rank < 0 || cfg.Rank >= cfg.World {
		return nil, fmt.Errorf("data: stream rank %d of world size %d", cfg.Rank, cfg.World)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = max(2, cfg.Workers)
	}
	if cfg.Readers <= 0 {
		cfg.Readers = 2
	}
	if cfg.ReadAhead <= 0 {
		cfg.ReadAhead = 16
	}
	if cfg.ShuffleBuffer == 0 {
		cfg.ShuffleBuffer = 1000
	}
	if set.eval || !cfg.Shuffle {
		cfg.ShuffleBuffer = -1
	}
	l := &StreamLoader{set: set, cfg: cfg, ring: ring{what: "StreamLoader", held: -1}}
	c, h, w := set.Shape()
	l.chw = c * h * w
	if set.eval {
		l.per = (set.total + cfg.World - 1) / cfg.World
	} else {
		l.per = set.total / cfg.World
	}
	l.nb = l.per / cfg.BatchSize
	if !cfg.DropLastBatch && l.per%cfg.BatchSize != 0 {
		l.nb++
	}
	if set.total < cfg.World {
		return nil, fmt.Errorf("data: %s: %d samples for %d ranks", set.desc, set.total, cfg.World)
	}
	if l.nb == 0 {
		return nil, fmt.Errorf("data: %s: %d samples per rank make no batch of %d", set.desc, l.per, cfg.BatchSize)
	}
	l.slots = make([]streamSlot, cfg.Prefetch+1)
	l.batches = make([]*Batch, len(l.slots))
	for i := range l.slots {
		sl := &l.slots[i]
		l.batches[i] = &sl.b
		sl.x = make([]float32, cfg.BatchSize*l.chw)
		sl.y = make([]int32, cfg.BatchSize)
		sl.index = make([]int, cfg.BatchSize)
		sl.enc = make([][]byte, cfg.BatchSize)
		sl.buf = make([]*[]byte, cfg.BatchSize)
		sl.bad = make([]bool, cfg.BatchSize)
		sl.shard = make([]int, cfg.BatchSize)
		sl.offset = make([]int64, cfg.BatchSize)
		sl.pad = make([]bool, cfg.BatchSize)
	}
	return l, nil
}

// Len is the number of batches per epoch, the same on every rank.
func (l *StreamLoader) Len() int { return l.nb }

// NumSamples is how many samples the rank's epoch has (with evaluation
// padding); NumReal how many of them are not padding.
func (l *StreamLoader) NumSamples() int { return l.per }

// NumReal is the number of the rank's samples that are not padding: the
// first NumReal of an evaluation epoch. Summed over ranks it is the split's
// size for evaluation.
func (l *StreamLoader) NumReal() int {
	if !l.set.eval {
		return l.per
	}
	lo, hi := l.rankRange()
	return hi - lo
}

// Skipped is the number of bad samples skipped since the loader was made.
func (l *StreamLoader) Skipped() int64 { return l.skipped.Load() }

func (l *StreamLoader) rankRange() (lo, hi int) {
	n, w, r := l.set.total, l.cfg.World, l.cfg.Rank
	if l.set.eval {
		return r * n / w, (r + 1) * n / w
	}
	per := n / w
	return r * per, (r + 1) * per
}

// Segments returns the segments rank reads in epoch, in reading order
// before they are dealt to readers: exposed to tests through shardsOf.
func (l *StreamLoader) segments(epoch int) []segment {
	order := make([]int, len(l.set.shards))
	for i := range order {
		order[i] = i
	}
	if !l.set.eval && l.cfg.Shuffle {
		r := rand.New(rand.NewPCG(epochKey(tagShards, l.cfg.Seed, epoch), tagShards))
		r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	}
	lo, hi := l.rankRange()
	if k := l.copies(); k > 1 {
		// Repeated augmentation: the rank reads the head of its range and
		// emits each sample k times, so that the epoch keeps its length.
		hi = lo + (hi-lo+k-1)/k
	}
	var segs []segment
	pos := 0
	for _, k := range order {
		n := l.set.shards[k].Samples
		a, b := max(lo, pos), min(hi, pos+n)
		if a < b {
			segs = append(segs, segment{shard: k, skip: a - pos, count: b - a})
		}
		pos += n
	}
	return segs
}

// tagShards keys the per-epoch permutation of shards, tagShuffleBuf the shuffle
// buffer.
const (
	tagShards     uint64 = 0x5348415244533031 // "SHARDS01"
	tagShuffleBuf uint64 = 0x53484d4958303031 // "SHMIX001"
)

// Start begins streaming epoch from its first batch.
func (l *StreamLoader) Start(ctx context.Context, epoch int) error { return l.StartAt(ctx, epoch, 0) }

// StartAt begins streaming epoch from batch step. The samples before it
// are read again (in their order, so that the shuffle buffer holds what it
// held) but not decoded: the batches from step on are those of an
// uninterrupted epoch, bit for bit. StartFrom does the same from a
// recorded position without reading the epoch's head.
func (l *StreamLoader) StartAt(ctx context.Context, epoch, step int) error {
	if l.closed {
		return ErrClosed
	}
	return l.start(ctx, epoch, step, nil)
}

func (l *StreamLoader) start(ctx context.Context, epoch, step int, from *streamState) error {
	if step < 0 || step > l.nb {
		return fmt.Errorf("data: start at batch %d of an epoch of %d", step, l.nb)
	}
	l.stop()
	l.err = nil
	l.taken.Store(int64(step))
	l.resetSnapshots(from)
	k := len(l.slots)
	r := &epochRun{
		free: make(chan int, k), order: make(chan int, k), dones: make([]chan error, k),
		work: make(chan item, k*l.cfg.Workers), epoch: epoch, next: step,
	}
	r.ctx, r.cancel = context.WithCancel(ctx)
	for i := range k {
		r.free <- i
		r.dones[i] = make(chan error, 1)
	}
	l.run = r
	samples := make(chan streamItem, l.cfg.ReadAhead)
	r.wg.Add(2 + l.cfg.Workers)
	go l.produce(r, epoch, from, samples)
	go l.schedule(r, step, from != nil, samples)
	for range l.cfg.Workers {
		go l.decode(r)
	}
	return nil
}

type streamItem struct {
	s     shardSample
	after readerPos // its reader's position once it is taken
	err   error
}

// deal splits the rank's segments between the readers, round-robin.
func (l *StreamLoader) deal(segs []segment) [][]segment {
	nr := min(l.cfg.Readers, max(1, len(segs)))
	mine := make([][]segment, nr)
	for i, sg := range segs {
		mine[i%nr] = append(mine[i%nr], sg)
	}
	return mine
}

// produce runs the readers, interleaves them and mixes them through the
// shuffle buffer into out, which it closes at the end; from a recorded
// position when from is not nil.
func (l *StreamLoader) produce(r *epochRun, epoch int, from *streamState, out chan<- streamItem) {
	defer r.wg.Done()
	defer close(out)
	send := func(it streamItem) bool {
		select {
		case out <- it:
			return true
		case <-r.ctx.Done():
			return false
		}
	}
	mine := l.deal(l.segments(epoch))
	nr := len(mine)
	pos := make([]readerPos, nr)
	for w := range pos {
		pos[w] = readerPos{off: -1}
	}
	var pcg *rand.PCG
	var rng *rand.Rand
	var buf []held
	if l.cfg.ShuffleBuffer > 0 {
		pcg = rand.NewPCG(epochKey(tagShuffleBuf, l.cfg.Seed, epoch), uint64(l.cfg.Rank))
		rng = rand.New(pcg)
		buf = make([]held, 0, l.cfg.ShuffleBuffer)
	}
	copies := l.copies()
	var hand *held
	next, emitted := 0, 0
	if from != nil {
		copy(pos, from.pos)
		next, emitted = from.next, from.step*l.cfg.BatchSize
		var err error
		if pcg != nil {
			err = pcg.UnmarshalBinary(from.rng)
		}
		if err == nil {
			buf, hand, err = l.restoreBuffer(from, buf)
		}
		if err != nil {
			send(streamItem{err: fmt.Errorf("data: restoring the stream position: %w", err)})
			return
		}
	}
	ins := make([]chan streamItem, nr)
	var rwg sync.WaitGroup
	for w := range nr {
		ins[w] = make(chan streamItem, l.cfg.ReadAhead)
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			defer close(ins[w])
			l.read(r.ctx, mine[w], pos[w], ins[w])
		}()
	}
	defer rwg.Wait()
	// emit sends one sample, after recording the position when it
	// completes a batch: the consumer cannot hold the batch before its
	// position exists.
	emit := func(it streamItem) bool {
		emitted++
		if emitted%l.cfg.BatchSize == 0 {
			l.snapshot(epoch, emitted, func(s *streamState) {
				if pcg != nil {
					s.rng, _ = pcg.AppendBinary(s.rng)
				}
				s.next = next
				s.pos = append(s.pos, pos...)
				for _, h := range buf {
					s.buf = append(s.buf, sampleRef{shard: h.it.s.shard, off: h.it.s.offset, left: h.left})
				}
				if s.hasHand = hand != nil; s.hasHand {
					s.hand = sampleRef{shard: hand.it.s.shard, off: hand.it.s.offset, left: hand.left}
				}
			})
		}
		return send(it)
	}
	// take makes one copy of h: a fresh copy of its bytes while others are
	// still to go, its own buffer with the last.
	take := func(h *held) streamItem {
		it := h.it
		if h.left > 1 {
			it.s = l.dup(it.s)
		}
		h.left--
		return it
	}
	// place emits the sample in hand, or puts it in the shuffle buffer
	// once a place there has emitted its last copy.
	place := func() bool {
		if rng == nil {
			for hand != nil {
				it := take(hand)
				if hand.left == 0 {
					hand = nil
				}
				if !emit(it) {
					return false
				}
			}
			return true
		}
		if len(buf) < cap(buf) {
			buf = append(buf, *hand)
			hand = nil
			return true
		}
		for hand != nil {
			j := rng.IntN(len(buf))
			it := take(&buf[j])
			if buf[j].left == 0 {
				buf[j], hand = *hand, nil
			}
			if !emit(it) {
				return false
			}
		}
		return true
	}
	if hand != nil && !place() {
		return
	}
	for active := nr; active > 0; {
		w := next
		next = (w + 1) % nr
		if ins[w] == nil {
			continue
		}
		var it streamItem
		var ok bool
		select {
		case it, ok = <-ins[w]:
		case <-r.ctx.Done():
			return
		}
		if !ok {
			ins[w] = nil
			active--
			continue
		}
		if it.err != nil {
			send(it)
			return
		}
		pos[w] = it.after
		hand = &held{it: it, left: copies}
		if !place() {
			return
		}
	}
	next = 0
	for len(buf) > 0 {
		j := rng.IntN(len(buf))
		it := take(&buf[j])
		if buf[j].left == 0 {
			buf[j] = buf[len(buf)-1]
			buf = buf[:len(buf)-1]
		}
		if !emit(it) {
			return
		}
	}
}

// restoreBuffer reads back the samples of a recorded shuffle buffer and
// hand, in their order.
func (l *StreamLoader) restoreBuffer(from *streamState, buf []held) ([]held, *held, error) {
	rr := &rereader{l: l, files: map[int]*os.File{}}
	defer rr.close()
	for _, ref := range from.buf {
		s, err := rr.read(ref)
		if err != nil {
			return buf, nil, err
		}
		buf = append(buf, held{it: streamItem{s: s}, left: ref.left})
	}
	if !from.hasHand {
		return buf, nil, nil
	}
	s, err := rr.read(from.hand)
	if err != nil {
		return buf, nil, err
	}
	return buf, &held{it: streamItem{s: s}, left: from.hand.left}, nil
}

// held is a sample in the shuffle buffer (or in hand) and how many of its
// copies are still to be emitted.
type held struct {
	it   streamItem
	left int
}

// copies is how many times the training stream emits each sample it
// reads: Repeats, for repeated augmentation.
func (l *StreamLoader) copies() int {
	if l.set.eval || l.cfg.Repeats <= 1 {
		return 1
	}
	return l.cfg.Repeats
}

// pooled returns a buffer for a sample's bytes from l's pool.
func (l *StreamLoader) pooled() *[]byte {
	if bp, _ := l.bufs.Get().(*[]byte); bp != nil {
		return bp
	}
	return new([]byte)
}

// dup copies a sample's bytes into a buffer of the pool: each copy is
// decoded, and its buffer recycled, on its own.
func (l *StreamLoader) dup(s shardSample) shardSample {
	bp := l.pooled()
	*bp = append((*bp)[:0], s.enc...)
	s.enc, s.buf = *bp, bp
	return s
}

// read is one sequential reader over its segments, from start.
func (l *StreamLoader) read(ctx context.Context, segs []segment, start readerPos, out chan<- streamItem) {
	send := func(it streamItem) bool {
		select {
		case out <- it:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for si := start.seg; si < len(segs); si++ {
		sg := segs[si]
		skip, count, off := sg.skip, sg.count, int64(0)
		if si == start.seg && start.off >= 0 {
			skip, count, off = 0, start.left, start.off
		}
		path := filepath.Join(l.set.dir, l.set.shards[sg.shard].File)
		sr, err := openShardAt(path, sg.shard, l.set.Classes(), off)
		if err != nil {
			send(streamItem{err: err})
			return
		}
		got := 0
		for i := 0; got < count; i++ {
			bp := l.pooled()
			s, err := sr.read(*bp)
			if err == nil && i < skip {
				l.bufs.Put(bp)
				continue
			}
			if err == nil {
				*bp = s.enc[:cap(s.enc)]
				s.buf = bp
			}
			if err == io.EOF {
				err = &ShardError{Shard: path, Offset: sr.cr.n, Err: fmt.Errorf("shard ends after %d samples; the index says %d", skip+got, l.set.shards[sg.shard].Samples)}
			}
			if err != nil {
				sr.Close()
				send(streamItem{err: err})
				return
			}
			got++
			after := readerPos{seg: si + 1, off: -1}
			if got < count {
				after = readerPos{seg: si, left: count - got, off: sr.nextOffset()}
			}
			if !send(streamItem{s: s, after: after}) {
				sr.Close()
				return
			}
		}
		sr.Close()
	}
}

// schedule groups the stream into batches and hands them to the decoders,
// dropping (undecoded) the batches before step, or, restored from a
// position, starting after them.
func (l *StreamLoader) schedule(r *epochRun, step int, restored bool, in <-chan streamItem) {
	defer r.wg.Done()
	defer close(r.work)
	bs := l.cfg.BatchSize
	chunk := max(1, (bs+l.cfg.Workers-1)/l.cfg.Workers)
	pos := 0 // sample position within the rank's epoch
	real := l.NumReal()
	for b := 0; b < l.nb; b++ {
		n := min(bs, l.per-b*bs)
		if b < step && restored { // the stream starts after these
			pos += n
			continue
		}
		var s int
		if b >= step {
			select {
			case s = <-r.free:
			case <-r.ctx.Done():
				return
			}
		}
		sl := &l.slots[s]
		for j := range n {
			var it streamItem
			if pos < real {
				var ok bool
				select {
				case it, ok = <-in:
				case <-r.ctx.Done():
					return
				}
				if !ok {
					it.err = fmt.Errorf("data: %s: shard stream ended after %d of %d samples", l.set.desc, pos, real)
				}
			}
			if it.err != nil {
				if b < step {
					select {
					case s = <-r.free:
					case <-r.ctx.Done():
						return
					}
					sl = &l.slots[s]
				}
				sl.b = Batch{Epoch: r.epoch, Step: b}
				sl.err = fmt.Errorf("data: epoch %d, batch %d: %w", r.epoch, b, it.err)
				sl.pending.Store(0)
				r.order <- s
				r.dones[s] <- sl.err
				return
			}
			if b >= step {
				sl.enc[j], sl.buf[j] = it.s.enc, it.s.buf
				sl.y[j] = int32(it.s.label)
				sl.index[j] = pos
				sl.bad[j] = false
				sl.pad[j] = pos >= real
				sl.shard[j], sl.offset[j] = it.s.shard, it.s.offset
			}
			pos++
		}
		if b < step {
			continue
		}
		sl.b = Batch{X: sl.x[:n*l.chw], Y: sl.y[:n], Index: sl.index[:n], N: n, C: 3, H: l.set.tf.size, W: l.set.tf.size, Epoch: r.epoch, Step: b}
		sl.err = nil
		sl.pending.Store(int32((n + chunk - 1) / chunk))
		r.order <- s
		for i := 0; i < n; i += chunk {
			select {
			case r.work <- item{s, i, min(i+chunk, n)}:
			case <-r.ctx.Done():
				return
			}
		}
	}
}

// decode is a worker: it decodes the samples of the items it receives.
// A sample's augmentation is keyed by (Seed, epoch, Rank, position).
func (l *StreamLoader) decode(r *epochRun) {
	defer r.wg.Done()
	pcg := new(rand.PCG)
	rng := rand.New(pcg)
	if l.cfg.NoAugment || l.set.eval {
		rng = nil
	}
	ek := mix64(epochKey(tagAugment, l.cfg.Seed, r.epoch) ^ uint64(l.cfg.Rank)*golden)
	for {
		it, ok := r.nextItem()
		if !ok {
			return
		}
		sl := &l.slots[it.slot]
		for j := it.lo; j < it.hi; j++ {
			x := sl.x[j*l.chw : (j+1)*l.chw]
			if sl.pad[j] {
				clear(x)
				sl.y[j] = 0
				continue
			}
			if sl.bad[j] {
				continue
			}
			seedSample(pcg, ek, sl.index[j])
			err := l.set.transform(sl.enc[j], x, rng)
			if sl.buf[j] != nil {
				l.bufs.Put(sl.buf[j])
			}
			sl.enc[j], sl.buf[j] = nil, nil
			if err != nil && l.cfg.SkipBad {
				l.skipped.Add(1)
				sl.bad[j] = true
				continue
			}
			if err != nil {
				sl.errMu.Lock()
				if sl.err == nil {
					sl.err = fmt.Errorf("data: epoch %d, batch %d: %w", r.epoch, sl.b.Step,
						&ShardError{Shard: filepath.Join(l.set.dir, l.set.shards[sl.shard[j]].File), Offset: sl.offset[j], Err: err})
				}
				sl.errMu.Unlock()
				break
			}
		}
		if sl.pending.Add(-1) == 0 {
			sl.errMu.Lock()
			err := sl.err
			sl.errMu.Unlock()
			if err == nil {
				err = l.fillBad(sl)
			}
			r.dones[it.slot] <- err
		}
	}
}

// fillBad replaces skipped samples by the nearest good sample before them
// in the batch (or after, for the first), so that the batch keeps its size.
func (l *StreamLoader) fillBad(sl *streamSlot) error {
	n := sl.b.N
	good := -1
	for j := range n {
		if !sl.bad[j] && !sl.pad[j] {
			good = j
			break
		}
	}
	if good < 0 {
		for j := range n {
			if sl.bad[j] {
				return fmt.Errorf("data: epoch %d, batch %d: every sample is bad", sl.b.Epoch, sl.b.Step)
			}
		}
		return nil
	}
	for j := range n {
		if sl.bad[j] {
			copy(sl.x[j*l.chw:(j+1)*l.chw], sl.x[good*l.chw:(good+1)*l.chw])
			sl.y[j] = sl.y[good]
		} else if !sl.pad[j] {
			good = j
		}
	}
	return nil
}

// Next returns the epoch's next batch, releasing the previous one, or
// io.EOF at the end of the epoch.
func (l *StreamLoader) Next() (*Batch, error) {
	b, err := l.next()
	if err == nil {
		l.taken.Store(int64(l.run.next))
	}
	return b, err
}
