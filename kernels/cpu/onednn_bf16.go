//go:build cgo

package cpu

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// oneDNN's matmul primitive with bf16 operands and a float32 result, for
// MatMul in BF16: the part of the 2.x C API it needs, declared as
// onednn.go declares its own (sizes only; the library fills the
// descriptors). This file opens the library again (dlopen counts
// references) rather than share onednn.go's table, so that each binding
// stays one self-contained C unit.
typedef struct { _Alignas(16) unsigned char b[1024]; } mbf_md;
typedef struct { _Alignas(16) unsigned char b[8192]; } mbf_opdesc;
typedef struct { int arg; void *mem; } mbf_arg;

enum {
	MBF_BF16 = 2, MBF_F32 = 3,
	MBF_ENGINE_CPU = 1, MBF_STREAM_DEFAULT = 1, MBF_SCRATCHPAD_USER = 1,
	MBF_Q_IMPL_INFO_STR = 8, MBF_Q_SCRATCHPAD = 136,
	MBF_ARG_SRC = 1, MBF_ARG_DST = 17, MBF_ARG_WEIGHTS = 33, MBF_ARG_SCRATCHPAD = 80,
};

static struct {
	int (*engine_create)(void **, int, size_t);
	int (*stream_create)(void **, void *, unsigned);
	int (*md_init_by_strides)(mbf_md *, int, const int64_t *, int, const int64_t *);
	size_t (*md_get_size)(const void *);
	int (*matmul_init)(mbf_opdesc *, const void *, const void *, const void *, const void *);
	int (*attr_create)(void **);
	int (*attr_destroy)(void *);
	int (*attr_set_scratchpad_mode)(void *, int);
	int (*attr_set_output_scales)(void *, int64_t, int, const float *);
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
	int (*primitive_execute)(const void *, void *, int, const mbf_arg *);
	int (*memory_create)(void **, const void *, void *, void *);
	int (*memory_set_data_handle)(void *, void *);
	void (*omp_set_num_threads)(int);
} mbf;

static void *mbf_engine;

#define MBF_SYM(field, name) if ((*(void **)&mbf.field = dlsym(h, name)) == NULL) return "missing symbol " name;

static const char *mbf_open(const char *name) {
	void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		return dlerror();
	}
	MBF_SYM(engine_create, "dnnl_engine_create")
	MBF_SYM(stream_create, "dnnl_stream_create")
	MBF_SYM(md_init_by_strides, "dnnl_memory_desc_init_by_strides")
	MBF_SYM(md_get_size, "dnnl_memory_desc_get_size")
	MBF_SYM(matmul_init, "dnnl_matmul_desc_init")
	MBF_SYM(attr_create, "dnnl_primitive_attr_create")
	MBF_SYM(attr_destroy, "dnnl_primitive_attr_destroy")
	MBF_SYM(attr_set_scratchpad_mode, "dnnl_primitive_attr_set_scratchpad_mode")
	MBF_SYM(attr_set_output_scales, "dnnl_primitive_attr_set_output_scales")
	MBF_SYM(attr_set_post_ops, "dnnl_primitive_attr_set_post_ops")
	MBF_SYM(post_ops_create, "dnnl_post_ops_create")
	MBF_SYM(post_ops_append_sum, "dnnl_post_ops_append_sum")
	MBF_SYM(post_ops_destroy, "dnnl_post_ops_destroy")
	MBF_SYM(pd_create, "dnnl_primitive_desc_create")
	MBF_SYM(pd_destroy, "dnnl_primitive_desc_destroy")
	MBF_SYM(pd_query_md, "dnnl_primitive_desc_query_md")
	MBF_SYM(pd_query, "dnnl_primitive_desc_query")
	MBF_SYM(reorder_pd_create, "dnnl_reorder_primitive_desc_create")
	MBF_SYM(primitive_create, "dnnl_primitive_create")
	MBF_SYM(primitive_execute, "dnnl_primitive_execute")
	MBF_SYM(memory_create, "dnnl_memory_create")
	MBF_SYM(memory_set_data_handle, "dnnl_memory_set_data_handle")
	*(void **)&mbf.omp_set_num_threads = dlsym(h, "omp_set_num_threads");
	if (mbf.engine_create(&mbf_engine, MBF_ENGINE_CPU, 0) != 0) {
		return "dnnl_engine_create failed";
	}
	return NULL;
}

