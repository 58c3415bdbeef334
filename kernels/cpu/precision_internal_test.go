package cpu

import (
	"errors"
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/macdist/macdist/kernels"
)

// TestCheckBF16 decides bf16 for CPUs this machine is not: the ISA is
// injected, so the verdicts do not depend on where the test runs.
func TestCheckBF16(t *testing.T) {
	missing := errors.New("libdnnl.so.2 not found")
	for _, c := range []struct {
		dnn     dnnImpl
		isa     string
		err     error
		env     string
		wantErr []string // substrings; nil for success
	}{
		{dnnOneDNN, "avx512_core_amx", nil, "", nil},
		{dnnOneDNN, "avx512_core_bf16", nil, "", nil},
		{dnnOneDNN, "avx512_core_vnni", nil, "", []string{"no native bf16", "avx512_core_vnni", "--precision fp32", "MACDIST_BF16=emulate"}},
		{dnnOneDNN, "avx2", nil, "", []string{"no native bf16", "avx2", "--precision fp32"}},
		{dnnOneDNN, "avx512_core", nil, "", []string{"no native bf16", "avx512_core", "MACDIST_BF16=emulate"}},
		{dnnOneDNN, "avx512_core_vnni", nil, "emulate", nil},
		{dnnOneDNN, "avx512_core", nil, "emulate", nil},
		{dnnOneDNN, "avx2", nil, "emulate", []string{"needs oneDNN's emulation on AVX-512", "avx2", "--precision fp32"}},
		{dnnOneDNN, "avx512_core_vnni", nil, "yes", []string{"no native bf16"}},
		{dnnNone, "", missing, "emulate", []string{"needs oneDNN", "libdnnl.so.2 not found", "--precision fp32"}},
		{dnnNone, "avx512_core_amx", nil, "", []string{"im2col", "--precision fp32"}},
	} {
		err := checkBF16(c.dnn, c.isa, c.err, c.env)
		if (err == nil) != (c.wantErr == nil) {
			t.Errorf("checkBF16(%v, %q, %v, %q) = %v", c.dnn, c.isa, c.err, c.env, err)
			continue
		}
		for _, s := range c.wantErr {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("checkBF16(%v, %q, %v, %q) = %q, want it to say %q", c.dnn, c.isa, c.err, c.env, err, s)
			}
		}
	}
}

