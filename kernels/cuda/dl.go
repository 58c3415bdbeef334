//go:build cgo

package cuda

/*
#cgo LDFLAGS: -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <stddef.h>

// The CUDA driver and cuBLAS entry points macdist uses, declared from their
// public C signatures (cuda.h, cublas_api.h) so that neither headers nor
// libraries are needed to build. Handles are opaque pointers; CUresult and
// cublasStatus_t are enums, passed as int.
typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef int CUdevice;
typedef void *CUcontext;
typedef void *CUmodule;
typedef void *CUfunction;
typedef void *CUstream;
typedef int cublasStatus_t;
typedef void *cublasHandle_t;

static struct {
	CUresult (*Init)(unsigned int);
	CUresult (*DriverGetVersion)(int *);
	CUresult (*GetErrorString)(CUresult, const char **);
	CUresult (*GetErrorName)(CUresult, const char **);
	CUresult (*DeviceGetCount)(int *);
	CUresult (*DeviceGet)(CUdevice *, int);
	CUresult (*DeviceGetName)(char *, int, CUdevice);
	CUresult (*DeviceGetAttribute)(int *, int, CUdevice);
	CUresult (*DeviceTotalMem)(size_t *, CUdevice);
	CUresult (*DevicePrimaryCtxRetain)(CUcontext *, CUdevice);
	CUresult (*DevicePrimaryCtxRelease)(CUdevice);
	CUresult (*CtxSetCurrent)(CUcontext);
	CUresult (*StreamCreate)(CUstream *, unsigned int);
	CUresult (*StreamDestroy)(CUstream);
	CUresult (*StreamSynchronize)(CUstream);
	CUresult (*MemAlloc)(CUdeviceptr *, size_t);
	CUresult (*MemFree)(CUdeviceptr);
	CUresult (*MemGetInfo)(size_t *, size_t *);
	CUresult (*MemcpyHtoDAsync)(CUdeviceptr, const void *, size_t, CUstream);
	CUresult (*MemcpyDtoHAsync)(void *, CUdeviceptr, size_t, CUstream);
	CUresult (*MemcpyDtoDAsync)(CUdeviceptr, CUdeviceptr, size_t, CUstream);
	CUresult (*MemsetD32Async)(CUdeviceptr, unsigned int, size_t, CUstream);
	CUresult (*ModuleLoadDataEx)(CUmodule *, const void *, unsigned int, int *, void **);
	CUresult (*ModuleUnload)(CUmodule);
	CUresult (*ModuleGetFunction)(CUfunction *, CUmodule, const char *);
	CUresult (*LaunchKernel)(CUfunction, unsigned int, unsigned int, unsigned int,
		unsigned int, unsigned int, unsigned int, unsigned int, CUstream, void **, void **);
} cu;

static struct {
	cublasStatus_t (*Create)(cublasHandle_t *);
	cublasStatus_t (*Destroy)(cublasHandle_t);
	cublasStatus_t (*SetStream)(cublasHandle_t, CUstream);
	cublasStatus_t (*SetMathMode)(cublasHandle_t, int);
	cublasStatus_t (*GetVersion)(cublasHandle_t, int *);
	cublasStatus_t (*GetProperty)(int, int *);
	const char *(*GetStatusString)(cublasStatus_t);
	cublasStatus_t (*Sgemm)(cublasHandle_t, int, int, int, int, int,
		const float *, const float *, int, const float *, int, const float *, float *, int);
	cublasStatus_t (*SgemmStridedBatched)(cublasHandle_t, int, int, int, int, int,
		const float *, const float *, int, long long, const float *, int, long long,
		const float *, float *, int, long long, int);
} blas;

// sym looks name up, and then alt (the unsuffixed name older libraries
// export) when alt is not NULL. It records the first name missing.
static const char *missing;
static void *sym(void *h, const char *name, const char *alt) {
	void *p = dlsym(h, name);
	if (p == NULL && alt != NULL) p = dlsym(h, alt);
	if (p == NULL && missing == NULL) missing = name;
	return p;
}

// macdist_bind_driver fills cu from h, returning the first missing symbol
// or NULL. The _v2 names are those cuda.h maps the API names to since
// CUDA 3.2 (64-bit sizes and pointers) or 11 (primary context release).
static const char *macdist_bind_driver(void *h) {
	missing = NULL;
	cu.Init = sym(h, "cuInit", NULL);
	cu.DriverGetVersion = sym(h, "cuDriverGetVersion", NULL);
	cu.GetErrorString = sym(h, "cuGetErrorString", NULL);
	cu.GetErrorName = sym(h, "cuGetErrorName", NULL);
	cu.DeviceGetCount = sym(h, "cuDeviceGetCount", NULL);
	cu.DeviceGet = sym(h, "cuDeviceGet", NULL);
	cu.DeviceGetName = sym(h, "cuDeviceGetName", NULL);
	cu.DeviceGetAttribute = sym(h, "cuDeviceGetAttribute", NULL);
	cu.DeviceTotalMem = sym(h, "cuDeviceTotalMem_v2", NULL);
	cu.DevicePrimaryCtxRetain = sym(h, "cuDevicePrimaryCtxRetain", NULL);
	cu.DevicePrimaryCtxRelease = sym(h, "cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease");
	cu.CtxSetCurrent = sym(h, "cuCtxSetCurrent", NULL);
	cu.StreamCreate = sym(h, "cuStreamCreate", NULL);
	cu.StreamDestroy = sym(h, "cuStreamDestroy_v2", "cuStreamDestroy");
	cu.StreamSynchronize = sym(h, "cuStreamSynchronize", NULL);
	cu.MemAlloc = sym(h, "cuMemAlloc_v2", NULL);
	cu.MemFree = sym(h, "cuMemFree_v2", NULL);
	cu.MemGetInfo = sym(h, "cuMemGetInfo_v2", NULL);
	cu.MemcpyHtoDAsync = sym(h, "cuMemcpyHtoDAsync_v2", NULL);
	cu.MemcpyDtoHAsync = sym(h, "cuMemcpyDtoHAsync_v2", NULL);
	cu.MemcpyDtoDAsync = sym(h, "cuMemcpyDtoDAsync_v2", NULL);
	cu.MemsetD32Async = sym(h, "cuMemsetD32Async", NULL);
	cu.ModuleLoadDataEx = sym(h, "cuModuleLoadDataEx", NULL);
	cu.ModuleUnload = sym(h, "cuModuleUnload", NULL);
	cu.ModuleGetFunction = sym(h, "cuModuleGetFunction", NULL);
	cu.LaunchKernel = sym(h, "cuLaunchKernel", NULL);
	return missing;
}

static const char *macdist_bind_cublas(void *h) {
	missing = NULL;
	blas.Create = sym(h, "cublasCreate_v2", NULL);
	blas.Destroy = sym(h, "cublasDestroy_v2", NULL);
	blas.SetStream = sym(h, "cublasSetStream_v2", NULL);
	blas.SetMathMode = sym(h, "cublasSetMathMode", NULL);
	blas.GetVersion = sym(h, "cublasGetVersion_v2", NULL);
	blas.GetProperty = sym(h, "cublasGetProperty", NULL);
	blas.Sgemm = sym(h, "cublasSgemm_v2", NULL);
	blas.SgemmStridedBatched = sym(h, "cublasSgemmStridedBatched", NULL);
	const char *m = missing;
	blas.GetStatusString = dlsym(h, "cublasGetStatusString"); // cuBLAS ≥ 11.4; optional
	return m;
}

// The wrappers below make ctx current on the calling thread first: Go moves
// goroutines between threads, and the driver's current context is per
// thread. cuCtxSetCurrent is a thread-local store, cheap next to a launch.

static CUresult macdist_cuInit(void) { return cu.Init(0); }
static CUresult macdist_cuDriverGetVersion(int *v) { return cu.DriverGetVersion(v); }
static const char *macdist_cuErrorString(CUresult r) {
	const char *s = NULL;
	if (cu.GetErrorString == NULL || cu.GetErrorString(r, &s) != 0) return NULL;
	return s;
}
static const char *macdist_cuErrorName(CUresult r) {
	const char *s = NULL;
	if (cu.GetErrorName == NULL || cu.GetErrorName(r, &s) != 0) return NULL;
	return s;
}
static CUresult macdist_cuDeviceGetCount(int *n) { return cu.DeviceGetCount(n); }
static CUresult macdist_cuDeviceGet(CUdevice *d, int ordinal) { return cu.DeviceGet(d, ordinal); }
static CUresult macdist_cuDeviceGetName(char *buf, int n, CUdevice d) { return cu.DeviceGetName(buf, n, d); }
static CUresult macdist_cuDeviceGetAttribute(int *v, int attr, CUdevice d) { return cu.DeviceGetAttribute(v, attr, d); }
static CUresult macdist_cuDeviceTotalMem(size_t *v, CUdevice d) { return cu.DeviceTotalMem(v, d); }
static CUresult macdist_cuDevicePrimaryCtxRetain(void **c, CUdevice d) { return cu.DevicePrimaryCtxRetain(c, d); }
static CUresult macdist_cuDevicePrimaryCtxRelease(CUdevice d) { return cu.DevicePrimaryCtxRelease(d); }

static CUresult macdist_cuCtxSetCurrent(void *ctx) { return cu.CtxSetCurrent(ctx); }

static CUresult macdist_cuStreamCreate(void *ctx, void **s) {
	CUresult r = cu.CtxSetCurrent(ctx);
	if (r != 0) return r;
	return cu.StreamCreate(s, 1); // CU_STREAM_NON_BLOCKING: no implicit sync with the legacy default stream
}
static CUresult macdist_cuStreamDestroy(void *ctx, void *s) {
	CUresult r = cu.CtxSetCurrent(ctx);
	if (r != 0) return r;
	return cu.StreamDestroy(s);
}
static CUresult macdist_cuStreamSynchronize(void *ctx, void *s) {
	CUresult r = cu.CtxSetCurrent(ctx);
	if (r != 0) return r;
	return cu.StreamSynchronize(s);
}
static CUresult macdist_cuMemAlloc(void *ctx, CUdeviceptr *p, size_t n) {
	CUresult r = cu.CtxSetCurrent(ctx);
	if (r != 0) return r;
	return cu.MemAlloc(p, n);
}
static CUresult macdist_cuMemFree(void *ctx, CUdeviceptr p) {
	CUresult r = cu.CtxSetCurrent(ctx);
	if (r != 0) return r;
	return cu.MemFree(p);
}
static CUresult macdist_cuMemGetInfo(void *ctx, size_t *free, size_t *total) {
	CUresult r = cu.CtxSetCurrent(ctx);
	if (r != 0) return r;
	return cu.MemGetInfo(free, total);
}

// Host copies are queued on the stream and waited for in one C call, so
// that the Go memory they read or write cannot move or be reused before
// the copy is done.
static CUresult macdist_htod(void *ctx, void *s, CUdeviceptr dst, const void *src, size_t n) {
	CUresult r = cu.CtxSetCurrent(ctx);
	if (r != 0) return r;
	r = cu.MemcpyHtoDAsync(dst, src, n, s);
	CUresult r2 = cu.StreamSynchronize(s);
	return r != 0 ? r : r2;
}
static CUresult macdist_dtoh(void *ctx, void *s, void *dst, CUdeviceptr src, size_t n) {
	CUresult r = cu.CtxSetCurrent(ctx);
	if (r != 0) return r;
	r = cu.MemcpyDtoHAsync(dst, src, n, s);
	CUresult r2 = cu.StreamSynchronize(s);
	return r != 0 ? r : r2;
}
static CUresult macdist_dtod(void *ctx, void *s, CUdeviceptr dst, CUdeviceptr src, size_t n) {
	CUresult r = cu.CtxSetCurrent(ctx);
	if (r != 0) return r;
	return cu.MemcpyDtoDAsync(dst, src, n, s);
}
static CUresult macdist_memset32(void *ctx, void *s, CUdeviceptr dst, unsigned int v, size_t n) {
	CUresult r = cu.CtxSetCurrent(ctx);
	if (r != 0) return r;
	return cu.MemsetD32Async(dst, v, n, s);
}

// macdist_module_load JIT-compiles PTX, leaving the compiler's complaint in
// log (size n) on failure. 5 and 6 are CU_JIT_ERROR_LOG_BUFFER and
// CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES.
static CUresult macdist_module_load(void *ctx, void **m, const char *ptx, char *log, size_t n) {
	CUresult r = cu.CtxSetCurrent(ctx);
	if (r != 0) return r;
	int opts[2] = {5, 6};
	void *vals[2] = {log, (void *)n};
	return cu.ModuleLoadDataEx(m, ptx, 2, opts, vals);
}
static CUresult macdist_module_unload(void *ctx, void *m) {
	CUresult r = cu.CtxSetCurrent(ctx);
	if (r != 0) return r;
	return cu.ModuleUnload(m);
}
static CUresult macdist_module_function(void *ctx, void *m, void **f, const char *name) {
	CUresult r = cu.CtxSetCurrent(ctx);
	if (r != 0) return r;
	return cu.ModuleGetFunction(f, m, name);
}

// macdist_launch launches f with its parameters packed in args (each at its
// natural alignment, as the kernel's parameter list lays them out), passed
// through CU_LAUNCH_PARAM_BUFFER_POINTER (1) and _SIZE (2), END (0).
static CUresult macdist_launch(void *ctx, void *s, void *f,
		unsigned int gx, unsigned int gy, unsigned int gz,
		unsigned int bx, unsigned int by, unsigned int bz,
		void *args, size_t size) {
	CUresult r = cu.CtxSetCurrent(ctx);
	if (r != 0) return r;
	void *extra[5] = {(void *)1, args, (void *)2, &size, (void *)0};
	return cu.LaunchKernel(f, gx, gy, gz, bx, by, bz, 0, s, NULL, extra);
}

static cublasStatus_t macdist_cublasCreate(void *ctx, void **h) {
	CUresult r = cu.CtxSetCurrent(ctx);
	if (r != 0) return -r; // negative: a driver error, not a cuBLAS status
	return blas.Create(h);
}
static cublasStatus_t macdist_cublasDestroy(void *ctx, void *h) {
	CUresult r = cu.CtxSetCurrent(ctx);
	if (r != 0) return -r;
	return blas.Destroy(h);
}
static cublasStatus_t macdist_cublasSetStream(void *ctx, void *h, void *s) {
	CUresult r = cu.CtxSetCurrent(ctx);
	if (r != 0) return -r;
	return blas.SetStream(h, s);
}
static cublasStatus_t macdist_cublasSetMathMode(void *ctx, void *h, int mode) {
	CUresult r = cu.CtxSetCurrent(ctx);
	if (r != 0) return -r;
	return blas.SetMathMode(h, mode);
}
static cublasStatus_t macdist_cublasGetVersion(void *ctx, void *h, int *v) {
	CUresult r = cu.CtxSetCurrent(ctx);
	if (r != 0) return -r;
	return blas.GetVersion(h, v);
}
static cublasStatus_t macdist_cublasGetProperty(int which, int *v) { return blas.GetProperty(which, v); }
static const char *macdist_cublasStatusString(cublasStatus_t s) {
	return blas.GetStatusString ? blas.GetStatusString(s) : NULL;
}

static cublasStatus_t macdist_sgemm(void *ctx, void *h, int ta, int tb, int m, int n, int k,
		float alpha, CUdeviceptr a, int lda, CUdeviceptr b, int ldb, float beta, CUdeviceptr c, int ldc) {
	CUresult r = cu.CtxSetCurrent(ctx);
	if (r != 0) return -r;
	return blas.Sgemm(h, ta, tb, m, n, k, &alpha, (const float *)a, lda, (const float *)b, ldb,
		&beta, (float *)c, ldc);
}
static cublasStatus_t macdist_sgemm_strided(void *ctx, void *h, int ta, int tb, int m, int n, int k,
		float alpha, CUdeviceptr a, int lda, long long sa, CUdeviceptr b, int ldb, long long sb,
		float beta, CUdeviceptr c, int ldc, long long sc, int batch) {
	CUresult r = cu.CtxSetCurrent(ctx);
	if (r != 0) return -r;
	return blas.SgemmStridedBatched(h, ta, tb, m, n, k, &alpha, (const float *)a, lda, sa,
		(const float *)b, ldb, sb, &beta, (float *)c, ldc, sc, batch);
}
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/macdist/macdist/internal/dynlib"
)

func bindDriver(h dynlib.Lib) error {
	if m := C.macdist_bind_driver(unsafe.Pointer(h)); m != nil {
		return fmt.Errorf("missing symbol %s", C.GoString(m))
	}
	return nil
}

func bindCUBLAS(h dynlib.Lib) error {
	if m := C.macdist_bind_cublas(unsafe.Pointer(h)); m != nil {
		return fmt.Errorf("missing symbol %s", C.GoString(m))
	}
	return nil
}

// cuResult is a CUresult; 0 is success.
type cuResult int

func (r cuResult) Error() string {
	name := C.macdist_cuErrorName(C.CUresult(r))
	desc := C.macdist_cuErrorString(C.CUresult(r))
	switch {
	case name != nil && desc != nil:
		return fmt.Sprintf("%s (%s)", C.GoString(name), C.GoString(desc))
	case name != nil:
		return C.GoString(name)
	}
	return fmt.Sprintf("CUresult %d", int(r))
}

// cuErr returns nil for CUDA_SUCCESS and the result as an error otherwise.
func cuErr(r C.CUresult) error {
	if r == 0 {
		return nil
	}
	return cuResult(r)
}

// blasStatus is a cublasStatus_t; a negative value carries a CUresult from
// making the context current.
type blasStatus int

func (s blasStatus) Error() string {
	if s < 0 {
		return cuResult(-s).Error()
	}
	if p := C.macdist_cublasStatusString(C.cublasStatus_t(s)); p != nil {
		return C.GoString(p)
	}
	return fmt.Sprintf("cublasStatus %d", int(s))
}

func blasErr(s C.cublasStatus_t) error {
	if s == 0 {
		return nil
	}
	return blasStatus(s)
}

func cuInit() error { return cuErr(C.macdist_cuInit()) }

func cuDriverVersion() (int, error) {
	var v C.int
	err := cuErr(C.macdist_cuDriverGetVersion(&v))
	return int(v), err
}

func cuDeviceCount() (int, error) {
	var n C.int
	err := cuErr(C.macdist_cuDeviceGetCount(&n))
	return int(n), err
}

func cuDeviceGet(ordinal int) (cuDevice, error) {
	var d C.CUdevice
	err := cuErr(C.macdist_cuDeviceGet(&d, C.int(ordinal)))
	return cuDevice(d), err
}

func cuDeviceName(d cuDevice) (string, error) {
	var buf [256]C.char
	if err := cuErr(C.macdist_cuDeviceGetName(&buf[0], C.int(len(buf)), C.CUdevice(d))); err != nil {
		return "", err
	}
	return C.GoString(&buf[0]), nil
}

func cuDeviceAttribute(d cuDevice, attr int) (int, error) {
	var v C.int
	err := cuErr(C.macdist_cuDeviceGetAttribute(&v, C.int(attr), C.CUdevice(d)))
	return int(v), err
}

func cuDeviceTotalMem(d cuDevice) (int64, error) {
	var v C.size_t
	err := cuErr(C.macdist_cuDeviceTotalMem(&v, C.CUdevice(d)))
	return int64(v), err
}

func cuPrimaryCtxRetain(d cuDevice) (cuContext, error) {
	var c unsafe.Pointer
	err := cuErr(C.macdist_cuDevicePrimaryCtxRetain(&c, C.CUdevice(d)))
	return c, err
}

func cuPrimaryCtxRelease(d cuDevice) error {
	return cuErr(C.macdist_cuDevicePrimaryCtxRelease(C.CUdevice(d)))
}

func cuCtxSetCurrent(ctx cuContext) error { return cuErr(C.macdist_cuCtxSetCurrent(ctx)) }

// cAlloc returns n zeroed bytes of C memory.
func cAlloc(n int) unsafe.Pointer { return C.calloc(C.size_t(n), 1) }

func cFree(p unsafe.Pointer) { C.free(p) }

func cuStreamCreate(ctx cuContext) (cuStream, error) {
	var s unsafe.Pointer
	err := cuErr(C.macdist_cuStreamCreate(ctx, &s))
	return s, err
}

func cuStreamDestroy(ctx cuContext, s cuStream) error {
	return cuErr(C.macdist_cuStreamDestroy(ctx, s))
}

func cuStreamSync(ctx cuContext, s cuStream) error {
	return cuErr(C.macdist_cuStreamSynchronize(ctx, s))
}

func cuMemAlloc(ctx cuContext, bytes int64) (uint64, error) {
	var p C.CUdeviceptr
	err := cuErr(C.macdist_cuMemAlloc(ctx, &p, C.size_t(bytes)))
	return uint64(p), err
}

func cuMemFree(ctx cuContext, p uint64) error {
	return cuErr(C.macdist_cuMemFree(ctx, C.CUdeviceptr(p)))
}

func cuMemInfo(ctx cuContext) (free, total int64, err error) {
	var f, t C.size_t
	err = cuErr(C.macdist_cuMemGetInfo(ctx, &f, &t))
	return int64(f), int64(t), err
}

// htod copies bytes bytes from host memory at src (Go memory holding no Go
// pointers) to dst and waits for the copy.
func htod(ctx cuContext, s cuStream, dst uint64, src unsafe.Pointer, bytes int64) error {
	return cuErr(C.macdist_htod(ctx, s, C.CUdeviceptr(dst), src, C.size_t(bytes)))
}

func dtoh(ctx cuContext, s cuStream, dst unsafe.Pointer, src uint64, bytes int64) error {
	return cuErr(C.macdist_dtoh(ctx, s, dst, C.CUdeviceptr(src), C.size_t(bytes)))
}

func dtod(ctx cuContext, s cuStream, dst, src uint64, bytes int64) error {
	return cuErr(C.macdist_dtod(ctx, s, C.CUdeviceptr(dst), C.CUdeviceptr(src), C.size_t(bytes)))
}

func memset32(ctx cuContext, s cuStream, dst uint64, v uint32, n int64) error {
	return cuErr(C.macdist_memset32(ctx, s, C.CUdeviceptr(dst), C.uint(v), C.size_t(n)))
}

// moduleLoad JIT-compiles a NUL-terminated PTX text.
func moduleLoad(ctx cuContext, ptx string) (cuModule, error) {
	cs := C.CString(ptx)
	defer C.free(unsafe.Pointer(cs))
	const logSize = 8192
	log := (*C.char)(C.calloc(logSize, 1))
	defer C.free(unsafe.Pointer(log))
	var m unsafe.Pointer
	if err := cuErr(C.macdist_module_load(ctx, &m, cs, log, logSize)); err != nil {
		if msg := C.GoString(log); msg != "" {
			return nil, fmt.Errorf("%w: %s", err, msg)
		}
		return nil, err
	}
	return m, nil
}

func moduleUnload(ctx cuContext, m cuModule) error { return cuErr(C.macdist_module_unload(ctx, m)) }

func moduleFunction(ctx cuContext, m cuModule, name string) (cuFunction, error) {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	var f unsafe.Pointer
	err := cuErr(C.macdist_module_function(ctx, m, &f, cs))
	return f, err
}

// launch runs f on s with grid and block sizes, its parameters packed in
// args[:size] (a Go array holding no Go pointers).
func launch(ctx cuContext, s cuStream, f cuFunction, grid, block [3]uint32, args unsafe.Pointer, size int) error {
	return cuErr(C.macdist_launch(ctx, s, f,
		C.uint(grid[0]), C.uint(grid[1]), C.uint(grid[2]),
		C.uint(block[0]), C.uint(block[1]), C.uint(block[2]),
		args, C.size_t(size)))
}

func cublasCreate(ctx cuContext) (cublasH, error) {
	var h unsafe.Pointer
	err := blasErr(C.macdist_cublasCreate(ctx, &h))
	return h, err
}

func cublasDestroy(ctx cuContext, h cublasH) error { return blasErr(C.macdist_cublasDestroy(ctx, h)) }

func cublasSetStream(ctx cuContext, h cublasH, s cuStream) error {
	return blasErr(C.macdist_cublasSetStream(ctx, h, s))
}

func cublasSetMathMode(ctx cuContext, h cublasH, mode int) error {
	return blasErr(C.macdist_cublasSetMathMode(ctx, h, C.int(mode)))
}

func cublasVersion(ctx cuContext, h cublasH) (int, error) {
	var v C.int
	err := blasErr(C.macdist_cublasGetVersion(ctx, h, &v))
	return int(v), err
}

// cublasProperty is cublasGetProperty: 0 major, 1 minor, 2 patch level. It
// needs no handle, so Probe can ask it without a GPU.
func cublasProperty(which int) (int, error) {
	var v C.int
	err := blasErr(C.macdist_cublasGetProperty(C.int(which), &v))
	return int(v), err
}

func sgemm(ctx cuContext, h cublasH, ta, tb bool, m, n, k int, alpha float32, a uint64, lda int, b uint64, ldb int, beta float32, c uint64, ldc int) error {
	return blasErr(C.macdist_sgemm(ctx, h, op(ta), op(tb), C.int(m), C.int(n), C.int(k),
		C.float(alpha), C.CUdeviceptr(a), C.int(lda), C.CUdeviceptr(b), C.int(ldb),
		C.float(beta), C.CUdeviceptr(c), C.int(ldc)))
}

func sgemmStrided(ctx cuContext, h cublasH, ta, tb bool, m, n, k int, alpha float32,
	a uint64, lda int, sa int64, b uint64, ldb int, sb int64,
	beta float32, c uint64, ldc int, sc int64, batch int) error {
	return blasErr(C.macdist_sgemm_strided(ctx, h, op(ta), op(tb), C.int(m), C.int(n), C.int(k),
		C.float(alpha), C.CUdeviceptr(a), C.int(lda), C.longlong(sa), C.CUdeviceptr(b), C.int(ldb), C.longlong(sb),
		C.float(beta), C.CUdeviceptr(c), C.int(ldc), C.longlong(sc), C.int(batch)))
}

// op is cublasOperation_t: CUBLAS_OP_N 0, CUBLAS_OP_T 1.
func op(t bool) C.int {
	if t {
		return 1
	}
	return 0
}
