package cpu

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// A rangeTask is the body of a loop over [0, n) that can be split into
// disjoint ranges run at the same time.
type rangeTask interface {
	run(lo, hi int)
}

// A chunk is one range of a task, handed to a worker.
type chunk struct {
	t      rangeTask
	lo, hi int
	d      *Device // whose parallel call waits for it
}

// The workers are shared by every Device of the process. They are started
// once and kept, because starting goroutines per call would allocate their
// closures on every kernel; the channel carries plain values instead.
var workers struct {
	mu sync.Mutex
	n  atomic.Int64 // started
	ch chan chunk
}

func init() { workers.ch = make(chan chunk, 256) }

func worker(ch <-chan chunk) {
	for {
		c, ok := next(ch)
		if !ok {
			return
		}
		c.t.run(c.lo, c.hi)
		c.d.finish()
	}
}

// next returns the next chunk. A training step calls kernels back to back,
// a few microseconds apart, so a worker that has just finished polls for a
// while before it sleeps: waking a sleeping thread costs tens of
// microseconds, as much as a small kernel, at every call.
func next(ch <-chan chunk) (chunk, bool) {
	var start time.Time
	for i := 0; ; i++ {
		if len(ch) > 0 || i == 0 {
			select {
			case c, ok := <-ch:
				return c, ok
			default:
			}
		}
		if i%spinCheck == spinCheck-1 {
			// Now and then: give the processor to any goroutine
			// waiting for it, and look at the clock.
			runtime.Gosched()
			if start.IsZero() {
				start = time.Now()
			} else if time.Since(start) > spinWait {
				break
			}
		}
	}
	c, ok := <-ch
	return c, ok
}

// finish records that a worker is done with its chunk of d's current
// parallel call; the last one hands parallel its token.
func (d *Device) finish() {
	if d.left.Add(-1) == 0 {
		d.done <- struct{}{}
	}
}

// ensureWorkers starts workers until n are running.
func ensureWorkers(n int) {
	workers.mu.Lock()
	for workers.n.Load() < int64(n) {
		go worker(workers.ch)
		workers.n.Add(1)
	}
	workers.mu.Unlock()
}

// Minimum elements per chunk: below these a goroutine hand-off costs more
// than the work it saves.
const (
	grainCheap = 1 << 15 // copies, adds: memory bound
	grainMath  = 1 << 11 // exp, erf, tanh
)

// parallel runs t over [0, n), split into at most GOMAXPROCS ranges of at
// least grain elements, and returns when all are done. The caller's
// goroutine runs the first range itself. d.mu must be held.
func (d *Device) parallel(t rangeTask, n, grain int) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	k := min(runtime.GOMAXPROCS(0), (n+grain-1)/grain)
	if k <= 1 {
		t.run(0, n)
		return
	}
	if workers.n.Load() < int64(k-1) {
		ensureWorkers(k - 1)
	}
	if d.done == nil {
		d.done = make(chan struct{}, 1)
	}
	d.left.Store(int32(k - 1))
	for i := 1; i < k; i++ {
		workers.ch <- chunk{t: t, lo: i * n / k, hi: (i + 1) * n / k, d: d}
	}
	t.run(0, n/k)
	// The workers' ranges are as long as ours, so they are usually done or
	// nearly: poll for them for a while, yielding the processor now and
	// then (a worker not yet running can then run here), and only then
	// sleep. Sleeping on a channel or a WaitGroup at once would cost a
	// futex wake-up per call and, in the runtime, allocate now and then.
	var start time.Time
	for i := 0; d.left.Load() != 0; i++ {
		if i%spinCheck == spinCheck-1 {
			runtime.Gosched()
			if start.IsZero() {
				start = time.Now()
			} else if time.Since(start) > spinWait {
				break
			}
		}
	}
	<-d.done
}

// spinCheck is how many polls a spinning goroutine makes between looks at
// the clock, which cost more than a poll.
const spinCheck = 2048

// spinWait is how long parallel, and an idle worker, yield before they
// sleep: about the time it takes to wake a sleeping thread, and longer than
// the gap between two kernels of a step.
const spinWait = 50 * time.Microsecond
