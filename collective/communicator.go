package collective

import (
	"context"
	"errors"
	"fmt"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
)

// Op is the reduction an AllReduce applies.
type Op uint8

const (
	// Sum leaves the element-wise sum over ranks in every rank's buffer.
	Sum Op = iota
	// Avg leaves the sum divided by the number of ranks.
	Avg
)

func (o Op) String() string {
	switch o {
	case Sum:
		return "sum"
	case Avg:
		return "avg"
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// Communicator is one rank's handle on a group of ranks that run collectives
// together. Every rank must issue the same collectives, with buffers of the
// same length, in the same order: the communicator checks this and fails
// with an error naming both sides when a neighbour disagrees.
//
// Collective calls are not meant to be made from several goroutines at once
// (they are serialised if they are, which on different ranks may mean a
// different order). Abort and Close may be called from any goroutine at any
// time.
//
// After any error, the communicator is broken: every later call returns an
// error too. A rank recovers by building a new communicator (the next
// generation), as the elastic supervisor does.
type Communicator interface {
	// Rank is this rank's index in [0, Size).
	Rank() int
	// Size is the number of ranks.
	Size() int
	// AllReduce replaces buf on every rank with the reduction over ranks of
	// buf. Every rank ends with bit-identical contents.
	AllReduce(ctx context.Context, buf kernels.Buffer, op Op) error
	// Broadcast copies root's buf into every other rank's buf.
	Broadcast(ctx context.Context, buf kernels.Buffer, root int) error
	// Barrier returns once every rank has entered it.
	Barrier(ctx context.Context) error
	// Abort breaks the communicator: every call blocked in it on this rank
	// returns an error wrapping err (ErrAborted when err is nil), as does
	// every later call. Peers that are in a collective with this rank
	// fail soon after, because their connections to it close. Only the
	// first Abort counts; later ones are no-ops.
	Abort(err error)
	// Close aborts with ErrClosed if nothing failed before, and releases
	// the communicator's connections and goroutines.
	Close() error
}

var (
	// ErrAborted is the cause of calls failing after Abort(nil).
	ErrAborted = errors.New("collective: aborted")
	// ErrClosed is the cause of calls failing after Close.
	ErrClosed = errors.New("collective: communicator closed")
	// ErrMismatch is wrapped by the error of a collective whose neighbour
	// issued a different one (another kind, length, root or sequence number).
	ErrMismatch = errors.New("collective: ranks issued different collectives")
)

// host gives the memory of Buffers as []float32. Buffers of a cpu Device
// (dev nil or a *cpu.Device) are used in place. Buffers of any other device
// are staged: downloaded into a host buffer that is kept and grown, never
// shrunk, so that steady-state calls with the same sizes allocate nothing,
// and uploaded back by done. Staging costs two device↔host copies per call;
// a communicator native to the device (NCCL) avoids them.
type host struct {
	dev     kernels.Device // nil for cpu buffers
	scratch []float32
}

func newHost(dev kernels.Device) host {
	if _, ok := dev.(*cpu.Device); ok {
		dev = nil
	}
	return host{dev: dev}
}

// get returns buf's elements, to be read and written by the collective.
// download is false when the current contents do not matter (Broadcast on a
// non-root rank).
func (h *host) get(buf kernels.Buffer, download bool) []float32 {
	if h.dev == nil {
		return cpu.Data(buf)
	}
	n := buf.Len()
	if cap(h.scratch) < n {
		h.scratch = make([]float32, n)
	}
	s := h.scratch[:n]
	if download {
		h.dev.Download(s, buf)
	}
	return s
}

// put writes the result back to buf when it was staged.
func (h *host) put(buf kernels.Buffer, s []float32) {
	if h.dev != nil {
		h.dev.Upload(buf, s)
	}
}

// segment is the part [off, off+n) of a buffer of length total that rank
// (or ring segment) i of size ranks is responsible for: the first total%size
// segments have one element more, so that sizes smaller than the number of
// ranks and odd sizes need no padding.
func segment(total, size, i int) (off, n int) {
	q, r := total/size, total%size
	if i < r {
		return i * (q + 1), q + 1
	}
	return r*(q+1) + (i-r)*q, q
}

// mod is a modulo whose result is never negative, for ring arithmetic.
func mod(a, m int) int {
	a %= m
	if a < 0 {
		a += m
	}
	return a
}
