// fakecudnn.cc is a stand-in libcudnn.so.9 for run.sh: the cuDNN entry
// points kernels/cuda binds, with convolutions as plain loops over the
// host memory fakecuda.cc hands out. It checks what real cuDNN checks and
// a little more, so that a mistake on the Go side fails here:
//
//   - every descriptor is of the right kind and fully set, with float NCHW
//     data, a cross-correlation and the channels divisible by the groups;
//   - the output descriptor is the one cudnnGetConvolution2dForwardOutputDim
//     gives, and the descriptors of a call agree with one another;
//   - the calling thread has the context current (cuDNN uses the thread's),
//     a stream is set, and every tensor and the workspace lie inside one
//     allocation of fakecuda (fakecuda_inside);
//   - the workspace passed is at least what the *WorkspaceSize call said
//     for that algorithm, and the algorithms that need one really use it.
//
// The heuristics rank an unsupported algorithm first and a
// non-deterministic one before a deterministic one that needs a
// workspace, so the Go side's choice (the first that succeeded,
// preferring determinism) is exercised. FAKECUDNN_FAIL=<function name>
// makes that function return CUDNN_STATUS_INTERNAL_ERROR, for the tests
// of the error paths. Sums are in double, so results are close to exact.
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

typedef int cudnnStatus_t;
typedef unsigned long long CUdeviceptr;

enum {
	SUCCESS = 0,
	NOT_INITIALIZED = 1001,
	BAD_PARAM = 2000,
	BAD_PARAM_NULL_POINTER = 2002,
	NOT_SUPPORTED = 3000,
	INTERNAL_ERROR = 4000,
	EXECUTION_FAILED = 5000,
};

static bool failing(const char *fn) {
	const char *f = getenv("FAKECUDNN_FAIL");
	return f != nullptr && strcmp(f, fn) == 0;
}

static cudnnStatus_t bad(const char *fn, const char *why) {
	fprintf(stderr, "fakecudnn: %s: %s\n", fn, why);
	return BAD_PARAM;
}

#define FAILPOINT(fn) \
	if (failing(fn)) return INTERNAL_ERROR

// fakecuda's checks, found in the libcuda.so.1 already loaded.
static int (*insideFn)(CUdeviceptr, size_t);
static int (*hasCtxFn)(void);

static bool bindCuda() {
	if (insideFn && hasCtxFn) return true;
	void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
	if (h == nullptr) return false;
	insideFn = (int (*)(CUdeviceptr, size_t))dlsym(h, "fakecuda_inside");
	hasCtxFn = (int (*)(void))dlsym(h, "fakecuda_has_ctx");
	return insideFn && hasCtxFn;
}

struct Handle {
	int magic = 0x68616e64;
	void *stream = nullptr;
};

enum Kind { TENSOR = 1, FILTER, CONV };

struct Desc {
	Kind kind;
	bool set = false;
	int n = 0, c = 0, h = 0, w = 0;  // tensor: N C H W; filter: K C/groups KH KW
	int pad[2] = {}, stride[2] = {}, dil[2] = {};
	int groups = 1, math = 0;
};

static Desc *desc(void *d, Kind k) {
	Desc *p = (Desc *)d;
	return p != nullptr && p->kind == k && p->set ? p : nullptr;
}

static bool handleOK(void *h) { return h != nullptr && ((Handle *)h)->magic == 0x68616e64; }

// The algorithms emulated, and the workspace each needs (bytes).
// Forward: 0 IMPLICIT_GEMM (direct loops, none), 1 IMPLICIT_PRECOMP_GEMM
// (one image's unfolded group in the workspace), 6 WINOGRAD (ranked first,
// never supported). Backward data: 0 (direct, non-deterministic as on
// real hardware), 1 (one image's unfolded gradient in the workspace).
// Backward filter: 0 (direct, non-deterministic), 1 (unfolded input), 3
// (never supported).
struct Geo {
	int n, c, h, w, k, cg, kg, kh, kw, oh, ow, groups;
	int ph, pw, sh, sw, dh, dw;
	long colRows() const { return (long)cg * kh * kw; }
	long colCols() const { return (long)oh * ow; }
};