// mbf_state is one Device's: its stream, and the bf16 copies of A and B
// and the scratchpad, shared by its matmuls (a Device's MatMul calls are
// serialised) and grown as shapes need.
typedef struct {
	void *stream;
	void *buf[3];
	size_t cap[3];
} mbf_state;

enum { MBF_A = 0, MBF_B = 1, MBF_SCRATCH = 2 };

static mbf_state *mbf_state_new(void) {
	mbf_state *s = calloc(1, sizeof *s);
	if (s != NULL && mbf.stream_create(&s->stream, mbf_engine, MBF_STREAM_DEFAULT) != 0) {
		free(s);
		return NULL;
	}
	return s;
}

static int mbf_reserve(mbf_state *s, int i, size_t size) {
	if (size <= s->cap[i]) {
		return 0;
	}
	size = (size + 63) / 64 * 64;
	void *p = aligned_alloc(64, size);
	if (p == NULL) {
		return 1;
	}
	free(s->buf[i]);
	s->buf[i] = p;
	s->cap[i] = size;
	return 0;
}

// mbf_mm is one matmul shape: A and B reordered from the caller's
// float32 into bf16 copies of the same arrangement, packed, then the
// matmul into the caller's C.
typedef struct {
	void *a_user, *a_bf, *a_reorder;
	void *b_user, *b_bf, *b_reorder;
	void *c_user, *prim, *scratch;
	char impl[64];
} mbf_mm;

#define MBF_TRY(x) do { int s_ = (x); if (s_ != 0) { *where = #x; return s_; } } while (0)

// mbf_operand describes a batch of rows×cols matrices stored rows ld
// apart and stride apart (stride 0: one matrix for the batch, which
// matmul broadcasts), transposed when trans: user is the caller's
// float32, packed the bf16 copy with the same order of axes.
static int mbf_operand(mbf_md *user, mbf_md *packed, int64_t batch, int64_t stride, int64_t r, int64_t c, int64_t ld,
	int trans, const char **where) {
	int64_t b = stride == 0 ? 1 : batch;
	int64_t dims[12] = {b, r, c};
	int64_t us[12] = {stride, trans ? 1 : ld, trans ? ld : 1};
	int64_t ps[12] = {r * c, trans ? 1 : c, trans ? r : 1};
	if (b == 1) {
		us[0] = r * c; // unused; a stride of 0 would read as broadcast-in-memory
	}
	MBF_TRY(mbf.md_init_by_strides(user, 3, dims, MBF_F32, us));
	MBF_TRY(mbf.md_init_by_strides(packed, 3, dims, MBF_BF16, ps));
	return 0;
}

static int mbf_reorder(void **prim, const mbf_md *from, const mbf_md *to, const char **where) {
	void *pd;
	MBF_TRY(mbf.reorder_pd_create(&pd, from, mbf_engine, to, mbf_engine, NULL));
	int s = mbf.primitive_create(prim, pd);
	mbf.pd_destroy(pd);
	if (s != 0) {
		*where = "dnnl_primitive_create (reorder)";
	}
	return s;
}

