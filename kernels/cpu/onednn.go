//go:build cgo

package cpu

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// The part of oneDNN's C API (soname libdnnl.so.2, written against 2.6)
// that convolutions need, declared here from the documented signatures so
// that neither headers nor a link-time library are needed. Handles are
// opaque pointers, enumerations ints.
//
// dnnl_memory_desc_t and dnnl_convolution_desc_t are only ever filled in
// by the library and handed back to it by pointer, so only their sizes
// matter: 696 and 5976 bytes in 2.6, with 8-byte alignment. The buffers
// below are larger on purpose, so that a later 2.x that grows them cannot
// write past the end; mdnn_open checks the fields it can (ndims first, the
// dims after it) against a descriptor the library initialised.
typedef struct { _Alignas(16) unsigned char b[1024]; } mdnn_md;
typedef struct { _Alignas(16) unsigned char b[8192]; } mdnn_opdesc;
typedef int64_t mdnn_dims[12];             // dnnl_dims_t, DNNL_MAX_NDIMS = 12
typedef struct { int arg; void *mem; } mdnn_arg; // dnnl_exec_arg_t
typedef struct { int major, minor, patch; const char *hash; unsigned cpu_rt, gpu_rt; } mdnn_version_t;

enum {
	MDNN_BF16 = 2, MDNN_F32 = 3,                    // dnnl_bf16, dnnl_f32
	MDNN_TAG_ANY = 1, MDNN_TAG_X = 2, MDNN_TAG_NCHW = 5, MDNN_TAG_OIHW = 5, MDNN_TAG_GOIHW = 7,
	MDNN_TAG_NCHW16C = 69,                          // dnnl_nChw16c (dnnl_aBcd16b)
	MDNN_TAG_NHWC = 20,                             // dnnl_nhwc (dnnl_acdb)
	MDNN_FORWARD_TRAINING = 64,
	MDNN_CONV_DIRECT = 1,
	MDNN_CONV_AUTO = 3,
	MDNN_ENGINE_CPU = 1,
	MDNN_STREAM_DEFAULT = 1,
	MDNN_SCRATCHPAD_USER = 1,
	MDNN_Q_IMPL_INFO_STR = 8, MDNN_Q_SRC = 129, MDNN_Q_DIFF_SRC = 130, MDNN_Q_WEIGHTS = 131,
	MDNN_Q_DIFF_WEIGHTS = 132, MDNN_Q_DST = 133, MDNN_Q_DIFF_DST = 134, MDNN_Q_SCRATCHPAD = 136,
	MDNN_ARG_SRC = 1, MDNN_ARG_DST = 17, MDNN_ARG_WEIGHTS = 33, MDNN_ARG_BIAS = 41, MDNN_ARG_SCRATCHPAD = 80,
	MDNN_ARG_DIFF_SRC = 129, MDNN_ARG_DIFF_DST = 145, MDNN_ARG_DIFF_WEIGHTS = 161, MDNN_ARG_DIFF_BIAS = 169,
};

static struct {
	int (*engine_create)(void **, int, size_t);
	int (*stream_create)(void **, void *, unsigned);
	int (*md_init_by_tag)(mdnn_md *, int, const int64_t *, int, int);
	int (*md_equal)(const void *, const void *);
	size_t (*md_get_size)(const void *);
	int (*conv_fwd_init)(mdnn_opdesc *, int, int, const void *, const void *, const void *, const void *,
		const int64_t *, const int64_t *, const int64_t *, const int64_t *);
	int (*conv_bwd_data_init)(mdnn_opdesc *, int, const void *, const void *, const void *,
		const int64_t *, const int64_t *, const int64_t *, const int64_t *);
	int (*conv_bwd_weights_init)(mdnn_opdesc *, int, const void *, const void *, const void *, const void *,
		const int64_t *, const int64_t *, const int64_t *, const int64_t *);
	int (*attr_create)(void **);
	int (*attr_destroy)(void *);
	int (*attr_set_scratchpad_mode)(void *, int);
	int (*attr_set_post_ops)(void *, const void *);
	int (*post_ops_create)(void **);
	int (*post_ops_append_sum)(void *, float);
	int (*post_ops_destroy)(void *);
	int (*pd_create)(void **, const void *, const void *, void *, const void *);
	int (*pd_destroy)(void *);
	const void *(*pd_query_md)(const void *, int, int);
	int (*pd_query)(const void *, int, int, void *);
	int (*reorder_pd_create)(void **, const void *, void *, const void *, void *, const void *);
	int (*primitive_create)(void **, const void *);
	int (*primitive_execute)(const void *, void *, int, const mdnn_arg *);
	int (*memory_create)(void **, const void *, void *, void *);
	int (*memory_set_data_handle)(void *, void *);
	int (*sgemm)(char, char, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *, int64_t,
		float, float *, int64_t);
	int (*get_effective_cpu_isa)(void);
	const mdnn_version_t *(*version)(void);
	void (*omp_set_num_threads)(int); // from libgomp, which libdnnl pulls in; absent for other runtimes
	int (*omp_get_max_threads)(void);
} mdnn;

