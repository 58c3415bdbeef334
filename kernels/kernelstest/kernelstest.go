package kernelstest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/macdist/macdist/kernels"
)

// Run tests every method of dev. Each group of methods is a subtest, so
// that -run selects them: "Memory", "Gemm", "GemmStrided", "Im2col",
// "Col2im", "Convolver" (for a kernels.Convolver), "Elementwise", "Reduce", "Activation", "Softmax",
// "CrossEntropy", "LayerNorm", "BatchNorm", "Layouter" (for a
// kernels.Layouter), "ReLUFuser" (for a kernels.ReLUFuser), "Pool", "Dropout", "AdamW",
// "SGDStep" and "Panics".
func Run(t *testing.T, dev kernels.Device) {
	t.Helper()
	if dev.Name() == "" {
		t.Error("Name is empty")
	}
	for _, s := range []struct {
		name string
		f    func(*harness)
	}{
		{"Memory", testMemory},
		{"Gemm", testGemm},
		{"GemmStrided", testGemmStrided},
		{"Im2col", testIm2col},
		{"Col2im", testCol2im},
		{"Convolver", testConvolver},
		{"CopyStrided", testCopyStrided},
		{"Elementwise", testElementwise},
		{"Reduce", testReduce},
		{"Activation", testActivation},
		{"Softmax", testSoftmax},
		{"CrossEntropy", testCrossEntropy},
		{"LayerNorm", testLayerNorm},
		{"BatchNorm", testBatchNorm},
		{"Layouter", testLayouter},
		{"ReLUFuser", testReLUFuser},
		{"Pool", testPool},
		{"Dropout", testDropout},
		{"AdamW", testAdamW},
		{"SGDStep", testSGDStep},
		{"Panics", testPanics},
	} {
		t.Run(s.name, func(t *testing.T) {
			s.f(&harness{t: t, dev: dev, rng: rand.New(rand.NewPCG(1, uint64(len(s.name))))})
			if err := dev.Sync(); err != nil {
				t.Errorf("Sync: %v", err)
			}
		})
	}
}

// harness holds what one subtest needs. Buffers it allocates are freed when
// the subtest ends.
type harness struct {
	t   *testing.T
	dev kernels.Device
	rng *rand.Rand
}

// alloc returns a zeroed buffer of n elements.
func (h *harness) alloc(n int) kernels.Buffer {
	b := h.dev.Alloc(n)
	h.t.Cleanup(func() { h.dev.Free(b) })
	return b
}

// buf returns a buffer holding v.
func (h *harness) buf(v []float32) kernels.Buffer {
	b := h.alloc(len(v))
	h.dev.Upload(b, v)
	return b
}

// get downloads all of b.
func (h *harness) get(b kernels.Buffer) []float32 {
	v := make([]float32, b.Len())
	h.dev.Download(v, b)
	return v
}

// uniform returns n values uniform in [lo, hi).
func (h *harness) uniform(n int, lo, hi float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(lo + (hi-lo)*h.rng.Float64())
	}
	return v
}

// rand returns n values uniform in [-1, 1).
func (h *harness) rand(n int) []float32 { return h.uniform(n, -1, 1) }

// ints returns n small integers in [lo, hi], as floats, so that ties are
// common.
func (h *harness) ints(n, lo, hi int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(lo + h.rng.IntN(hi-lo+1))
	}
	return v
}

func filled(n int, v float32) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = v
	}
	return s
}

var nan32 = float32(math.NaN())

func widen(v []float32) []float64 {
	w := make([]float64, len(v))
	for i, x := range v {
		w[i] = float64(x)
	}
	return w
}

// maxReports bounds the mismatches one check prints.
const maxReports = 5

// check compares got with want element by element, allowing
// |got − want| ≤ atol + rtol·|want|. A NaN in want must be a NaN in got.
func (h *harness) check(what string, got []float32, want []float64, rtol, atol float64) bool {
	h.t.Helper()
	return h.checkBound(what, got, want, func(i int) float64 { return atol + rtol*math.Abs(want[i]) })
}

// checkExact compares bit for bit, but for the sign of zero and NaN payloads.
func (h *harness) checkExact(what string, got []float32, want []float64) bool {
	h.t.Helper()
	return h.checkBound(what, got, want, func(int) float64 { return 0 })
}

// checkBound allows element i an absolute error of bound(i).
func (h *harness) checkBound(what string, got []float32, want []float64, bound func(i int) float64) bool {
	h.t.Helper()
	if len(got) != len(want) {
		h.t.Errorf("%s: got %d elements, want %d", what, len(got), len(want))
		return false
	}
	bad := 0
	for i, g := range got {
		w := float64(want[i])
		ok := false
		switch {
		case math.IsNaN(w):
			ok = math.IsNaN(float64(g))
		case math.IsInf(w, 0):
			ok = float64(g) == w
		default:
			ok = math.Abs(float64(g)-w) <= bound(i)
		}
		if !ok {
			if bad < maxReports {
				h.t.Errorf("%s: [%d] = %v, want %v (±%.3g)", what, i, g, w, bound(i))
			}
			bad++
		}
	}
	if bad > maxReports {
		h.t.Errorf("%s: %d mismatches in all, of %d elements", what, bad, len(got))
	}
	return bad == 0
}

// checkScalar compares one float64 result.
func (h *harness) checkScalar(what string, got, want, rtol, atol float64) {
	h.t.Helper()
	if !(math.Abs(got-want) <= atol+rtol*math.Abs(want)) {
		h.t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// Tolerances: element-wise results are a few float32 roundings from the
// float64 reference; sums are allowed errors relative to the sum of the
// magnitudes of their terms, which is what float32 accumulation can
// promise.
const (
	rtolElem = 1e-5
	atolElem = 1e-6
	rtolSum  = 1e-4
)

// mustPanic reports whether f panics.
func (h *harness) mustPanic(what string, f func()) {
	h.t.Helper()
	defer func() {
		if recover() == nil {
			h.t.Errorf("%s did not panic", what)
		}
	}()
	f()
}

func b2s(b bool) string {
	if b {
		return "T"
	}
	return "N"
}

func name(format string, args ...any) string { return fmt.Sprintf(format, args...) }
