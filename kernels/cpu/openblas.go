//go:build cgo

package cpu

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>

// The few OpenBLAS entry points macdist uses, declared from their public C
// signatures so that no BLAS headers or link-time library are needed.
// Debian's libopenblas0 uses 32-bit integers (the 64-bit build is a
// separate library, libopenblas64).
typedef void (*sgemm_fn)(int order, int transA, int transB, int m, int n, int k,
	float alpha, const float *a, int lda, const float *b, int ldb,
	float beta, float *c, int ldc);
typedef void (*set_threads_fn)(int);
typedef int (*get_threads_fn)(void);
typedef char *(*get_config_fn)(void);

static sgemm_fn macdist_sgemm_p;
static set_threads_fn macdist_set_threads_p;
static get_threads_fn macdist_get_threads_p;
static get_config_fn macdist_get_config_p;
static get_config_fn macdist_get_corename_p;

// macdist_open returns NULL on success and dlerror's message on failure.
static const char *macdist_open(const char *name) {
	void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		return dlerror();
	}
	macdist_sgemm_p = (sgemm_fn)dlsym(h, "cblas_sgemm");
	macdist_set_threads_p = (set_threads_fn)dlsym(h, "openblas_set_num_threads");
	macdist_get_threads_p = (get_threads_fn)dlsym(h, "openblas_get_num_threads");
	macdist_get_config_p = (get_config_fn)dlsym(h, "openblas_get_config");
	macdist_get_corename_p = (get_config_fn)dlsym(h, "openblas_get_corename"); // optional
	if (macdist_sgemm_p == NULL || macdist_set_threads_p == NULL ||
	    macdist_get_threads_p == NULL || macdist_get_config_p == NULL) {
		macdist_sgemm_p = NULL;
		return "missing cblas_sgemm or openblas_* symbols";
	}
	return NULL;
}

enum { rowMajor = 101, noTrans = 111, trans = 112 };

static void macdist_sgemm(int transA, int transB, int m, int n, int k,
	float alpha, const float *a, int lda, const float *b, int ldb,
	float beta, float *c, int ldc) {
	macdist_sgemm_p(rowMajor, transA ? trans : noTrans, transB ? trans : noTrans,
		m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// macdist_sgemm_loop calls cblas_sgemm iters times from C: the cost of
// OpenBLAS alone, for benchmarks to measure the Go side against.
static void macdist_sgemm_loop(long iters, int m, int n, int k,
	const float *a, const float *b, float *c) {
	for (long i = 0; i < iters; i++) {
		macdist_sgemm_p(rowMajor, noTrans, noTrans, m, n, k, 1, a, k, b, n, 0, c, n);
	}
}

static void macdist_set_threads(int n) { macdist_set_threads_p(n); }
static int macdist_get_threads(void) { return macdist_get_threads_p(); }
static const char *macdist_get_config(void) { return macdist_get_config_p(); }
static const char *macdist_get_corename(void) {
	return macdist_get_corename_p ? macdist_get_corename_p() : "";
}
*/
import "C"

import (
	"errors"
	"math"
	"strings"
	"unsafe"
)

// openBLASLib is a variable so that a build can point elsewhere with
// -ldflags=-X, as the test of the fallback does.
var openBLASLib = "libopenblas.so.0"

func dlopenOpenBLAS() error {
	name := C.CString(openBLASLib)
	defer C.free(unsafe.Pointer(name))
	if msg := C.macdist_open(name); msg != nil {
		detail := C.GoString(msg)
		if strings.Contains(detail, "No such file") {
			return errors.New(openBLASLib + " not found")
		}
		return errors.New(openBLASLib + ": " + detail)
	}
	return nil
}

func openBLASSetThreads(n int) { C.macdist_set_threads(C.int(n)) }

func openBLASThreads() int { return int(C.macdist_get_threads()) }

// openBLASConfig returns openblas_get_config's string, such as
// "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64".
func openBLASConfig() string { return C.GoString(C.macdist_get_config()) }

// openBLASCore returns the name of the kernels OpenBLAS chose for this CPU,
// such as "Zen", or "" if the library does not say.
func openBLASCore() string { return C.GoString(C.macdist_get_corename()) }

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// openBLASSgemm is cblas_sgemm in row-major order. The slices hold no Go
// pointers, so cgo lets C read them in place.
func openBLASSgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if max(m, n, k, lda, ldb, ldc) > math.MaxInt32 {
		panic("cpu: Gemm dimensions exceed OpenBLAS's 32-bit integers")
	}
	C.macdist_sgemm(cbool(transA), cbool(transB), C.int(m), C.int(n), C.int(k),
		C.float(alpha), (*C.float)(unsafe.Pointer(&a[0])), C.int(lda),
		(*C.float)(unsafe.Pointer(&b[0])), C.int(ldb),
		C.float(beta), (*C.float)(unsafe.Pointer(&c[0])), C.int(ldc))
}

// openBLASSgemmLoop runs iters products C = A·B of packed m×k and k×n
// matrices entirely in C. It exists for benchmarks.
func openBLASSgemmLoop(iters, m, n, k int, a, b, c []float32) {
	C.macdist_sgemm_loop(C.long(iters), C.int(m), C.int(n), C.int(k),
		(*C.float)(unsafe.Pointer(&a[0])), (*C.float)(unsafe.Pointer(&b[0])), (*C.float)(unsafe.Pointer(&c[0])))
}
