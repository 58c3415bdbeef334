//go:build cgo

package cuda

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stddef.h>
#include <string.h>

// The cuDNN entry points macdist uses, declared from their public C
// signatures (cudnn_ops.h, cudnn_cnn.h of cuDNN 9; cudnn_ops_infer.h and
// cudnn_cnn_infer.h / _train.h of cuDNN 8, which have the same ABI for
// these calls): handles and descriptors are opaque pointers, every enum is
// an int. cudnnGetVersion returns size_t.
typedef int cudnnStatus_t;
#define dnnH void *
#define dnnDesc void *

// cudnnConvolution{Fwd,BwdData,BwdFilter}AlgoPerf_t share this layout:
// algo, status, time, memory, determinism, mathType, reserved[3].
typedef struct {
	int algo;
	cudnnStatus_t status;
	float time;
	size_t memory;
	int determinism;
	int mathType;
	int reserved[3];
} dnnPerf;

static struct {
	size_t (*GetVersion)(void);
	const char *(*GetErrorString)(cudnnStatus_t);
	cudnnStatus_t (*Create)(dnnH *);
	cudnnStatus_t (*Destroy)(dnnH);
	cudnnStatus_t (*SetStream)(dnnH, void *);
	cudnnStatus_t (*CreateTensorDescriptor)(dnnDesc *);
	cudnnStatus_t (*DestroyTensorDescriptor)(dnnDesc);
	cudnnStatus_t (*SetTensor4dDescriptor)(dnnDesc, int, int, int, int, int, int);
	cudnnStatus_t (*CreateFilterDescriptor)(dnnDesc *);
	cudnnStatus_t (*DestroyFilterDescriptor)(dnnDesc);
	cudnnStatus_t (*SetFilter4dDescriptor)(dnnDesc, int, int, int, int, int, int);
	cudnnStatus_t (*CreateConvolutionDescriptor)(dnnDesc *);
	cudnnStatus_t (*DestroyConvolutionDescriptor)(dnnDesc);
	cudnnStatus_t (*SetConvolution2dDescriptor)(dnnDesc, int, int, int, int, int, int, int, int);
	cudnnStatus_t (*SetConvolutionGroupCount)(dnnDesc, int);
	cudnnStatus_t (*SetConvolutionMathType)(dnnDesc, int);
	cudnnStatus_t (*GetConvolution2dForwardOutputDim)(dnnDesc, dnnDesc, dnnDesc, int *, int *, int *, int *);
	cudnnStatus_t (*GetFwdAlgo)(dnnH, dnnDesc, dnnDesc, dnnDesc, dnnDesc, int, int *, dnnPerf *);
	cudnnStatus_t (*GetBwdDataAlgo)(dnnH, dnnDesc, dnnDesc, dnnDesc, dnnDesc, int, int *, dnnPerf *);
	cudnnStatus_t (*GetBwdFilterAlgo)(dnnH, dnnDesc, dnnDesc, dnnDesc, dnnDesc, int, int *, dnnPerf *);
	cudnnStatus_t (*FwdWorkspace)(dnnH, dnnDesc, dnnDesc, dnnDesc, dnnDesc, int, size_t *);
	cudnnStatus_t (*BwdDataWorkspace)(dnnH, dnnDesc, dnnDesc, dnnDesc, dnnDesc, int, size_t *);
	cudnnStatus_t (*BwdFilterWorkspace)(dnnH, dnnDesc, dnnDesc, dnnDesc, dnnDesc, int, size_t *);
	cudnnStatus_t (*Forward)(dnnH, const void *, dnnDesc, const void *, dnnDesc, const void *, dnnDesc, int,
		void *, size_t, const void *, dnnDesc, void *);
	cudnnStatus_t (*BackwardData)(dnnH, const void *, dnnDesc, const void *, dnnDesc, const void *, dnnDesc, int,
		void *, size_t, const void *, dnnDesc, void *);
	cudnnStatus_t (*BackwardFilter)(dnnH, const void *, dnnDesc, const void *, dnnDesc, const void *, dnnDesc, int,
		void *, size_t, const void *, dnnDesc, void *);
} dnn;

