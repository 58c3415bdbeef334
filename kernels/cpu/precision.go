package cpu

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/macdist/macdist/kernels"
)

// bf16EnvEmulate is the value of MACDIST_BF16 that lets BF16 run on a
// CPU without native bf16, through oneDNN's emulation on avx512_core: as
// exact as native and slower than float32, for tests and development.
const bf16EnvEmulate = "emulate"

// nativeBF16 reports whether oneDNN's ISA computes bf16 in hardware
// (AVX512-BF16's dot products or AMX's tiles).
func nativeBF16(isa string) bool {
	return isa == "avx512_core_bf16" || isa == "avx512_core_amx"
}

// BF16Support says whether this CPU runs bf16 natively, and through
// what: the ISA oneDNN picked, or why oneDNN is not there.
func BF16Support() (native bool, isa string, err error) {
	_, isa, err = OneDNN()
	if err != nil {
		return false, "", err
	}
	return nativeBF16(isa), isa, nil
}

// checkBF16 is SetPrecision's verdict for BF16, given what it depends on:
// the Device's convolution path, oneDNN's ISA (or why it is missing) and
// MACDIST_BF16.
func checkBF16(dnn dnnImpl, isa string, dnnErr error, env string) error {
	const fix = "use --precision fp32"
	switch {
	case dnnErr != nil:
		return fmt.Errorf("precision bf16 needs oneDNN: %v; %s", dnnErr, fix)
	case dnn != dnnOneDNN:
		return fmt.Errorf("precision bf16 needs oneDNN's convolutions, and this device convolves with im2col (MACDIST_DNN=none?); %s", fix)
	case nativeBF16(isa):
		return nil
	case env == bf16EnvEmulate && strings.HasPrefix(isa, "avx512_core"):
		return nil
	case env == bf16EnvEmulate:
		return fmt.Errorf("precision bf16: MACDIST_BF16=%s needs oneDNN's emulation on AVX-512 (avx512_core), and its ISA here is %s; %s",
			bf16EnvEmulate, isa, fix)
	}
	if !strings.HasPrefix(isa, "avx512_core") {
		return fmt.Errorf("precision bf16: this CPU has no native bf16 (oneDNN's ISA is %s; bf16 needs avx512_core_bf16 or avx512_core_amx); %s",
			isa, fix)
	}
	return fmt.Errorf("precision bf16: this CPU has no native bf16 (oneDNN's ISA is %s; bf16 needs avx512_core_bf16 or avx512_core_amx); %s, or set MACDIST_BF16=%s to emulate it (slow; for tests)",
		isa, fix, bf16EnvEmulate)
}

// CheckBF16 says whether a Device from New would accept BF16, without
// making one: for a launcher, to refuse before it starts its workers.
func CheckBF16() error {
	_, isa, err := OneDNN()
	return checkBF16(defaultDNN(), isa, err, os.Getenv("MACDIST_BF16"))
}

// SetPrecision sets the arithmetic of d's convolutions and MatMul
// products. BF16 needs oneDNN, and a CPU with native bf16 unless
// MACDIST_BF16=emulate.
func (d *Device) SetPrecision(p kernels.Precision) error {
	switch p {
	case kernels.FP32:
	case kernels.BF16:
		_, isa, err := OneDNN()
		if err := checkBF16(d.dnn, isa, err, os.Getenv("MACDIST_BF16")); err != nil {
			return err
		}
	default:
		return fmt.Errorf("cpu: unknown precision %v", p)
	}
	d.mu.Lock()
	d.prec = p
	d.mu.Unlock()
	return nil
}

// Precision is d's precision, FP32 unless SetPrecision changed it.
func (d *Device) Precision() kernels.Precision { return d.prec }

// PrecisionNote is d's precision and, in BF16, whether the CPU computes
// it natively or oneDNN emulates it (see kernels.DescribePrecision).
func (d *Device) PrecisionNote() string {
	if d.prec != kernels.BF16 {
		return d.prec.String()
	}
	if native, isa, err := BF16Support(); err == nil && native {
		return "bf16 (native, " + isa + ")"
	}
	return "bf16 (emulated by oneDNN: slow, MACDIST_BF16=emulate)"
}