static void *mdnn_engine;

#define MDNN_SYM(field, name) if ((*(void **)&mdnn.field = dlsym(h, name)) == NULL) return "missing symbol " name;

// mdnn_open returns NULL on success and what went wrong otherwise.
static const char *mdnn_open(const char *name) {
	void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		return dlerror();
	}
	MDNN_SYM(engine_create, "dnnl_engine_create")
	MDNN_SYM(stream_create, "dnnl_stream_create")
	MDNN_SYM(md_init_by_tag, "dnnl_memory_desc_init_by_tag")
	MDNN_SYM(md_equal, "dnnl_memory_desc_equal")
	MDNN_SYM(md_get_size, "dnnl_memory_desc_get_size")
	MDNN_SYM(conv_fwd_init, "dnnl_dilated_convolution_forward_desc_init")
	MDNN_SYM(conv_bwd_data_init, "dnnl_dilated_convolution_backward_data_desc_init")
	MDNN_SYM(conv_bwd_weights_init, "dnnl_dilated_convolution_backward_weights_desc_init")
	MDNN_SYM(attr_create, "dnnl_primitive_attr_create")
	MDNN_SYM(attr_destroy, "dnnl_primitive_attr_destroy")
	MDNN_SYM(attr_set_scratchpad_mode, "dnnl_primitive_attr_set_scratchpad_mode")
	MDNN_SYM(attr_set_post_ops, "dnnl_primitive_attr_set_post_ops")
	MDNN_SYM(post_ops_create, "dnnl_post_ops_create")
	MDNN_SYM(post_ops_append_sum, "dnnl_post_ops_append_sum")
	MDNN_SYM(post_ops_destroy, "dnnl_post_ops_destroy")
	MDNN_SYM(pd_create, "dnnl_primitive_desc_create")
	MDNN_SYM(pd_destroy, "dnnl_primitive_desc_destroy")
	MDNN_SYM(pd_query_md, "dnnl_primitive_desc_query_md")
	MDNN_SYM(pd_query, "dnnl_primitive_desc_query")
	MDNN_SYM(reorder_pd_create, "dnnl_reorder_primitive_desc_create")
	MDNN_SYM(primitive_create, "dnnl_primitive_create")
	MDNN_SYM(primitive_execute, "dnnl_primitive_execute")
	MDNN_SYM(memory_create, "dnnl_memory_create")
	MDNN_SYM(memory_set_data_handle, "dnnl_memory_set_data_handle")
	MDNN_SYM(sgemm, "dnnl_sgemm")
	MDNN_SYM(get_effective_cpu_isa, "dnnl_get_effective_cpu_isa")
	MDNN_SYM(version, "dnnl_version")
	*(void **)&mdnn.omp_set_num_threads = dlsym(h, "omp_set_num_threads");
	*(void **)&mdnn.omp_get_max_threads = dlsym(h, "omp_get_max_threads");

	const mdnn_version_t *v = mdnn.version();
	if (v->major != 2) {
		return "not oneDNN 2.x (the C API macdist declares)";
	}
	// The layout check: ndims is the first field, the dims follow at 8.
	mdnn_md md;
	int64_t dims[12] = {2, 3, 5, 7};
	memset(&md, 0xff, sizeof md);
	if (mdnn.md_init_by_tag(&md, 4, dims, MDNN_F32, MDNN_TAG_NCHW) != 0) {
		return "dnnl_memory_desc_init_by_tag failed";
	}
	int ndims;
	int64_t got[4];
	memcpy(&ndims, md.b, sizeof ndims);
	memcpy(got, md.b + 8, sizeof got);
	if (ndims != 4 || memcmp(got, dims, sizeof got) != 0 || mdnn.md_get_size(&md) != 2 * 3 * 5 * 7 * 4) {
		return "dnnl_memory_desc_t is not laid out as in oneDNN 2.6";
	}
	// The blocked tag: 3 channels pad to one block of 16, 17 to two.
	int64_t bdims[12] = {2, 17, 5, 7};
	if (mdnn.md_init_by_tag(&md, 4, bdims, MDNN_F32, MDNN_TAG_NCHW16C) != 0 || mdnn.md_get_size(&md) != 2 * 32 * 5 * 7 * 4) {
		return "dnnl_nChw16c is not the format tag it is in oneDNN 2.6";
	}
	if (mdnn.engine_create(&mdnn_engine, MDNN_ENGINE_CPU, 0) != 0) {
		return "dnnl_engine_create failed";
	}
	return NULL;
}

static int mdnn_isa(void) { return mdnn.get_effective_cpu_isa(); }

