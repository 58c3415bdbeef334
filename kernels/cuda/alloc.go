package cuda

import (
	"fmt"
	"math/bits"
)

// rawMem is what the caching allocator needs from the device: blocks of
// device memory by the byte. It is an interface so that the bucket logic is
// tested without a GPU.
type rawMem interface {
	malloc(bytes int64) (uint64, error)
	free(ptr uint64) error
}

// minBlock is the smallest block handed out, and the granularity of the
// size classes below 2 KiB. cuMemAlloc aligns to at least 256 bytes; a
// view's offset is the caller's business.
const minBlock = 512

// sizeClass rounds a request up to the block size it is served from. Above
// minBlock every octave (2^(e-1), 2^e] is cut into four classes, so that a
// block is at most 25% larger than asked for (12.5% on average), while a
// training step that asks for the same sizes every time finds them all in
// the cache from the second step on.
func sizeClass(bytes int64) int64 {
	if bytes <= 0 {
		return 0
	}
	if bytes <= minBlock {
		return minBlock
	}
	e := bits.Len64(uint64(bytes - 1)) // 2^(e-1) < bytes ≤ 2^e
	step := max(int64(1)<<(e-3), minBlock)
	return (bytes + step - 1) / step * step
}

// allocator is a caching allocator: freed blocks go to a free list per size
// class and are handed out again for requests of the same class. It relies
// on every use of a block being ordered on one stream (the Device's), so
// that a block freed while kernels reading it are still queued is safe to
// reuse for work queued after them. Blocks go back to the driver only on
// release (or when cuMemAlloc runs out of memory), because cuMemFree
// synchronises the whole device.
type allocator struct {
	mem    rawMem
	free   map[int64][]uint64 // size class → cached blocks
	inUse  int64              // bytes in blocks handed out
	cached int64              // bytes in the free lists
	peak   int64              // largest inUse + cached seen
	allocs int64              // calls to mem.malloc
}

func newAllocator(mem rawMem) *allocator {
	return &allocator{mem: mem, free: map[int64][]uint64{}}
}

// get returns a block of at least bytes bytes and its size class. A
// request of 0 bytes gets the null pointer.
func (a *allocator) get(bytes int64) (uint64, int64, error) {
	class := sizeClass(bytes)
	if class == 0 {
		return 0, 0, nil
	}
	if l := a.free[class]; len(l) > 0 {
		p := l[len(l)-1]
		a.free[class] = l[:len(l)-1]
		a.cached -= class
		a.inUse += class
		return p, class, nil
	}
	p, err := a.mem.malloc(class)
	if err != nil {
		// Out of memory, perhaps only because the cache holds it: give
		// the cached blocks back and try once more.
		if a.cached == 0 {
			return 0, 0, err
		}
		if rerr := a.release(); rerr != nil {
			return 0, 0, fmt.Errorf("%w (and releasing the cache: %v)", err, rerr)
		}
		if p, err = a.mem.malloc(class); err != nil {
			return 0, 0, err
		}
	}
	a.allocs++
	a.inUse += class
	a.peak = max(a.peak, a.inUse+a.cached)
	return p, class, nil
}

// put returns a block of the given class to the cache.
func (a *allocator) put(p uint64, class int64) {
	if class == 0 {
		return
	}
	a.free[class] = append(a.free[class], p)
	a.inUse -= class
	a.cached += class
}

// release gives every cached block back to the driver, returning the
// first error.
func (a *allocator) release() error {
	var first error
	for class, l := range a.free {
		for _, p := range l {
			if err := a.mem.free(p); err != nil && first == nil {
				first = err
			}
		}
		a.cached -= class * int64(len(l))
		delete(a.free, class)
	}
	return first
}

// MemStats describes a Device's memory, in bytes.
type MemStats struct {
	InUse  int64 // in buffers not freed
	Cached int64 // freed, kept for reuse
	Peak   int64 // the largest InUse + Cached so far
	Allocs int64 // blocks obtained from the driver
}
