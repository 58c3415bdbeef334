package cpu

import (
	"fmt"
	"os"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// blasImpl names the BLAS behind a Device's Gemm.
type blasImpl uint8

const (
	blasGonum blasImpl = iota
	blasOpenBLAS
)

func (b blasImpl) String() string {
	if b == blasOpenBLAS {
		return "openblas"
	}
	return "gonum"
}

var (
	openOnce sync.Once
	openErr  error

	warnOnce sync.Once
)

// loadOpenBLAS opens libopenblas.so.0 once per process.
func loadOpenBLAS() error {
	openOnce.Do(func() {
		openErr = dlopenOpenBLAS()
		if openErr == nil {
			singleThreaded()
		}
	})
	return openErr
}

// defaultBLAS is New's choice of BLAS. It warns at most once per process.
func defaultBLAS() blasImpl {
	impl, warning := chooseBLAS(os.Getenv("MACDIST_BLAS"), loadOpenBLAS)
	if warning != "" {
		warnOnce.Do(func() { fmt.Fprintln(os.Stderr, warning) })
	}
	return impl
}

// chooseBLAS picks a BLAS given the value of MACDIST_BLAS and a way to load
// OpenBLAS, and says what to warn about, if anything.
func chooseBLAS(env string, load func() error) (blasImpl, string) {
	switch env {
	case "gonum":
		return blasGonum, ""
	case "openblas":
		if err := load(); err != nil {
			panic("cpu: MACDIST_BLAS=openblas, but " + err.Error())
		}
		return blasOpenBLAS, ""
	}
	var note string
	if env != "" {
		note = fmt.Sprintf("macdist: ignoring MACDIST_BLAS=%q (want openblas or gonum)", env)
	}
	if err := load(); err != nil {
		if note != "" {
			note += "; "
		}
		return blasGonum, note + fmt.Sprintf("macdist: %v; using gonum's pure-Go BLAS (slow). Install Debian's libopenblas0 to fix.", err)
	}
	return blasOpenBLAS, note
}

// BLASName reports the BLAS that New would choose: "openblas" or "gonum".
// Like New, it loads OpenBLAS if it has not been loaded yet, and may print
// New's warning.
func BLASName() string { return defaultBLAS().String() }

// OpenBLAS runs every product on the calling thread. Its own thread pool,
// spinning and yielding between calls, fought the package's goroutines for
// the cores (on 2 cores a quarter of a ResNet step went to sched_yield);
// the Device instead cuts large products into blocks and runs them on its
// goroutines (see gemmParts), so that there is one pool of threads.
func singleThreaded() { openBLASSetThreads(1) }

// sgemm calls the Device's BLAS on row-major matrices whose first elements
// are a[0], b[0] and c[0]. Its arguments have been checked, and m, n and k
// are positive.
func (d *Device) sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if d.blas == blasOpenBLAS {
		openBLASSgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	ta, tb := blas.NoTrans, blas.NoTrans
	if transA {
		ta = blas.Trans
	}
	if transB {
		tb = blas.Trans
	}
	// gonum runs a product of four or more 64×64 blocks of C on goroutines
	// of its own, which allocate on every call (a steady-state step must
	// not) and compete with the Device's for the cores. Tiles of at most
	// 64×192 stay on the calling goroutine; gemmParts already spreads large
	// products over the Device's.
	const tileM, tileN = 64, 192
	for i := 0; i < m; i += tileM {
		mi := min(tileM, m-i)
		ai := a[i:]
		if !transA {
			ai = a[i*lda:]
		}
		for j := 0; j < n; j += tileN {
			nj := min(tileN, n-j)
			bj := b[j:]
			if transB {
				bj = b[j*ldb:]
			}
			gonum.Implementation{}.Sgemm(ta, tb, mi, nj, k, alpha, ai, lda, bj, ldb, beta, c[i*ldc+j:], ldc)
		}
	}
}
