package cuda

import (
	"errors"
	"testing"
)

func TestSizeClass(t *testing.T) {
	for _, tc := range []struct{ in, want int64 }{
		{0, 0}, {-4, 0}, {1, 512}, {512, 512}, {513, 1024}, {1024, 1024}, {1025, 1536},
		{4096, 4096}, {4097, 5120}, {5121, 6144}, {7169, 8192},
		{1 << 20, 1 << 20}, {1<<20 + 1, 1<<20 + 1<<18}, {3 << 20, 3 << 20}, {3<<20 + 1, 7 << 19},
	} {
		if got := sizeClass(tc.in); got != tc.want {
			t.Errorf("sizeClass(%d) = %d, want %d", tc.in, got, tc.want)
		}
	}
	prev := int64(0)
	for b := int64(1); b < 1<<26; b = b*9/8 + 1 {
		c := sizeClass(b)
		switch {
		case c < b:
			t.Fatalf("sizeClass(%d) = %d is too small", b, c)
		case c%minBlock != 0:
			t.Fatalf("sizeClass(%d) = %d is not a multiple of %d", b, c, minBlock)
		case b > 4*minBlock && float64(c) > 1.25*float64(b):
			t.Fatalf("sizeClass(%d) = %d wastes more than 25%%", b, c)
		case sizeClass(c) != c:
			t.Fatalf("sizeClass(sizeClass(%d)) = %d, not %d", b, sizeClass(c), c)
		case c < prev:
			t.Fatalf("sizeClass is not monotone at %d", b)
		}
		prev = c
	}
}

// fakeMem hands out addresses from a counter and runs out of memory past
// its limit.
type fakeMem struct {
	next, limit, live int64
	sizes             map[uint64]int64
	mallocs, frees    int
}

var errOOM = errors.New("out of memory")

func (m *fakeMem) malloc(n int64) (uint64, error) {
	if m.live+n > m.limit {
		return 0, errOOM
	}
	if m.sizes == nil {
		m.sizes = map[uint64]int64{}
	}
	m.mallocs++
	m.live += n
	m.next += n
	m.sizes[uint64(m.next)] = n
	return uint64(m.next), nil
}

func (m *fakeMem) free(p uint64) error {
	n, ok := m.sizes[p]
	if !ok {
		return errors.New("free of an unknown block")
	}
	delete(m.sizes, p)
	m.frees++
	m.live -= n
	return nil
}

func TestAllocatorReuse(t *testing.T) {
	mem := &fakeMem{limit: 1 << 30}
	a := newAllocator(mem)
	p1, c1, err := a.get(1000)
	if err != nil || c1 != 1024 {
		t.Fatalf("get(1000) = %d, %d, %v", p1, c1, err)
	}
	p2, _, _ := a.get(1000)
	if p1 == p2 {
		t.Fatal("two live blocks share an address")
	}
	a.put(p1, c1)
	if a.inUse != 1024 || a.cached != 1024 {
		t.Errorf("after put: inUse %d cached %d", a.inUse, a.cached)
	}
	// Same class: served from the cache, no new malloc.
	p3, c3, _ := a.get(900)
	if p3 != p1 || c3 != 1024 || mem.mallocs != 2 {
		t.Errorf("get(900) after freeing a 1024 block: ptr %d (want %d), class %d, %d mallocs", p3, p1, c3, mem.mallocs)
	}
	// Another class: a new block.
	if _, c, _ := a.get(5000); c != 5120 || mem.mallocs != 3 {
		t.Errorf("get(5000): class %d, %d mallocs", c, mem.mallocs)
	}
	if p, c, err := a.get(0); p != 0 || c != 0 || err != nil {
		t.Errorf("get(0) = %d, %d, %v", p, c, err)
	}
	a.put(0, 0) // freeing an empty buffer is harmless
	if a.peak != 1024+1024+5120 || a.allocs != 3 {
		t.Errorf("peak %d allocs %d", a.peak, a.allocs)
	}
}

func TestAllocatorOOMReleasesCache(t *testing.T) {
	mem := &fakeMem{limit: 8192}
	a := newAllocator(mem)
	p, c, _ := a.get(4096)
	a.put(p, c)
	// 6144 bytes do not fit beside the cached 4096-byte block: the cache
	// is given back and the allocation retried.
	if _, c, err := a.get(6000); err != nil || c != 6144 {
		t.Fatalf("get(6000) with a releasable cache = class %d, %v", c, err)
	}
	if mem.frees != 1 || a.cached != 0 || a.inUse != 6144 {
		t.Errorf("after the retry: %d frees, cached %d, inUse %d", mem.frees, a.cached, a.inUse)
	}
	// Now nothing is cached, and the error comes back.
	if _, _, err := a.get(4096); !errors.Is(err, errOOM) {
		t.Errorf("get past the limit with nothing cached: %v", err)
	}
	if err := a.release(); err != nil {
		t.Error(err)
	}
}
