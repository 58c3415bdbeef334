package cpu

import (
	"fmt"

	"github.com/macdist/macdist/kernels"
)

// matNeed is the number of elements a row-major rows×cols matrix with
// leading dimension ld spans, after checking ld.
func matNeed(op, arg string, rows, cols, ld int) int {
	if ld < max(1, cols) {
		panic(fmt.Sprintf("cpu: %s: leading dimension of %s is %d, less than its %d columns", op, arg, ld, cols))
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
		panic(fmt.Sprintf("cpu: %s: negative size m=%d n=%d k=%d", op, m, n, k))
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

// scaleC computes C = beta·C for the m×n matrix at c, the whole of a Gemm
// whose product is empty or multiplied by zero. With beta == 0 C is not read.
func scaleC(m, n int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
			continue
		}
		for j := range row {
			row[j] *= beta
		}
	}
}

// Gemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices.
func (d *Device) Gemm(transA, transB bool, m, n, k int, alpha float32, a kernels.Buffer, lda int, b kernels.Buffer, ldb int, beta float32, c kernels.Buffer, ldc int) {
	as, bs, cs := d.slice(a, "Gemm", "A"), d.slice(b, "Gemm", "B"), d.slice(c, "Gemm", "C")
	na, nb, nc := gemmShapes("Gemm", transA, transB, m, n, k, lda, ldb, ldc)
	needLen("Gemm", "A", len(as), na)
	needLen("Gemm", "B", len(bs), nb)
	needLen("Gemm", "C", len(cs), nc)
	if m == 0 || n == 0 {
		return
	}
	if k == 0 || alpha == 0 {
		scaleC(m, n, beta, cs, ldc)
		return
	}
	d.sgemm(transA, transB, m, n, k, alpha, as, lda, bs, ldb, beta, cs, ldc)
}

// gemmTask runs the matrices [lo, hi) of a GemmStrided.
type gemmTask struct {
	d                         *Device
	transA, transB            bool
	m, n, k                   int
	alpha, beta               float32
	a, b, c                   []float32
	aOff, bOff, cOff          int
	lda, ldb, ldc             int
	strideA, strideB, strideC int
}

func (t *gemmTask) run(lo, hi int) {
	for i := lo; i < hi; i++ {
		t.d.sgemm(t.transA, t.transB, t.m, t.n, t.k, t.alpha,
			t.a[t.aOff+i*t.strideA:], t.lda,
			t.b[t.bOff+i*t.strideB:], t.ldb,
			t.beta, t.c[t.cOff+i*t.strideC:], t.ldc)
	}
}

// smallGemm is the size m·n·k up to which OpenBLAS runs a Gemm on one
// thread (65536·GEMM_MULTITHREAD_THRESHOLD, by default 4): a batch of such
// matrices is better spread over goroutines, one matrix each.
const smallGemm = 64 * 64 * 64

// GemmStrided runs batch Gemms on matrices at a fixed stride from each other.
func (d *Device) GemmStrided(transA, transB bool, m, n, k int, alpha float32,
	a kernels.Buffer, aOff, lda, strideA int,
	b kernels.Buffer, bOff, ldb, strideB int,
	beta float32, c kernels.Buffer, cOff, ldc, strideC int, batch int) {
	const op = "GemmStrided"
	as, bs, cs := d.slice(a, op, "A"), d.slice(b, op, "B"), d.slice(c, op, "C")
	na, nb, nc := gemmShapes(op, transA, transB, m, n, k, lda, ldb, ldc)
	if batch < 0 || aOff < 0 || bOff < 0 || cOff < 0 || strideA < 0 || strideB < 0 || strideC < 0 {
		panic(fmt.Sprintf("cpu: GemmStrided: negative batch, offset or stride: batch=%d aOff=%d strideA=%d bOff=%d strideB=%d cOff=%d strideC=%d",
			batch, aOff, strideA, bOff, strideB, cOff, strideC))
	}
	if batch == 0 || m == 0 || n == 0 {
		return
	}
	needLen(op, "C", len(cs), cOff+(batch-1)*strideC+nc)
	if k == 0 || alpha == 0 {
		for i := 0; i < batch; i++ {
			scaleC(m, n, beta, cs[cOff+i*strideC:], ldc)
		}
		return
	}
	needLen(op, "A", len(as), aOff+(batch-1)*strideA+na)
	needLen(op, "B", len(bs), bOff+(batch-1)*strideB+nb)

	d.mu.Lock()
	defer d.mu.Unlock()
	g := &d.gemm
	*g = gemmTask{d: d, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, beta: beta,
		a: as, b: bs, c: cs, aOff: aOff, bOff: bOff, cOff: cOff, lda: lda, ldb: ldb, ldc: ldc,
		strideA: strideA, strideB: strideB, strideC: strideC}
	// Matrices of C that overlap (a stride of 0 accumulates) must be
	// written in order.
	if batch > 1 && m*n*k <= smallGemm && strideC >= nc {
		d.parallel(g, batch, 1)
	} else {
		g.run(0, batch)
	}
	*g = gemmTask{}
}
