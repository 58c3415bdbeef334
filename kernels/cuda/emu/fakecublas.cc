// fakecublas.cc is a stand-in libcublas.so.12 for run.sh: the cuBLAS entry
// points kernels/cuda binds, with a plain column-major SGEMM over the host
// memory that fakecuda.cc hands out. It checks the arguments as cuBLAS
// does (leading dimensions against the column-major shapes), so that a
// mistake in the row-major to column-major mapping fails here.
#include <stdio.h>
#include <string.h>

typedef int cublasStatus_t;

enum {
	SUCCESS = 0,
	NOT_INITIALIZED = 1,
	INVALID_VALUE = 7,
};

struct Handle {
	void *stream = nullptr;
	int mode = 0;
};

extern "C" {

cublasStatus_t cublasCreate_v2(void **h) {
	*h = new Handle;
	return SUCCESS;
}

cublasStatus_t cublasDestroy_v2(void *h) {
	delete (Handle *)h;
	return SUCCESS;
}

cublasStatus_t cublasSetStream_v2(void *h, void *s) {
	((Handle *)h)->stream = s;
	return SUCCESS;
}

cublasStatus_t cublasSetMathMode(void *h, int mode) {
	if (mode != 0 && mode != 2 && mode != 3) return INVALID_VALUE;
	((Handle *)h)->mode = mode;
	return SUCCESS;
}

cublasStatus_t cublasGetVersion_v2(void *, int *v) {
	*v = 120000;
	return SUCCESS;
}

cublasStatus_t cublasGetProperty(int which, int *v) {
	static const int ver[3] = {12, 0, 0};
	if (which < 0 || which > 2) return INVALID_VALUE;
	*v = ver[which];
	return SUCCESS;
}

const char *cublasGetStatusString(cublasStatus_t s) {
	switch (s) {
	case SUCCESS: return "CUBLAS_STATUS_SUCCESS";
	case NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
	case INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
	}
	return "CUBLAS_STATUS_UNKNOWN";
}

static bool gemmArgs(void *h, int ta, int tb, int m, int n, int k, int lda, int ldb, int ldc) {
	if (h == nullptr || ((Handle *)h)->stream == nullptr) {
		fprintf(stderr, "fakecublas: no stream set\n");
		return false;
	}
	int ra = ta == 0 ? m : k, rb = tb == 0 ? k : n;
	auto mx = [](int a, int b) { return a > b ? a : b; };
	if (ta < 0 || ta > 1 || tb < 0 || tb > 1 || m < 0 || n < 0 || k < 0 || lda < mx(1, ra) || ldb < mx(1, rb) ||
	    ldc < mx(1, m)) {
		fprintf(stderr, "fakecublas: bad sgemm arguments ta=%d tb=%d m=%d n=%d k=%d lda=%d ldb=%d ldc=%d\n", ta, tb,
		        m, n, k, lda, ldb, ldc);
		return false;
	}
	return true;
}

// gemm is C = alpha·op(A)·op(B) + beta·C in column-major order, C not read
// when beta is 0, accumulated in double.
static void gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                 float beta, float *c, int ldc) {
	for (int j = 0; j < n; j++) {
		for (int i = 0; i < m; i++) {
			double s = 0;
			for (int p = 0; p < k; p++) {
				float av = ta == 0 ? a[i + (long)p * lda] : a[p + (long)i * lda];
				float bv = tb == 0 ? b[p + (long)j * ldb] : b[j + (long)p * ldb];
				s += (double)av * bv;
			}
			float *cp = c + i + (long)j * ldc;
			float r = (float)(alpha * s);
			*cp = beta == 0 ? r : r + beta * *cp;
		}
	}
}

cublasStatus_t cublasSgemm_v2(void *h, int ta, int tb, int m, int n, int k, const float *alpha, const float *a,
                              int lda, const float *b, int ldb, const float *beta, float *c, int ldc) {
	if (!gemmArgs(h, ta, tb, m, n, k, lda, ldb, ldc)) return INVALID_VALUE;
	gemm(ta, tb, m, n, k, *alpha, a, lda, b, ldb, *beta, c, ldc);
	return SUCCESS;
}

cublasStatus_t cublasSgemmStridedBatched(void *h, int ta, int tb, int m, int n, int k, const float *alpha,
                                         const float *a, int lda, long long sa, const float *b, int ldb,
                                         long long sb, const float *beta, float *c, int ldc, long long sc,
                                         int batch) {
	if (!gemmArgs(h, ta, tb, m, n, k, lda, ldb, ldc) || batch < 0) return INVALID_VALUE;
	for (int i = 0; i < batch; i++) {
		gemm(ta, tb, m, n, k, *alpha, a + i * sa, lda, b + i * sb, ldb, *beta, c + i * sc, ldc);
	}
	return SUCCESS;
}

}  // extern "C"
