package kernels_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
)

// fp32Only is a Device without MixedPrecision, as the cuda Device is.
type fp32Only struct{ kernels.Device }

func (fp32Only) Name() string { return "cuda:0 (test)" }

func TestSetPrecisionFP32Only(t *testing.T) {
	dev := fp32Only{cpu.New()}
	if err := kernels.SetPrecision(dev, kernels.FP32); err != nil {
		t.Errorf("FP32 on an fp32-only device: %v", err)
	}
	err := kernels.SetPrecision(dev, kernels.BF16)
	if err == nil || !strings.Contains(err.Error(), "cuda:0 (test) computes in fp32 only") || !strings.Contains(err.Error(), "--precision fp32") {
		t.Errorf("BF16 on an fp32-only device: %v", err)
	}
	if p := kernels.PrecisionOf(dev); p != kernels.FP32 {
		t.Errorf("PrecisionOf = %v", p)
	}
	if s := kernels.DescribePrecision(dev); s != "fp32" {
		t.Errorf("DescribePrecision = %q", s)
	}
}

func TestParsePrecision(t *testing.T) {
	for s, want := range map[string]kernels.Precision{"": kernels.FP32, "fp32": kernels.FP32, "bf16": kernels.BF16} {
		if p, err := kernels.ParsePrecision(s); err != nil || p != want {
			t.Errorf("ParsePrecision(%q) = %v, %v", s, p, err)
		}
	}
	for _, s := range []string{"fp16", "BF16", "float32"} {
		if _, err := kernels.ParsePrecision(s); err == nil || !strings.Contains(err.Error(), "want fp32 or bf16") {
			t.Errorf("ParsePrecision(%q): %v", s, err)
		}
	}
	if kernels.BF16.String() != "bf16" || kernels.FP32.String() != "fp32" {
		t.Error("String")
	}
}

// TestMatMulSharedA checks the helper on a Device without the shared path
// (two MatMul calls) against a closed form, and its refusal of two
// products that read A differently.
func TestMatMulSharedA(t *testing.T) {
	host := cpu.New()
	dev := fp32Only{host}
	// A = [[1 2 3] [4 5 6]] stored 2×3 with lda 4.
	a := host.Wrap([]float32{1, 2, 3, 0, 4, 5, 6, 0})
	// p1: Aᵀ·[1 1] (3×1) plus C; p2: A·[1 0 1]ᵀ (2×1).
	c1, c2 := []float32{10, 20, 30}, []float32{-1, -1}
	kernels.MatMulSharedA(dev, a, 4,
		kernels.Product{TransA: true, M: 3, N: 1, K: 2, Alpha: 1, B: host.Wrap([]float32{1, 1}), LDB: 1, Beta: 1, C: host.Wrap(c1), LDC: 1},
		kernels.Product{M: 2, N: 1, K: 3, Alpha: 2, B: host.Wrap([]float32{1, 0, 1}), LDB: 1, C: host.Wrap(c2), LDC: 1})
	if want := []float32{15, 27, 39}; !slices.Equal(c1, want) {
		t.Errorf("first product %v, want %v", c1, want)
	}
	if want := []float32{8, 20}; !slices.Equal(c2, want) {
		t.Errorf("second product %v, want %v", c2, want)
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "read A as 2×3 and 3×3") {
			t.Errorf("mismatched products: %v", r)
		}
	}()
	kernels.MatMulSharedA(dev, a, 4, kernels.Product{M: 2, N: 1, K: 3, Alpha: 1, B: host.Wrap(make([]float32, 3)), LDB: 1, C: host.Wrap(make([]float32, 2)), LDC: 1},
		kernels.Product{M: 3, N: 1, K: 3, Alpha: 1, B: host.Wrap(make([]float32, 3)), LDB: 1, C: host.Wrap(make([]float32, 3)), LDC: 1})
}

// TestKeptOperand checks what a KeptOperand claims to hold, and that on
// a Device that keeps nothing MatMulKept and MatMulStridedKept are
// MatMul and MatMulStrided and leave the copies empty.
func TestKeptOperand(t *testing.T) {
	host := cpu.New()
	x, y := host.Wrap(make([]float32, 12)), host.Wrap(make([]float32, 12))
	at := kernels.StoredMatrix{Batch: 1, Rows: 3, Cols: 4, LD: 4}
	var k kernels.KeptOperand
	if k.Copy(x, at) != nil || k.Storage() != nil {
		t.Fatal("a zero KeptOperand holds something")
	}
	store := &struct{ n int }{7}
	k.Set(x, at, store)
	for _, c := range []struct {
		src  kernels.Buffer
		at   kernels.StoredMatrix
		held bool
	}{
		{x, at, true}, {y, at, false},
		{x, kernels.StoredMatrix{Batch: 1, Rows: 4, Cols: 3, LD: 4}, false},
		{x, kernels.StoredMatrix{Batch: 1, Rows: 3, Cols: 4, LD: 5}, false},
		{x, kernels.StoredMatrix{Off: 1, Batch: 1, Rows: 3, Cols: 4, LD: 4}, false},
		{x, kernels.StoredMatrix{Batch: 2, Stride: 6, Rows: 3, Cols: 4, LD: 4}, false},
	} {
		if got := k.Copy(c.src, c.at) != nil; got != c.held {
			t.Errorf("Copy(x=%v, %+v) held %v, want %v", c.src == x, c.at, got, c.held)
		}
	}
	k.Forget()
	if k.Copy(x, at) != nil || k.Storage() != store {
		t.Error("Forget: the copy still claims X, or its storage is gone")
	}
	var nilKeep *kernels.KeptOperand
	nilKeep.Forget()
	if nilKeep.Copy(x, at) != nil {
		t.Error("a nil KeptOperand holds something")
	}

	dev := fp32Only{host}
	k.Set(x, at, store)
	k2 := k
	a := host.Wrap([]float32{1, 2, 3, 4})              // 2×2
	b := host.Wrap([]float32{1, 0, 0, 1})              // identity
	c, c2 := make([]float32, 4), []float32{1, 1, 1, 1} // C = A·I; C2 = Aᵀ·I + C2
	kernels.MatMulKept(dev, &k, nil, false, false, 2, 2, 2, 1, a, 2, b, 2, 0, host.Wrap(c), 2)
	kernels.MatMulStridedKept(dev, nil, &k2, true, false, 2, 2, 2, 1, a, 0, 2, 0, b, 0, 2, 0, 1, host.Wrap(c2), 0, 2, 0, 1)
	if want := []float32{1, 2, 3, 4}; !slices.Equal(c, want) {
		t.Errorf("MatMulKept: %v, want %v", c, want)
	}
	if want := []float32{2, 4, 3, 5}; !slices.Equal(c2, want) {
		t.Errorf("MatMulStridedKept: %v, want %v", c2, want)
	}
	if k.Copy(x, at) != nil || k2.Copy(x, at) != nil {
		t.Error("on a Device that keeps nothing, an old copy is still claimed")
	}
}
