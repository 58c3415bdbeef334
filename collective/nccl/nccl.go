package nccl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/macdist/macdist/collective"
	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cuda"
)

// IDBytes is the size of an NCCL unique id (NCCL_UNIQUE_ID_BYTES).
const IDBytes = 128

// DefaultTimeout bounds each collective, and the set-up, when New is given
// no timeout: the ring's default, for the same reasons (see collective).
const DefaultTimeout = 60 * time.Second

// minVersion is the first NCCL with ncclCommInitRankConfig and
// non-blocking communicators; ncclAvg is older (2.10).
const minVersion = 21400

type (
	comm   = unsafe.Pointer // ncclComm_t
	event  = unsafe.Pointer // CUevent
	result int              // ncclResult_t
)

// ncclResult_t values (nccl.h).
const (
	resultSuccess     result = 0
	resultSystemError result = 2
	resultInProgress  result = 7
)

// ncclDataType_t ncclFloat32 and the ncclRedOp_t values (nccl.h).
const (
	ncclFloat32 = 7
	ncclSum     = 0
	ncclAvg     = 4
)

// Error is a failed NCCL call: its name, its ncclResult_t, NCCL's text for
// it, and ncclGetLastError's account where there is one.
type Error struct {
	Op     string
	Code   int
	Detail string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s: %s (ncclResult_t %d)", e.Op, errorString(result(e.Code)), e.Code)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// check returns nil for ncclSuccess and an *Error otherwise.
func check(op string, c comm, r result) error {
	if r == resultSuccess {
		return nil
	}
	return &Error{Op: op, Code: int(r), Detail: lastError(c)}
}

// NewUniqueID returns a fresh NCCL unique id, which every rank passes to
// New. ncclGetUniqueId also starts NCCL's bootstrap root in this process,
// listening on a network interface (NCCL_SOCKET_IFNAME chooses which), so
// the process that calls it must live until every rank has joined: rank
// 0's, or the rendezvous's. It needs the library, not a GPU.
func NewUniqueID() ([IDBytes]byte, error) {
	if err := load(); err != nil {
		return [IDBytes]byte{}, err
	}
	return ncclUniqueID()
}

// Comm is one rank of an NCCL communicator: a collective.Communicator
// whose buffers are those of one kernels/cuda Device, reduced on the
// GPU on that Device's stream.
//
// NCCL does not check that the ranks issue the same collectives: where the
// ring fails at once with collective.ErrMismatch, ranks that disagree
// here wait for each other until the timeout, and then abort.
type Comm struct {
	dev        *cuda.Device
	rank, size int
	timeout    time.Duration
	barrier    kernels.Buffer
	ev         event

	opMu sync.Mutex // one collective at a time

	mu       sync.Mutex
	c        comm  // nil once aborted or destroyed
	err      error // the first failure; the communicator is broken once set
	inFlight bool  // a collective holds c outside mu
	closed   bool
	// abortReq asks the collective in flight to abort the communicator:
	// only the goroutine polling c may free it.
	abortReq atomic.Bool
}

var _ collective.Communicator = (*Comm)(nil)

// New joins rank of a communicator of size ranks identified by id, with
// the GPU and stream of dev. Every rank calls New with the same id and
// size; the set-up is non-blocking, and if the ranks have not all joined
// within timeout (DefaultTimeout when 0) or before ctx ends, it is aborted
// and New fails. timeout also bounds every collective.
func New(ctx context.Context, dev *cuda.Device, rank, size int, id [IDBytes]byte, timeout time.Duration) (*Comm, error) {
	if dev == nil {
		return nil, errors.New("nccl: New: nil device")
	}
	if size < 1 || rank < 0 || rank >= size {
		return nil, fmt.Errorf("nccl: New: rank %d of %d", rank, size)
	}
	if timeout < 0 {
		return nil, fmt.Errorf("nccl: New: negative timeout %v", timeout)
	}
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if err := load(); err != nil {
		return nil, err
	}
	if libVer < minVersion {
		return nil, fmt.Errorf("nccl: %s is NCCL %s; macdist needs %s or later (non-blocking ncclCommInitRankConfig)",
			lib.Path, VersionText(libVer), VersionText(minVersion))
	}
	if err := loadEvents(); err != nil {
		return nil, err
	}
	// NCCL uses the CUDA runtime, which takes the device from the thread's
	// current context: dev's, on a thread that stays put.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := dev.MakeCurrent(); err != nil {
		return nil, fmt.Errorf("nccl: making %s current: %w", dev.Name(), err)
	}
	ev, err := eventCreate()
	if err != nil {
		return nil, fmt.Errorf("nccl: %w", err)
	}
	h, r := commInit(size, id, rank, false)
	if r != resultSuccess && r != resultInProgress {
		err := check("ncclCommInitRankConfig", h, r)
		if h != nil {
			commAbort(h)
		}
		eventDestroy(ev)
		return nil, fmt.Errorf("nccl: rank %d of %d: %w", rank, size, err)
	}
	deadline := time.Now().Add(timeout)
	var st waitState
	for {
		state, qr := asyncError(h)
		if qr != resultSuccess {
			err = check("ncclCommGetAsyncError", h, qr)
		} else if state != resultInProgress {
			err = check("ncclCommInitRankConfig", h, state)
		} else if err = st.expired(ctx, deadline, timeout, "the set-up"); err == nil {
			st.pause()
			continue
		}
		break
	}
	if err != nil {
		commAbort(h)
		eventDestroy(ev)
		return nil, fmt.Errorf("nccl: rank %d of %d: %w", rank, size, err)
	}
	return &Comm{dev: dev, rank: rank, size: size, timeout: timeout, c: h, ev: ev, barrier: dev.Alloc(1)}, nil
}

