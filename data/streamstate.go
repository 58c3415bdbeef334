package data

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// A stream's position mid-epoch, for checkpoints: where each reader stands
// (segment, samples left in it, byte offset of its next sample), the
// samples in the shuffle buffer as (shard, offset) references with the
// copies each has still to emit, the sample taken from a reader but not yet
// placed (the "hand"), the shuffle generator's state and the reader the
// round-robin takes from next. Restoring it seeks each reader to its offset
// and reads back only the buffered samples, instead of the epoch's head:
// the producer then continues exactly where it stood.
//
// The producer records the position at every batch boundary it passes,
// before it sends the sample that completes the batch, so the position
// for a batch the consumer holds is always there; positions the consumer
// is past are dropped and their memory reused.

// readerPos is where a reader stands: in its seg-th segment, left samples
// still to read from byte offset off; off −1 means the segment is not
// started (its skip samples come first).
type readerPos struct {
	seg, left int
	off       int64
}

// sampleRef names a sample by where it is, and how many of its copies are
// still to be emitted.
type sampleRef struct {
	shard int
	off   int64
	left  int
}

// streamState is a producer's position after step·BatchSize emissions of
// an epoch.
type streamState struct {
	// What the position is valid for; checked on restore.
	epoch, step, rank, world     int
	readers, shuffle, copies, bs int
	seed                         uint64
	shards                       int

	rng     []byte // shuffle generator (PCG), empty without a buffer
	next    int    // the reader the round-robin takes from next
	pos     []readerPos
	buf     []sampleRef
	hand    sampleRef
	hasHand bool
}

const streamStateMagic = "macdist stream 1\n"