static cudnnStatus_t geo(const char *fn, void *xd, void *wd, void *cd, void *yd, Geo *g) {
	Desc *x = desc(xd, TENSOR), *w = desc(wd, FILTER), *c = desc(cd, CONV), *y = desc(yd, TENSOR);
	if (!x || !w || !c || !y) return bad(fn, "a descriptor is missing, unset or of the wrong kind");
	if (x->c != w->c * c->groups || w->n % c->groups != 0)
		return bad(fn, "channels and filters do not divide into the groups");
	g->n = x->n, g->c = x->c, g->h = x->h, g->w = x->w, g->k = w->n, g->cg = w->c, g->kg = w->n / c->groups;
	g->kh = w->h, g->kw = w->w, g->groups = c->groups;
	g->ph = c->pad[0], g->pw = c->pad[1], g->sh = c->stride[0], g->sw = c->stride[1], g->dh = c->dil[0],
	g->dw = c->dil[1];
	g->oh = (g->h + 2 * g->ph - g->dh * (g->kh - 1) - 1) / g->sh + 1;
	g->ow = (g->w + 2 * g->pw - g->dw * (g->kw - 1) - 1) / g->sw + 1;
	if (g->oh < 1 || g->ow < 1) return bad(fn, "the kernel is larger than the padded input");
	if (y->n != g->n || y->c != g->k || y->h != g->oh || y->w != g->ow) {
		fprintf(stderr, "fakecudnn: %s: y is %dx%dx%dx%d, the convolution gives %dx%dx%dx%d\n", fn, y->n, y->c, y->h,
		        y->w, g->n, g->k, g->oh, g->ow);
		return BAD_PARAM;
	}
	return SUCCESS;
}

// wsNeed is the workspace of an algorithm, or -1 if it is not one.
static long wsNeed(int dir, int algo, const Geo &g) {
	long col = g.colRows() * g.colCols() * 4;
	switch (dir * 10 + algo) {
	case 0: return 0;
	case 1: return col;
	case 10: return 0;
	case 11: return col;
	case 20: return 0;
	case 21: return col;
	}
	return -1;
}

// unfold writes image i, group gi of x as rows (c, r, s) × columns (oh, ow).
static void unfold(float *col, const float *x, const Geo &g, int i, int gi) {
	for (int c = 0; c < g.cg; c++)
		for (int r = 0; r < g.kh; r++)
			for (int s = 0; s < g.kw; s++) {
				float *row = col + ((long)(c * g.kh + r) * g.kw + s) * g.colCols();
				const float *plane = x + ((long)i * g.c + gi * g.cg + c) * g.h * g.w;
				for (int oh = 0; oh < g.oh; oh++)
					for (int ow = 0; ow < g.ow; ow++) {
						int y = oh * g.sh - g.ph + r * g.dh, xx = ow * g.sw - g.pw + s * g.dw;
						row[oh * g.ow + ow] = y >= 0 && y < g.h && xx >= 0 && xx < g.w ? plane[y * g.w + xx] : 0.f;
					}
			}
}

// xAt is x at image i, channel ch, output (oh, ow) and kernel (r, s), 0 in
// the padding; valid reports whether it is inside.
static bool pos(const Geo &g, int oh, int ow, int r, int s, int *y, int *xx) {
	*y = oh * g.sh - g.ph + r * g.dh, *xx = ow * g.sw - g.pw + s * g.dw;
	return *y >= 0 && *y < g.h && *xx >= 0 && *xx < g.w;
}

static float blend(double v, float beta, float old) { return beta == 0 ? (float)v : (float)(v + (double)beta * old); }