func TestRoundBF16(t *testing.T) {
	for _, c := range []struct{ in, want float32 }{
		{1, 1},
		{0, 0},
		{-2.5, -2.5},
		{1 + 1.0/256, 1},                    // a tie: to the even 1
		{1 + 3.0/256, 1 + 4.0/256},          // a tie: to the even 1+2^-6
		{1 + 1.0/256 + 1.0/4096, 1.0078125}, // above the tie: up
		{float32(math.Pi), 3.140625},
		{math.MaxFloat32, float32(math.Inf(1))}, // rounds past the largest bf16
		{float32(math.Inf(-1)), float32(math.Inf(-1))},
	} {
		if got := roundBF16(c.in); got != c.want {
			t.Errorf("roundBF16(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	// A NaN whose payload lies only in the low 16 bits must not become Inf.
	if got := roundBF16(math.Float32frombits(0x7f800001)); !math.IsNaN(float64(got)) {
		t.Errorf("roundBF16(NaN) = %v", got)
	}
}

// TestBF16MatMulOneDNN checks that MatMul in BF16 goes to oneDNN's
// matmul for every transposition and for batches that share A or B
// (stride 0), and agrees there with Gemm on rounded operands.
func TestBF16MatMulOneDNN(t *testing.T) {
	d := bf16Device(t)
	if err := d.SetPrecision(kernels.BF16); err != nil {
		t.Fatal(err)
	}
	const m, n, k, batch = 5, 6, 19, 3
	round := func(v []float32) []float32 {
		r := make([]float32, len(v))
		for i, x := range v {
			r[i] = roundBF16(x)
		}
		return r
	}
	for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
		for _, strides := range [][2]int{{m * k, k * n}, {0, k * n}, {m * k, 0}} {
			lda, ldb := k, n
			if tr[0] {
				lda = m
			}
			if tr[1] {
				ldb = k
			}
			a, b := sines(batch*m*k, 0.7), sines(batch*k*n, 0.3)
			got, want := sines(batch*m*n, 0.1), sines(batch*m*n, 0.1)
			d.MatMulStridedAt(tr[0], tr[1], m, n, k, 0.25, d.Wrap(a), 0, lda, strides[0], d.Wrap(b), 0, ldb, strides[1],
				0.5, d.Wrap(got), 0, n, m*n, batch)
			d.GemmStrided(tr[0], tr[1], m, n, k, 0.25, d.Wrap(round(a)), 0, lda, strides[0], d.Wrap(round(b)), 0, ldb, strides[1],
				0.5, d.Wrap(want), 0, n, m*n, batch)
			key := matKey{transA: tr[0], transB: tr[1], m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: n,
				strideA: strides[0], strideB: strides[1], strideC: m * n, batch: batch, alpha: 0.25, beta: 0.5,
				threads: runtime.GOMAXPROCS(0)}
			impl := d.bf16.mats.impl(key)
			if impl == "" {
				t.Errorf("trans %v, strides %v: oneDNN made no matmul", tr, strides)
			}
			var worst, scale float64
			for i := range got {
				worst = math.Max(worst, math.Abs(float64(got[i]-want[i])))
				scale = math.Max(scale, math.Abs(float64(want[i])))
			}
			if worst > 1e-5*scale {
				t.Errorf("trans %v, strides %v (%s): off by %.2g of %.2g", tr, strides, impl, worst, scale)
			}
		}
	}
	// beta = 0: C is not read, so a NaN there does not propagate (Gemm's rule).
	c := make([]float32, m*n)
	for i := range c {
		c[i] = float32(math.NaN())
	}
	d.MatMulAt(false, false, m, n, k, 1, d.Wrap(sines(m*k, 0.7)), k, d.Wrap(sines(k*n, 0.3)), n, 0, d.Wrap(c), n)
	for _, v := range c {
		if math.IsNaN(float64(v)) {
			t.Fatal("MatMul with beta 0 read C")
		}
	}
}

// TestBF16MatMulSharedA checks that the second product of MatMulSharedAAt,
// which takes the first's bf16 copy of A, gives what a MatMulAt of its own
// gives, bit for bit, whichever way each product reads A; a product on
// another matrix runs just before, so a stale copy would show.
func TestBF16MatMulSharedA(t *testing.T) {
	d := bf16Device(t)
	// A is stored rows×cols, lda = cols+3; each product multiplies op(A)
	// by a B of n columns.
	const rows, cols, lda, n = 37, 21, 24, 9
	product := func(transA bool, seed float64) (kernels.Product, []float32) {
		m, k := rows, cols
		if transA {
			m, k = cols, rows
		}
		c := sines(m*n, seed)
		return kernels.Product{TransA: transA, M: m, N: n, K: k, Alpha: 0.5, B: d.Wrap(sines(k*n, seed+0.2)), LDB: n,
			Beta: 0.25, C: d.Wrap(c), LDC: n}, c
	}
	for _, prec := range []kernels.Precision{kernels.FP32, kernels.BF16} {
		if err := d.SetPrecision(prec); err != nil {
			t.Fatal(err)
		}
		for _, tr := range [][2]bool{{true, false}, {false, false}, {true, true}, {false, true}} {
			a, other := d.Wrap(sines(rows*lda, 0.7)), d.Wrap(sines(rows*lda, 1.3))
			p1, got1 := product(tr[0], 0.1)
			p2, got2 := product(tr[1], 0.4)
			q1, want1 := product(tr[0], 0.1)
			q2, want2 := product(tr[1], 0.4)
			for _, q := range [2]kernels.Product{q1, q2} {
				d.MatMulAt(q.TransA, q.TransB, q.M, q.N, q.K, q.Alpha, a, lda, q.B, q.LDB, q.Beta, q.C, q.LDC)
			}
			// Another A through the same shapes, so that the copy the
			// shared call must not reuse holds something else.
			scratch, _ := product(tr[1], 0.9)
			d.MatMulAt(scratch.TransA, scratch.TransB, scratch.M, scratch.N, scratch.K, 1, other, lda,
				scratch.B, scratch.LDB, 0, scratch.C, scratch.LDC)
			d.MatMulSharedAAt(a, lda, p1, p2)
			if !slices.Equal(got1, want1) || !slices.Equal(got2, want2) {
				t.Errorf("%v, trans %v: MatMulSharedAAt differs from two MatMulAt", prec, tr)
			}
			if prec == kernels.BF16 {
				for _, p := range [2]kernels.Product{p1, p2} {
					key := matKey{transA: p.TransA, transB: p.TransB, m: p.M, n: p.N, k: p.K, lda: lda, ldb: p.LDB, ldc: p.LDC,
						batch: 1, alpha: p.Alpha, beta: p.Beta, threads: runtime.GOMAXPROCS(0)}
					if d.bf16.mats.impl(key) == "" {
						t.Errorf("trans %v: oneDNN made no matmul for %+v, so the shared copy went untested", tr, key)
					}
				}
			}
		}
	}
}

// bf16Device is a Device that computes BF16 through oneDNN, natively or
// emulated, or skips t.
func bf16Device(t *testing.T) *Device {
	t.Helper()
	t.Setenv("MACDIST_BF16", "emulate")
	d, err := NewWithDNN("onednn")
	if err != nil {
		t.Skip(err)
	}
	if isa := isaName(oneDNNISA()); !strings.HasPrefix(isa, "avx512_core") {
		t.Skipf("bf16 needs AVX-512 here, native or emulated; oneDNN's ISA is %s", isa)
	}
	return d
}

// sines is n values of sin(i·f + 1).
func sines(n int, f float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.Sin(float64(i)*f + 1))
	}
	return v
}