// mdnn_sgemm is dnnl_sgemm (row-major) on nthr OpenMP threads.
static int mdnn_sgemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
	const float *b, int64_t ldb, float beta, float *c, int64_t ldc, int nthr) {
	if (mdnn.omp_set_num_threads != NULL) {
		mdnn.omp_set_num_threads(nthr);
	}
	return mdnn.sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// mdnn_omp_threads is the calling thread's OpenMP team size, 0 without
// libgomp.
static int mdnn_omp_threads(void) { return mdnn.omp_get_max_threads ? mdnn.omp_get_max_threads() : 0; }

static void mdnn_get_version(int *v) {
	const mdnn_version_t *p = mdnn.version();
	v[0] = p->major;
	v[1] = p->minor;
	v[2] = p->patch;
	v[3] = (int)p->cpu_rt;
}

// A port is one tensor argument of a primitive. user is the caller's
// memory (oihw or x; nchw or nChw16c for activations), whose handle is set
// for the length of a call;
// when the primitive wants another layout, inner holds it, in the arena
// slot given, and reorder converts user to inner (an input) or inner to
// user (an output). An accumulating output always has an inner memory,
// and its reorder adds into user (a sum post-op).
typedef struct {
	int arg, output;
	void *user, *inner, *reorder;
	int slot;
	size_t size;
} mdnn_port;

// Slots 0–3 hold a primitive's own inputs and outputs, 4 the output
// gradient the two backward passes share, 5 the scratchpad.
enum { MDNN_MAX_PORTS = 4, MDNN_SLOTS = 6, MDNN_DY_SLOT = 4, MDNN_SCRATCH_SLOT = 5 };

typedef struct {
	void *prim;
	void *scratch; // the user scratchpad memory, NULL if none is needed
	size_t scratch_size;
	int nports;
	mdnn_port ports[MDNN_MAX_PORTS];
	char impl[64]; // the implementation oneDNN chose, such as "jit:avx512_core"
} mdnn_prim;

// mdnn_conv is a convolution of one shape: forward, backward-data and
// backward-weights primitives.
typedef struct mdnn_arena mdnn_arena;

typedef struct {
	mdnn_arena *arena; // the Device's
	mdnn_prim fwd, bwd_data, bwd_weights;
	int share_dy; // both backward passes want dy in one layout: reorder it once
} mdnn_conv;

// An arena holds one buffer per slot, shared by every primitive of a
// Device and grown when a new primitive needs more. A Device's calls are
// serialised, and no inner tensor outlives the call that fills it, so
// its primitives can share.
// It also holds the Device's stream: a stream is not meant to be used
// from several threads at once, and Devices run concurrently.
struct mdnn_arena {
	void *stream;
	void *slot[MDNN_SLOTS];
	size_t cap[MDNN_SLOTS];
};

static mdnn_arena *mdnn_arena_new(void) {
	mdnn_arena *a = calloc(1, sizeof *a);
	if (a != NULL && mdnn.stream_create(&a->stream, mdnn_engine, MDNN_STREAM_DEFAULT) != 0) {
		free(a);
		return NULL;
	}
	return a;
}

static int mdnn_reserve(mdnn_arena *a, int slot, size_t size) {
	if (size <= a->cap[slot]) {
		return 0;
	}
	size = (size + 63) / 64 * 64;
	void *p = aligned_alloc(64, size);
	if (p == NULL) {
		return 1; // dnnl_out_of_memory
	}
	free(a->slot[slot]);
	a->slot[slot] = p;
	a->cap[slot] = size;
	return 0;
}

#define MDNN_TRY(x) do { int s_ = (x); if (s_ != 0) { *where = #x; return s_; } } while (0)

// mdnn_add_port wires argument arg of pd, whose plain layout is user_md
// and whose layout in the primitive is the one pd reports for query q.
static int mdnn_add_port(mdnn_arena *a, mdnn_prim *p, const void *pd, int arg, int q, int qi, const mdnn_md *user_md,
	int output, int accumulate, int slot, const char **where) {
	mdnn_port *port = &p->ports[p->nports++];
	memset(port, 0, sizeof *port);
	port->arg = arg;
	port->output = output;
	port->slot = slot;
	const void *md = mdnn.pd_query_md(pd, q, qi);
	if (md == NULL) {
		*where = "dnnl_primitive_desc_query_md";
		return 2;
	}
	MDNN_TRY(mdnn.memory_create(&port->user, user_md, mdnn_engine, NULL));
	if (!accumulate && mdnn.md_equal(md, user_md)) {
		return 0;
	}
	port->size = mdnn.md_get_size(md);
	MDNN_TRY(mdnn_reserve(a, slot, port->size));
	MDNN_TRY(mdnn.memory_create(&port->inner, md, mdnn_engine, NULL));
	void *attr = NULL, *ops = NULL;
	if (accumulate) {
		MDNN_TRY(mdnn.attr_create(&attr));
		MDNN_TRY(mdnn.post_ops_create(&ops));
		MDNN_TRY(mdnn.post_ops_append_sum(ops, 1.0f));
		MDNN_TRY(mdnn.attr_set_post_ops(attr, ops));
	}
	void *rpd;
	int s = output ? mdnn.reorder_pd_create(&rpd, md, mdnn_engine, user_md, mdnn_engine, attr)
	               : mdnn.reorder_pd_create(&rpd, user_md, mdnn_engine, md, mdnn_engine, attr);
	if (ops != NULL) {
		mdnn.post_ops_destroy(ops);
		mdnn.attr_destroy(attr);
	}
	if (s != 0) {
		*where = "dnnl_reorder_primitive_desc_create";
		return s;
	}
	s = mdnn.primitive_create(&port->reorder, rpd);
	mdnn.pd_destroy(rpd);
	if (s != 0) {
		*where = "dnnl_primitive_create (reorder)";
	}
	return s;
}

// mdnn_finish creates p's primitive from pd and its scratchpad memory.
static int mdnn_finish(mdnn_arena *a, mdnn_prim *p, const void *pd, const char **where) {
	const void *smd = mdnn.pd_query_md(pd, MDNN_Q_SCRATCHPAD, 0);
	if (smd != NULL && (p->scratch_size = mdnn.md_get_size(smd)) > 0) {
		MDNN_TRY(mdnn_reserve(a, MDNN_SCRATCH_SLOT, p->scratch_size));
		MDNN_TRY(mdnn.memory_create(&p->scratch, smd, mdnn_engine, NULL));
	}
	const char *impl = NULL;
	if (mdnn.pd_query(pd, MDNN_Q_IMPL_INFO_STR, 0, &impl) == 0 && impl != NULL) {
		strncpy(p->impl, impl, sizeof p->impl - 1);
	}
	MDNN_TRY(mdnn.primitive_create(&p->prim, pd));
	return 0;
}

static int mdnn_conv_prims(mdnn_arena *a, mdnn_conv *cv, mdnn_opdesc *od, void *attr,
	const mdnn_md *src, const mdnn_md *dst, const mdnn_md *wei, const mdnn_md *bmd,
	const mdnn_md *any_src, const mdnn_md *any_dst, const mdnn_md *any_wei,
	const mdnn_md *in_src, const mdnn_md *in_dst, const mdnn_md *in_wei, const mdnn_md *lp_src, const mdnn_md *lp_dst,
	const int64_t *strides, const int64_t *dil, const int64_t *padl, const int64_t *padr, int small_ic,
	const int *alg, const char **where);

// mdnn_conv_create builds the three primitives of a convolution from
// q = {n, c, h, w, out, groups, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow}.
// Nothing is freed on failure: a failed shape is remembered and not tried
// again, so at most a few small objects leak per bad shape.
// src_tag and dst_tag are the layouts of the caller's x and dx, and of y
// and dy. in_dt is the data type the primitives read x, w and dy in:
// MDNN_BF16 gives autocast's mixed precision, the ports' reorders
// rounding the caller's float32 on the way in, while y, dx, dw and the
// bias stay float32. alg holds MDNN_CONV_DIRECT or MDNN_CONV_AUTO for the
// forward, backward-data and backward-weights passes, in that order.
static int mdnn_conv_create(mdnn_arena *a, mdnn_conv *cv, const int64_t *q, int bias, int nthr, int src_tag, int dst_tag,
	int in_dt, const int *alg, const char **where) {
	cv->arena = a;
	int64_t n = q[0], c = q[1], h = q[2], w = q[3], o = q[4], g = q[5];
	int64_t kh = q[6], kw = q[7], oh = q[14], ow = q[15];
	mdnn_dims strides = {q[8], q[9]}, dil = {q[12] - 1, q[13] - 1}, padl = {q[10], q[11]};
	// The right padding that makes oneDNN's output size PyTorch's (floor).
	mdnn_dims padr = {(oh - 1) * q[8] + (kh - 1) * q[12] + 1 - h - q[10],
		(ow - 1) * q[9] + (kw - 1) * q[13] + 1 - w - q[11]};

	mdnn_md src, dst, wei, b, any_src, any_dst, any_wei;
	mdnn_dims sd = {n, c, h, w}, dd = {n, o, oh, ow}, bd = {o};
	mdnn_dims wd = {o, c, kh, kw}, gwd = {g, o / g, c / g, kh, kw};
	int wnd = g > 1 ? 5 : 4, wtag = g > 1 ? MDNN_TAG_GOIHW : MDNN_TAG_OIHW;
	const int64_t *wdims = g > 1 ? gwd : wd;
	MDNN_TRY(mdnn.md_init_by_tag(&src, 4, sd, MDNN_F32, src_tag));
	MDNN_TRY(mdnn.md_init_by_tag(&dst, 4, dd, MDNN_F32, dst_tag));
	MDNN_TRY(mdnn.md_init_by_tag(&wei, wnd, wdims, MDNN_F32, wtag));
	MDNN_TRY(mdnn.md_init_by_tag(&b, 1, bd, MDNN_F32, MDNN_TAG_X));
	// nhwc is asked for as such, on both sides when on one: oneDNN's
	// kernels compute in it natively, "any" would choose nChw16c and
	// reorder at the ports, and "any" against a fixed nhwc gets its
	// reference kernels (100 times slower): an nchw side is reordered.
	int nhwc = src_tag == MDNN_TAG_NHWC || dst_tag == MDNN_TAG_NHWC;
	int atag = nhwc ? MDNN_TAG_NHWC : MDNN_TAG_ANY;
	MDNN_TRY(mdnn.md_init_by_tag(&any_src, 4, sd, MDNN_F32, atag));
	MDNN_TRY(mdnn.md_init_by_tag(&any_dst, 4, dd, MDNN_F32, atag));
	MDNN_TRY(mdnn.md_init_by_tag(&any_wei, wnd, wdims, MDNN_F32, MDNN_TAG_ANY));
	mdnn_md in_src = any_src, in_dst = any_dst, in_wei = any_wei, lp_src, lp_dst;
	if (in_dt != MDNN_F32) {
		MDNN_TRY(mdnn.md_init_by_tag(&lp_src, 4, sd, in_dt, MDNN_TAG_NHWC));
		MDNN_TRY(mdnn.md_init_by_tag(&lp_dst, 4, dd, in_dt, MDNN_TAG_NHWC));
		MDNN_TRY(mdnn.md_init_by_tag(&in_src, 4, sd, in_dt, atag));
		MDNN_TRY(mdnn.md_init_by_tag(&in_dst, 4, dd, in_dt, atag));
		MDNN_TRY(mdnn.md_init_by_tag(&in_wei, wnd, wdims, in_dt, MDNN_TAG_ANY));
	}
	const mdnn_md *bmd = bias ? &b : NULL;

	if (mdnn.omp_set_num_threads != NULL) {
		mdnn.omp_set_num_threads(nthr); // primitives are shaped for the threads they will run on
	}
	void *attr;
	MDNN_TRY(mdnn.attr_create(&attr));
	MDNN_TRY(mdnn.attr_set_scratchpad_mode(attr, MDNN_SCRATCHPAD_USER));

	mdnn_opdesc *od = malloc(sizeof *od);
	if (od == NULL) {
		return 1;
	}
	int lowp = in_dt != MDNN_F32;
	int s = mdnn_conv_prims(a, cv, od, attr, &src, &dst, &wei, bmd, &any_src, &any_dst, &any_wei,
		&in_src, &in_dst, &in_wei, lowp ? &lp_src : NULL, lowp ? &lp_dst : NULL, strides, dil, padl, padr,
		c / g <= 4 && !nhwc, alg, where);
	free(od);
	mdnn.attr_destroy(attr);
	return s;
}

// mdnn_fallback_impl reports whether pd got one of oneDNN's fallback
// kernels, its gemm-based or reference ones, rather than a jit kernel.
static int mdnn_fallback_impl(const void *pd) {
	const char *impl = NULL;
	if (mdnn.pd_query(pd, MDNN_Q_IMPL_INFO_STR, 0, &impl) != 0 || impl == NULL) {
		return 0;
	}
	return strstr(impl, "gemm") != NULL || strncmp(impl, "ref", 3) == 0;
}

// mdnn_prefer_nhwc replaces *pd, a bf16 backward pass that got a fallback
// kernel, by the pass described in od (the same, reading x and dy in
// nhwc) where that gets a jit kernel. With one input channel oneDNN's
// bf16 kernels for the weights' gradient take no plain or blocked x:
// LeNet-5's first layer learned its weights on x64:gemm:jit in 6.6 ms a
// step, and in nhwc on jit_bf16 in under 1 ms (ONEDNN_VERBOSE, 2 threads,
// AVX512-BF16), where float32 took 0.57 ms.
static void mdnn_prefer_nhwc(void **pd, const mdnn_opdesc *od, void *attr, void *fpd) {
	void *alt = NULL;
	if (mdnn.pd_create(&alt, od, attr, mdnn_engine, fpd) != 0) {
		return;
	}
	if (mdnn_fallback_impl(alt)) {
		mdnn.pd_destroy(alt);
		return;
	}
	mdnn.pd_destroy(*pd);
	*pd = alt;
}

// any_* describe the outputs (y, dx, dw), in_* the inputs (x, w, dy),
// in bf16 where lp_src and lp_dst, x and dy in bf16 and nhwc, are given:
// a backward pass without a jit kernel for in_* tries them.
static int mdnn_conv_prims(mdnn_arena *a, mdnn_conv *cv, mdnn_opdesc *od, void *attr,
	const mdnn_md *src, const mdnn_md *dst, const mdnn_md *wei, const mdnn_md *bmd,
	const mdnn_md *any_src, const mdnn_md *any_dst, const mdnn_md *any_wei,
	const mdnn_md *in_src, const mdnn_md *in_dst, const mdnn_md *in_wei, const mdnn_md *lp_src, const mdnn_md *lp_dst,
	const int64_t *strides, const int64_t *dil, const int64_t *padl, const int64_t *padr, int small_ic,
	const int *alg, const char **where) {
	int lowp = lp_src != NULL;
	int bias = bmd != NULL;
	void *fpd, *pd;
	MDNN_TRY(mdnn.conv_fwd_init(od, MDNN_FORWARD_TRAINING, alg[0], in_src, in_wei, bmd, any_dst,
		strides, dil, padl, padr));
	MDNN_TRY(mdnn.pd_create(&fpd, od, attr, mdnn_engine, NULL));
	mdnn_prim *p = &cv->fwd;
	MDNN_TRY(mdnn_add_port(a, p, fpd, MDNN_ARG_SRC, MDNN_Q_SRC, 0, src, 0, 0, 0, where));
	MDNN_TRY(mdnn_add_port(a, p, fpd, MDNN_ARG_WEIGHTS, MDNN_Q_WEIGHTS, 0, wei, 0, 0, 1, where));
	if (bias) { // the bias is weights argument 1
		MDNN_TRY(mdnn_add_port(a, p, fpd, MDNN_ARG_BIAS, MDNN_Q_WEIGHTS, 1, bmd, 0, 0, 3, where));
	}
	MDNN_TRY(mdnn_add_port(a, p, fpd, MDNN_ARG_DST, MDNN_Q_DST, 0, dst, 1, 0, 2, where));
	MDNN_TRY(mdnn_finish(a, p, fpd, where));

	// With few input channels a group, oneDNN's direct kernels pad dx to
	// blocks of 16 channels (16 times the work for a grey image); asked
	// for plain nchw it takes its gemm kernel, 4–10 times faster on
	// LeNet-5's and ResNet's first layers. From 6 channels the padded
	// direct kernels win: LeNet-5's second layer took 1.6–1.9 ms a step
	// against gemm's 4.5–5.0 (ONEDNN_VERBOSE, 2 threads), so gemm is
	// asked for up to 4 (small_ic).
	MDNN_TRY(mdnn.conv_bwd_data_init(od, alg[1], small_ic ? src : any_src, in_wei, in_dst,
		strides, dil, padl, padr));
	MDNN_TRY(mdnn.pd_create(&pd, od, attr, mdnn_engine, fpd));
	if (lowp && mdnn_fallback_impl(pd) &&
		mdnn.conv_bwd_data_init(od, alg[1], small_ic ? src : any_src, in_wei, lp_dst, strides, dil, padl, padr) == 0) {
		mdnn_prefer_nhwc(&pd, od, attr, fpd);
	}
	p = &cv->bwd_data;
	MDNN_TRY(mdnn_add_port(a, p, pd, MDNN_ARG_DIFF_DST, MDNN_Q_DIFF_DST, 0, dst, 0, 0, MDNN_DY_SLOT, where));
	MDNN_TRY(mdnn_add_port(a, p, pd, MDNN_ARG_WEIGHTS, MDNN_Q_WEIGHTS, 0, wei, 0, 0, 1, where));
	MDNN_TRY(mdnn_add_port(a, p, pd, MDNN_ARG_DIFF_SRC, MDNN_Q_DIFF_SRC, 0, src, 1, 0, 2, where));
	MDNN_TRY(mdnn_finish(a, p, pd, where));
	void *dpd = pd; // kept to compare its dy layout with backward-weights'

	MDNN_TRY(mdnn.conv_bwd_weights_init(od, alg[2], in_src, any_wei, bmd, in_dst,
		strides, dil, padl, padr));
	MDNN_TRY(mdnn.pd_create(&pd, od, attr, mdnn_engine, fpd));
	if (lowp && mdnn_fallback_impl(pd) &&
		mdnn.conv_bwd_weights_init(od, alg[2], lp_src, any_wei, bmd, lp_dst, strides, dil, padl, padr) == 0) {
		mdnn_prefer_nhwc(&pd, od, attr, fpd);
	}
	p = &cv->bwd_weights;
	MDNN_TRY(mdnn_add_port(a, p, pd, MDNN_ARG_SRC, MDNN_Q_SRC, 0, src, 0, 0, 0, where));
	MDNN_TRY(mdnn_add_port(a, p, pd, MDNN_ARG_DIFF_DST, MDNN_Q_DIFF_DST, 0, dst, 0, 0, MDNN_DY_SLOT, where));
	// The gradients accumulate, so they always go through a reorder that adds.
	MDNN_TRY(mdnn_add_port(a, p, pd, MDNN_ARG_DIFF_WEIGHTS, MDNN_Q_DIFF_WEIGHTS, 0, wei, 1, 1, 2, where));
	if (bias) {
		MDNN_TRY(mdnn_add_port(a, p, pd, MDNN_ARG_DIFF_BIAS, MDNN_Q_DIFF_WEIGHTS, 1, bmd, 1, 1, 3, where));
	}
	MDNN_TRY(mdnn_finish(a, p, pd, where));
	cv->share_dy = cv->bwd_data.ports[0].inner != NULL && cv->bwd_weights.ports[1].inner != NULL &&
		mdnn.md_equal(mdnn.pd_query_md(dpd, MDNN_Q_DIFF_DST, 0), mdnn.pd_query_md(pd, MDNN_Q_DIFF_DST, 0));
	mdnn.pd_destroy(dpd);
	mdnn.pd_destroy(pd);
	mdnn.pd_destroy(fpd);
	return 0;
}

// MDNN_SERIAL_BYTES is the size under which a reorder runs on the
// calling thread alone: ResNet-20's 63 weight reorders a step took 15 ms
// on two threads and 10 ms on one (ONEDNN_VERBOSE, 2 cores).
#define MDNN_SERIAL_BYTES (1 << 20)

// mdnn_reorder runs port's reorder with r's two arguments; a small one
// (a layer's weights) alone, as waking the other threads costs more than
// the copy.
static int mdnn_reorder(mdnn_arena *a, mdnn_port *port, mdnn_arg *r, int nthr) {
	int one = nthr > 1 && port->size < MDNN_SERIAL_BYTES && mdnn.omp_set_num_threads != NULL;
	if (one) {
		mdnn.omp_set_num_threads(1);
	}
	int s = mdnn.primitive_execute(port->reorder, a->stream, 2, r);
	if (one) {
		mdnn.omp_set_num_threads(nthr);
	}
	return s;
}

// mdnn_run executes p on the caller's buffers, one per port in port
// order: inputs reordered in, the primitive, outputs reordered out. The
// caller's pointers are dropped from the memories before it returns.
static int mdnn_run(mdnn_arena *a, mdnn_prim *p, float *a0, float *a1, float *a2, float *a3, int nthr, int skip) {
	float *user[MDNN_MAX_PORTS] = {a0, a1, a2, a3};
	mdnn_arg args[MDNN_MAX_PORTS + 1];
	int na = 0, s = 0;
	if (mdnn.omp_set_num_threads != NULL) {
		mdnn.omp_set_num_threads(nthr);
	}
	for (int i = 0; i < p->nports; i++) {
		mdnn_port *port = &p->ports[i];
		mdnn.memory_set_data_handle(port->user, user[i]);
		args[na].arg = port->arg;
		args[na++].mem = port->inner ? port->inner : port->user;
		if (port->inner == NULL) {
			continue;
		}
		mdnn.memory_set_data_handle(port->inner, a->slot[port->slot]);
		if (!port->output && !(skip & (1 << i))) {
			mdnn_arg r[2] = {{MDNN_ARG_SRC, port->user}, {MDNN_ARG_DST, port->inner}};
			if ((s = mdnn_reorder(a, port, r, nthr)) != 0) {
				goto out;
			}
		}
	}
	if (p->scratch != NULL) {
		mdnn.memory_set_data_handle(p->scratch, a->slot[MDNN_SCRATCH_SLOT]);
		args[na].arg = MDNN_ARG_SCRATCHPAD;
		args[na++].mem = p->scratch;
	}
	if ((s = mdnn.primitive_execute(p->prim, a->stream, na, args)) != 0) {
		goto out;
	}
	for (int i = 0; i < p->nports; i++) {
		mdnn_port *port = &p->ports[i];
		if (port->inner != NULL && port->output) {
			mdnn_arg r[2] = {{MDNN_ARG_SRC, port->inner}, {MDNN_ARG_DST, port->user}};
			if ((s = mdnn_reorder(a, port, r, nthr)) != 0) {
				goto out;
			}
		}
	}
out:
	for (int i = 0; i < p->nports; i++) {
		mdnn.memory_set_data_handle(p->ports[i].user, NULL);
	}
	return s;
}

static int mdnn_forward(mdnn_conv *cv, float *x, float *w, float *b, float *y, int nthr) {
	return b ? mdnn_run(cv->arena, &cv->fwd, x, w, b, y, nthr, 0) : mdnn_run(cv->arena, &cv->fwd, x, w, y, NULL, nthr, 0);
}

// mdnn_backward runs backward-weights, then backward-data on the dy it
// reordered when they share its layout (a bit of skip for port 0, dy);
// without dx (a network's first layer), backward-weights alone.
static int mdnn_backward(mdnn_conv *cv, float *x, float *dy, float *w, float *dx, float *dw, float *db, int nthr) {
	int s = mdnn_run(cv->arena, &cv->bwd_weights, x, dy, dw, db, nthr, 0);
	if (s != 0 || dx == NULL) {
		return s;
	}
	return mdnn_run(cv->arena, &cv->bwd_data, dy, w, dx, NULL, nthr, cv->share_dy ? 1 : 0);
}

// mdnn_inner_bytes is the size of the layouts p converts to and from: 0
// when the primitive runs on the caller's nchw tensors as they are.
static size_t mdnn_inner_bytes(const mdnn_prim *p) {
	size_t n = 0;
	for (int i = 0; i < p->nports; i++) {
		n += p->ports[i].size;
	}
	return n;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"github.com/macdist/macdist/kernels"
)

// oneDNNLib is a variable for the same reason as openBLASLib.
var oneDNNLib = "libdnnl.so.2"

func dlopenOneDNN() error {
	name := C.CString(oneDNNLib)
	defer C.free(unsafe.Pointer(name))
	if msg := C.mdnn_open(name); msg != nil {
		detail := C.GoString(msg)
		if strings.Contains(detail, "No such file") {
			return errors.New(oneDNNLib + " not found")
		}
		return errors.New(oneDNNLib + ": " + detail)
	}
	return nil
}

// oneDNNVersion returns the library's version, such as "2.6.3".
func oneDNNVersion() string {
	var v [4]C.int
	C.mdnn_get_version(&v[0])
	return fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2])
}