static const char *dnn_missing;
static void *dnn_sym(void *h, const char *name) {
	void *p = dlsym(h, name);
	if (p == NULL && dnn_missing == NULL) dnn_missing = name;
	return p;
}

static const char *macdist_bind_cudnn(void *h) {
	dnn_missing = NULL;
	dnn.GetVersion = dnn_sym(h, "cudnnGetVersion");
	dnn.GetErrorString = dnn_sym(h, "cudnnGetErrorString");
	dnn.Create = dnn_sym(h, "cudnnCreate");
	dnn.Destroy = dnn_sym(h, "cudnnDestroy");
	dnn.SetStream = dnn_sym(h, "cudnnSetStream");
	dnn.CreateTensorDescriptor = dnn_sym(h, "cudnnCreateTensorDescriptor");
	dnn.DestroyTensorDescriptor = dnn_sym(h, "cudnnDestroyTensorDescriptor");
	dnn.SetTensor4dDescriptor = dnn_sym(h, "cudnnSetTensor4dDescriptor");
	dnn.CreateFilterDescriptor = dnn_sym(h, "cudnnCreateFilterDescriptor");
	dnn.DestroyFilterDescriptor = dnn_sym(h, "cudnnDestroyFilterDescriptor");
	dnn.SetFilter4dDescriptor = dnn_sym(h, "cudnnSetFilter4dDescriptor");
	dnn.CreateConvolutionDescriptor = dnn_sym(h, "cudnnCreateConvolutionDescriptor");
	dnn.DestroyConvolutionDescriptor = dnn_sym(h, "cudnnDestroyConvolutionDescriptor");
	dnn.SetConvolution2dDescriptor = dnn_sym(h, "cudnnSetConvolution2dDescriptor");
	dnn.SetConvolutionGroupCount = dnn_sym(h, "cudnnSetConvolutionGroupCount");
	dnn.SetConvolutionMathType = dnn_sym(h, "cudnnSetConvolutionMathType");
	dnn.GetConvolution2dForwardOutputDim = dnn_sym(h, "cudnnGetConvolution2dForwardOutputDim");
	dnn.GetFwdAlgo = dnn_sym(h, "cudnnGetConvolutionForwardAlgorithm_v7");
	dnn.GetBwdDataAlgo = dnn_sym(h, "cudnnGetConvolutionBackwardDataAlgorithm_v7");
	dnn.GetBwdFilterAlgo = dnn_sym(h, "cudnnGetConvolutionBackwardFilterAlgorithm_v7");
	dnn.FwdWorkspace = dnn_sym(h, "cudnnGetConvolutionForwardWorkspaceSize");
	dnn.BwdDataWorkspace = dnn_sym(h, "cudnnGetConvolutionBackwardDataWorkspaceSize");
	dnn.BwdFilterWorkspace = dnn_sym(h, "cudnnGetConvolutionBackwardFilterWorkspaceSize");
	dnn.Forward = dnn_sym(h, "cudnnConvolutionForward");
	dnn.BackwardData = dnn_sym(h, "cudnnConvolutionBackwardData");
	dnn.BackwardFilter = dnn_sym(h, "cudnnConvolutionBackwardFilter");
	return dnn_missing;
}

static size_t macdist_cudnnGetVersion(void) { return dnn.GetVersion(); }
static const char *macdist_cudnnErrorString(cudnnStatus_t s) { return dnn.GetErrorString(s); }
static cudnnStatus_t macdist_cudnnCreate(dnnH *h) { return dnn.Create(h); }
static cudnnStatus_t macdist_cudnnDestroy(dnnH h) { return dnn.Destroy(h); }
static cudnnStatus_t macdist_cudnnSetStream(dnnH h, void *s) { return dnn.SetStream(h, s); }