static void forward(int algo, const Geo &g, const float *x, const float *w, float *ws, float beta, float *y) {
	long cols = g.colCols(), rows = g.colRows();
	for (int i = 0; i < g.n; i++)
		for (int gi = 0; gi < g.groups; gi++) {
			if (algo == 1) unfold(ws, x, g, i, gi);
			for (int kk = 0; kk < g.kg; kk++) {
				int k = gi * g.kg + kk;
				const float *wk = w + (long)k * rows;
				for (long p = 0; p < cols; p++) {
					int oh = p / g.ow, ow = p % g.ow;
					double sum = 0;
					for (int c = 0; c < g.cg; c++)
						for (int r = 0; r < g.kh; r++)
							for (int s = 0; s < g.kw; s++) {
								long row = (c * g.kh + r) * g.kw + s;
								float xv;
								if (algo == 1) {
									xv = ws[row * cols + p];
								} else {
									int yy, xx;
									xv = pos(g, oh, ow, r, s, &yy, &xx)
									         ? x[(((long)i * g.c + gi * g.cg + c) * g.h + yy) * g.w + xx]
									         : 0.f;
								}
								sum += (double)wk[row] * xv;
							}
					float *o = y + ((long)i * g.k + k) * cols + p;
					*o = blend(sum, beta, *o);
				}
			}
		}
}

static void backwardData(int algo, const Geo &g, const float *w, const float *dy, float *ws, float beta, float *dx) {
	long cols = g.colCols(), rows = g.colRows(), img = (long)g.c * g.h * g.w;
	std::vector<double> acc(img);
	for (int i = 0; i < g.n; i++) {
		std::fill(acc.begin(), acc.end(), 0.0);
		for (int gi = 0; gi < g.groups; gi++) {
			// dcol[row][p] = Σ_k w[k][row]·dy[k][p], then folded back.
			for (long row = 0; row < rows; row++)
				for (long p = 0; p < cols; p++) {
					double sum = 0;
					for (int kk = 0; kk < g.kg; kk++) {
						int k = gi * g.kg + kk;
						sum += (double)w[(long)k * rows + row] * dy[((long)i * g.k + k) * cols + p];
					}
					int c = row / (g.kh * g.kw), r = row / g.kw % g.kh, s = row % g.kw;
					int oh = p / g.ow, ow = p % g.ow, yy, xx;
					if (algo == 1) {
						ws[row * cols + p] = (float)sum;
						continue;
					}
					if (pos(g, oh, ow, r, s, &yy, &xx)) acc[((long)(gi * g.cg + c) * g.h + yy) * g.w + xx] += sum;
				}
			if (algo != 1) continue;
			for (long row = 0; row < rows; row++)
				for (long p = 0; p < cols; p++) {
					int c = row / (g.kh * g.kw), r = row / g.kw % g.kh, s = row % g.kw;
					int oh = p / g.ow, ow = p % g.ow, yy, xx;
					if (pos(g, oh, ow, r, s, &yy, &xx)) acc[((long)(gi * g.cg + c) * g.h + yy) * g.w + xx] += ws[row * cols + p];
				}
		}
		for (long e = 0; e < img; e++) {
			float *o = dx + i * img + e;
			*o = blend(acc[e], beta, *o);
		}
	}
}

static void backwardFilter(int algo, const Geo &g, const float *x, const float *dy, float *ws, float beta, float *dw) {
	long cols = g.colCols(), rows = g.colRows();
	std::vector<double> acc((long)g.k * rows, 0.0);
	for (int i = 0; i < g.n; i++)
		for (int gi = 0; gi < g.groups; gi++) {
			if (algo == 1) unfold(ws, x, g, i, gi);
			for (int kk = 0; kk < g.kg; kk++) {
				int k = gi * g.kg + kk;
				const float *d = dy + ((long)i * g.k + k) * cols;
				for (long row = 0; row < rows; row++) {
					int c = row / (g.kh * g.kw), r = row / g.kw % g.kh, s = row % g.kw;
					double sum = 0;
					for (long p = 0; p < cols; p++) {
						float xv;
						if (algo == 1) {
							xv = ws[row * cols + p];
						} else {
							int yy, xx;
							xv = pos(g, p / g.ow, p % g.ow, r, s, &yy, &xx)
							         ? x[(((long)i * g.c + gi * g.cg + c) * g.h + yy) * g.w + xx]
							         : 0.f;
						}
						sum += (double)d[p] * xv;
					}
					acc[(long)k * rows + row] += sum;
				}
			}
		}
	for (long e = 0; e < (long)g.k * rows; e++) dw[e] = blend(acc[e], beta, dw[e]);
}