// ompThreads is omp_get_max_threads on the calling OS thread: the threads
// oneDNN's next primitive would run on there (0 if oneDNN does not use
// libgomp's OpenMP).
func ompThreads() int { return int(C.mdnn_omp_threads()) }

// dnnSgemm is Gemm through dnnl_sgemm on nthr threads, its arguments
// checked; a, b and c are the first elements.
func dnnSgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int,
	beta float32, c []float32, ldc int, nthr int) {
	dnnCheck("Gemm", C.mdnn_sgemm(cbool(transA), cbool(transB), C.int64_t(m), C.int64_t(n), C.int64_t(k), C.float(alpha),
		fptr(a), C.int64_t(lda), fptr(b), C.int64_t(ldb), C.float(beta), fptr(c), C.int64_t(ldc), C.int(nthr)))
}

// oneDNNISA returns dnnl_get_effective_cpu_isa's answer.
func oneDNNISA() int { return int(C.mdnn_isa()) }

// dnnConv is a convolution of one shape, its primitives made.
type dnnConv struct {
	c *C.mdnn_conv // C memory: the primitives hold no Go pointers
}

var dnnStatus = [...]string{"success", "out of memory", "invalid arguments", "unimplemented",
	"iterator ends", "runtime error", "not required"}

func dnnError(status C.int, where *C.char) error {
	s := fmt.Sprintf("status %d", int(status))
	if int(status) >= 0 && int(status) < len(dnnStatus) {
		s = dnnStatus[status]
	}
	if where != nil {
		return fmt.Errorf("oneDNN: %s: %s", C.GoString(where), s)
	}
	return fmt.Errorf("oneDNN: %s", s)
}