// Enum values (cudnn_ops.h / cudnn_graph.h of cuDNN 9, cudnn_ops_infer.h
// of cuDNN 8): CUDNN_DATA_FLOAT 0, CUDNN_TENSOR_NCHW 0,
// CUDNN_CROSS_CORRELATION 1 (PyTorch's convolution does not flip the
// kernel), CUDNN_DETERMINISTIC 1, and the _COUNT of each algorithm enum:
// forward 8, backward data 6, backward filter 7.
enum { DT_FLOAT = 0, NCHW = 0, XCORR = 1, DETERMINISTIC = 1, FWD_COUNT = 8, BWD_DATA_COUNT = 6, BWD_FILTER_COUNT = 7 };

// A plan is one convolution's descriptors, the algorithm of each direction
// and its workspace. desc: x, w, y, conv.
typedef struct {
	dnnDesc desc[4];
	int algo[3];
	size_t ws[3];
} dnnPlan;

static void macdist_plan_free(dnnPlan *p) {
	if (p->desc[0]) dnn.DestroyTensorDescriptor(p->desc[0]);
	if (p->desc[1]) dnn.DestroyFilterDescriptor(p->desc[1]);
	if (p->desc[2]) dnn.DestroyTensorDescriptor(p->desc[2]);
	if (p->desc[3]) dnn.DestroyConvolutionDescriptor(p->desc[3]);
	memset(p, 0, sizeof *p);
}

// pick returns the algorithm among perf[0:n] (best first, as the
// heuristics rank them) that succeeded, preferring a deterministic one so
// that replicas given the same data compute the same bits.
static int pick(const dnnPerf *perf, int n, int *algo, size_t *mem) {
	int first = -1;
	for (int i = 0; i < n; i++) {
		if (perf[i].status != 0) continue;
		if (first < 0) first = i;
		if (perf[i].determinism == DETERMINISTIC) {
			first = i;
			break;
		}
	}
	if (first < 0) return 0;
	*algo = perf[first].algo;
	*mem = perf[first].memory;
	return 1;
}