// bf16Stage is MatMul's state in BF16: oneDNN's matmul primitives (bf16
// operands, float32 accumulation and result; AVX512-BF16's or AMX's dot
// products where the CPU has them), made once per shape, and for a shape
// oneDNN refuses, the bf16-rounded copies of the operands, in float32
// with their low 16 bits zero, kept from call to call. A product of two
// bf16 numbers is exact in float32 (8 + 8 significant bits), so feeding
// the rounded copies to the float32 Gemm gives what a bf16 matmul
// accumulating in float32 gives, up to the order of the sum.
type bf16Stage struct {
	mu   sync.Mutex // held for a whole MatMul, which uses the state below
	mats dnnMatMuls
	a, b buffer
}

// matKey is one MatMul shape, as its primitive is made for it: a Gemm is
// a batch of one with strides 0.
type matKey struct {
	transA, transB            bool
	m, n, k, lda, ldb, ldc    int
	strideA, strideB, strideC int
	batch                     int
	alpha, beta               float32
	threads                   int
}

// useDNNMat reports whether MatMul hands a product to oneDNN: never for
// an empty one (Gemm scales C) or one with a NaN coefficient (it would
// never find its primitive again).
func (d *Device) useDNNMat(m, n, k int, alpha, beta float32) bool {
	return d.dnn == dnnOneDNN && m > 0 && n > 0 && k > 0 && alpha != 0 && alpha == alpha && beta == beta
}

// roundBF16 rounds x to the nearest bfloat16, ties to even, as PyTorch's
// and oneDNN's conversions do; NaN stays NaN, ±Inf stays.
func roundBF16(x float32) float32 {
	u := math.Float32bits(x)
	if u&0x7f800000 == 0x7f800000 {
		if u&0x007fffff != 0 {
			u |= 0x00400000 // a NaN whose payload is all in the low half
		}
		return math.Float32frombits(u &^ 0xffff)
	}
	u += 0x7fff + (u>>16)&1
	return math.Float32frombits(u &^ 0xffff)
}

// stage rounds into dst, grown as needed, the batch rows×cols matrices
// of src a Gemm reads (matrix i at i·stride, rows ld apart), and returns
// dst, of the length of the span they cover. Only the elements read are
// rounded: attention's per-head views leave most of each row to the
// other heads, and rounding those would cost more than the product.
func (d *Device) stage(dst *buffer, src []float32, batch, stride, rows, cols, ld int) *buffer {
	n := 0
	if rows > 0 && cols > 0 {
		n = (batch-1)*stride + (rows-1)*ld + cols
	}
	if cap(dst.data) < n {
		dst.data = make([]float32, n)
	}
	dst.data = dst.data[:n]
	dst.dev = d
	if stride == 0 {
		batch = 1
	}
	for i := 0; i < batch && n > 0; i++ {
		for r := 0; r < rows; r++ {
			o := i*stride + r*ld
			out, in := dst.data[o:o+cols], src[o:o+cols]
			for j, v := range in {
				out[j] = roundBF16(v)
			}
		}
	}
	return dst
}

// operand is the rows and columns of a Gemm operand as stored.
func operand(trans bool, r, c int) (rows, cols int) {
	if trans {
		return c, r
	}
	return r, c
}

