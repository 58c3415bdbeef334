package cpu

import (
	"runtime"
	"sync"
	"sync/atomic"
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
	wg     *sync.WaitGroup
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
	for c := range ch {
		c.t.run(c.lo, c.hi)
		c.wg.Done()
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
	d.wg.Add(k - 1)
	for i := 1; i < k; i++ {
		workers.ch <- chunk{t: t, lo: i * n / k, hi: (i + 1) * n / k, wg: &d.wg}
	}
	t.run(0, n/k)
	d.wg.Wait()
}
