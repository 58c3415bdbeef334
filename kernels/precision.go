package kernels

import "fmt"

// Precision is the arithmetic a Device runs its convolutions and the
// matrix products of linear layers and attention in.
type Precision uint8

const (
	// FP32 computes everything in float32, the default.
	FP32 Precision = iota
	// BF16 is mixed precision as torch.autocast("cpu", torch.bfloat16)
	// has it: the inputs of convolutions and of MatMul are rounded to
	// bfloat16, products accumulate in float32 and outputs are float32.
	// Everything else (normalisation, softmax, loss, optimizer, master
	// weights and gradients) stays float32.
	BF16
)

func (p Precision) String() string {
	switch p {
	case FP32:
		return "fp32"
	case BF16:
		return "bf16"
	}
	return fmt.Sprintf("precision(%d)", uint8(p))
}

// ParsePrecision reads "fp32" or "bf16" ("" is fp32).
func ParsePrecision(s string) (Precision, error) {
	switch s {
	case "fp32", "":
		return FP32, nil
	case "bf16":
		return BF16, nil
	}
	return FP32, fmt.Errorf("precision %q: want fp32 or bf16", s)
}

// MixedPrecision is a Device that can compute in a lower precision than
// float32 where torch.autocast would (the cpu Device, in bf16 through
// oneDNN). The precision is the Device's state, not the model's: layers
// call MatMul and MatMulStrided below for the products autocast lowers,
// and the Device's convolutions follow its precision by themselves.
type MixedPrecision interface {
	// SetPrecision switches the Device's precision, or says why it
	// cannot (no native support on this CPU, a library missing).
	SetPrecision(p Precision) error
	// Precision is the Device's current precision.
	Precision() Precision
	// MatMulAt is Gemm in the Device's precision: in BF16, A and B
	// are rounded to bfloat16 first; C accumulates and stays float32.
	MatMulAt(transA, transB bool, m, n, k int, alpha float32, a Buffer, lda int, b Buffer, ldb int, beta float32, c Buffer, ldc int)
	// MatMulStridedAt is GemmStrided in the Device's precision.
	MatMulStridedAt(transA, transB bool, m, n, k int, alpha float32,
		a Buffer, aOff, lda, strideA int,
		b Buffer, bOff, ldb, strideB int,
		beta float32, c Buffer, cOff, ldc, strideC int, batch int)
}

// SetPrecision sets dev's precision. FP32 needs nothing; any other
// precision needs a MixedPrecision Device that accepts it.
func SetPrecision(dev Device, p Precision) error {
	if m, ok := dev.(MixedPrecision); ok {
		return m.SetPrecision(p)
	}
	if p == FP32 {
		return nil
	}
	return fmt.Errorf("precision %v: the device %s computes in fp32 only; use --precision fp32", p, dev.Name())
}

// PrecisionOf is dev's precision: FP32 unless it is a MixedPrecision
// Device set otherwise.
func PrecisionOf(dev Device) Precision {
	if m, ok := dev.(MixedPrecision); ok {
		return m.Precision()
	}
	return FP32
}

// DescribePrecision is dev's precision as a run's header shows it:
// "fp32", or what the device says of how it computes its precision
// (natively or emulated) where it says something.
func DescribePrecision(dev Device) string {
	if d, ok := dev.(interface{ PrecisionNote() string }); ok {
		return d.PrecisionNote()
	}
	return PrecisionOf(dev).String()
}