extern "C" {

size_t cudnnGetVersion(void) { return 90100; }  // 9.1.0

const char *cudnnGetErrorString(cudnnStatus_t s) {
	switch (s) {
	case SUCCESS: return "CUDNN_STATUS_SUCCESS";
	case NOT_INITIALIZED: return "CUDNN_STATUS_NOT_INITIALIZED";
	case BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
	case BAD_PARAM_NULL_POINTER: return "CUDNN_STATUS_BAD_PARAM_NULL_POINTER";
	case NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
	case INTERNAL_ERROR: return "CUDNN_STATUS_INTERNAL_ERROR";
	case EXECUTION_FAILED: return "CUDNN_STATUS_EXECUTION_FAILED";
	}
	return "CUDNN_UNKNOWN_STATUS_FOUND";
}

cudnnStatus_t cudnnCreate(void **h) {
	FAILPOINT("cudnnCreate");
	if (h == nullptr) return BAD_PARAM_NULL_POINTER;
	if (!bindCuda()) return fprintf(stderr, "fakecudnn: fakecuda's libcuda.so.1 is not loaded\n"), NOT_INITIALIZED;
	if (!hasCtxFn()) return fprintf(stderr, "fakecudnn: cudnnCreate without a current context\n"), NOT_INITIALIZED;
	*h = new Handle;
	return SUCCESS;
}

cudnnStatus_t cudnnDestroy(void *h) {
	FAILPOINT("cudnnDestroy");
	if (!handleOK(h)) return BAD_PARAM;
	((Handle *)h)->magic = 0;
	delete (Handle *)h;
	return SUCCESS;
}

cudnnStatus_t cudnnSetStream(void *h, void *s) {
	FAILPOINT("cudnnSetStream");
	if (!handleOK(h)) return BAD_PARAM;
	((Handle *)h)->stream = s;
	return SUCCESS;
}

static cudnnStatus_t create(void **d, Kind k) {
	if (d == nullptr) return BAD_PARAM_NULL_POINTER;
	Desc *p = new Desc;
	p->kind = k;
	*d = p;
	return SUCCESS;
}

static cudnnStatus_t destroy(void *d, Kind k) {
	Desc *p = (Desc *)d;
	if (p == nullptr || p->kind != k) return BAD_PARAM;
	p->kind = (Kind)0;
	delete p;
	return SUCCESS;
}

cudnnStatus_t cudnnCreateTensorDescriptor(void **d) {
	FAILPOINT("cudnnCreateTensorDescriptor");
	return create(d, TENSOR);
}
cudnnStatus_t cudnnDestroyTensorDescriptor(void *d) { return destroy(d, TENSOR); }
cudnnStatus_t cudnnCreateFilterDescriptor(void **d) {
	FAILPOINT("cudnnCreateFilterDescriptor");
	return create(d, FILTER);
}
cudnnStatus_t cudnnDestroyFilterDescriptor(void *d) { return destroy(d, FILTER); }
cudnnStatus_t cudnnCreateConvolutionDescriptor(void **d) {
	FAILPOINT("cudnnCreateConvolutionDescriptor");
	Desc *p;
	cudnnStatus_t s = create((void **)&p, CONV);
	if (s == SUCCESS) *d = p;
	return s;
}
cudnnStatus_t cudnnDestroyConvolutionDescriptor(void *d) { return destroy(d, CONV); }

// Only CUDNN_TENSOR_NCHW (0) and CUDNN_DATA_FLOAT (0) are emulated.
cudnnStatus_t cudnnSetTensor4dDescriptor(void *d, int format, int dtype, int n, int c, int h, int w) {
	FAILPOINT("cudnnSetTensor4dDescriptor");
	Desc *p = (Desc *)d;
	if (p == nullptr || p->kind != TENSOR) return bad("cudnnSetTensor4dDescriptor", "not a tensor descriptor");
	if (format != 0 || dtype != 0) return NOT_SUPPORTED;
	if (n < 1 || c < 1 || h < 1 || w < 1) return bad("cudnnSetTensor4dDescriptor", "a dimension below 1");
	p->n = n, p->c = c, p->h = h, p->w = w, p->set = true;
	return SUCCESS;
}

cudnnStatus_t cudnnSetFilter4dDescriptor(void *d, int dtype, int format, int k, int c, int h, int w) {
	FAILPOINT("cudnnSetFilter4dDescriptor");
	Desc *p = (Desc *)d;
	if (p == nullptr || p->kind != FILTER) return bad("cudnnSetFilter4dDescriptor", "not a filter descriptor");
	if (format != 0 || dtype != 0) return NOT_SUPPORTED;
	if (k < 1 || c < 1 || h < 1 || w < 1) return bad("cudnnSetFilter4dDescriptor", "a dimension below 1");
	p->n = k, p->c = c, p->h = h, p->w = w, p->set = true;
	return SUCCESS;
}

// mode must be CUDNN_CROSS_CORRELATION (1): PyTorch's convolution.
cudnnStatus_t cudnnSetConvolution2dDescriptor(void *d, int ph, int pw, int sh, int sw, int dh, int dw, int mode,
                                              int ctype) {
	FAILPOINT("cudnnSetConvolution2dDescriptor");
	Desc *p = (Desc *)d;
	if (p == nullptr || p->kind != CONV) return bad("cudnnSetConvolution2dDescriptor", "not a convolution descriptor");
	if (ph < 0 || pw < 0 || sh < 1 || sw < 1 || dh < 1 || dw < 1)
		return bad("cudnnSetConvolution2dDescriptor", "bad padding, stride or dilation");
	if (mode != 1) return bad("cudnnSetConvolution2dDescriptor", "mode is not CUDNN_CROSS_CORRELATION");
	if (ctype != 0) return NOT_SUPPORTED;
	p->pad[0] = ph, p->pad[1] = pw, p->stride[0] = sh, p->stride[1] = sw, p->dil[0] = dh, p->dil[1] = dw;
	p->set = true;
	return SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionGroupCount(void *d, int groups) {
	FAILPOINT("cudnnSetConvolutionGroupCount");
	Desc *p = desc(d, CONV);
	if (p == nullptr || groups < 1) return bad("cudnnSetConvolutionGroupCount", "bad descriptor or count");
	p->groups = groups;
	return SUCCESS;
}

// CUDNN_DEFAULT_MATH 0, CUDNN_TENSOR_OP_MATH 1, _ALLOW_CONVERSION 2,
// CUDNN_FMA_MATH 3.
cudnnStatus_t cudnnSetConvolutionMathType(void *d, int math) {
	FAILPOINT("cudnnSetConvolutionMathType");
	Desc *p = desc(d, CONV);
	if (p == nullptr || math < 0 || math > 3) return bad("cudnnSetConvolutionMathType", "bad descriptor or math type");
	p->math = math;
	return SUCCESS;
}

cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(void *cd, void *xd, void *wd, int *n, int *c, int *h, int *w) {
	FAILPOINT("cudnnGetConvolution2dForwardOutputDim");
	Desc *x = desc(xd, TENSOR), *f = desc(wd, FILTER), *cv = desc(cd, CONV);
	if (!x || !f || !cv) return bad("cudnnGetConvolution2dForwardOutputDim", "a descriptor is missing or unset");
	if (x->c != f->c * cv->groups) return bad("cudnnGetConvolution2dForwardOutputDim", "input channels ≠ filter channels × groups");
	*n = x->n, *c = f->n;
	*h = (x->h + 2 * cv->pad[0] - cv->dil[0] * (f->h - 1) - 1) / cv->stride[0] + 1;
	*w = (x->w + 2 * cv->pad[1] - cv->dil[1] * (f->w - 1) - 1) / cv->stride[1] + 1;
	if (*h < 1 || *w < 1) return bad("cudnnGetConvolution2dForwardOutputDim", "empty output");
	return SUCCESS;
}

// The perf struct of all three directions.
struct Perf {
	int algo;
	cudnnStatus_t status;
	float time;
	size_t memory;
	int determinism;
	int mathType;
	int reserved[3];
};

// heuristics fills perf with the ranked list {algos[i], statuses[i],
// determinism[i]}, up to req entries.
static cudnnStatus_t heuristics(const char *fn, void *h, const Geo &g, int dir, int req, int *got, Perf *perf,
                                const int *algos, const int *st, const int *det, int n, int math) {
	if (!handleOK(h)) return bad(fn, "bad handle");
	if (got == nullptr || perf == nullptr || req < 1) return bad(fn, "no room for results");
	int k = 0;
	for (int i = 0; i < n && k < req; i++, k++) {
		Perf &p = perf[k];
		memset(&p, 0, sizeof p);
		p.algo = algos[i], p.status = st[i], p.time = -1, p.determinism = det[i], p.mathType = math;
		p.memory = st[i] == SUCCESS ? (size_t)wsNeed(dir, algos[i], g) : 0;
	}
	*got = k;
	return SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(void *h, void *xd, void *wd, void *cd, void *yd, int req,
                                                     int *got, Perf *perf) {
	const char *fn = "cudnnGetConvolutionForwardAlgorithm_v7";
	FAILPOINT(fn);
	Geo g;
	if (cudnnStatus_t s = geo(fn, xd, wd, cd, yd, &g)) return s;
	static const int algos[] = {6, 1, 0}, st[] = {NOT_SUPPORTED, SUCCESS, SUCCESS}, det[] = {1, 1, 1};
	return heuristics(fn, h, g, 0, req, got, perf, algos, st, det, 3, ((Desc *)cd)->math);
}

cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(void *h, void *wd, void *dyd, void *cd, void *dxd, int req,
                                                          int *got, Perf *perf) {
	const char *fn = "cudnnGetConvolutionBackwardDataAlgorithm_v7";
	FAILPOINT(fn);
	Geo g;
	if (cudnnStatus_t s = geo(fn, dxd, wd, cd, dyd, &g)) return s;
	static const int algos[] = {0, 1}, st[] = {SUCCESS, SUCCESS}, det[] = {0, 1};
	return heuristics(fn, h, g, 1, req, got, perf, algos, st, det, 2, ((Desc *)cd)->math);
}

cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(void *h, void *xd, void *dyd, void *cd, void *dwd,
                                                            int req, int *got, Perf *perf) {
	const char *fn = "cudnnGetConvolutionBackwardFilterAlgorithm_v7";
	FAILPOINT(fn);
	Geo g;
	if (cudnnStatus_t s = geo(fn, xd, dwd, cd, dyd, &g)) return s;
	static const int algos[] = {3, 0, 1}, st[] = {NOT_SUPPORTED, SUCCESS, SUCCESS}, det[] = {1, 0, 1};
	return heuristics(fn, h, g, 2, req, got, perf, algos, st, det, 3, ((Desc *)cd)->math);
}

static cudnnStatus_t wsSize(const char *fn, void *h, int dir, void *xd, void *wd, void *cd, void *yd, int algo,
                            size_t *size) {
	if (!handleOK(h) || size == nullptr) return bad(fn, "bad handle or result pointer");
	Geo g;
	if (cudnnStatus_t s = geo(fn, xd, wd, cd, yd, &g)) return s;
	long need = wsNeed(dir, algo, g);
	if (need < 0) return NOT_SUPPORTED;
	*size = need;
	return SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(void *h, void *xd, void *wd, void *cd, void *yd, int algo,
                                                      size_t *size) {
	FAILPOINT("cudnnGetConvolutionForwardWorkspaceSize");
	return wsSize("cudnnGetConvolutionForwardWorkspaceSize", h, 0, xd, wd, cd, yd, algo, size);
}

cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(void *h, void *wd, void *dyd, void *cd, void *dxd,
                                                           int algo, size_t *size) {
	FAILPOINT("cudnnGetConvolutionBackwardDataWorkspaceSize");
	return wsSize("cudnnGetConvolutionBackwardDataWorkspaceSize", h, 1, dxd, wd, cd, dyd, algo, size);
}

cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(void *h, void *xd, void *dyd, void *cd, void *dwd,
                                                             int algo, size_t *size) {
	FAILPOINT("cudnnGetConvolutionBackwardFilterWorkspaceSize");
	return wsSize("cudnnGetConvolutionBackwardFilterWorkspaceSize", h, 2, xd, dwd, cd, dyd, algo, size);
}

// run checks a convolution call and returns its geometry in g.
static cudnnStatus_t run(const char *fn, void *h, int dir, const float *alpha, const float *beta, void *xd,
                         const void *x, void *wd, const void *w, void *cd, int algo, void *ws, size_t wsBytes,
                         void *yd, const void *y, Geo *g) {
	if (!handleOK(h)) return bad(fn, "bad handle");
	if (((Handle *)h)->stream == nullptr) return bad(fn, "no stream set (cudnnSetStream)");
	if (!hasCtxFn()) return fprintf(stderr, "fakecudnn: %s: no current context on this thread\n", fn), EXECUTION_FAILED;
	if (alpha == nullptr || beta == nullptr || *alpha != 1) return bad(fn, "alpha must be 1 here, beta given");
	if (cudnnStatus_t s = geo(fn, xd, wd, cd, yd, g)) return s;
	long need = wsNeed(dir, algo, *g);
	if (need < 0) return bad(fn, "not an algorithm of this direction");
	if ((long)wsBytes < need) {
		fprintf(stderr, "fakecudnn: %s: workspace of %zu bytes, algorithm %d needs %ld\n", fn, wsBytes, algo, need);
		return BAD_PARAM;
	}
	size_t xb = (size_t)g->n * g->c * g->h * g->w * 4, wb = (size_t)g->k * g->colRows() * 4,
	       yb = (size_t)g->n * g->k * g->oh * g->ow * 4;
	if (!insideFn((CUdeviceptr)x, xb) || !insideFn((CUdeviceptr)w, wb) || !insideFn((CUdeviceptr)y, yb))
		return bad(fn, "a tensor reaches outside its allocation");
	if (wsBytes > 0 && !insideFn((CUdeviceptr)ws, wsBytes)) return bad(fn, "the workspace reaches outside its allocation");
	return SUCCESS;
}

cudnnStatus_t cudnnConvolutionForward(void *h, const float *alpha, void *xd, const float *x, void *wd, const float *w,
                                      void *cd, int algo, void *ws, size_t wsBytes, const float *beta, void *yd,
                                      float *y) {
	FAILPOINT("cudnnConvolutionForward");
	Geo g;
	if (cudnnStatus_t s = run("cudnnConvolutionForward", h, 0, alpha, beta, xd, x, wd, w, cd, algo, ws, wsBytes, yd, y, &g))
		return s;
	forward(algo, g, x, w, (float *)ws, *beta, y);
	return SUCCESS;
}

cudnnStatus_t cudnnConvolutionBackwardData(void *h, const float *alpha, void *wd, const float *w, void *dyd,
                                           const float *dy, void *cd, int algo, void *ws, size_t wsBytes,
                                           const float *beta, void *dxd, float *dx) {
	FAILPOINT("cudnnConvolutionBackwardData");
	Geo g;
	if (cudnnStatus_t s =
	        run("cudnnConvolutionBackwardData", h, 1, alpha, beta, dxd, dx, wd, w, cd, algo, ws, wsBytes, dyd, dy, &g))
		return s;
	backwardData(algo, g, w, dy, (float *)ws, *beta, dx);
	return SUCCESS;
}

cudnnStatus_t cudnnConvolutionBackwardFilter(void *h, const float *alpha, void *xd, const float *x, void *dyd,
                                             const float *dy, void *cd, int algo, void *ws, size_t wsBytes,
                                             const float *beta, void *dwd, float *dw) {
	FAILPOINT("cudnnConvolutionBackwardFilter");
	Geo g;
	if (cudnnStatus_t s =
	        run("cudnnConvolutionBackwardFilter", h, 2, alpha, beta, xd, x, dwd, dw, cd, algo, ws, wsBytes, dyd, dy, &g))
		return s;
	backwardFilter(algo, g, x, dy, (float *)ws, *beta, dw);
	return SUCCESS;
}

}  // extern "C"
