package collective

import (
	"context"
	"fmt"
	"sync"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
)

// NewLocal returns the n ranks of an in-process group: goroutines of one
// process that share memory, for tests and for single-process multi-replica
// runs. Buffers must belong to a cpu Device.
//
// A Local group behaves as a ring would: AllReduce sums each element in the
// ring's order (so both give the same bits for the same inputs), a
// mismatched collective is an error wrapping ErrMismatch on every rank, and
// Abort or Close on any rank breaks the whole group, as closing a ring
// rank's connections breaks its ring. Local has no timeout of its own: a
// rank that never arrives blocks the others until their context ends.
func NewLocal(n int) []Communicator {
	if n < 1 {
		panic(fmt.Sprintf("collective: NewLocal(%d): need at least one rank", n))
	}
	g := &localGroup{
		n:       n,
		release: make(chan struct{}),
		aborted: make(chan struct{}),
		slots:   make([]localSlot, n),
		partial: make([][]float32, n),
	}
	cs := make([]Communicator, n)
	for r := range cs {
		cs[r] = &Local{g: g, rank: r}
	}
	return cs
}

// Local is one rank of a group made by NewLocal.
type Local struct {
	g    *localGroup
	rank int
	mu   sync.Mutex // serialises this rank's collectives
	seq  uint64
	own  []float32 // this rank's reduced segment, read by the others
}

type localGroup struct {
	n int

	mu      sync.Mutex
	arrived int
	release chan struct{} // closed when the current phase is complete

	aborted   chan struct{}
	abortOnce sync.Once
	cause     error // set before aborted is closed

	slots   []localSlot // what each rank called, for the mismatch check
	partial [][]float32 // each rank's reduced segment during AllReduce
}

type localSlot struct {
	h    header
	data []float32
}

// Rank is this rank's index.
func (l *Local) Rank() int { return l.rank }

// Size is the number of ranks in the group.
func (l *Local) Size() int { return l.g.n }

// Abort breaks the whole group.
func (l *Local) Abort(err error) {
	if err == nil {
		err = ErrAborted
	}
	l.g.abort(err)
}

// Close breaks the whole group with ErrClosed, unless it failed before.
func (l *Local) Close() error {
	l.g.abort(ErrClosed)
	return nil
}

func (g *localGroup) abort(err error) {
	g.abortOnce.Do(func() {
		g.cause = err
		close(g.aborted)
	})
}

// arrive waits until every rank has arrived at the same phase.
func (g *localGroup) arrive(ctx context.Context) error {
	select {
	case <-g.aborted:
		return g.cause
	default:
	}
	g.mu.Lock()
	ch := g.release
	g.arrived++
	if g.arrived == g.n {
		g.arrived = 0
		g.release = make(chan struct{})
		close(ch)
	}
	g.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-g.aborted:
		return g.cause
	case <-ctx.Done():
		g.abort(fmt.Errorf("context ended: %w", ctx.Err()))
		return g.cause
	}
}

// enter publishes this rank's call, waits for all ranks and checks that
// they called the same collective.
func (l *Local) enter(ctx context.Context, h header, data []float32) error {
	g := l.g
	g.slots[l.rank] = localSlot{h: h, data: data}
	if err := g.arrive(ctx); err != nil {
		return err
	}
	for r := range g.slots {
		if o := g.slots[r].h; o != h {
			err := fmt.Errorf("%w: rank %d issued %v while rank %d issued %v", ErrMismatch, r, o, l.rank, h)
			g.abort(err)
			return err
		}
	}
	return nil
}

func (l *Local) fail(h header, err error) error {
	return fmt.Errorf("collective: local rank %d/%d: %v: %w", l.rank, l.g.n, h, err)
}

// AllReduce reduces buf over the group; rank r sums segment r of the buffer
// in ring order, then every rank copies every segment.
func (l *Local) AllReduce(ctx context.Context, buf kernels.Buffer, op Op) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	data := cpu.Data(buf)
	h := header{kind: kindAllReduce, op: op, seq: l.seq, n: uint64(len(data))}
	l.seq++
	if op != Sum && op != Avg {
		err := fmt.Errorf("unknown op %v", op)
		l.g.abort(err)
		return l.fail(h, err)
	}
	if err := l.enter(ctx, h, data); err != nil {
		return l.fail(h, err)
	}
	g := l.g
	off, n := segment(len(data), g.n, l.rank)
	if cap(l.own) < n {
		l.own = make([]float32, n)
	}
	own := l.own[:n]
	// Segment s of the ring starts at rank s and is passed round in rank
	// order, each rank adding its own value to what it received.
	copy(own, g.slots[l.rank].data[off:off+n])
	for i := 1; i < g.n; i++ {
		cpu.AddTo(own, g.slots[mod(l.rank+i, g.n)].data[off:off+n])
	}
	if op == Avg && g.n > 1 {
		div(own, float32(g.n))
	}
	g.partial[l.rank] = own
	if err := g.arrive(ctx); err != nil {
		return l.fail(h, err)
	}
	for r := 0; r < g.n; r++ {
		off, n := segment(len(data), g.n, r)
		copy(data[off:off+n], g.partial[r])
	}
	// No wait here: nobody touches the partial sums or the data again
	// before every rank has arrived at the next collective.
	return nil
}

// Broadcast copies root's buffer into every rank's.
func (l *Local) Broadcast(ctx context.Context, buf kernels.Buffer, root int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	data := cpu.Data(buf)
	h := header{kind: kindBroadcast, root: uint32(root), seq: l.seq, n: uint64(len(data))}
	l.seq++
	if root < 0 || root >= l.g.n {
		err := fmt.Errorf("root %d outside [0, %d)", root, l.g.n)
		l.g.abort(err)
		return l.fail(h, err)
	}
	if err := l.enter(ctx, h, data); err != nil {
		return l.fail(h, err)
	}
	if l.rank != root {
		copy(data, l.g.slots[root].data)
	}
	// The root must not return (and let its caller change the buffer)
	// before every rank has copied it.
	if err := l.g.arrive(ctx); err != nil {
		return l.fail(h, err)
	}
	return nil
}

// Barrier returns once every rank has entered it.
func (l *Local) Barrier(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := header{kind: kindBarrier, seq: l.seq}
	l.seq++
	if err := l.enter(ctx, h, nil); err != nil {
		return l.fail(h, err)
	}
	// A second phase, so that no rank publishes its next call while
	// another is still checking this one.
	if err := l.g.arrive(ctx); err != nil {
		return l.fail(h, err)
	}
	return nil
}
