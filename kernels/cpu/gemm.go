package cpu

import (
	"fmt"
	"runtime"

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
	if d.gemmDNN && m*n*k >= dnnGemmMin {
		dnnSgemm(transA, transB, m, n, k, alpha, as, lda, bs, ldb, beta, cs, ldc, runtime.GOMAXPROCS(0))
		return
	}
	parts := d.gemmParts(m, n, k, 1)
	if parts == 1 {
		d.sgemm(transA, transB, m, n, k, alpha, as, lda, bs, ldb, beta, cs, ldc)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	g := &d.gemm
	*g = gemmTask{d: d, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, beta: beta,
		a: as, b: bs, c: cs, lda: lda, ldb: ldb, ldc: ldc, parts: parts, splitN: n >= m}
	d.parallel(g, parts, 1)
	*g = gemmTask{}
}

// gemmTask runs the units [lo, hi) of a GemmStrided: unit u is the block
// u mod parts, of parts blocks of rows or columns of C, of matrix u / parts.
type gemmTask struct {
	d                         *Device
	transA, transB            bool
	m, n, k                   int
	alpha, beta               float32
	a, b, c                   []float32
	aOff, bOff, cOff          int
	lda, ldb, ldc             int
	strideA, strideB, strideC int

	parts  int  // blocks per matrix
	splitN bool // blocks of columns, else of rows
}

func (t *gemmTask) run(lo, hi int) {
	for u := lo; u < hi; u++ {
		i, q := u/t.parts, u%t.parts
		ao, bo, co := t.aOff+i*t.strideA, t.bOff+i*t.strideB, t.cOff+i*t.strideC
		m, n := t.m, t.n
		if t.parts > 1 {
			var b0, b1 int
			if t.splitN {
				b0, b1 = blockBounds(n, t.parts, q)
				n = b1 - b0
				// Columns b0… of op(B): columns of B, or rows of Bᵀ.
				if t.transB {
					bo += b0 * t.ldb
				} else {
					bo += b0
				}
				co += b0
			} else {
				b0, b1 = blockBounds(m, t.parts, q)
				m = b1 - b0
				if t.transA {
					ao += b0
				} else {
					ao += b0 * t.lda
				}
				co += b0 * t.ldc
			}
			if m == 0 || n == 0 {
				continue
			}
		}
		t.d.sgemm(t.transA, t.transB, m, n, t.k, t.alpha,
			t.a[ao:], t.lda, t.b[bo:], t.ldb, t.beta, t.c[co:], t.ldc)
	}
}

// blockBounds returns block q of parts blocks of [0, n), cut at multiples of
// gemmAlign so that each block but the last fills OpenBLAS's micro-kernels.
func blockBounds(n, parts, q int) (lo, hi int) {
	units := (n + gemmAlign - 1) / gemmAlign
	lo = min(n, q*units/parts*gemmAlign)
	hi = min(n, (q+1)*units/parts*gemmAlign)
	return lo, hi
}

// gemmAlign is the width of OpenBLAS's single-precision micro-tiles on x86
// (16 rows or 4 to 8 columns, depending on the kernel), rounded up.
const gemmAlign = 16

// dnnGemmMin is the size m·n·k from which a product goes to oneDNN's
// sgemm on a Device that sends large products there (SetGemmOnDNN): a
// ViT's linear layers (8,320 × 192 × 192 and up), at 1.3 to 2.6 times
// OpenBLAS's speed on 2 AVX-512 cores, and not its attention products
// (65 × 65 × 64), where a call costs more than it computes.
const dnnGemmMin = 1 << 22

// smallGemm is the size m·n·k up to which gonum's Sgemm runs a product on
// one goroutine: a batch of such matrices is better spread over goroutines,
// one matrix each.
const smallGemm = 64 * 64 * 64

// minSplitGemm is the size m·n·k of a product below which it is not split
// across goroutines: about 20 µs of one core's work, several times what
// waking a worker costs.
const minSplitGemm = 1 << 19

// gemmParts is the number of blocks each of batch products of size m×n×k is
// cut into, so that batch·parts units keep every worker busy. OpenBLAS runs
// single-threaded (see loadOpenBLAS): the package's goroutines are the only
// threads, and the products are divided here. gonum's Sgemm divides its own
// work over goroutines, so it gets whole matrices.
func (d *Device) gemmParts(m, n, k, batch int) int {
	p := runtime.GOMAXPROCS(0)
	if d.blas != blasOpenBLAS || p == 1 || batch%p == 0 || batch >= 4*p {
		return 1
	}
	size := m * n * k
	if size*batch < minSplitGemm {
		return 1
	}
	span := max(m, n)
	parts := min(p, (span+gemmAlign-1)/gemmAlign, max(1, size/(minSplitGemm/4)))
	return max(1, parts)
}

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

	if d.gemmDNN && m*n*k >= dnnGemmMin {
		// In order: matrices of C may overlap.
		nthr := runtime.GOMAXPROCS(0)
		for i := 0; i < batch; i++ {
			ao, bo, co := aOff+i*strideA, bOff+i*strideB, cOff+i*strideC
			dnnSgemm(transA, transB, m, n, k, alpha, as[ao:], lda, bs[bo:], ldb, beta, cs[co:], ldc, nthr)
		}
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	g := &d.gemm
	*g = gemmTask{d: d, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, beta: beta,
		a: as, b: bs, c: cs, aOff: aOff, bOff: bOff, cOff: cOff, lda: lda, ldb: ldb, ldc: ldc,
		strideA: strideA, strideB: strideB, strideC: strideC, parts: 1, splitN: n >= m}
	switch {
	case batch > 1 && strideC < nc:
		// Matrices of C that overlap (a stride of 0 accumulates) must be
		// written in order; each may still be cut into blocks.
		g.parts = d.gemmParts(m, n, k, 1)
		for i := 0; i < batch; i++ {
			d.parallel(g, g.parts, 1)
			g.aOff, g.bOff, g.cOff = g.aOff+strideA, g.bOff+strideB, g.cOff+strideC
		}
	case d.blas != blasOpenBLAS && (batch == 1 || m*n*k > smallGemm):
		// gonum's Sgemm spreads a large product over goroutines itself.
		g.run(0, batch)
	default:
		g.parts = d.gemmParts(m, n, k, batch)
		if g.parts == 1 && batch*m*n*k < minSplitGemm/8 {
			g.run(0, batch)
		} else {
			d.parallel(g, batch*g.parts, 1)
		}
	}
	*g = gemmTask{}
}

// SetGemmOnDNN makes d send its large products (Gemm, GemmStrided; see
// dnnGemmMin) to oneDNN's sgemm when on, and all of them to its BLAS when
// off. A Device on the oneDNN path with AVX-512 starts with it on: there
// oneDNN's sgemm is 1.3 to 2.6 times as fast as single-threaded OpenBLAS
// split over the cores on a ViT's linear layers (README.md, "CPU
// benchmarks"). Another product of the same shape may then differ from
// OpenBLAS's by rounding; a run still repeats itself bit for bit.
func (d *Device) SetGemmOnDNN(on bool) error {
	if on && d.dnn != dnnOneDNN {
		return fmt.Errorf("cpu: oneDNN's sgemm on the %v convolution path", d.dnn)
	}
	d.gemmDNN = on
	return nil
}
