// fakecuda.cc is a stand-in libcuda.so.1 for testing kernels/cuda on a
// machine without a GPU: the driver API entry points the Go side binds,
// over host memory, with cuLaunchKernel running the kernels of ../src/*.cu
// compiled for the host (see emu.h). It is strict where the real driver is
// and our code could be wrong: it checks that copies stay inside
// allocations, that packed kernel parameters have exactly the layout the
// kernel's signature implies, that a function is looked up in the module
// that defines it, and it fills new allocations with NaNs, as cuMemAlloc
// does not zero. Build and use it with run.sh.
#include "emu.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>

#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <vector>

// The kernels, in one translation unit (common.cuh is included once).
#include "../src/batchnorm.cu"
#include "../src/conv.cu"
#include "../src/elementwise.cu"
#include "../src/pool.cu"
#include "../src/reduce.cu"
#include "../src/rows.cu"

namespace emu {

// A fiber is entered the first time with swapcontext (which sets up its
// stack) and thereafter switched with _setjmp/_longjmp, which skip the
// signal-mask system calls that make swapcontext slow. Build without
// _FORTIFY_SOURCE, whose longjmp check rejects jumps between stacks.
struct Fiber {
	ucontext_t ctx;
	jmp_buf env;
	bool started = false;
	dim3 tid;
	int warp = 0, lane = 0;
	long bar = 0, wbar = 0;
	bool done = false;
	char *stack = nullptr;
};

Fiber *cur;
dim3 blockIdx_, blockDim_, gridDim_;

static ucontext_t sched;
static jmp_buf schedEnv;
static std::vector<Fiber> fibers;
static int nthreads;
static uint64_t warpSlot[1024];
static long progress;
static const std::function<void()> *body;
static const size_t stackSize = 1 << 16;

const dim3 &thread_idx() { return cur->tid; }

static void yield() {
	if (!_setjmp(cur->env)) _longjmp(schedEnv, 1);
}

// wait yields until every live fiber in [lo, hi) has passed barrier my of
// the counter field.
static void wait(long Fiber::*field, int lo, int hi) {
	long my = ++(cur->*field);
	progress++;
	for (;;) {
		bool ok = true;
		for (int i = lo; i < hi; i++) {
			if (!fibers[i].done && fibers[i].*field < my) {
				ok = false;
				break;
			}
		}
		if (ok) return;
		yield();
	}
}

void syncthreads() { wait(&Fiber::bar, 0, nthreads); }

uint64_t shfl_down(uint64_t v, int offset) {
	int base = cur->warp * 32, lane = cur->lane;
	int hi = std::min(base + 32, nthreads);
	warpSlot[base + lane] = v;
	wait(&Fiber::wbar, base, hi);
	uint64_t r = base + lane + offset < hi && lane + offset < 32 ? warpSlot[base + lane + offset] : v;
	wait(&Fiber::wbar, base, hi);
	return r;
}

static void trampoline(int i) {
	cur = &fibers[i];
	(*body)();
	fibers[i].done = true;
	progress++;
	_longjmp(schedEnv, 1);
}

// runBlock runs one block of the current grid; false on a deadlock (a
// barrier some thread never reaches).
static bool runBlock() {
	for (int i = 0; i < nthreads; i++) {
		Fiber &f = fibers[i];
		int lin = i;
		f.tid.x = lin % blockDim_.x;
		f.tid.y = lin / blockDim_.x % blockDim_.y;
		f.tid.z = lin / (blockDim_.x * blockDim_.y);
		f.warp = lin / 32;
		f.lane = lin % 32;
		f.bar = f.wbar = 0;
		f.done = false;
		f.started = false;
		if (!f.stack) f.stack = (char *)malloc(stackSize);
		getcontext(&f.ctx);
		f.ctx.uc_stack.ss_sp = f.stack;
		f.ctx.uc_stack.ss_size = stackSize;
		f.ctx.uc_link = &sched;
		makecontext(&f.ctx, (void (*)())trampoline, 1, i);
	}
	int remaining = nthreads;
	while (remaining > 0) {
		long before = progress;
		remaining = 0;
		for (int i = 0; i < nthreads; i++) {
			if (fibers[i].done) continue;
			cur = &fibers[i];
			if (!_setjmp(schedEnv)) {
				if (!fibers[i].started) {
					fibers[i].started = true;
					swapcontext(&sched, &fibers[i].ctx);
				} else {
					_longjmp(fibers[i].env, 1);
				}
			}
			if (!fibers[i].done) remaining++;
		}
		if (remaining > 0 && progress == before) return false;
	}
	return true;
}

bool runGrid(dim3 grid, dim3 block, const std::function<void()> &b) {
	gridDim_ = grid;
	blockDim_ = block;
	nthreads = block.x * block.y * block.z;
	if ((int)fibers.size() < nthreads) fibers.resize(nthreads);
	body = &b;
	for (unsigned z = 0; z < grid.z; z++)
		for (unsigned y = 0; y < grid.y; y++)
			for (unsigned x = 0; x < grid.x; x++) {
				blockIdx_.x = x;
				blockIdx_.y = y;
				blockIdx_.z = z;
				if (!runBlock()) return false;
			}
	return true;
}

}  // namespace emu

