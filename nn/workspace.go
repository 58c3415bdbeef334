package nn

import (
	"fmt"
	"strings"
	"sync"

	"github.com/macdist/macdist/kernels"
)

// MaxWorkspace is the default bound, in float32 elements, on the scratch
// buffer a layer asks of Workspace for one step of its work: Conv2d unfolds
// as many images at a time as fit (at least one). On a CPU small chunks win,
// because the GEMM then reads columns that im2col has just left in cache:
// for a 16-channel 3×3 convolution at 32×32 and batch 128, chunks of one to
// three images took 30 ms forward and 78 ms backward, chunks of 28 images
// or more 40 to 100 ms and 170 to 290 ms (2 cores, OpenBLAS). A GPU wants
// large chunks instead, to fill its batched GEMMs: set its Scratch's limit
// with SetLimit.
var MaxWorkspace = 1 << 19

// Scratch is a growing buffer shared by every layer of one device, for
// intermediate results that live only inside one Forward or Backward call,
// such as Conv2d's unfolded images. Twenty convolutions then share one
// column buffer instead of holding twenty.
//
// A buffer returned by Get is valid until the next Get on the same Scratch;
// code that holds one must not call into another module meanwhile.
type Scratch struct {
	dev   kernels.Device
	base  kernels.Buffer
	size  int
	limit int
	views map[int]kernels.Buffer
}

var (
	scratchMu sync.Mutex
	scratches = map[kernels.Device]*Scratch{}
)

// Workspace returns the Scratch of dev, creating it on first use.
func Workspace(dev kernels.Device) *Scratch {
	scratchMu.Lock()
	defer scratchMu.Unlock()
	s, ok := scratches[dev]
	if !ok {
		s = &Scratch{dev: dev, views: map[int]kernels.Buffer{}}
		scratches[dev] = s
	}
	return s
}

// Get returns a buffer of exactly n elements, with undefined contents.
// Views of each size are made once and kept, so a steady-state caller
// allocates nothing.
func (s *Scratch) Get(n int) kernels.Buffer {
	if n > s.size || s.base == nil {
		if s.base != nil {
			s.dev.Free(s.base)
		}
		s.base = s.dev.Alloc(n)
		s.size = n
		clear(s.views)
	}
	if n == s.size {
		return s.base
	}
	v, ok := s.views[n]
	if !ok {
		v = s.dev.View(s.base, 0, n)
		s.views[n] = v
	}
	return v
}

// Limit is the number of elements a layer should ask for at most in one
// Get, where it can split its work: the value given to SetLimit, or
// MaxWorkspace.
func (s *Scratch) Limit() int {
	if s.limit > 0 {
		return s.limit
	}
	return MaxWorkspace
}

// SetLimit sets Limit for this device; 0 restores the default MaxWorkspace.
func (s *Scratch) SetLimit(n int) { s.limit = max(n, 0) }

// Size is the number of elements currently allocated.
func (s *Scratch) Size() int { return s.size }

// slot is a buffer a module owns, such as its output or its input gradient,
// resized only when the shape it must hold changes. It grows by reallocating
// and shrinks by taking a view, so alternating between a training and an
// evaluation batch size does not reallocate on every switch.
type slot struct {
	t    Tensor
	base kernels.Buffer
	cap  int
}

// ensure returns the slot's tensor with the given shape, in NCHW (a layer
// that writes another layout sets it). shape is copied, so callers may pass
// a slice of a local array.
func (s *slot) ensure(dev kernels.Device, shape []int) *Tensor {
	s.t.Layout = kernels.NCHW
	if s.t.Data != nil && s.t.SameShape(shape) {
		return &s.t
	}
	n := Numel(shape)
	if n > s.cap || s.base == nil {
		if s.base != nil {
			dev.Free(s.base)
		}
		s.base = dev.Alloc(n)
		s.cap = n
	}
	if n == s.cap {
		s.t.Data = s.base
	} else {
		s.t.Data = dev.View(s.base, 0, n)
	}
	s.t.Shape = append([]int(nil), shape...)
	return &s.t
}

// layerName is how panics refer to a layer: its name prefix, or its type when
// it has none.
func layerName(name, typ string) string {
	if name == "" {
		return typ
	}
	return name
}

// join appends a parameter name to a prefix, PyTorch style.
func join(prefix, leaf string) string {
	if prefix == "" {
		return leaf
	}
	return prefix + "." + leaf
}

// shapeStr formats a shape as PyTorch-ish [a b c], with symbolic entries
// (such as "N") passed as strings.
func shapeStr(dims ...any) string {
	parts := make([]string, len(dims))
	for i, d := range dims {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// shapePanic panics with the message convention of package nn.
func shapePanic(layer string, got []int, want string) {
	panic(fmt.Sprintf("nn: %s: input %v, want %s", layer, got, want))
}

// gradPanic panics for a Backward whose dy does not match the last output.
func gradPanic(layer string, got, want []int) {
	panic(fmt.Sprintf("nn: %s: Backward dy %v, want %v", layer, got, want))
}

// mustForward panics when Backward comes before any Forward.
func mustForward(layer string, ok bool) {
	if !ok {
		panic("nn: " + layer + ": Backward before Forward")
	}
}