// TestBF16KeptOperand checks MatMulKept as a linear layer uses it
// (Y = X·Wᵀ keeping X, then dW += dYᵀ·X with X's copy beside dX = dY·W):
// bit for bit what MatMulAt gives, in FP32 and BF16; the copy is used (a
// change to X after the forward does not reach the backward's product,
// as the layer's contract has it) and refused for another matrix or
// another storage.
func TestBF16KeptOperand(t *testing.T) {
	d := bf16Device(t)
	const rows, in, out = 45, 19, 13
	xAt := kernels.StoredMatrix{Batch: 1, Rows: rows, Cols: in, LD: in}
	for _, prec := range []kernels.Precision{kernels.FP32, kernels.BF16} {
		if err := d.SetPrecision(prec); err != nil {
			t.Fatal(err)
		}
		xs := sines(rows*in, 0.3)
		x, w, dy := d.Wrap(xs), d.Wrap(sines(out*in, 0.5)), d.Wrap(sines(rows*out, 0.9))
		var keep kernels.KeptOperand
		y, wantY := make([]float32, rows*out), make([]float32, rows*out)
		kernels.MatMulKept(d, &keep, nil, false, true, rows, out, in, 1, x, in, w, in, 0, d.Wrap(y), out)
		d.MatMulAt(false, true, rows, out, in, 1, x, in, w, in, 0, d.Wrap(wantY), out)
		if !slices.Equal(y, wantY) {
			t.Errorf("%v: MatMulKept differs from MatMulAt", prec)
		}
		if held := keep.Copy(x, xAt) != nil; held != (prec == kernels.BF16) {
			t.Fatalf("%v: a copy of X kept: %v", prec, held)
		}
		xOld := slices.Clone(xs)
		for i := range xs {
			xs[i] += 0.25 // X changes; where the copy is used, the backward does not see it
		}
		backward := func(kb *kernels.KeptOperand, xb kernels.Buffer) (dw, dx []float32) {
			dw, dx = sines(out*in, 0.1), make([]float32, rows*in)
			d.MatMulSharedAAt(dy, out, kernels.Product{TransA: true, M: out, N: in, K: rows, Alpha: 1, B: xb, LDB: in,
				Beta: 1, C: d.Wrap(dw), LDC: in, KeptB: kb},
				kernels.Product{M: rows, N: in, K: out, Alpha: 1, B: w, LDB: in, C: d.Wrap(dx), LDC: in})
			return dw, dx
		}
		gotDW, gotDX := backward(&keep, x)
		want := xs
		if prec == kernels.BF16 {
			want = xOld
		}
		wantDW, wantDX := backward(nil, d.Wrap(want))
		if !slices.Equal(gotDW, wantDW) || !slices.Equal(gotDX, wantDX) {
			t.Errorf("%v: the backward with X kept differs from one on the X it was kept from", prec)
		}
		solo := sines(out*in, 0.1)
		kernels.MatMulKept(d, nil, &keep, true, false, out, in, rows, 1, dy, out, x, in, 1, d.Wrap(solo), in)
		if !slices.Equal(solo, wantDW) {
			t.Errorf("%v: MatMulKept (B) differs from the shared backward", prec)
		}
		// Another matrix is rounded afresh, and its copy replaces X's.
		other := d.Wrap(slices.Clone(xs))
		gotDW, _ = backward(&keep, other)
		wantDW, _ = backward(nil, other)
		if !slices.Equal(gotDW, wantDW) {
			t.Errorf("%v: a kept copy of X stood in for another matrix", prec)
		}
		if keep.Copy(x, xAt) != nil {
			t.Errorf("%v: the copy still claims X after rounding another matrix into it", prec)
		}
	}
}