// ---- kernel table ----

using Body = std::function<void()>;
using Binder = std::function<bool(const char *, size_t, Body &)>;

template <class T>
static T take(const char *buf, size_t &off) {
	off = (off + alignof(T) - 1) & ~(alignof(T) - 1);
	T v;
	memcpy(&v, buf + off, sizeof(T));
	off += sizeof(T);
	return v;
}

// bind unpacks a parameter buffer laid out as the kernel's parameter list
// (each parameter at its natural alignment) and fails unless the buffer
// is exactly that long.
template <class... A>
static Binder bind(void (*f)(A...)) {
	return [f](const char *buf, size_t size, Body &out) {
		size_t off = 0;
		std::tuple<A...> t{take<A>(buf, off)...};
		if (off != size) {
			fprintf(stderr, "fakecuda: parameter buffer of %zu bytes, kernel wants %zu\n", size, off);
			return false;
		}
		out = [f, t]() { std::apply(f, t); };
		return true;
	};
}

struct Kernel {
	std::string name;
	Binder bind;
};

#define K(f) {#f, bind(f)}
static std::vector<Kernel> table = {
	K(ew_scale), K(ew_axpby), K(ew_add), K(ew_mul), K(ew_relu), K(ew_relu_backward), K(ew_gelu),
	K(ew_gelu_backward), K(dropout_mask), K(copy2d), K(copy_strided), K(scale2d), K(add_bias), K(expand), K(adamw), K(sgd_step),
	K(reduce_rows), K(reduce_cols), K(reduce_cols_final), K(reduce_mid), K(reduce_mid_final), K(dot_partial),
	K(softmax), K(softmax_backward), K(log_softmax), K(cross_entropy), K(layer_norm), K(layer_norm_backward),
	K(ln_param), K(ln_param_final),
	K(bn_reduce), K(bn_mean_final), K(bn_var_final), K(bn_apply), K(bn_backward_final), K(bn_backward_apply),
	K(im2col), K(col2im), K(max_pool), K(max_pool_backward), K(avg_pool), K(avg_pool_backward),
};

// ---- driver API ----

typedef int CUresult;
typedef unsigned long long CUdeviceptr;

enum {
	OK = 0,
	INVALID_VALUE = 1,
	OUT_OF_MEMORY = 2,
	NOT_INITIALIZED = 3,
	INVALID_CONTEXT = 201,
	INVALID_IMAGE = 200,
	INVALID_HANDLE = 400,
	NOT_FOUND = 500,
	LAUNCH_FAILED = 719,
};

static std::mutex mu;
static std::map<CUdeviceptr, size_t> allocs; // base → bytes
static bool inited;
static int ctxToken, streamToken;
// The current context is per thread, as the driver's is: a library that
// uses the thread's context (cuDNN) fails here if the Go side did not make
// it current on the thread that calls it.
static thread_local void *current;

struct Module {
	std::set<std::string> entries;
};

static bool fail(const char *what) {
	fprintf(stderr, "fakecuda: %s\n", what);
	return false;
}

// inside reports whether [p, p+n) lies in one allocation.
static bool inside(CUdeviceptr p, size_t n) {
	if (n == 0) return true;
	auto it = allocs.upper_bound(p);
	if (it == allocs.begin()) return false;
	--it;
	return p >= it->first && p + n <= it->first + it->second;
}

static bool needCtx() { return current == &ctxToken; }