// mbf_mm_create makes C = alpha·op(A)·op(B) + beta·C, for batch products
// with q = {m, n, k, lda, ldb, ldc, strideA, strideB, strideC, batch}.
static int mbf_mm_create(mbf_state *st, mbf_mm *mm, const int64_t *q, int transA, int transB, float alpha, float beta,
	int nthr, const char **where) {
	int64_t m = q[0], n = q[1], k = q[2], batch = q[9];
	mbf_md au, ap, bu, bp, cu;
	int s;
	if ((s = mbf_operand(&au, &ap, batch, q[6], m, k, q[3], transA, where)) != 0 ||
		(s = mbf_operand(&bu, &bp, batch, q[7], k, n, q[4], transB, where)) != 0) {
		return s;
	}
	int64_t cd[12] = {batch, m, n}, cs[12] = {q[8], q[5], 1};
	if (batch == 1) {
		cs[0] = m * n;
	}
	MBF_TRY(mbf.md_init_by_strides(&cu, 3, cd, MBF_F32, cs));
	if (mbf.omp_set_num_threads != NULL) {
		mbf.omp_set_num_threads(nthr);
	}
	MBF_TRY(mbf_reorder(&mm->a_reorder, &au, &ap, where));
	MBF_TRY(mbf_reorder(&mm->b_reorder, &bu, &bp, where));
	MBF_TRY(mbf_reserve(st, MBF_A, mbf.md_get_size(&ap)));
	MBF_TRY(mbf_reserve(st, MBF_B, mbf.md_get_size(&bp)));

	void *attr, *ops = NULL;
	MBF_TRY(mbf.attr_create(&attr));
	s = mbf.attr_set_scratchpad_mode(attr, MBF_SCRATCHPAD_USER);
	if (s == 0 && alpha != 1) {
		s = mbf.attr_set_output_scales(attr, 1, 0, &alpha);
	}
	if (s == 0 && beta != 0) {
		if ((s = mbf.post_ops_create(&ops)) == 0 && (s = mbf.post_ops_append_sum(ops, beta)) == 0) {
			s = mbf.attr_set_post_ops(attr, ops);
		}
	}
	mbf_opdesc od;
	void *pd = NULL;
	if (s == 0 && (s = mbf.matmul_init(&od, &ap, &bp, NULL, &cu)) == 0) {
		s = mbf.pd_create(&pd, &od, attr, mbf_engine, NULL);
	}
	if (ops != NULL) {
		mbf.post_ops_destroy(ops);
	}
	mbf.attr_destroy(attr);
	if (s != 0) {
		*where = "dnnl_matmul_desc_init / dnnl_primitive_desc_create";
		return s;
	}
	const void *smd = mbf.pd_query_md(pd, MBF_Q_SCRATCHPAD, 0);
	size_t ss = smd != NULL ? mbf.md_get_size(smd) : 0;
	if (ss > 0) {
		if ((s = mbf_reserve(st, MBF_SCRATCH, ss)) == 0) {
			s = mbf.memory_create(&mm->scratch, smd, mbf_engine, NULL);
		}
	}
	const char *impl = NULL;
	if (mbf.pd_query(pd, MBF_Q_IMPL_INFO_STR, 0, &impl) == 0 && impl != NULL) {
		strncpy(mm->impl, impl, sizeof mm->impl - 1);
	}
	if (s == 0) {
		s = mbf.primitive_create(&mm->prim, pd);
	}
	mbf.pd_destroy(pd);
	if (s != 0) {
		*where = "dnnl_primitive_create (matmul)";
		return s;
	}
	MBF_TRY(mbf.memory_create(&mm->a_user, &au, mbf_engine, NULL));
	MBF_TRY(mbf.memory_create(&mm->a_bf, &ap, mbf_engine, NULL));
	MBF_TRY(mbf.memory_create(&mm->b_user, &bu, mbf_engine, NULL));
	MBF_TRY(mbf.memory_create(&mm->b_bf, &bp, mbf_engine, NULL));
	MBF_TRY(mbf.memory_create(&mm->c_user, &cu, mbf_engine, NULL));
	return 0;
}

// mbf_mm_run runs mm. A's bf16 copy is a_bf, or the state's buffer where
// a_bf is NULL; it is made from a unless a_ready says it holds A already
// (made by an earlier product: MatMulSharedA, MatMulKept). So for B.
static int mbf_mm_run(mbf_state *st, mbf_mm *mm, float *a, float *b, float *c, int nthr, void *a_bf, int a_ready,
	void *b_bf, int b_ready) {
	if (mbf.omp_set_num_threads != NULL) {
		mbf.omp_set_num_threads(nthr);
	}
	mbf.memory_set_data_handle(mm->a_user, a);
	mbf.memory_set_data_handle(mm->b_user, b);
	mbf.memory_set_data_handle(mm->c_user, c);
	mbf.memory_set_data_handle(mm->a_bf, a_bf != NULL ? a_bf : st->buf[MBF_A]);
	mbf.memory_set_data_handle(mm->b_bf, b_bf != NULL ? b_bf : st->buf[MBF_B]);
	mbf_arg ra[2] = {{MBF_ARG_SRC, mm->a_user}, {MBF_ARG_DST, mm->a_bf}};
	mbf_arg rb[2] = {{MBF_ARG_SRC, mm->b_user}, {MBF_ARG_DST, mm->b_bf}};
	mbf_arg args[4] = {{MBF_ARG_SRC, mm->a_bf}, {MBF_ARG_WEIGHTS, mm->b_bf}, {MBF_ARG_DST, mm->c_user}};
	int na = 3, s = 0;
	if (mm->scratch != NULL) {
		mbf.memory_set_data_handle(mm->scratch, st->buf[MBF_SCRATCH]);
		args[na].arg = MBF_ARG_SCRATCHPAD;
		args[na++].mem = mm->scratch;
	}
	if ((a_ready || (s = mbf.primitive_execute(mm->a_reorder, st->stream, 2, ra)) == 0) &&
		(b_ready || (s = mbf.primitive_execute(mm->b_reorder, st->stream, 2, rb)) == 0)) {
		s = mbf.primitive_execute(mm->prim, st->stream, na, args);
	}
	// Drop the caller's pointers (Go memory) before returning.
	mbf.memory_set_data_handle(mm->a_user, NULL);
	mbf.memory_set_data_handle(mm->b_user, NULL);
	mbf.memory_set_data_handle(mm->c_user, NULL);
	mbf.memory_set_data_handle(mm->a_bf, NULL);
	mbf.memory_set_data_handle(mm->b_bf, NULL);
	return s;
}