// Rank is this rank's index in [0, Size).
func (c *Comm) Rank() int { return c.rank }

// Size is the number of ranks.
func (c *Comm) Size() int { return c.size }

// Device is the GPU whose stream the collectives run on.
func (c *Comm) Device() *cuda.Device { return c.dev }

// AllReduce replaces buf, a buffer of the Comm's Device, with its sum or
// average over the ranks, and returns once the result is in buf. NCCL
// leaves the same bits on every rank; its sums are not added in the ring's
// order, and Avg is ncclAvg (each value scaled by 1/Size before the sum),
// so they may differ from collective.Ring's in the last bits.
//
// The reduction is queued on the Device's stream after the work queued
// before the call, and the call waits for it alone (an event), not for
// work queued later by other goroutines.
func (c *Comm) AllReduce(ctx context.Context, buf kernels.Buffer, op collective.Op) error {
	var nop int
	switch op {
	case collective.Sum:
		nop = ncclSum
	case collective.Avg:
		nop = ncclAvg
	default:
		return fmt.Errorf("nccl: AllReduce: unsupported op %v", op)
	}
	n := buf.Len()
	if n == 0 {
		return nil
	}
	p := cuda.Pointer(buf)
	return c.run(ctx, "ncclAllReduce", func(h comm) result {
		return allReduce(p, n, nop, h, c.dev.Stream())
	})
}

// Broadcast copies root's buf into every other rank's buf.
func (c *Comm) Broadcast(ctx context.Context, buf kernels.Buffer, root int) error {
	if root < 0 || root >= c.size {
		return fmt.Errorf("nccl: Broadcast: root %d of %d ranks", root, c.size)
	}
	n := buf.Len()
	if n == 0 {
		return nil
	}
	p := cuda.Pointer(buf)
	return c.run(ctx, "ncclBroadcast", func(h comm) result {
		return broadcast(p, n, root, h, c.dev.Stream())
	})
}

// Barrier returns once every rank has entered it: NCCL has no barrier, so
// it is an all-reduce of one number, waited for.
func (c *Comm) Barrier(ctx context.Context) error {
	p := cuda.Pointer(c.barrier)
	return c.run(ctx, "barrier (ncclAllReduce)", func(h comm) result {
		return allReduce(p, 1, ncclSum, h, c.dev.Stream())
	})
}

// Abort breaks the communicator with err (collective.ErrAborted when nil):
// ncclCommAbort stops NCCL's kernels and threads, a collective in flight
// on this rank returns an error wrapping err, and so does every later
// call. Peers waiting in a collective with this rank fail at their
// timeout, or sooner when their own supervisor aborts them. Only the first
// Abort counts.
func (c *Comm) Abort(err error) {
	if err == nil {
		err = collective.ErrAborted
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.breakLocked(err, true)
}

// breakLocked records err as the first failure, if none was, and aborts
// (or, with abort false, destroys) the communicator now when no collective
// holds it, or asks the one in flight to. c.mu is held.
func (c *Comm) breakLocked(err error, abort bool) {
	if c.err != nil {
		return
	}
	c.err = err
	if c.inFlight {
		c.abortReq.Store(true)
		return
	}
	c.releaseLocked(abort)
}

// releaseLocked gives the communicator back to NCCL. On a non-blocking
// communicator both calls may answer ncclInProgress: NCCL then frees it on
// a thread of its own, and it must not be touched again, so nothing waits
// for it. A destroy that fails outright is followed by an abort, as NCCL
// advises.
func (c *Comm) releaseLocked(abort bool) {
	if c.c == nil {
		return
	}
	if abort {
		commAbort(c.c)
	} else if r := commDestroy(c.c); r != resultSuccess && r != resultInProgress {
		commAbort(c.c)
	}
	c.c = nil
}

// Close releases the communicator: ncclCommDestroy when nothing failed
// (later calls fail with collective.ErrClosed), ncclCommAbort when a
// collective is in flight or something failed before. It then frees the
// event and the barrier's buffer, after any collective in flight returns.
func (c *Comm) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.breakLocked(collective.ErrClosed, false)
	if !c.inFlight {
		c.releaseLocked(true)
	}
	c.mu.Unlock()

	c.opMu.Lock()
	defer c.opMu.Unlock()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var err error
	if e := c.dev.MakeCurrent(); e == nil {
		err = eventDestroy(c.ev)
	}
	c.dev.Free(c.barrier)
	if err != nil {
		return fmt.Errorf("nccl: Close: %w", err)
	}
	return nil
}

