package nn

import (
	"sync"

	"github.com/macdist/macdist/kernels"
)

// A slot holds its buffer for the life of its module, which is right for a
// forward output that Backward reads, but most other buffers of a step are
// dead long before it ends: an input gradient once the layer before has
// consumed it, a batch norm's output once the residual sum has read it.
// Kept in slots, ResNet-50's input gradients alone took as much memory as
// all its activations. Such buffers are lent instead, by a pool that each
// device has, and given back by the container that knows when they die
// (release): a few buffers then serve a whole backward pass in turn.
//
// The rule that keeps this safe: a module never gives back the dy its
// Backward was handed, nor the x its Forward was; the caller that made or
// received that tensor does, once, after the module that consumed it has
// returned, and not when the module passed its memory on as its own result
// (consumed). A Backward gives back only what it made inside itself.
//
// A lent buffer that nobody gives back stays with its borrower, which
// reuses it on its next call as a slot would; so a layer used on its own,
// whose caller knows nothing of pools, behaves as before. The pool only
// grows, and a steady-state step, which borrows and gives back in the same
// order every time, allocates nothing. Like a device's Workspace, its pool
// lasts as long as the process.

// loan is one buffer of a pool.
type loan struct {
	pool  *lender
	base  kernels.Buffer
	cap   int
	out   bool   // lent now
	lease uint64 // which borrowing, so that a borrower can tell whether it still holds the buffer
	views map[int]kernels.Buffer
}

// lender is the pool of one device.
type lender struct {
	dev   kernels.Device
	loans []*loan
	lease uint64
	hold  bool // release does nothing: every borrower keeps its buffer, as with slots (for A/B tests)
}

var (
	lendMu  sync.Mutex
	lenders = map[kernels.Device]*lender{}
	// lentBufs finds the loan of a tensor's Data (a base or a view), so
	// that release needs no device.
	lentBufs = map[kernels.Buffer]*loan{}
)

func lenderOf(dev kernels.Device) *lender {
	l, ok := lenders[dev]
	if !ok {
		l = &lender{dev: dev}
		lenders[dev] = l
	}
	return l
}

// borrow lends a buffer of at least n elements: the smallest free one that
// is large enough, or a new one. lendMu is held.
func (l *lender) borrow(n int) *loan {
	var best *loan
	for _, b := range l.loans {
		if !b.out && b.cap >= n && (best == nil || b.cap < best.cap) {
			best = b
		}
	}
	if best == nil {
		best = &loan{pool: l, base: l.dev.Alloc(n), cap: n, views: map[int]kernels.Buffer{}}
		lentBufs[best.base] = best
		l.loans = append(l.loans, best)
	}
	l.lease++
	best.out, best.lease = true, l.lease
	return best
}

// view returns the first n elements of b's buffer, made once per size.
func (b *loan) view(n int) kernels.Buffer {
	if n == b.cap {
		return b.base
	}
	v, ok := b.views[n]
	if !ok {
		v = b.pool.dev.View(b.base, 0, n)
		b.views[n] = v
		lentBufs[v] = b
	}
	return v
}

// lent is a tensor whose memory is borrowed from its device's pool: the
// counterpart of slot for buffers that die early (see release).
type lent struct {
	t     Tensor
	loan  *loan
	lease uint64
}

// ensure returns the tensor with the given shape, in NCHW, on memory that
// is the borrower's until someone releases it: the buffer it already holds
// if it still does and it is large enough, a borrowed one otherwise. Its
// contents are undefined.
func (s *lent) ensure(dev kernels.Device, shape []int) *Tensor {
	s.t.Layout = kernels.NCHW
	n := Numel(shape)
	lendMu.Lock()
	defer lendMu.Unlock()
	if s.loan == nil || !s.loan.out || s.loan.lease != s.lease || s.loan.cap < n || s.loan.pool.dev != dev {
		if s.loan != nil && s.loan.out && s.loan.lease == s.lease {
			s.loan.out = false // held but too small: give it back first
		}
		s.loan = lenderOf(dev).borrow(n)
		s.lease = s.loan.lease
	}
	s.t.Data = s.loan.view(n)
	if !s.t.SameShape(shape) {
		s.t.Shape = append([]int(nil), shape...)
	}
	return &s.t
}

// release gives t's memory back to its pool, if it is lent: whoever
// borrowed it must not read it again. It is for the caller that received t
// from a module and has passed it on to the module that consumes it.
func release(t *Tensor) {
	if t == nil || t.Data == nil {
		return
	}
	lendMu.Lock()
	if b := lentBufs[t.Data]; b != nil && !b.pool.hold {
		b.out = false
	}
	lendMu.Unlock()
}

// consumed releases dy, a tensor that a module's Backward took and that
// only that Backward was to read, unless the module passed it on as its
// result dx (an identity such as Flatten returns dy's memory).
func consumed(dy, dx *Tensor) {
	if dy != nil && (dx == nil || dx.Data != dy.Data) {
		release(dy)
	}
}

// LentBytes reports the memory, in bytes, that dev's pool of early-dying
// buffers holds, lent or not. It does not change in a steady state.
func LentBytes(dev kernels.Device) int64 {
	lendMu.Lock()
	defer lendMu.Unlock()
	var n int64
	if l := lenders[dev]; l != nil {
		for _, b := range l.loans {
			n += int64(b.cap) * 4
		}
	}
	return n
}