// macdist_plan fills p for n images of c×h×w convolved with k filters of
// c/groups×kh×kw. geom holds pad h, w, stride h, w, dilation h, w. On
// failure it returns the status and names the call in *what (status 0
// with *what set: no algorithm succeeded), leaving p freed.
static cudnnStatus_t macdist_plan(dnnH h, dnnPlan *p, int n, int c, int hh, int ww, int k, int kh, int kw,
		const int *geom, int groups, int math, int *outDims, const char **what) {
	cudnnStatus_t s;
	dnnPerf perf[8];
	int got = 0;
	size_t mem = 0;
	memset(p, 0, sizeof *p);
#define TRY(call, name) do { s = (call); if (s != 0) { *what = name; macdist_plan_free(p); return s; } } while (0)
	TRY(dnn.CreateTensorDescriptor(&p->desc[0]), "cudnnCreateTensorDescriptor");
	TRY(dnn.CreateFilterDescriptor(&p->desc[1]), "cudnnCreateFilterDescriptor");
	TRY(dnn.CreateTensorDescriptor(&p->desc[2]), "cudnnCreateTensorDescriptor");
	TRY(dnn.CreateConvolutionDescriptor(&p->desc[3]), "cudnnCreateConvolutionDescriptor");
	TRY(dnn.SetTensor4dDescriptor(p->desc[0], NCHW, DT_FLOAT, n, c, hh, ww), "cudnnSetTensor4dDescriptor(x)");
	// The filter's data type comes before its format, unlike a tensor's.
	TRY(dnn.SetFilter4dDescriptor(p->desc[1], DT_FLOAT, NCHW, k, c / groups, kh, kw), "cudnnSetFilter4dDescriptor");
	TRY(dnn.SetConvolution2dDescriptor(p->desc[3], geom[0], geom[1], geom[2], geom[3], geom[4], geom[5], XCORR, DT_FLOAT),
		"cudnnSetConvolution2dDescriptor");
	TRY(dnn.SetConvolutionGroupCount(p->desc[3], groups), "cudnnSetConvolutionGroupCount");
	TRY(dnn.SetConvolutionMathType(p->desc[3], math), "cudnnSetConvolutionMathType");
	TRY(dnn.GetConvolution2dForwardOutputDim(p->desc[3], p->desc[0], p->desc[1],
		&outDims[0], &outDims[1], &outDims[2], &outDims[3]), "cudnnGetConvolution2dForwardOutputDim");
	TRY(dnn.SetTensor4dDescriptor(p->desc[2], NCHW, DT_FLOAT, outDims[0], outDims[1], outDims[2], outDims[3]),
		"cudnnSetTensor4dDescriptor(y)");

	TRY(dnn.GetFwdAlgo(h, p->desc[0], p->desc[1], p->desc[3], p->desc[2], FWD_COUNT, &got, perf),
		"cudnnGetConvolutionForwardAlgorithm_v7");
	if (!pick(perf, got, &p->algo[0], &mem)) { *what = "cudnnGetConvolutionForwardAlgorithm_v7: no algorithm"; macdist_plan_free(p); return 0; }
	TRY(dnn.FwdWorkspace(h, p->desc[0], p->desc[1], p->desc[3], p->desc[2], p->algo[0], &p->ws[0]),
		"cudnnGetConvolutionForwardWorkspaceSize");

	TRY(dnn.GetBwdDataAlgo(h, p->desc[1], p->desc[2], p->desc[3], p->desc[0], BWD_DATA_COUNT, &got, perf),
		"cudnnGetConvolutionBackwardDataAlgorithm_v7");
	if (!pick(perf, got, &p->algo[1], &mem)) { *what = "cudnnGetConvolutionBackwardDataAlgorithm_v7: no algorithm"; macdist_plan_free(p); return 0; }
	TRY(dnn.BwdDataWorkspace(h, p->desc[1], p->desc[2], p->desc[3], p->desc[0], p->algo[1], &p->ws[1]),
		"cudnnGetConvolutionBackwardDataWorkspaceSize");

	TRY(dnn.GetBwdFilterAlgo(h, p->desc[0], p->desc[2], p->desc[3], p->desc[1], BWD_FILTER_COUNT, &got, perf),
		"cudnnGetConvolutionBackwardFilterAlgorithm_v7");
	if (!pick(perf, got, &p->algo[2], &mem)) { *what = "cudnnGetConvolutionBackwardFilterAlgorithm_v7: no algorithm"; macdist_plan_free(p); return 0; }
	TRY(dnn.BwdFilterWorkspace(h, p->desc[0], p->desc[2], p->desc[3], p->desc[1], p->algo[2], &p->ws[2]),
		"cudnnGetConvolutionBackwardFilterWorkspaceSize");
#undef TRY
	return 0;
}

// The three directions; alpha is 1 and beta as given (0 overwrites, 1
// accumulates), both host floats as cuDNN takes them for float data.
static cudnnStatus_t macdist_conv(int dir, dnnH h, const dnnPlan *p, unsigned long long a, unsigned long long b,
		unsigned long long ws, float beta, unsigned long long out) {
	float alpha = 1;
	switch (dir) {
	case 0: // y = conv(x = a, w = b)
		return dnn.Forward(h, &alpha, p->desc[0], (void *)a, p->desc[1], (void *)b, p->desc[3], p->algo[0],
			(void *)ws, p->ws[0], &beta, p->desc[2], (void *)out);
	case 1: // dx from w = a, dy = b
		return dnn.BackwardData(h, &alpha, p->desc[1], (void *)a, p->desc[2], (void *)b, p->desc[3], p->algo[1],
			(void *)ws, p->ws[1], &beta, p->desc[0], (void *)out);
	default: // dw from x = a, dy = b
		return dnn.BackwardFilter(h, &alpha, p->desc[0], (void *)a, p->desc[2], (void *)b, p->desc[3], p->algo[2],
			(void *)ws, p->ws[2], &beta, p->desc[1], (void *)out);
	}
}
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/macdist/macdist/internal/dynlib"
)