extern "C" {

// For fakecudnn.cc, which finds them with dlsym: whether [p, p+n) lies in
// one allocation, and whether the calling thread has the context current.
int fakecuda_inside(CUdeviceptr p, size_t n) {
	std::lock_guard<std::mutex> g(mu);
	return inside(p, n);
}
int fakecuda_has_ctx(void) { return needCtx(); }

CUresult cuInit(unsigned int flags) {
	if (flags != 0) return INVALID_VALUE;
	inited = true;
	return OK;
}

CUresult cuDriverGetVersion(int *v) {
	*v = 12000;
	return OK;
}

CUresult cuGetErrorName(CUresult r, const char **s) {
	switch (r) {
	case OK: *s = "CUDA_SUCCESS"; return OK;
	case INVALID_VALUE: *s = "CUDA_ERROR_INVALID_VALUE"; return OK;
	case OUT_OF_MEMORY: *s = "CUDA_ERROR_OUT_OF_MEMORY"; return OK;
	case NOT_INITIALIZED: *s = "CUDA_ERROR_NOT_INITIALIZED"; return OK;
	case INVALID_CONTEXT: *s = "CUDA_ERROR_INVALID_CONTEXT"; return OK;
	case INVALID_IMAGE: *s = "CUDA_ERROR_INVALID_IMAGE"; return OK;
	case INVALID_HANDLE: *s = "CUDA_ERROR_INVALID_HANDLE"; return OK;
	case NOT_FOUND: *s = "CUDA_ERROR_NOT_FOUND"; return OK;
	case LAUNCH_FAILED: *s = "CUDA_ERROR_LAUNCH_FAILED"; return OK;
	}
	return INVALID_VALUE;
}

CUresult cuGetErrorString(CUresult r, const char **s) {
	if (cuGetErrorName(r, s) != OK) return INVALID_VALUE;
	*s = "emulated driver error, see stderr";
	return OK;
}

CUresult cuDeviceGetCount(int *n) {
	if (!inited) return NOT_INITIALIZED;
	*n = 1;
	return OK;
}

CUresult cuDeviceGet(int *d, int ordinal) {
	if (!inited) return NOT_INITIALIZED;
	if (ordinal != 0) return INVALID_VALUE;
	*d = 0;
	return OK;
}

CUresult cuDeviceGetName(char *buf, int n, int d) {
	snprintf(buf, n, "emulated GPU (fakecuda)");
	return d == 0 ? OK : INVALID_VALUE;
}

CUresult cuDeviceGetAttribute(int *v, int attr, int d) {
	switch (attr) {
	case 16: *v = 1; break;  // SMs
	case 75: *v = 9; break;  // compute capability major
	case 76: *v = 0; break;  // minor
	default: *v = 0;
	}
	return d == 0 ? OK : INVALID_VALUE;
}

CUresult cuDeviceTotalMem_v2(size_t *v, int) {
	*v = (size_t)1 << 32;
	return OK;
}

CUresult cuDevicePrimaryCtxRetain(void **c, int d) {
	if (!inited) return NOT_INITIALIZED;
	if (d != 0) return INVALID_VALUE;
	*c = &ctxToken;
	return OK;
}

CUresult cuDevicePrimaryCtxRelease_v2(int) { return OK; }

CUresult cuCtxSetCurrent(void *c) {
	if (c != &ctxToken && c != nullptr) return INVALID_CONTEXT;
	current = c;
	return OK;
}

CUresult cuStreamCreate(void **s, unsigned int flags) {
	if (!needCtx()) return INVALID_CONTEXT;
	if (flags > 1) return INVALID_VALUE;
	*s = &streamToken;
	return OK;
}

CUresult cuStreamDestroy_v2(void *s) { return s == &streamToken ? OK : INVALID_HANDLE; }

CUresult cuStreamSynchronize(void *s) {
	if (!needCtx()) return INVALID_CONTEXT;
	return s == &streamToken ? OK : INVALID_HANDLE;
}

CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t n) {
	if (!needCtx()) return INVALID_CONTEXT;
	if (n == 0) return INVALID_VALUE;
	void *m = malloc(n);
	if (!m) return OUT_OF_MEMORY;
	memset(m, 0xff, n);  // NaNs: cuMemAlloc does not zero
	std::lock_guard<std::mutex> g(mu);
	allocs[(CUdeviceptr)m] = n;
	*p = (CUdeviceptr)m;
	return OK;
}

CUresult cuMemFree_v2(CUdeviceptr p) {
	if (!needCtx()) return INVALID_CONTEXT;
	std::lock_guard<std::mutex> g(mu);
	auto it = allocs.find(p);
	if (it == allocs.end()) return fail("cuMemFree of an unknown pointer"), INVALID_VALUE;
	free((void *)p);
	allocs.erase(it);
	return OK;
}