// MatMul is the matrix product of a linear layer or an attention: Gemm,
// in dev's precision where dev has one (see MixedPrecision).
func MatMul(dev Device, transA, transB bool, m, n, k int, alpha float32, a Buffer, lda int, b Buffer, ldb int, beta float32, c Buffer, ldc int) {
	if mp, ok := dev.(MixedPrecision); ok {
		mp.MatMulAt(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	dev.Gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// MatMulStrided is GemmStrided in dev's precision, as MatMul is Gemm.
func MatMulStrided(dev Device, transA, transB bool, m, n, k int, alpha float32,
	a Buffer, aOff, lda, strideA int,
	b Buffer, bOff, ldb, strideB int,
	beta float32, c Buffer, cOff, ldc, strideC int, batch int) {
	if mp, ok := dev.(MixedPrecision); ok {
		mp.MatMulStridedAt(transA, transB, m, n, k, alpha, a, aOff, lda, strideA, b, bOff, ldb, strideB, beta, c, cOff, ldc, strideC, batch)
		return
	}
	dev.GemmStrided(transA, transB, m, n, k, alpha, a, aOff, lda, strideA, b, bOff, ldb, strideB, beta, c, cOff, ldc, strideC, batch)
}

// Product is one matrix product C = Alpha·op(A)·op(B) + Beta·C whose
// left operand A is given apart (see MatMulSharedA).
type Product struct {
	TransA, TransB bool
	M, N, K        int
	Alpha          float32
	B              Buffer
	LDB            int
	Beta           float32
	C              Buffer
	LDC            int
	// KeptB, where not nil, keeps B's rounded copy (see MatMulKept).
	KeptB *KeptOperand
}

// SharedOperandMatMul is a MixedPrecision Device that converts the left
// operand of two products once (see MatMulSharedA).
type SharedOperandMatMul interface {
	MatMulSharedAAt(a Buffer, lda int, p1, p2 Product)
}

// MatMulSharedA computes p1 and then p2 in dev's precision, both reading
// the same stored matrix A (rows ld apart), as a linear layer's backward
// reads its output gradient dY into dW = dYᵀ·X and dX = dY·W. The two
// must read A whole and alike: op(A) of one is op(A) of the other or its
// transpose. A Device that rounds its operands to bf16 then rounds A
// once; the results are those of two MatMul calls, bit for bit.
func MatMulSharedA(dev Device, a Buffer, lda int, p1, p2 Product) {
	r1, c1 := p1.M, p1.K
	if p1.TransA {
		r1, c1 = c1, r1
	}
	r2, c2 := p2.M, p2.K
	if p2.TransA {
		r2, c2 = c2, r2
	}
	if r1 != r2 || c1 != c2 {
		panic(fmt.Sprintf("kernels: MatMulSharedA: the products read A as %d×%d and %d×%d", r1, c1, r2, c2))
	}
	if s, ok := dev.(SharedOperandMatMul); ok {
		s.MatMulSharedAAt(a, lda, p1, p2)
		return
	}
	for _, p := range [2]Product{p1, p2} {
		MatMulKept(dev, nil, p.KeptB, p.TransA, p.TransB, p.M, p.N, p.K, p.Alpha, a, lda, p.B, p.LDB, p.Beta, p.C, p.LDC)
	}
}

// StoredMatrix is where a matrix operand lies in its buffer: Batch
// matrices (1 for a Gemm's) Stride apart from Off, each Rows×Cols as
// stored, rows LD apart.
type StoredMatrix struct {
	Off, Batch, Stride, Rows, Cols, LD int
}

// KeptOperand holds a Device's rounded copy of one matrix, so that the
// products that read the matrix round it once: a linear layer's forward
// rounds its input X for X·Wᵀ and its backward reads X again for
// dW = dYᵀ·X, as autocast saves the bf16 input for backward; attention
// reads each head's Q, K, V and P in its forward and again in its
// backward. A layer owns one per matrix; the zero value holds nothing.
// The copy stands for the matrix until the matrix changes, which the
// owner, not the Device, must see to: it calls Forget when it writes the
// matrix anew.
type KeptOperand struct {
	src  Buffer
	at   StoredMatrix
	held any
}

// Set records that the Device's copy (its own type, reused from call to
// call) rounds the matrix of src at at.
func (k *KeptOperand) Set(src Buffer, at StoredMatrix, held any) {
	k.src, k.at, k.held = src, at, held
}

// Copy is the Device's copy if it rounds the matrix of src at at, and nil
// otherwise; the storage itself, valid or not, is Storage.
func (k *KeptOperand) Copy(src Buffer, at StoredMatrix) any {
	if k == nil || k.src == nil || k.src != src || k.at != at {
		return nil
	}
	return k.held
}

// Storage is the Device's copy whatever it holds, for a Device to round
// into again; nil before the first Set.
func (k *KeptOperand) Storage() any { return k.held }

// Forget marks the copy as holding nothing, keeping its storage.
func (k *KeptOperand) Forget() {
	if k != nil {
		k.src = nil
	}
}

// OperandKeeper is a MixedPrecision Device that keeps its operands'
// rounded copies in KeptOperands (see MatMulKept).
type OperandKeeper interface {
	// MatMulKeptAt is MatMulAt with keepA and keepB (see MatMulKept).
	MatMulKeptAt(keepA, keepB *KeptOperand, transA, transB bool, m, n, k int, alpha float32, a Buffer, lda int, b Buffer, ldb int, beta float32, c Buffer, ldc int)
	// MatMulStridedKeptAt is MatMulStridedAt with keepA and keepB.
	MatMulStridedKeptAt(keepA, keepB *KeptOperand, transA, transB bool, m, n, k int, alpha float32,
		a Buffer, aOff, lda, strideA int,
		b Buffer, bOff, ldb, strideB int,
		beta float32, c Buffer, cOff, ldc, strideC int, batch int)
}

// MatMulKept is MatMul that keeps the rounded copies of its operands:
// where keepA (keepB) holds a copy of A (B) stored as this product reads
// it, the product takes it instead of rounding A again, and where it
// holds none, the product leaves its own copy there. Either may be nil;
// the results are MatMul's, bit for bit. A Device that rounds nothing, or
// keeps nothing, leaves them empty.
func MatMulKept(dev Device, keepA, keepB *KeptOperand, transA, transB bool, m, n, k int, alpha float32, a Buffer, lda int, b Buffer, ldb int, beta float32, c Buffer, ldc int) {
	if o, ok := dev.(OperandKeeper); ok {
		o.MatMulKeptAt(keepA, keepB, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	keepA.Forget()
	keepB.Forget()
	MatMul(dev, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// MatMulStridedKept is MatMulStrided with the operands' copies kept, as
// MatMulKept is MatMul.
func MatMulStridedKept(dev Device, keepA, keepB *KeptOperand, transA, transB bool, m, n, k int, alpha float32,
	a Buffer, aOff, lda, strideA int,
	b Buffer, bOff, ldb, strideB int,
	beta float32, c Buffer, cOff, ldc, strideC int, batch int) {
	if o, ok := dev.(OperandKeeper); ok {
		o.MatMulStridedKeptAt(keepA, keepB, transA, transB, m, n, k, alpha, a, aOff, lda, strideA, b, bOff, ldb, strideB,
			beta, c, cOff, ldc, strideC, batch)
		return
	}
	keepA.Forget()
	keepB.Forget()
	MatMulStrided(dev, transA, transB, m, n, k, alpha, a, aOff, lda, strideA, b, bOff, ldb, strideB, beta, c, cOff, ldc, strideC, batch)
}