// MatMulAt is Gemm in d's precision.
func (d *Device) MatMulAt(transA, transB bool, m, n, k int, alpha float32, a kernels.Buffer, lda int, b kernels.Buffer, ldb int, beta float32, c kernels.Buffer, ldc int) {
	d.MatMulKeptAt(nil, nil, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// MatMulKeptAt is kernels.MatMulKept in d's precision: in BF16, where
// oneDNN computes the product, the operands' bf16 copies are taken from
// keepA and keepB or left there.
func (d *Device) MatMulKeptAt(keepA, keepB *kernels.KeptOperand, transA, transB bool, m, n, k int, alpha float32, a kernels.Buffer, lda int, b kernels.Buffer, ldb int, beta float32, c kernels.Buffer, ldc int) {
	if d.prec != kernels.BF16 {
		keepA.Forget()
		keepB.Forget()
		d.Gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	st := &d.bf16
	st.mu.Lock()
	defer st.mu.Unlock()
	d.matMulBF16(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, keepA, keepB, false)
}

// MatMulSharedAAt is kernels.MatMulSharedA in d's precision: in BF16 on
// oneDNN, the second product takes the first's bf16 copy of A (packed
// densely in A's stored order whichever way a product reads it, so the
// same for both).
func (d *Device) MatMulSharedAAt(a kernels.Buffer, lda int, p1, p2 kernels.Product) {
	if d.prec != kernels.BF16 {
		for _, p := range [2]kernels.Product{p1, p2} {
			p.KeptB.Forget()
			d.Gemm(p.TransA, p.TransB, p.M, p.N, p.K, p.Alpha, a, lda, p.B, p.LDB, p.Beta, p.C, p.LDC)
		}
		return
	}
	st := &d.bf16
	st.mu.Lock()
	defer st.mu.Unlock()
	onDNN := d.matMulBF16(p1.TransA, p1.TransB, p1.M, p1.N, p1.K, p1.Alpha, a, lda, p1.B, p1.LDB, p1.Beta, p1.C, p1.LDC,
		nil, p1.KeptB, false)
	d.matMulBF16(p2.TransA, p2.TransB, p2.M, p2.N, p2.K, p2.Alpha, a, lda, p2.B, p2.LDB, p2.Beta, p2.C, p2.LDC,
		nil, p2.KeptB, onDNN)
}

// bf16Copy is a kernels.KeptOperand's storage on this Device: matrices
// in bf16, rows packed without gaps, as oneDNN's matmul reads its
// operands (see dnnMatMuls.matmul).
type bf16Copy struct{ data []uint16 }

// keptOperand is one operand's bf16 copy for a product: data to read
// (ready) or to fill and then record in keep.
type keptOperand struct {
	data  []uint16
	ready bool
	keep  *kernels.KeptOperand
	src   kernels.Buffer
	at    kernels.StoredMatrix
	store *bf16Copy
}

// resolveKept finds in keep the copy of src's batch rows×cols matrices
// (stride apart from off, rows ld apart), or the storage to round them
// into; the zero keptOperand without a keep.
func resolveKept(keep *kernels.KeptOperand, src kernels.Buffer, off, batch, stride, rows, cols, ld int) keptOperand {
	if keep == nil {
		return keptOperand{}
	}
	if stride == 0 || batch == 1 {
		batch, stride = 1, 0
	}
	at := kernels.StoredMatrix{Off: off, Batch: batch, Stride: stride, Rows: rows, Cols: cols, LD: ld}
	n := batch * rows * cols
	if n <= 0 {
		keep.Forget()
		return keptOperand{}
	}
	if cp, ok := keep.Copy(src, at).(*bf16Copy); ok && len(cp.data) == n {
		return keptOperand{data: cp.data, ready: true}
	}
	cp, _ := keep.Storage().(*bf16Copy)
	if cp == nil {
		cp = &bf16Copy{}
	}
	if cap(cp.data) < n {
		cp.data = make([]uint16, n)
	}
	cp.data = cp.data[:n]
	keep.Forget()
	return keptOperand{data: cp.data, keep: keep, src: src, at: at, store: cp}
}

// done records a copy made for keep, or leaves keep empty where oneDNN
// did not run the product.
func (o keptOperand) done(onDNN bool) {
	if o.keep != nil && onDNN {
		o.keep.Set(o.src, o.at, o.store)
	}
}

// bf16Opts are the operands' bf16 copies for one product in BF16: see
// dnnMatMuls.matmul.
type bf16Opts struct {
	aShared bool // A's copy is the previous product's, in the state's buffer
	a, b    keptOperand
}

// matMulBF16 is MatMulKeptAt in BF16, d.bf16.mu held, and reports whether
// oneDNN ran it. aShared offers oneDNN the previous product's copy of A
// for this one's, which the caller vouches for: the same matrix, stored
// alike.
func (d *Device) matMulBF16(transA, transB bool, m, n, k int, alpha float32, a kernels.Buffer, lda int, b kernels.Buffer, ldb int, beta float32, c kernels.Buffer, ldc int, keepA, keepB *kernels.KeptOperand, aShared bool) bool {
	as, bs := d.slice(a, "MatMul", "A"), d.slice(b, "MatMul", "B")
	na, nb, _ := gemmShapes("MatMul", transA, transB, m, n, k, lda, ldb, ldc)
	needLen("MatMul", "A", len(as), na)
	needLen("MatMul", "B", len(bs), nb)
	ra, ca := operand(transA, m, k)
	rb, cb := operand(transB, k, n)
	st := &d.bf16
	if keepA == keepB {
		keepB = nil // one matrix read twice: its copy serves A
	}
	o := bf16Opts{aShared: aShared}
	if !aShared {
		o.a = resolveKept(keepA, a, 0, 1, 0, ra, ca, lda)
	}
	o.b = resolveKept(keepB, b, 0, 1, 0, rb, cb, ldb)
	onDNN := false
	if d.useDNNMat(m, n, k, alpha, beta) {
		cs := d.slice(c, "MatMul", "C")
		_, _, nc := gemmShapes("MatMul", transA, transB, m, n, k, lda, ldb, ldc)
		needLen("MatMul", "C", len(cs), nc)
		key := matKey{transA: transA, transB: transB, m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc, batch: 1,
			alpha: alpha, beta: beta, threads: runtime.GOMAXPROCS(0)}
		onDNN = st.mats.matmul(key, as, bs, cs, o)
	}
	o.a.done(onDNN)
	o.b.done(onDNN)
	if !onDNN {
		d.Gemm(transA, transB, m, n, k, alpha, d.stage(&st.a, as, 1, 0, ra, ca, lda), lda,
			d.stage(&st.b, bs, 1, 0, rb, cb, ldb), ldb, beta, c, ldc)
	}
	return onDNN
}

// MatMulStridedAt is GemmStrided in d's precision.
func (d *Device) MatMulStridedAt(transA, transB bool, m, n, k int, alpha float32,
	a kernels.Buffer, aOff, lda, strideA int,
	b kernels.Buffer, bOff, ldb, strideB int,
	beta float32, c kernels.Buffer, cOff, ldc, strideC int, batch int) {
	d.MatMulStridedKeptAt(nil, nil, transA, transB, m, n, k, alpha, a, aOff, lda, strideA, b, bOff, ldb, strideB,
		beta, c, cOff, ldc, strideC, batch)
}

// MatMulStridedKeptAt is kernels.MatMulStridedKept in d's precision.
func (d *Device) MatMulStridedKeptAt(keepA, keepB *kernels.KeptOperand, transA, transB bool, m, n, k int, alpha float32,
	a kernels.Buffer, aOff, lda, strideA int,
	b kernels.Buffer, bOff, ldb, strideB int,
	beta float32, c kernels.Buffer, cOff, ldc, strideC int, batch int) {
	if d.prec != kernels.BF16 || batch <= 0 || m == 0 || n == 0 || k == 0 || aOff < 0 || bOff < 0 || cOff < 0 ||
		strideA < 0 || strideB < 0 || strideC < 0 || (strideC == 0 && batch > 1) {
		// Nothing to round, or arguments GemmStrided refuses with its message.
		keepA.Forget()
		keepB.Forget()
		d.GemmStrided(transA, transB, m, n, k, alpha, a, aOff, lda, strideA, b, bOff, ldb, strideB, beta, c, cOff, ldc, strideC, batch)
		return
	}
	const op = "MatMulStrided"
	as, bs := d.slice(a, op, "A"), d.slice(b, op, "B")
	na, nb, _ := gemmShapes(op, transA, transB, m, n, k, lda, ldb, ldc)
	endA, endB := aOff+(batch-1)*strideA+na, bOff+(batch-1)*strideB+nb
	needLen(op, "A", len(as), endA)
	needLen(op, "B", len(bs), endB)
	ra, ca := operand(transA, m, k)
	rb, cb := operand(transB, k, n)
	st := &d.bf16
	st.mu.Lock()
	defer st.mu.Unlock()
	if keepA == keepB {
		keepB = nil
	}
	o := bf16Opts{
		a: resolveKept(keepA, a, aOff, batch, strideA, ra, ca, lda),
		b: resolveKept(keepB, b, bOff, batch, strideB, rb, cb, ldb),
	}
	onDNN := false
	if d.useDNNMat(m, n, k, alpha, beta) {
		cs := d.slice(c, op, "C")
		_, _, nc := gemmShapes(op, transA, transB, m, n, k, lda, ldb, ldc)
		needLen(op, "C", len(cs), cOff+(batch-1)*strideC+nc)
		key := matKey{transA: transA, transB: transB, m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc,
			strideA: strideA, strideB: strideB, strideC: strideC, batch: batch, alpha: alpha, beta: beta,
			threads: runtime.GOMAXPROCS(0)}
		onDNN = st.mats.matmul(key, as[aOff:], bs[bOff:], cs[cOff:], o)
	}
	o.a.done(onDNN)
	o.b.done(onDNN)
	if onDNN {
		return
	}
	d.GemmStrided(transA, transB, m, n, k, alpha, d.stage(&st.a, as[aOff:endA], batch, strideA, ra, ca, lda), 0, lda, strideA,
		d.stage(&st.b, bs[bOff:endB], batch, strideB, rb, cb, ldb), 0, ldb, strideB, beta, c, cOff, ldc, strideC, batch)
}

var (
	_ kernels.MixedPrecision      = (*Device)(nil)
	_ kernels.SharedOperandMatMul = (*Device)(nil)
	_ kernels.OperandKeeper       = (*Device)(nil)
)