CUresult cuMemGetInfo_v2(size_t *free_, size_t *total) {
	*free_ = *total = (size_t)1 << 32;
	return OK;
}

CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t n, void *s) {
	if (!needCtx() || s != &streamToken) return INVALID_CONTEXT;
	if (!inside(dst, n)) return fail("HtoD outside an allocation"), INVALID_VALUE;
	memcpy((void *)dst, src, n);
	return OK;
}

CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t n, void *s) {
	if (!needCtx() || s != &streamToken) return INVALID_CONTEXT;
	if (!inside(src, n)) return fail("DtoH outside an allocation"), INVALID_VALUE;
	memcpy(dst, (void *)src, n);
	return OK;
}

CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, void *s) {
	if (!needCtx() || s != &streamToken) return INVALID_CONTEXT;
	if (!inside(dst, n) || !inside(src, n)) return fail("DtoD outside an allocation"), INVALID_VALUE;
	memmove((void *)dst, (void *)src, n);
	return OK;
}

CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned int v, size_t n, void *s) {
	if (!needCtx() || s != &streamToken) return INVALID_CONTEXT;
	if (dst % 4 != 0 || !inside(dst, n * 4)) return fail("memset outside an allocation"), INVALID_VALUE;
	unsigned int *p = (unsigned int *)dst;
	for (size_t i = 0; i < n; i++) p[i] = v;
	return OK;
}

// cuModuleLoadDataEx takes the PTX text and keeps its .entry names, so
// that cuModuleGetFunction finds a kernel only in the module defining it.
CUresult cuModuleLoadDataEx(void **m, const void *image, unsigned int nopt, int *opts, void **vals) {
	if (!needCtx()) return INVALID_CONTEXT;
	for (unsigned i = 0; i < nopt; i++) {
		if (opts[i] == 5 && vals[i] == nullptr) return INVALID_VALUE;  // error log buffer
	}
	const char *s = (const char *)image;
	if (!strstr(s, ".version") || !strstr(s, ".target")) return INVALID_IMAGE;
	Module *mod = new Module;
	for (const char *p = strstr(s, ".entry "); p; p = strstr(p + 1, ".entry ")) {
		const char *q = p + 7;
		const char *e = q;
		while (*e && *e != '(' && *e != ' ' && *e != '\n') e++;
		mod->entries.insert(std::string(q, e));
	}
	*m = mod;
	return OK;
}

CUresult cuModuleUnload(void *m) {
	delete (Module *)m;
	return OK;
}

CUresult cuModuleGetFunction(void **f, void *m, const char *name) {
	Module *mod = (Module *)m;
	if (!mod->entries.count(name)) return NOT_FOUND;
	for (auto &k : table) {
		if (k.name == name) {
			*f = &k;
			return OK;
		}
	}
	fprintf(stderr, "fakecuda: %s is in the PTX but not in the emulator's table\n", name);
	return NOT_FOUND;
}

CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned shared, void *s, void **params, void **extra) {
	if (!needCtx() || s != &streamToken) return INVALID_CONTEXT;
	Kernel *k = (Kernel *)f;
	if (params != nullptr || extra == nullptr || shared != 0) return INVALID_VALUE;
	if (extra[0] != (void *)1 || extra[2] != (void *)2 || extra[4] != nullptr) return INVALID_VALUE;
	if (gx == 0 || gy == 0 || gz == 0 || gy > 65535 || gz > 65535) return INVALID_VALUE;
	if (bx * by * bz == 0 || bx * by * bz > 1024 || bz > 64) return INVALID_VALUE;
	const char *buf = (const char *)extra[1];
	size_t size = *(size_t *)extra[3];
	Body b;
	if (!k->bind(buf, size, b)) {
		fprintf(stderr, "fakecuda: bad parameters for %s\n", k->name.c_str());
		return INVALID_VALUE;
	}
	dim3 grid, block;
	grid.x = gx, grid.y = gy, grid.z = gz;
	block.x = bx, block.y = by, block.z = bz;
	if (!emu::runGrid(grid, block, b)) {
		fprintf(stderr, "fakecuda: %s deadlocked at a barrier\n", k->name.c_str());
		return LAUNCH_FAILED;
	}
	return OK;
}

}  // extern "C"