// marshal encodes s: the magic, varints, and a CRC-32 of all before it, so
// that a truncated or damaged state is recognised as such.
func (s *streamState) marshal() []byte {
	b := []byte(streamStateMagic)
	u := func(v uint64) { b = binary.AppendUvarint(b, v) }
	i := func(v int64) { b = binary.AppendVarint(b, v) }
	for _, v := range []int{s.epoch, s.step, s.rank, s.world, s.readers, s.shuffle, s.copies, s.bs, s.shards} {
		i(int64(v))
	}
	u(s.seed)
	u(uint64(len(s.rng)))
	b = append(b, s.rng...)
	i(int64(s.next))
	u(uint64(len(s.pos)))
	for _, p := range s.pos {
		i(int64(p.seg))
		i(int64(p.left))
		i(p.off)
	}
	ref := func(r sampleRef) {
		i(int64(r.shard))
		i(r.off)
		i(int64(r.left))
	}
	if s.hasHand {
		u(1)
		ref(s.hand)
	} else {
		u(0)
	}
	u(uint64(len(s.buf)))
	for _, r := range s.buf {
		ref(r)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

var errStateTruncated = errors.New("truncated")

// unmarshalStreamState decodes what marshal wrote. It checks the form
// only; restore checks the content against the loader.
func unmarshalStreamState(b []byte) (*streamState, error) {
	fail := func(err error) (*streamState, error) {
		return nil, fmt.Errorf("data: stream state of %d bytes: %w", len(b), err)
	}
	if !strings.HasPrefix(string(b), streamStateMagic) {
		if len(b) > 0 && strings.HasPrefix(streamStateMagic, string(b)) {
			return fail(errStateTruncated)
		}
		return fail(errors.New("not a stream position (bad magic)"))
	}
	if len(b) < len(streamStateMagic)+4 {
		return fail(errStateTruncated)
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return fail(errors.New("checksum mismatch: truncated or corrupt"))
	}
	d := body[len(streamStateMagic):]
	var err error
	u := func() uint64 {
		v, n := binary.Uvarint(d)
		if n <= 0 {
			err = errStateTruncated
			d = nil
			return 0
		}
		d = d[n:]
		return v
	}
	// A signed field is binary.PutVarint's zig-zag of it.
	i := func() int64 {
		ux := u()
		x := int64(ux >> 1)
		if ux&1 != 0 {
			x = ^x
		}
		return x
	}
	// count reads a length, bounded by what the remaining bytes can hold
	// (each element takes at least one byte per field), so that a damaged
	// length cannot ask for a huge allocation.
	count := func(fields int) int {
		n := u()
		if n > uint64(len(d)/fields) {
			err = errStateTruncated
			return 0
		}
		return int(n)
	}
	s := &streamState{}
	for _, p := range []*int{&s.epoch, &s.step, &s.rank, &s.world, &s.readers, &s.shuffle, &s.copies, &s.bs, &s.shards} {
		*p = int(i())
	}
	s.seed = u()
	n := count(1)
	if err == nil {
		s.rng, d = append([]byte(nil), d[:n]...), d[n:]
	}
	s.next = int(i())
	s.pos = make([]readerPos, count(3))
	for k := range s.pos {
		s.pos[k] = readerPos{seg: int(i()), left: int(i()), off: i()}
	}
	ref := func() sampleRef { return sampleRef{shard: int(i()), off: i(), left: int(i())} }
	switch u() {
	case 0:
	case 1:
		s.hasHand, s.hand = true, ref()
	default:
		err = errors.New("bad field")
	}
	s.buf = make([]sampleRef, count(3))
	for k := range s.buf {
		s.buf[k] = ref()
	}
	if err == nil && len(d) != 0 {
		err = fmt.Errorf("%d bytes left over", len(d))
	}
	if err != nil {
		return fail(err)
	}
	return s, nil
}

// check says whether s is a position of this loader's epoch at step, and
// whether its contents fit the epoch's segments.
func (l *StreamLoader) check(s *streamState, epoch, step int, segs [][]segment) error {
	c := l.cfg
	if s.world != c.World {
		return fmt.Errorf("%w: the position was saved by a world of %d ranks, this one has %d", ErrStreamWorldChanged, s.world, c.World)
	}
	for _, m := range []struct {
		what      string
		got, want int
	}{
		{"epoch", s.epoch, epoch}, {"batch", s.step, step}, {"rank", s.rank, c.Rank},
		{"readers", s.readers, c.Readers}, {"shuffle buffer", s.shuffle, c.ShuffleBuffer}, {"repeats", s.copies, l.copies()},
		{"batch size", s.bs, c.BatchSize}, {"shards", s.shards, len(l.set.shards)},
	} {
		if m.got != m.want {
			return fmt.Errorf("data: stream state is for %s %d, not %d", m.what, m.got, m.want)
		}
	}
	if s.seed != c.Seed {
		return fmt.Errorf("data: stream state is for seed %d, not %d", s.seed, c.Seed)
	}
	if (len(s.rng) > 0) != (c.ShuffleBuffer > 0) {
		return errors.New("data: stream state: shuffle generator state present without a shuffle buffer, or missing with one")
	}
	if len(s.pos) != len(segs) || s.next < 0 || s.next >= max(1, len(segs)) {
		return fmt.Errorf("data: stream state: %d readers, next %d; the epoch has %d", len(s.pos), s.next, len(segs))
	}
	for w, p := range s.pos {
		if p.seg < 0 || p.seg > len(segs[w]) || p.left < 0 || p.off < -1 || p.off > 0 && p.off%512 != 0 ||
			p.seg < len(segs[w]) && p.left > segs[w][p.seg].count || p.off >= 0 && p.left == 0 {
			return fmt.Errorf("data: stream state: reader %d at segment %d, %d samples left, offset %d: not a position of this epoch", w, p.seg, p.left, p.off)
		}
	}
	if c.ShuffleBuffer > 0 && len(s.buf) > c.ShuffleBuffer || c.ShuffleBuffer <= 0 && len(s.buf) > 0 {
		return fmt.Errorf("data: stream state: %d buffered samples for a shuffle buffer of %d", len(s.buf), c.ShuffleBuffer)
	}
	refs := s.buf
	if s.hasHand {
		refs = append(refs[:len(refs):len(refs)], s.hand)
	}
	for _, r := range refs {
		if r.shard < 0 || r.shard >= len(l.set.shards) || r.off < 0 || r.off%512 != 0 || r.left < 1 || r.left > l.copies() {
			return fmt.Errorf("data: stream state: buffered sample at shard %d, offset %d, %d copies left: not a sample of this set", r.shard, r.off, r.left)
		}
	}
	return nil
}

// State returns the stream's position after the first step batches of
// epoch, the epoch running, for StartFrom to resume from: nil at the
// epoch's start or end, where StartAt needs nothing. step is at most one
// behind the batches taken with Next, as a trainer checkpointing after
// each step asks for it.
func (l *StreamLoader) State(epoch, step int) ([]byte, error) {
	if step <= 0 || step >= l.nb || l.set.eval {
		return nil, nil
	}
	if l.run == nil || l.run.epoch != epoch {
		return nil, fmt.Errorf("data: StreamLoader.State of epoch %d, which is not running", epoch)
	}
	// The producer runs ahead of the consumer and may have recorded later
	// positions already; a checkpoint of a batch not yet trained on would
	// skip samples on resume.
	if taken := int(l.taken.Load()); step > taken {
		return nil, fmt.Errorf("data: no stream position for batch %d of epoch %d: only %d batches were taken", step, epoch, taken)
	}
	l.snapMu.Lock()
	defer l.snapMu.Unlock()
	for _, s := range l.snaps {
		if s.step == step && s.epoch == l.run.epoch {
			return s.marshal(), nil
		}
	}
	return nil, fmt.Errorf("data: no stream position for batch %d of epoch %d (batches taken: %d)", step, l.run.epoch, l.run.next)
}

// ErrStreamWorldChanged is StartFrom's answer to a position saved by a run
// of another world size, as after an elastic launch re-forms with more or
// fewer nodes: the epoch's shards are dealt to the ranks anew, so the saved
// readers' places mean nothing to the new ranks, and the caller resumes with
// StartAt instead.
var ErrStreamWorldChanged = errors.New("data: the world size changed since the stream position was saved")

// StartFrom is StartAt(ctx, epoch, step) from a position State returned
// at that step: the readers seek to where they stood and only the
// buffered samples are read again. A state that is damaged, or of another
// epoch, step or configuration, is an error.
func (l *StreamLoader) StartFrom(ctx context.Context, epoch, step int, state []byte) error {
	if l.closed {
		return ErrClosed
	}
	s, err := unmarshalStreamState(state)
	if err != nil {
		return err
	}
	if l.set.eval {
		return errors.New("data: an evaluation stream has no position to restore")
	}
	if err := l.check(s, epoch, step, l.deal(l.segments(epoch))); err != nil {
		return err
	}
	return l.start(ctx, epoch, step, s)
}

// snapshot records the producer's position after emitted samples, reusing
// the memory of positions the consumer is past.
func (l *StreamLoader) snapshot(epoch, emitted int, fill func(*streamState)) {
	step := emitted / l.cfg.BatchSize
	if step <= 0 || step >= l.nb || l.set.eval {
		return
	}
	done := int(l.taken.Load()) - 1 // a checkpoint asks for at most one batch behind Next
	l.snapMu.Lock()
	defer l.snapMu.Unlock()
	keep := l.snaps[:0]
	for _, s := range l.snaps {
		if s.epoch == epoch && s.step >= done {
			keep = append(keep, s)
		} else {
			l.spare = append(l.spare, s)
		}
	}
	l.snaps = keep
	var s *streamState
	if n := len(l.spare); n > 0 {
		s, l.spare = l.spare[n-1], l.spare[:n-1]
	} else {
		s = new(streamState)
	}
	c := l.cfg
	*s = streamState{
		epoch: epoch, step: step, rank: c.Rank, world: c.World, readers: c.Readers, shuffle: c.ShuffleBuffer,
		copies: l.copies(), bs: c.BatchSize, seed: c.Seed, shards: len(l.set.shards),
		rng: s.rng[:0], pos: s.pos[:0], buf: s.buf[:0],
	}
	fill(s)
	l.snaps = append(l.snaps, s)
}

// resetSnapshots forgets the positions of an earlier run; a restored
// position is the first of the new one.
func (l *StreamLoader) resetSnapshots(from *streamState) {
	l.snapMu.Lock()
	defer l.snapMu.Unlock()
	l.spare = append(l.spare, l.snaps...)
	l.snaps = l.snaps[:0]
	if from != nil {
		l.snaps = append(l.snaps, from)
	}
}

// rereader reads single samples at recorded offsets, for restoring the
// shuffle buffer: one open file per shard and one read buffer.
type rereader struct {
	l     *StreamLoader
	files map[int]*os.File
	br    *bufio.Reader
}

func (rr *rereader) close() {
	for _, f := range rr.files {
		f.Close()
	}
}

// read reads the sample whose first header is at ref's offset.
func (rr *rereader) read(ref sampleRef) (shardSample, error) {
	path := filepath.Join(rr.l.set.dir, rr.l.set.shards[ref.shard].File)
	f := rr.files[ref.shard]
	if f == nil {
		var err error
		if f, err = os.Open(path); err != nil {
			return shardSample{}, &ShardError{Shard: path, Err: err}
		}
		rr.files[ref.shard] = f
	}
	if rr.br == nil {
		rr.br = bufio.NewReaderSize(nil, 64<<10)
	}
	rr.br.Reset(io.NewSectionReader(f, ref.off, 1<<62))
	cr := &countingReader{r: rr.br, n: ref.off}
	sr := &shardReader{name: path, shard: ref.shard, classes: rr.l.set.Classes(), cr: cr, tr: tar.NewReader(cr), maxLen: maxMemberBytes}
	bp := rr.l.pooled()
	s, err := sr.read(*bp)
	if err == io.EOF {
		err = &ShardError{Shard: path, Offset: ref.off, Err: errors.New("no sample at this offset (the stream state does not fit the shard)")}
	}
	if err != nil {
		rr.l.bufs.Put(bp)
		return shardSample{}, err
	}
	*bp = s.enc[:cap(s.enc)]
	s.buf = bp
	return s, nil
}