// run issues one collective with enqueue and waits for it, aborting the
// communicator when it fails, times out, ctx ends, or Abort is called.
func (c *Comm) run(ctx context.Context, op string, enqueue func(comm) result) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return fmt.Errorf("nccl: %s: communicator broken: %w", op, err)
	}
	c.inFlight = true
	h := c.c
	c.mu.Unlock()

	err := c.issue(ctx, op, h, enqueue)

	c.mu.Lock()
	defer c.mu.Unlock()
	c.inFlight = false
	if err != nil {
		c.breakLocked(err, true)
		// An Abort or Close during the collective is the cause, and left
		// the release to us.
		cause := c.err
		c.releaseLocked(true)
		return fmt.Errorf("nccl: %s (rank %d of %d): %w", op, c.rank, c.size, cause)
	}
	if c.err != nil {
		// Abort or Close came while the collective finished.
		c.releaseLocked(!errors.Is(c.err, collective.ErrClosed))
	}
	return nil
}

// issue enqueues the collective on the Device's stream, records the event
// after it and polls both the event and NCCL's state until it is done.
func (c *Comm) issue(ctx context.Context, op string, h comm, enqueue func(comm) result) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := c.dev.MakeCurrent(); err != nil {
		return fmt.Errorf("making %s current: %w", c.dev.Name(), err)
	}
	deadline := time.Now().Add(c.timeout)
	var st waitState
	r := enqueue(h)
	if r != resultSuccess && r != resultInProgress {
		return check(op, h, r)
	}
	// A non-blocking communicator may still be enqueueing in the
	// background (ncclInProgress); NCCL wants no other call on it but
	// ncclCommGetAsyncError until that is done.
	for r == resultInProgress {
		state, qr := asyncError(h)
		switch {
		case qr != resultSuccess:
			return check("ncclCommGetAsyncError", h, qr)
		case state == resultSuccess:
			r = resultSuccess
		case state != resultInProgress:
			return check(op, h, state)
		default:
			if err := c.interrupted(ctx, &st, deadline); err != nil {
				return err
			}
			st.pause()
		}
	}
	if err := eventRecord(c.ev, c.dev.Stream()); err != nil {
		return err
	}
	st = waitState{}
	for {
		done, err := eventQuery(c.ev)
		if err != nil {
			return err
		}
		state, qr := asyncError(h)
		if qr != resultSuccess {
			return check("ncclCommGetAsyncError", h, qr)
		}
		if state != resultSuccess && state != resultInProgress {
			return check(op, h, state)
		}
		if done {
			return nil
		}
		if err := c.interrupted(ctx, &st, deadline); err != nil {
			return err
		}
		st.pause()
	}
}

// interrupted returns the reason to give up waiting, if there is one.
func (c *Comm) interrupted(ctx context.Context, st *waitState, deadline time.Time) error {
	if c.abortReq.Load() {
		return collective.ErrAborted // run replaces it with the Abort's cause
	}
	return st.expired(ctx, deadline, c.timeout, "the collective")
}

// waitState paces a polling loop: it yields for the first hundred polls
// (a small collective completes in microseconds), then sleeps from 20 µs
// doubling to 1 ms, so a long wait costs little CPU and a short one little
// latency.
type waitState struct {
	polls int
	sleep time.Duration
}

func (w *waitState) pause() {
	w.polls++
	if w.polls < 100 {
		runtime.Gosched()
		return
	}
	if w.sleep == 0 {
		w.sleep = 20 * time.Microsecond
	} else if w.sleep < time.Millisecond {
		w.sleep *= 2
	}
	time.Sleep(w.sleep)
}

// expired says why the wait is over: ctx ended, or the deadline passed.
func (w *waitState) expired(ctx context.Context, deadline time.Time, timeout time.Duration, what string) error {
	select {
	case <-ctx.Done():
		return fmt.Errorf("%s interrupted: %w", what, context.Cause(ctx))
	default:
	}
	if time.Now().After(deadline) {
		return fmt.Errorf("%s did not complete within %v (a rank missing, stalled or issuing other collectives): %w",
			what, timeout, os.ErrDeadlineExceeded)
	}
	return nil
}