// dnnArena is the memory a Device's primitives convert layouts in and
// use as scratchpad (C memory, grown as shapes need).
type dnnArena struct{ a *C.mdnn_arena }

func newDNNArena() dnnArena {
	a := C.mdnn_arena_new()
	if a == nil {
		panic("cpu: oneDNN: cannot create a stream")
	}
	return dnnArena{a}
}

// newDNNConv makes the primitives of the convolution with q = {n, c, h, w,
// out, groups, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow}, shaped for nthr
// threads, their temporaries in a, for x and dx laid out as xl and y and
// dy as yl, reading x, w and dy in prec, forward, backward-data and
// backward-weights by algs (convPassAlgorithms).
func newDNNConv(a dnnArena, q [16]int64, bias bool, nthr int, xl, yl kernels.Layout, prec kernels.Precision,
	algs [3]ConvAlgorithm) (*dnnConv, error) {
	c := (*C.mdnn_conv)(C.calloc(1, C.size_t(unsafe.Sizeof(C.mdnn_conv{}))))
	var where *C.char
	b := C.int(0)
	if bias {
		b = 1
	}
	dt := C.int(C.MDNN_F32)
	if prec == kernels.BF16 {
		dt = C.MDNN_BF16
	}
	var algo [3]C.int
	for i, a := range algs {
		algo[i] = C.MDNN_CONV_DIRECT
		if a == ConvAuto {
			algo[i] = C.MDNN_CONV_AUTO
		}
	}
	if s := C.mdnn_conv_create(a.a, c, (*C.int64_t)(unsafe.Pointer(&q[0])), b, C.int(nthr), dnnTag(xl), dnnTag(yl), dt,
		&algo[0], &where); s != 0 {
		return nil, dnnError(s, where)
	}
	return &dnnConv{c: c}, nil
}

