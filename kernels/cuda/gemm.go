package cuda

import (
	"fmt"
	"math"

	"github.com/macdist/macdist/kernels"
)

// cuBLAS is column-major. A row-major matrix with leading dimension ld is
// its transpose in column-major order with the same ld, so the row-major
// C = op(A)·op(B) is computed as the column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: the
// operands swap, m and n swap, and the transpose flags stay as given.

// matNeed is the number of elements a row-major rows×cols matrix with
// leading dimension ld spans, after checking ld.
func matNeed(op, arg string, rows, cols, ld int) int {
	if ld < max(1, cols) {
		panic(fmt.Sprintf("cuda: %s: leading dimension of %s is %d, less than its %d columns", op, arg, ld, cols))
	}
	if rows == 0 || cols == 0 {
		return 0
	}
	return (rows-1)*ld + cols
}

// gemmShapes checks the geometry of one Gemm and returns the elements that
// A, B and C span.
func gemmShapes(op string, transA, transB bool, m, n, k, lda, ldb, ldc int) (na, nb, nc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("cuda: %s: negative size m=%d n=%d k=%d", op, m, n, k))
	}
	if max(m, n, k, lda, ldb, ldc) > math.MaxInt32 {
		panic(fmt.Sprintf("cuda: %s: sizes exceed cuBLAS's 32-bit integers: m=%d n=%d k=%d lda=%d ldb=%d ldc=%d",
			op, m, n, k, lda, ldb, ldc))
	}
	ra, ca := m, k
	if transA {
		ra, ca = k, m
	}
	rb, cb := k, n
	if transB {
		rb, cb = n, k
	}
	return matNeed(op, "A", ra, ca, lda), matNeed(op, "B", rb, cb, ldb), matNeed(op, "C", m, n, ldc)
}

// scaleC queues C = beta·C for batch m×n matrices strideC apart, starting
// off elements into c: what is left of a Gemm whose product is empty or
// multiplied by zero. d.mu must be held. With beta == 0, C is not read.
func (d *Device) scaleC(c *buffer, off, m, n, ldc, strideC, batch int, beta float32) {
	d.k(kScale2D).addr(c.ptr + uint64(off)*4).f32(beta).i64(m).i64(n).i64(ldc).i64(strideC).i64(batch).
		run1D(int64(batch) * int64(m) * int64(n))
}

// Gemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices.
func (d *Device) Gemm(transA, transB bool, m, n, k int, alpha float32, a kernels.Buffer, lda int, b kernels.Buffer, ldb int, beta float32, c kernels.Buffer, ldc int) {
	ab, bb, cb := d.buf(a, "Gemm", "A"), d.buf(b, "Gemm", "B"), d.buf(c, "Gemm", "C")
	na, nb, nc := gemmShapes("Gemm", transA, transB, m, n, k, lda, ldb, ldc)
	needLen("Gemm", "A", ab.n, na)
	needLen("Gemm", "B", bb.n, nb)
	needLen("Gemm", "C", cb.n, nc)
	if m == 0 || n == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if k == 0 || alpha == 0 {
		d.scaleC(cb, 0, m, n, ldc, 0, 1, beta)
		return
	}
	d.record("cublasSgemm", sgemm(d.ctx, d.blas, transB, transA, n, m, k, alpha, bb.ptr, ldb, ab.ptr, lda, beta, cb.ptr, ldc))
}

// maxBatch bounds the batch of one cublasSgemmStridedBatched call; larger
// batches are split, because some cuBLAS versions map the batch to a grid
// dimension limited to 65535.
const maxBatch = 65535

// GemmStrided runs batch Gemms on matrices at fixed strides.
func (d *Device) GemmStrided(transA, transB bool, m, n, k int, alpha float32,
	a kernels.Buffer, aOff, lda, strideA int,
	b kernels.Buffer, bOff, ldb, strideB int,
	beta float32, c kernels.Buffer, cOff, ldc, strideC int, batch int) {
	const op = "GemmStrided"
	ab, bb, cb := d.buf(a, op, "A"), d.buf(b, op, "B"), d.buf(c, op, "C")
	na, nb, nc := gemmShapes(op, transA, transB, m, n, k, lda, ldb, ldc)
	if batch < 0 || aOff < 0 || bOff < 0 || cOff < 0 || strideA < 0 || strideB < 0 || strideC < 0 {
		panic(fmt.Sprintf("cuda: GemmStrided: negative batch, offset or stride: batch=%d aOff=%d strideA=%d bOff=%d strideB=%d cOff=%d strideC=%d",
			batch, aOff, strideA, bOff, strideB, cOff, strideC))
	}
	if batch == 0 || m == 0 || n == 0 {
		return
	}
	needLen(op, "C", cb.n, cOff+(batch-1)*strideC+nc)
	if k != 0 && alpha != 0 {
		needLen(op, "A", ab.n, aOff+(batch-1)*strideA+na)
		needLen(op, "B", bb.n, bOff+(batch-1)*strideB+nb)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// Matrices of C that overlap (a stride of 0 accumulates) must be
	// computed one after the other, as kernels/cpu does; cuBLAS's batched
	// GEMM would run them at once.
	overlap := batch > 1 && strideC < nc
	if k == 0 || alpha == 0 {
		if overlap {
			for i := 0; i < batch; i++ {
				d.scaleC(cb, cOff+i*strideC, m, n, ldc, 0, 1, beta)
			}
		} else {
			d.scaleC(cb, cOff, m, n, ldc, strideC, batch, beta)
		}
		return
	}
	ptr := func(x *buffer, off, stride, i int) uint64 { return x.ptr + uint64(off+i*stride)*4 }
	if overlap {
		for i := 0; i < batch; i++ {
			d.record("cublasSgemm", sgemm(d.ctx, d.blas, transB, transA, n, m, k, alpha,
				ptr(bb, bOff, strideB, i), ldb, ptr(ab, aOff, strideA, i), lda, beta, ptr(cb, cOff, strideC, i), ldc))
		}
		return
	}
	for i := 0; i < batch; i += maxBatch {
		nb := min(maxBatch, batch-i)
		d.record("cublasSgemmStridedBatched", sgemmStrided(d.ctx, d.blas, transB, transA, n, m, k, alpha,
			ptr(bb, bOff, strideB, i), ldb, int64(strideB), ptr(ab, aOff, strideA, i), lda, int64(strideA),
			beta, ptr(cb, cOff, strideC, i), ldc, int64(strideC), nb))
	}
}