// TestBF16KeptStrided checks MatMulStridedKept as attention uses it: the
// heads of Q and K side by side in one buffer, batch matrices apart, kept
// by the forward's scores S = Q·Kᵀ and read again by the backward's
// dK = dSᵀ·Q and dQ = dS·K, bit for bit as MatMulStridedAt on the
// matrices they were kept from; a copy serves its own head only.
func TestBF16KeptStrided(t *testing.T) {
	d := bf16Device(t)
	if err := d.SetPrecision(kernels.BF16); err != nil {
		t.Fatal(err)
	}
	const batch, n, dh, heads = 5, 7, 8, 2
	const ld, stride = 2 * heads * dh, n * 2 * heads * dh // rows of [Q heads | K heads]
	qk := sines(batch*stride, 0.21)
	buf := d.Wrap(qk)
	kq, kk := make([]kernels.KeptOperand, heads), make([]kernels.KeptOperand, heads)
	scores := make([]float32, heads*batch*n*n)
	for h := 0; h < heads; h++ {
		kernels.MatMulStridedKept(d, &kq[h], &kk[h], false, true, n, n, dh, 0.5, buf, h*dh, ld, stride,
			buf, (heads+h)*dh, ld, stride, 0, d.Wrap(scores), h*batch*n*n, n, n*n, batch)
	}
	old := slices.Clone(qk)
	for i := range qk {
		qk[i] = -qk[i] // the forward's Q and K are now stale here
	}
	ds := d.Wrap(sines(heads*batch*n*n, 0.4))
	for h := 0; h < heads; h++ {
		for _, c := range []struct {
			name  string
			trans bool
			keep  []kernels.KeptOperand
			off   int
		}{{"dK = dSᵀ·Q", true, kq, h * dh}, {"dQ = dS·K", false, kk, (heads + h) * dh}} {
			got, want := make([]float32, batch*n*dh), make([]float32, batch*n*dh)
			kernels.MatMulStridedKept(d, nil, &c.keep[h], c.trans, false, n, dh, n, 1, ds, h*batch*n*n, n, n*n,
				buf, c.off, ld, stride, 0, d.Wrap(got), 0, dh, n*dh, batch)
			d.MatMulStridedAt(c.trans, false, n, dh, n, 1, ds, h*batch*n*n, n, n*n,
				d.Wrap(old), c.off, ld, stride, 0, d.Wrap(want), 0, dh, n*dh, batch)
			if !slices.Equal(got, want) {
				t.Errorf("head %d, %s: differs from the product on the kept matrices", h, c.name)
			}
		}
	}
	// Head 0's copy of Q is no copy of head 1's Q.
	at := kernels.StoredMatrix{Off: dh, Batch: batch, Stride: stride, Rows: n, Cols: dh, LD: ld}
	if kq[0].Copy(buf, at) != nil {
		t.Error("head 0's copy claims head 1's Q")
	}
	at.Off = 0
	if kq[0].Copy(buf, at) == nil {
		t.Error("head 0's copy of Q is gone")
	}
}