*/
import "C"

import (
	"errors"
	"sync"
	"unsafe"
)

var (
	bf16MatOnce sync.Once
	bf16MatErr  error
)

// loadBF16MatMul opens the matmul binding once per process, after
// onednn.go has loaded the library.
func loadBF16MatMul() error {
	bf16MatOnce.Do(func() {
		if err := loadOneDNN(); err != nil {
			bf16MatErr = err
			return
		}
		name := C.CString(oneDNNLib)
		defer C.free(unsafe.Pointer(name))
		if msg := C.mbf_open(name); msg != nil {
			bf16MatErr = errors.New(oneDNNLib + ": " + C.GoString(msg))
		}
	})
	return bf16MatErr
}

// dnnMatMuls are a Device's bf16 matmul primitives, one per shape (nil
// for a shape oneDNN refused, which MatMul then rounds itself).
type dnnMatMuls struct {
	st *C.mbf_state
	mm map[matKey]*C.mbf_mm
}

// get returns the primitive of k, made on first use; nil where oneDNN
// cannot make it.
func (s *dnnMatMuls) get(k matKey) *C.mbf_mm {
	if mm, ok := s.mm[k]; ok {
		return mm
	}
	if s.mm == nil {
		if loadBF16MatMul() != nil {
			return nil
		}
		if s.st = C.mbf_state_new(); s.st == nil {
			return nil
		}
		s.mm = map[matKey]*C.mbf_mm{}
	}
	q := [10]int64{int64(k.m), int64(k.n), int64(k.k), int64(k.lda), int64(k.ldb), int64(k.ldc),
		int64(k.strideA), int64(k.strideB), int64(k.strideC), int64(k.batch)}
	mm := (*C.mbf_mm)(C.calloc(1, C.size_t(unsafe.Sizeof(C.mbf_mm{}))))
	var where *C.char
	if st := C.mbf_mm_create(s.st, mm, (*C.int64_t)(unsafe.Pointer(&q[0])), cbool(k.transA), cbool(k.transB),
		C.float(k.alpha), C.float(k.beta), C.int(k.threads), &where); st != 0 {
		mm = nil // a few small objects leak per refused shape, as for convolutions
	}
	s.mm[k] = mm
	return mm
}

// matmul runs the product k on the caller's matrices, their first
// elements at a, b and c, and reports false, having done nothing, where
// oneDNN has no primitive for it. o says where the operands' bf16 copies
// are and whether they hold them already: each copy is the operand's
// stored matrices, rows packed without gaps (see mbf_operand), so one copy
// serves every product that reads the matrix, as A or as B.
func (s *dnnMatMuls) matmul(k matKey, a, b, c []float32, o bf16Opts) bool {
	mm := s.get(k)
	if mm == nil {
		return false
	}
	var ap, bp unsafe.Pointer
	if o.a.data != nil {
		ap = unsafe.Pointer(&o.a.data[0])
	}
	if o.b.data != nil {
		bp = unsafe.Pointer(&o.b.data[0])
	}
	dnnCheck("MatMul", C.mbf_mm_run(s.st, mm, fptr(a), fptr(b), fptr(c), C.int(k.threads),
		ap, cbool(o.aShared || o.a.ready), bp, cbool(o.b.ready)))
	return true
}

// impl is the implementation oneDNN chose for k, "" where it has none.
func (s *dnnMatMuls) impl(k matKey) string {
	if mm := s.mm[k]; mm != nil {
		return C.GoString(&mm.impl[0])
	}
	return ""
}