func bindCUDNN(h dynlib.Lib) error {
	if m := C.macdist_bind_cudnn(unsafe.Pointer(h)); m != nil {
		return fmt.Errorf("missing symbol %s", C.GoString(m))
	}
	return nil
}

// dnnStatus is a cudnnStatus_t.
type dnnStatus int

func (s dnnStatus) Error() string {
	if p := C.macdist_cudnnErrorString(C.cudnnStatus_t(s)); p != nil {
		return fmt.Sprintf("%s (%d)", C.GoString(p), int(s))
	}
	return fmt.Sprintf("cudnnStatus %d", int(s))
}

func dnnErr(s C.cudnnStatus_t) error {
	if s == 0 {
		return nil
	}
	return dnnStatus(s)
}

func cudnnVersion() int { return int(C.macdist_cudnnGetVersion()) }

func cudnnCreate() (cudnnH, error) {
	var h unsafe.Pointer
	err := dnnErr(C.macdist_cudnnCreate(&h))
	return h, err
}

func cudnnDestroy(h cudnnH) error { return dnnErr(C.macdist_cudnnDestroy(h)) }

func cudnnSetStream(h cudnnH, s cuStream) error { return dnnErr(C.macdist_cudnnSetStream(h, s)) }

// dnnPlan is C memory holding a C.dnnPlan: its descriptors are cuDNN's, so
// it stays out of Go memory.
type dnnPlan struct {
	p     *C.dnnPlan
	algo  [3]int
	ws    [3]int64
	outHW [2]int
}

// newDNNPlan makes the descriptors of a convolution and asks cuDNN's
// heuristics (cudnnGet*Algorithm_v7) for the algorithm of each direction
// and cuDNN for its workspace size.
func newDNNPlan(h cudnnH, k convKey) (pl *dnnPlan, err error) {
	p := (*C.dnnPlan)(cAlloc(int(unsafe.Sizeof(C.dnnPlan{}))))
	geom := [6]C.int{C.int(k.g.PadH), C.int(k.g.PadW), C.int(k.g.StrideH), C.int(k.g.StrideW), C.int(k.g.DilH), C.int(k.g.DilW)}
	var out [4]C.int
	var what *C.char
	s := C.macdist_plan(h, p, C.int(k.n), C.int(k.g.C), C.int(k.g.H), C.int(k.g.W), C.int(k.out),
		C.int(k.g.KH), C.int(k.g.KW), &geom[0], C.int(k.groups), C.int(k.math), &out[0], &what)
	if s != 0 || what != nil {
		cFree(unsafe.Pointer(p))
		if s != 0 {
			return nil, fmt.Errorf("%s: %w", C.GoString(what), dnnStatus(s))
		}
		return nil, fmt.Errorf("%s", C.GoString(what))
	}
	pl = &dnnPlan{p: p, outHW: [2]int{int(out[2]), int(out[3])}}
	if int(out[0]) != k.n || int(out[1]) != k.out {
		pl.free()
		return nil, fmt.Errorf("cudnnGetConvolution2dForwardOutputDim: %v, want N=%d C=%d", out, k.n, k.out)
	}
	for i := range pl.algo {
		pl.algo[i], pl.ws[i] = int(p.algo[i]), int64(p.ws[i])
	}
	return pl, nil
}

func (pl *dnnPlan) free() {
	C.macdist_plan_free(pl.p)
	cFree(unsafe.Pointer(pl.p))
	pl.p = nil
}

// run queues direction dir (0 forward, 1 backward data, 2 backward
// filter) with the workspace at ws.
func (pl *dnnPlan) run(dir int, h cudnnH, a, b, ws uint64, beta float32, out uint64) error {
	return dnnErr(C.macdist_conv(C.int(dir), h, pl.p, C.ulonglong(a), C.ulonglong(b), C.ulonglong(ws), C.float(beta), C.ulonglong(out)))
}