// dnnTag is l's dnnl_format_tag_t.
func dnnTag(l kernels.Layout) C.int {
	switch l {
	case kernels.NCHW:
		return C.MDNN_TAG_NCHW
	case kernels.Blocked16:
		return C.MDNN_TAG_NCHW16C
	case kernels.NHWC:
		return C.MDNN_TAG_NHWC
	}
	panic(fmt.Sprintf("cpu: oneDNN: no format tag for layout %v", l))
}

// impl describes the implementations oneDNN chose for the three passes.
func (cv *dnnConv) impl() string {
	return fmt.Sprintf("fwd %s, bwd-data %s, bwd-weights %s",
		C.GoString(&cv.c.fwd.impl[0]), C.GoString(&cv.c.bwd_data.impl[0]), C.GoString(&cv.c.bwd_weights.impl[0]))
}

// reorders reports whether the forward pass converts layouts.
func (cv *dnnConv) reorders() bool { return C.mdnn_inner_bytes(&cv.c.fwd) > 0 }

func dnnCheck(op string, s C.int) {
	if s != 0 {
		panic("cpu: " + op + ": " + dnnError(s, nil).Error())
	}
}

func (cv *dnnConv) forward(x, w, b, y []float32, nthr int) {
	dnnCheck("ConvForward", C.mdnn_forward(cv.c, fptr(x), fptr(w), fptr(b), fptr(y), C.int(nthr)))
}

func (cv *dnnConv) backward(x, dy, w, dx, dw, db []float32, nthr int) {
	dnnCheck("ConvBackward", C.mdnn_backward(cv.c, fptr(x), fptr(dy), fptr(w), fptr(dx), fptr(dw), fptr(db), C.int(nthr)))
}

// sharesDy reports whether the backward passes reorder dy once.
func (cv *dnnConv) sharesDy() bool { return cv.c.share_dy != 0 }
