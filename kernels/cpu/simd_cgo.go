//go:build cgo && amd64

package cpu

/*
#cgo CFLAGS: -O3
#cgo LDFLAGS: -lm

// AVX2 versions of the element-wise loops that dominate a training step
// besides the GEMMs. Go does not vectorise, and these loops are eight
// floats wide on any x86 CPU of the last decade. Each function is compiled
// for AVX2 alone (the target attribute), so the rest of the binary runs
// anywhere, and macdist_have_avx2 says whether they may be called.
//
// Every lane performs exactly the float32 operations, in the same order, as
// the Go version of the same function in this package, and contraction
// into fused multiply-adds is off: the two give the same bits, which the
// tests check. (Go's cgo does not pass -ffp-contract through CFLAGS.)

#pragma GCC optimize("fp-contract=off", "no-tree-loop-distribute-patterns")

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define AVX2 __attribute__((target("avx2,fma")))

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

static int macdist_have_avx2(void) {
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static inline AVX2 v8f load8(const float *p) { v8f v; memcpy(&v, p, sizeof v); return v; }
static inline AVX2 void store8(float *p, v8f v) { memcpy(p, &v, sizeof v); }
static inline AVX2 v8i load8i(const uint32_t *p) { v8i v; memcpy(&v, p, sizeof v); return v; }
static inline AVX2 void store8i(uint32_t *p, v8i v) { memcpy(p, &v, sizeof v); }
static inline AVX2 v8f splat(float f) { return (v8f){f, f, f, f, f, f, f, f}; }
static inline AVX2 v8i splati(int32_t i) { return (v8i){i, i, i, i, i, i, i, i}; }
// sel returns a where m is all ones, else b.
static inline AVX2 v8f sel(v8i m, v8f a, v8f b) { return (v8f)(((v8i)a & m) | ((v8i)b & ~m)); }

enum { gelu, geluGrad, geluTanh, geluTanhGrad };

// The GELU chain, written once for N lanes of V (floats) and VI (int32)
// in target TGT, with SUF on its names: stamped out below at 8 lanes
// (AVX2) and 16 (AVX-512). A lane performs the same float32 operations,
// in the same order, at either width (a scalar in a vector operation is
// broadcast), so both give the Go version's bits. vexp32 is exp32 of
// elementwise.go, verfc erfcScaled, vcdf normCDF; macdist_gelu computes
// y = f(x), or y = dy·f'(x) for the gradients, for op one of the enum
// above, and a tail of fewer than N goes through a padded copy, so that
// every element takes the same path.
#define GSPLAT(V, c) ((V){0} + (c))
// GFMA is a·b + c rounded once, Go's fma32: the instruction, spelled out
// because contraction is off.
#define GFMA(a, b, c) ((v8f)_mm256_fmadd_ps((__m256)(a), (__m256)(b), (__m256)(c)))
#define GFMA16(a, b, c) ((v16f)_mm512_fmadd_ps((__m512)(a), (__m512)(b), (__m512)(c)))
#define GLOAD(V, p) ({ V v_; memcpy(&v_, (p), sizeof v_); v_; })
#define GSTORE(p, v) do { __typeof__(v) s_ = (v); memcpy((p), &s_, sizeof s_); } while (0)

#define MACDIST_GELU_CHAIN(SUF, V, VI, N, TGT) \
static inline TGT V gsel##SUF(VI m, V a, V b) { return (V)(((VI)a & m) | ((VI)b & ~m)); } \
static inline TGT V vexp32##SUF(V v) { \
	v = gsel##SUF(v < GSPLAT(V, -87.3f), GSPLAT(V, -87.3f), v); \
	VI big = v > GSPLAT(V, 88.37f); \
	const float magic = 12582912.0f; \
	V t = GFMA##SUF(v, GSPLAT(V, 1.442695041f), GSPLAT(V, magic)); \
	V n = t - GSPLAT(V, magic); \
	V r = GFMA##SUF(-n, GSPLAT(V, 1.42860677e-06f), GFMA##SUF(-n, GSPLAT(V, 0.693145752f), v)); \
	V q = GFMA##SUF(r, GSPLAT(V, 1.0f / 5040), GSPLAT(V, 1.0f / 720)); \
	q = GFMA##SUF(r, q, GSPLAT(V, 1.0f / 120)); \
	q = GFMA##SUF(r, q, GSPLAT(V, 1.0f / 24)); \
	q = GFMA##SUF(r, q, GSPLAT(V, 1.0f / 6)); \
	q = GFMA##SUF(r, q, GSPLAT(V, 0.5f)); \
	q = GFMA##SUF(r, q, GSPLAT(V, 1)); \
	V p = GFMA##SUF(r, q, GSPLAT(V, 1)); \
	VI e = (((VI)t - GSPLAT(VI, 0x4B400000)) + GSPLAT(VI, 127)) << 23; \
	return gsel##SUF(big, GSPLAT(V, __builtin_inff()), p * (V)e); \
} \
 \
static inline TGT V verfc##SUF(V t) { \
	V q = GFMA##SUF(t, GSPLAT(V, -0.03790363059f), GSPLAT(V, 0.2457896622f)); \
	q = GFMA##SUF(t, q, GSPLAT(V, -0.6191120110f)); \
	q = GFMA##SUF(t, q, GSPLAT(V, 0.7218005321f)); \
	q = GFMA##SUF(t, q, GSPLAT(V, -0.4451698562f)); \
	q = GFMA##SUF(t, q, GSPLAT(V, 0.3704830101f)); \
	q = GFMA##SUF(t, q, GSPLAT(V, 0.08926198892f)); \
	q = GFMA##SUF(t, q, GSPLAT(V, 0.2259019773f)); \
	q = GFMA##SUF(t, q, GSPLAT(V, 0.2230639838f)); \
	q = GFMA##SUF(t, q, GSPLAT(V, 0.2258922335f)); \
	return GFMA##SUF(t, q, GSPLAT(V, -7.887979515e-06f)); \
} \
 \
static inline TGT V vcdf##SUF(V x, V *gauss) { \
	V z = (V)((VI)x & GSPLAT(VI, 0x7fffffff)) * GSPLAT(V, 0.70710678118654752f); \
	*gauss = vexp32##SUF(GSPLAT(V, -0.5f) * x * x); \
	V q = GSPLAT(V, 0.5f) * verfc##SUF(GSPLAT(V, 1) / GFMA##SUF(GSPLAT(V, 0.4f), z, GSPLAT(V, 1))) * *gauss; \
	VI neg = (VI)x >> 31; \
	return gsel##SUF(neg, q, GSPLAT(V, 1) - q); \
} \
 \
 \
static inline TGT V vgelu##SUF(int op, V x) { \
	const float sqrt2OverPi = 0.7978845608028654f, geluC = 0.044715f, geluC3 = 0.134145f; \
	V g, u, e, s; \
	switch (op) { \
	case gelu: \
		return x * vcdf##SUF(x, &g); \
	case geluGrad: { \
		V c = vcdf##SUF(x, &g); \
		return GFMA##SUF(x * GSPLAT(V, 0.3989422804014327f), g, c); \
	} \
	case geluTanh: \
		u = GSPLAT(V, sqrt2OverPi) * (x + GSPLAT(V, geluC) * x * x * x); \
		return x / (GSPLAT(V, 1) + vexp32##SUF(GSPLAT(V, -2) * u)); \
	default: \
		u = GSPLAT(V, sqrt2OverPi) * (x + GSPLAT(V, geluC) * x * x * x); \
		e = vexp32##SUF(GSPLAT(V, -2) * u); \
		s = GSPLAT(V, 1) / (GSPLAT(V, 1) + e); \
		return s + GSPLAT(V, 2) * x * e * s * s * GSPLAT(V, sqrt2OverPi) * (GSPLAT(V, 1) + GSPLAT(V, geluC3) * x * x); \
	} \
} \
 \
static TGT void macdist_gelu##SUF(int op, float *y, const float *x, const float *dy, long n) { \
	long i = 0; \
	int grad = op == geluGrad || op == geluTanhGrad; \
	for (; i + N <= n; i += N) { \
		V v = vgelu##SUF(op, GLOAD(V, x + i)); \
		GSTORE(y + i, grad ? v * GLOAD(V, dy + i) : v); \
	} \
	if (i < n) { \
		float bx[N] = {0}, bd[N] = {0}, by[N]; \
		memcpy(bx, x + i, (n - i) * sizeof(float)); \
		if (grad) memcpy(bd, dy + i, (n - i) * sizeof(float)); \
		V v = vgelu##SUF(op, GLOAD(V, bx)); \
		GSTORE(by, grad ? v * GLOAD(V, bd) : v); \
		memcpy(y + i, by, (n - i) * sizeof(float)); \
	} \
}

MACDIST_GELU_CHAIN(, v8f, v8i, 8, AVX2)

#define AVX512 __attribute__((target("avx512f")))
typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
MACDIST_GELU_CHAIN(16, v16f, v16i, 16, AVX512)

static int macdist_have_avx512(void) {
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx512f");
}

// macdist_add_to is AddTo: dst[i] += src[i], four vectors at a time.
static AVX2 void macdist_add_to(float *dst, const float *src, long n) {
	long i = 0;
	for (; i + 32 <= n; i += 32) {
		v8f a = load8(dst + i) + load8(src + i), b = load8(dst + i + 8) + load8(src + i + 8);
		v8f c = load8(dst + i + 16) + load8(src + i + 16), d = load8(dst + i + 24) + load8(src + i + 24);
		store8(dst + i, a);
		store8(dst + i + 8, b);
		store8(dst + i + 16, c);
		store8(dst + i + 24, d);
	}
	for (; i + 8 <= n; i += 8) {
		store8(dst + i, load8(dst + i) + load8(src + i));
	}
	for (; i < n; i++) {
		dst[i] += src[i];
	}
}

// macdist_relu is reluBits, macdist_relu_mask reluMaskBits.
static AVX2 void macdist_relu(uint32_t *y, const uint32_t *x, long n) {
	for (long i = 0; i < n; i++) {
		uint32_t b = x[i];
		int zero = (int32_t)b < 0 && (b & 0x7fffffff) <= 0x7f800000;
		y[i] = zero ? 0 : b;
	}
}

// macdist_add is y = a + b, then ReLU's bits with relu, in one pass: the
// sum is the Go loop's float32 addition, vectorised.
static AVX2 void macdist_add(float *y, const float *a, const float *b, long n, int relu) {
	if (!relu) {
		for (long i = 0; i < n; i++) {
			y[i] = a[i] + b[i];
		}
		return;
	}
	for (long i = 0; i < n; i++) {
		float s = a[i] + b[i];
		uint32_t u;
		memcpy(&u, &s, sizeof u);
		int zero = (int32_t)u < 0 && (u & 0x7fffffff) <= 0x7f800000;
		u = zero ? 0 : u;
		memcpy(y + i, &u, sizeof u);
	}
}

static AVX2 void macdist_relu_mask(uint32_t *dx, const uint32_t *dy, const uint32_t *y, long n) {
	for (long i = 0; i < n; i++) {
		int32_t s = (int32_t)y[i];
		dx[i] = s > 0 && s <= 0x7f800000 ? dy[i] : 0;
	}
}


// Sums over planes: n planes of hw floats, plane i at x + i·stride, summed
// in float64 in eight lanes (lane k takes the elements k mod 8 of each
// plane; a short tail is padded with zeros), the lanes then combined as
// lanesTotal in reduce.go does. The Go versions keep the same lanes, so
// that the two agree to the bit.

typedef double v4d __attribute__((vector_size(32)));

// GCC 12 lowers __builtin_convertvector from four floats to four doubles
// as two conversions of two and an insert; its builtin for vcvtps2pd
// does it in one instruction (twice as fast in the sums of batch norm
// and of bias gradients). Clang lowers either well.
#if defined(__clang__)
static inline AVX2 v4d lo4(v8f v) { return __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1, 2, 3), v4d); }
static inline AVX2 v4d hi4(v8f v) { return __builtin_convertvector(__builtin_shufflevector(v, v, 4, 5, 6, 7), v4d); }
#else
static inline AVX2 v4d lo4(v8f v) { return __builtin_ia32_cvtps2pd256(__builtin_shufflevector(v, v, 0, 1, 2, 3)); }
static inline AVX2 v4d hi4(v8f v) { return __builtin_ia32_cvtps2pd256(__builtin_shufflevector(v, v, 4, 5, 6, 7)); }
#endif
static inline AVX2 v4d splatd(double d) { return (v4d){d, d, d, d}; }

// load8n loads the k < 8 floats at p, zeros after.
static inline AVX2 v8f load8n(const float *p, long k) {
	float b[8] = {0};
	memcpy(b, p, k * sizeof(float));
	return load8(b);
}

static inline AVX2 double total(v4d a, v4d b) {
	v4d t = a + b; // lane k + lane k+4
	return (t[0] + t[2]) + (t[1] + t[3]);
}

static AVX2 double macdist_sum_planes(const float *x, long n, long hw, long stride) {
	v4d a = splatd(0), b = splatd(0);
	for (long i = 0; i < n; i++) {
		const float *p = x + i * stride;
		long j = 0;
		for (; j + 8 <= hw; j += 8) {
			v8f v = load8(p + j);
			a += lo4(v);
			b += hi4(v);
		}
		if (j < hw) {
			v8f v = load8n(p + j, hw - j);
			a += lo4(v);
			b += hi4(v);
		}
	}
	return total(a, b);
}

static AVX2 double macdist_sqdev_planes(const float *x, long n, long hw, long stride, double mu) {
	v4d a = splatd(0), b = splatd(0), m = splatd(mu);
	for (long i = 0; i < n; i++) {
		const float *p = x + i * stride;
		for (long j = 0; j < hw; j += 8) {
			v8f v = j + 8 <= hw ? load8(p + j) : load8n(p + j, hw - j);
			v4d dl = lo4(v) - m, dh = hi4(v) - m;
			if (j + 8 > hw) {
				// The padding is not a value at distance mu.
				for (long k = hw - j; k < 8; k++) {
					if (k < 4) dl[k] = 0; else dh[k - 4] = 0;
				}
			}
			a += dl * dl;
			b += dh * dh;
		}
	}
	return total(a, b);
}

typedef struct { double a, b; } macdist_pair;

// macdist_bn_grad_sums returns Σ dy and Σ dy·x̂, x̂ = (x − mu)·rs in float32.
static AVX2 macdist_pair macdist_bn_grad_sums(const float *x, const float *dy, long n, long hw, long stride,
	float mu, float rs) {
	v4d a = splatd(0), b = splatd(0), c = splatd(0), d = splatd(0);
	for (long i = 0; i < n; i++) {
		const float *px = x + i * stride, *pg = dy + i * stride;
		for (long j = 0; j < hw; j += 8) {
			long k = hw - j < 8 ? hw - j : 8;
			v8f v = k == 8 ? load8(px + j) : load8n(px + j, k);
			v8f g = k == 8 ? load8(pg + j) : load8n(pg + j, k);
			v8f xh = (v - splat(mu)) * splat(rs);
			v4d gl = lo4(g), gh = hi4(g);
			a += gl;
			b += gh;
			c += gl * lo4(xh);
			d += gh * hi4(xh);
		}
	}
	return (macdist_pair){total(a, b), total(c, d)};
}

// macdist_bn_norm writes y = (x − mu)·a + b.
static AVX2 void macdist_bn_norm(float *y, const float *x, long n, long hw, long stride, float mu, float a, float b) {
	for (long i = 0; i < n; i++) {
		float *py = y + i * stride;
		const float *px = x + i * stride;
		for (long j = 0; j < hw; j++) {
			py[j] = (px[j] - mu) * a + b;
		}
	}
}

// macdist_bn_dx writes dx = scale·(dy − k1 − (x − mu)·rs·k2).
static AVX2 void macdist_bn_dx(float *dx, const float *dy, const float *x, long n, long hw, long stride,
	float mu, float rs, float k1, float k2, float scale) {
	for (long i = 0; i < n; i++) {
		float *pd = dx + i * stride;
		const float *pg = dy + i * stride, *px = x + i * stride;
		for (long j = 0; j < hw; j++) {
			pd[j] = scale * (pg[j] - k1 - (px[j] - mu) * rs * k2);
		}
	}
}

// macdist_col_sums writes acc[i] = Σ_r x[r·ld + i] in float64, row after
// row, as colSumsGo does. It reads the rows in order, four at a time into
// sums kept in acc, as a stream the prefetchers follow: walking the rows
// once per 32 columns instead took twice as long on a ViT's bias gradient
// (8,320 × 768).
static AVX2 void macdist_col_sums(double *acc, const float *x, long rows, long cols, long ld) {
	memset(acc, 0, cols * sizeof *acc);
	long r = 0;
	for (; r + 4 <= rows; r += 4) {
		const float *p = x + r * ld;
		long i = 0;
		for (; i + 8 <= cols; i += 8) {
			v4d a, b;
			memcpy(&a, acc + i, sizeof a);
			memcpy(&b, acc + i + 4, sizeof b);
			for (int k = 0; k < 4; k++) {
				v8f v = load8(p + k * ld + i);
				a += lo4(v);
				b += hi4(v);
			}
			memcpy(acc + i, &a, sizeof a);
			memcpy(acc + i + 4, &b, sizeof b);
		}
		for (; i < cols; i++) {
			double s = acc[i];
			for (int k = 0; k < 4; k++) {
				s += p[k * ld + i];
			}
			acc[i] = s;
		}
	}
	for (; r < rows; r++) {
		const float *p = x + r * ld;
		for (long i = 0; i < cols; i++) {
			acc[i] += p[i];
		}
	}
}

// rowmax is rowMax of rows.go: the maximum, a NaN if there is one.
static inline AVX2 float rowmax(const float *x, long n) {
	float m = x[0];
	int nan = 0;
	for (long j = 0; j < n; j++) {
		float v = x[j];
		nan |= v != v;
		m = v > m ? v : m;
	}
	return nan ? __builtin_nanf("") : m;
}

// Lane sums of one row, as sumPlanes for a single plane.
static inline AVX2 void acc_row(v4d *a, v4d *b, v8f v) { *a += lo4(v); *b += hi4(v); }

// keep8 is all ones in the first k lanes.
static inline AVX2 v8i keep8(long k) {
	v8i idx = {0, 1, 2, 3, 4, 5, 6, 7};
	return idx < splati((int32_t)k);
}

// macdist_softmax_rows is softmaxRow of rows.go on rows [0, rows).
static AVX2 void macdist_softmax_rows(float *y, const float *x, long rows, long cols) {
	for (long r = 0; r < rows; r++) {
		const float *px = x + r * cols;
		float *py = y + r * cols;
		v8f m = splat(rowmax(px, cols));
		v4d a = splatd(0), b = splatd(0);
		for (long j = 0; j < cols; j += 8) {
			long k = cols - j < 8 ? cols - j : 8;
			v8f v = k == 8 ? load8(px + j) : load8n(px + j, k);
			v8f e = vexp32(v - m);
			if (k < 8) {
				e = sel(keep8(k), e, splat(0));
				float t[8];
				store8(t, e);
				memcpy(py + j, t, k * sizeof(float));
			} else {
				store8(py + j, e);
			}
			acc_row(&a, &b, e);
		}
		float inv = (float)(1 / total(a, b));
		for (long j = 0; j < cols; j++) {
			py[j] *= inv;
		}
	}
}

// macdist_layernorm_rows is layerNormRow of rows.go on rows [0, rows);
// gamma and beta may be NULL.
static AVX2 void macdist_layernorm_rows(float *y, float *mean, float *rstd, const float *x,
	const float *gamma, const float *beta, long rows, long cols, float eps) {
	for (long r = 0; r < rows; r++) {
		const float *px = x + r * cols;
		float *py = y + r * cols;
		double n = (double)cols;
		double mu = macdist_sum_planes(px, 1, cols, cols) / n;
		double ss = macdist_sqdev_planes(px, 1, cols, cols, mu);
		double rs = 1 / __builtin_sqrt(ss / n + (double)eps);
		float muf = (float)mu, rsf = (float)rs;
		for (long j = 0; j < cols; j++) {
			float h = (px[j] - muf) * rsf;
			if (gamma) h *= gamma[j];
			if (beta) h += beta[j];
			py[j] = h;
		}
		mean[r] = muf;
		rstd[r] = rsf;
	}
}

// macdist_layernorm_back_rows is layerNormBackwardRow of rows.go on rows
// [0, rows); gamma may be NULL.
static AVX2 void macdist_layernorm_back_rows(float *dx, const float *dy, const float *x,
	const float *mean, const float *rstd, const float *gamma, long rows, long cols) {
	for (long r = 0; r < rows; r++) {
		const float *px = x + r * cols, *pg = dy + r * cols;
		float *pd = dx + r * cols;
		float m = mean[r], rs = rstd[r];
		v4d a = splatd(0), b = splatd(0), c = splatd(0), d = splatd(0);
		for (long j = 0; j < cols; j += 8) {
			long k = cols - j < 8 ? cols - j : 8;
			v8f v = k == 8 ? load8(px + j) : load8n(px + j, k);
			v8f g = k == 8 ? load8(pg + j) : load8n(pg + j, k);
			if (gamma) g *= k == 8 ? load8(gamma + j) : load8n(gamma + j, k);
			v8f xh = (v - splat(m)) * splat(rs);
			xh = sel(keep8(k), xh, splat(0));
			v4d gl = lo4(g), gh = hi4(g);
			a += gl;
			b += gh;
			c += gl * lo4(xh);
			d += gh * hi4(xh);
		}
		double n = (double)cols;
		float mg = (float)(total(a, b) / n), mgx = (float)(total(c, d) / n);
		for (long j = 0; j < cols; j++) {
			float g = pg[j];
			if (gamma) g *= gamma[j];
			float xh = (px[j] - m) * rs;
			pd[j] = rs * (g - mg - xh * mgx);
		}
	}
}

// macdist_ln_param adds, for the columns [0, cols) of rows of stride ld,
// Σ_r dy·x̂ to accG and Σ_r dy to accB (either may be NULL), row after row.
static AVX2 void macdist_ln_param(double *accG, double *accB, const float *dy, const float *x,
	const float *mean, const float *rstd, long rows, long cols, long ld) {
	for (long r = 0; r < rows; r++) {
		const float *pg = dy + r * ld, *px = x + r * ld;
		float m = mean[r], rs = rstd[r];
		long j = 0;
		for (; j + 8 <= cols; j += 8) {
			v8f g = load8(pg + j);
			if (accG) {
				v8f xh = (load8(px + j) - splat(m)) * splat(rs);
				v4d t0, t1;
				memcpy(&t0, accG + j, sizeof t0);
				memcpy(&t1, accG + j + 4, sizeof t1);
				t0 += lo4(g) * lo4(xh);
				t1 += hi4(g) * hi4(xh);
				memcpy(accG + j, &t0, sizeof t0);
				memcpy(accG + j + 4, &t1, sizeof t1);
			}
			if (accB) {
				v4d t0, t1;
				memcpy(&t0, accB + j, sizeof t0);
				memcpy(&t1, accB + j + 4, sizeof t1);
				t0 += lo4(g);
				t1 += hi4(g);
				memcpy(accB + j, &t0, sizeof t0);
				memcpy(accB + j + 4, &t1, sizeof t1);
			}
		}
		for (; j < cols; j++) {
			if (accG) accG[j] += (double)pg[j] * (double)((px[j] - m) * rs);
			if (accB) accB[j] += (double)pg[j];
		}
	}
}

// zerof and copyf clear and copy short runs inline: the rows of an
// unfolded image are a few dozen floats, too short to repay a call to
// memset or memcpy.
static inline AVX2 void zerof(float *p, long n) {
	for (; n >= 8; n -= 8, p += 8) store8(p, splat(0));
	for (; n > 0; n--) *p++ = 0;
}

static inline AVX2 void copyf(float *d, const float *s, long n) {
	for (; n >= 8; n -= 8, d += 8, s += 8) store8(d, load8(s));
	for (; n > 0; n--) *d++ = *s++;
}

// vrange is validRange of conv.go: the outputs [*lo, *hi) of n whose input
// coordinate o·stride − pad + off falls inside [0, size).
static inline void vrange(long n, long size, long stride, long pad, long off, long *lo, long *hi) {
	long first = pad - off, last = size - 1 + pad - off;
	*lo = first > 0 ? (first + stride - 1) / stride : 0;
	if (last < 0) {
		*lo = *hi = 0;
		return;
	}
	*hi = last / stride + 1 < n ? last / stride + 1 : n;
	if (*lo > *hi) *lo = *hi;
}

// macdist_im2col_plane unfolds one input plane x (h×w) into the KH·KW rows
// of col for its channel, row k at col + k·OH·OW: im2colRow of conv.go for
// every kernel offset (fold == 0), or adds those rows back into x, as
// col2imRow does (fold != 0). Copies and sums give the same bits as Go's.
static AVX2 void macdist_im2col_plane(int fold, float *col, float *x, long h, long w,
	long kh, long kw, long sh, long sw, long ph, long pw, long dh, long dw, long oh, long ow) {
	for (long ki = 0; ki < kh; ki++) {
		for (long kj = 0; kj < kw; kj++) {
			float *row = col + (ki * kw + kj) * oh * ow;
			long offH = ki * dh, offW = kj * dw, h0, h1, w0, w1;
			vrange(oh, h, sh, ph, offH, &h0, &h1);
			vrange(ow, w, sw, pw, offW, &w0, &w1);
			if (fold) {
				if (w0 >= w1) continue;
				for (long o = h0; o < h1; o++) {
					const float *src = row + o * ow;
					float *in = x + (o * sh - ph + offH) * w + w0 * sw - pw + offW;
					if (sw == 1) {
						for (long q = w0; q < w1; q++) in[q - w0] += src[q];
					} else {
						for (long q = w0; q < w1; q++) in[(q - w0) * sw] += src[q];
					}
				}
				continue;
			}
			zerof(row, h0 * ow);
			zerof(row + h1 * ow, (oh - h1) * ow);
			if (w0 >= w1) {
				zerof(row + h0 * ow, (h1 - h0) * ow);
				continue;
			}
			if (sh == 1 && sw == 1 && ow == w) {
				// Rows o·w + q read x[o·w + q + delta]: one shifted
				// copy of the valid rows, then the wrapped columns zeroed.
				long delta = (offH - ph) * w + offW - pw;
				long lo = h0 * w, hi = h1 * w;
				long lo2 = lo > -delta ? lo : -delta, hi2 = hi < h * w - delta ? hi : h * w - delta;
				if (lo2 < hi2) {
					zerof(row + lo, lo2 - lo);
					memcpy(row + lo2, x + lo2 + delta, (hi2 - lo2) * sizeof(float));
					zerof(row + hi2, hi - hi2);
				} else {
					zerof(row + lo, hi - lo);
				}
				for (long o = h0; o < h1; o++) {
					float *r = row + o * w;
					for (long q = 0; q < w0; q++) r[q] = 0;
					for (long q = w1; q < w; q++) r[q] = 0;
				}
				continue;
			}
			for (long o = h0; o < h1; o++) {
				float *out = row + o * ow;
				const float *in = x + (o * sh - ph + offH) * w + w0 * sw - pw + offW;
				for (long q = 0; q < w0; q++) out[q] = 0;
				for (long q = w1; q < ow; q++) out[q] = 0;
				if (sw == 1) {
					copyf(out + w0, in, w1 - w0);
				} else if (sw == 2) {
					for (long q = w0; q < w1; q++) out[q] = in[(q - w0) * 2];
				} else {
					for (long q = w0; q < w1; q++) out[q] = in[(q - w0) * sw];
				}
			}
		}
	}
}

// maxkey is maxKey of pool.go.
static inline int64_t maxkey(uint32_t b) {
	int64_t neg = (int64_t)((int32_t)b >> 31);
	int64_t mag = (int64_t)(b & 0x7fffffff);
	int64_t nan = (0x7f800000 - mag) >> 63;
	return (((mag ^ neg) - neg) & ~nan) | (0x7fffffff & nan);
}

typedef int32_t mp_v4i __attribute__((vector_size(16)));

// MP_KEY is maxkey lane by lane in 32 bits, which hold its every value:
// the magnitude negated for a negative float, int32's largest for a NaN.
#define MP_KEY(b) ((((((b) & 0x7fffffff) ^ ((b) >> 31)) - ((b) >> 31)) & ~(((b) & 0x7fffffff) > 0x7f800000)) | \
	(0x7fffffff & (((b) & 0x7fffffff) > 0x7f800000)))

// MP_CHUNK pools the n windows from column 2·j of rows r0 and r1 (the
// bits of x, h·w planes) into yp + j, or with dp adds yp[j] into dp at
// each window's first maximum in row-major order, as maxPool2x2 does; in
// backward only the lanes from live on. V is a vector type of n int32
// lanes, EVEN and ODD the shuffles that split 2n lanes into the windows'
// left and right columns, LO and HI those that interleave them again.
#define MP_CHUNK(V, n, EVEN, ODD, LO, HI)                                                                   \
	do {                                                                                                \
		V t0, t1, b0, b1;                                                                           \
		memcpy(&t0, r0 + 2 * j, sizeof t0);                                                         \
		memcpy(&t1, r0 + 2 * j + n, sizeof t1);                                                     \
		memcpy(&b0, r1 + 2 * j, sizeof b0);                                                         \
		memcpy(&b1, r1 + 2 * j + n, sizeof b1);                                                     \
		V e0 = __builtin_shufflevector(t0, t1, EVEN), o0 = __builtin_shufflevector(t0, t1, ODD);    \
		V e1 = __builtin_shufflevector(b0, b1, EVEN), o1 = __builtin_shufflevector(b0, b1, ODD);    \
		V k0 = MP_KEY(e0), k1 = MP_KEY(o0), k2 = MP_KEY(e1), k3 = MP_KEY(o1);                       \
		V g01 = k1 > k0, g23 = k3 > k2;                                                             \
		V ka = (k1 & g01) | (k0 & ~g01), kb = (k3 & g23) | (k2 & ~g23);                             \
		V gab = kb > ka;                                                                            \
		if (dp == 0) {                                                                              \
			V va = (o0 & g01) | (e0 & ~g01), vb = (o1 & g23) | (e1 & ~g23);                      \
			V v = (vb & gab) | (va & ~gab);                                                     \
			memcpy(yp + j, &v, sizeof v);                                                       \
			break;                                                                              \
		}                                                                                           \
		V lane, dy, d0, d1, d2, d3, w0, w1;                                                         \
		for (int l = 0; l < n; l++) lane[l] = -(j + l >= live);                                     \
		memcpy(&dy, yp + j, sizeof dy);                                                             \
		V m0 = ~g01 & ~gab & lane, m1 = g01 & ~gab & lane, m2 = ~g23 & gab & lane, m3 = g23 & gab & lane; \
		memcpy(&t0, dp + 2 * j, sizeof t0);                                                         \
		memcpy(&t1, dp + 2 * j + n, sizeof t1);                                                     \
		memcpy(&b0, dp + w + 2 * j, sizeof b0);                                                     \
		memcpy(&b1, dp + w + 2 * j + n, sizeof b1);                                                 \
		e0 = __builtin_shufflevector(t0, t1, EVEN), o0 = __builtin_shufflevector(t0, t1, ODD);      \
		e1 = __builtin_shufflevector(b0, b1, EVEN), o1 = __builtin_shufflevector(b0, b1, ODD);      \
		typedef float F __attribute__((vector_size(sizeof(V))));                                    \
		F fy, f;                                                                                    \
		memcpy(&fy, &dy, sizeof fy);                                                                \
		memcpy(&f, &e0, sizeof f), f += fy, memcpy(&d0, &f, sizeof f);                              \
		memcpy(&f, &o0, sizeof f), f += fy, memcpy(&d1, &f, sizeof f);                              \
		memcpy(&f, &e1, sizeof f), f += fy, memcpy(&d2, &f, sizeof f);                              \
		memcpy(&f, &o1, sizeof f), f += fy, memcpy(&d3, &f, sizeof f);                              \
		e0 = (d0 & m0) | (e0 & ~m0), o0 = (d1 & m1) | (o0 & ~m1);                                   \
		e1 = (d2 & m2) | (e1 & ~m2), o1 = (d3 & m3) | (o1 & ~m3);                                   \
		w0 = __builtin_shufflevector(e0, o0, LO), w1 = __builtin_shufflevector(e0, o0, HI);         \
		memcpy(dp + 2 * j, &w0, sizeof w0);                                                         \
		memcpy(dp + 2 * j + n, &w1, sizeof w1);                                                     \
		w0 = __builtin_shufflevector(e1, o1, LO), w1 = __builtin_shufflevector(e1, o1, HI);         \
		memcpy(dp + w + 2 * j, &w0, sizeof w0);                                                     \
		memcpy(dp + w + 2 * j + n, &w1, sizeof w1);                                                 \
	} while (0)

#define MP_EVEN8 0, 2, 4, 6, 8, 10, 12, 14
#define MP_ODD8 1, 3, 5, 7, 9, 11, 13, 15
#define MP_LO8 0, 8, 1, 9, 2, 10, 3, 11
#define MP_HI8 4, 12, 5, 13, 6, 14, 7, 15
#define MP_EVEN4 0, 2, 4, 6
#define MP_ODD4 1, 3, 5, 7
#define MP_LO4 0, 4, 1, 5
#define MP_HI4 2, 6, 3, 7

// macdist_maxpool2x2 is maxPool2x2 of pool.go for planes [0, n) of h×w
// (output oh×ow): y = the window maxima, or with dx non-NULL dx += y at
// each window's first maximum. A row's windows go 8 (or 4) at a time, the
// last group overlapping the one before rather than falling to scalar
// code: forward writes the same maxima twice, backward adds in the new
// lanes only; sums are kept at the maxima only, dx's other bits left as
// they are (a −0 stays −0). Rows of fewer than 4 windows take the scalar
// loop.
static AVX2 void macdist_maxpool2x2(float *y, const float *x, float *dx, long n, long h, long w, long oh, long ow) {
	for (long p = 0; p < n; p++) {
		const float *xp = x + p * h * w;
		const int32_t *xb = (const int32_t *)xp;
		float *yp0 = y + p * oh * ow;
		for (long i = 0; i < oh; i++) {
			const int32_t *r0 = xb + 2 * i * w, *r1 = r0 + w;
			float *yp = yp0 + i * ow;
			float *dp = dx ? dx + p * h * w + 2 * i * w : 0;
			long j = 0, live = 0;
			if (ow >= 8) {
				for (; j + 8 <= ow; j += 8) {
					MP_CHUNK(v8i, 8, MP_EVEN8, MP_ODD8, MP_LO8, MP_HI8);
				}
				if (j < ow) {
					live = j, j = ow - 8;
					MP_CHUNK(v8i, 8, MP_EVEN8, MP_ODD8, MP_LO8, MP_HI8);
				}
				continue;
			}
			if (ow >= 4) {
				MP_CHUNK(mp_v4i, 4, MP_EVEN4, MP_ODD4, MP_LO4, MP_HI4);
				if (ow > 4) {
					live = 4, j = ow - 4;
					MP_CHUNK(mp_v4i, 4, MP_EVEN4, MP_ODD4, MP_LO4, MP_HI4);
				}
				continue;
			}
			for (; j < ow; j++) {
				int64_t k0 = maxkey(r0[2 * j]), k1 = maxkey(r0[2 * j + 1]);
				int64_t k2 = maxkey(r1[2 * j]), k3 = maxkey(r1[2 * j + 1]);
				int64_t g01 = (k0 - k1) >> 63;
				int64_t ka = k0 ^ ((k0 ^ k1) & g01), ia = g01 & 1;
				int64_t g23 = (k2 - k3) >> 63;
				int64_t kb = k2 ^ ((k2 ^ k3) & g23), ib = 2 + (g23 & 1);
				int64_t gab = (ka - kb) >> 63;
				int64_t at = ia ^ ((ia ^ ib) & gab);
				long off = 2 * j + (at & 1) + (at >> 1) * w;
				if (dp) {
					dp[off] += yp[j];
				} else {
					yp[j] = xp[2 * i * w + off];
				}
			}
		}
	}
}

// macdist_add_bias adds bias[(r0 + r) mod mid] to every element of the rows
// r of n rows of inner elements (AddBias over inner > 1).
static AVX2 void macdist_add_bias(float *x, const float *bias, long r0, long rows, long mid, long inner) {
	for (long r = 0; r < rows; r++) {
		float b = bias[(r0 + r) % mid], *p = x + r * inner;
		for (long i = 0; i < inner; i++) p[i] += b;
	}
}

// macdist_add_bias_rows adds bias to each of rows rows of cols elements.
static AVX2 void macdist_add_bias_rows(float *x, const float *bias, long rows, long cols) {
	for (long r = 0; r < rows; r++) {
		float *p = x + r * cols;
		for (long j = 0; j < cols; j++) p[j] += bias[j];
	}
}
*/
import "C"

import (
	"unsafe"

	"github.com/macdist/macdist/kernels"
)

var haveSIMD = C.macdist_have_avx2() != 0

// geluWide says whether GELU runs its 16-lane AVX-512 version (twice the
// AVX2 one's speed; the same bits). Tests turn it off to check the other.
var geluWide = haveSIMD && C.macdist_have_avx512() != 0

func fptr(s []float32) *C.float   { return (*C.float)(unsafe.Pointer(unsafe.SliceData(s))) }
func uptr(s []uint32) *C.uint32_t { return (*C.uint32_t)(unsafe.Pointer(unsafe.SliceData(s))) }

const (
	simdGELU = iota
	simdGELUGrad
	simdGELUTanh
	simdGELUTanhGrad
)

// simdGELUOp computes y = f(x), or y = dy·f'(x) for the gradient ops; dy is
// ignored by the others.
func simdGELUOp(op int, y, x, dy []float32) {
	if len(y) == 0 {
		return
	}
	x = x[:len(y)]
	var dp *C.float
	if op == simdGELUGrad || op == simdGELUTanhGrad {
		dp = fptr(dy[:len(y)])
	}
	if geluWide {
		C.macdist_gelu16(C.int(op), fptr(y), fptr(x), dp, C.long(len(y)))
		return
	}
	C.macdist_gelu(C.int(op), fptr(y), fptr(x), dp, C.long(len(y)))
}

func simdReLU(y, x []uint32) {
	if len(y) == 0 {
		return
	}
	C.macdist_relu(uptr(y), uptr(x[:len(y)]), C.long(len(y)))
}

func simdAddTo(dst, src []float32) {
	if len(dst) == 0 {
		return
	}
	C.macdist_add_to(fptr(dst), fptr(src[:len(dst)]), C.long(len(dst)))
}

func simdAdd(y, a, b []float32, relu bool) {
	if len(y) == 0 {
		return
	}
	r := C.int(0)
	if relu {
		r = 1
	}
	C.macdist_add(fptr(y), fptr(a[:len(y)]), fptr(b[:len(y)]), C.long(len(y)), r)
}

func simdReLUMask(dx, dy, y []uint32) {
	if len(dx) == 0 {
		return
	}
	C.macdist_relu_mask(uptr(dx), uptr(dy[:len(dx)]), uptr(y[:len(dx)]), C.long(len(dx)))
}

// planes checks that n planes of hw elements at stride fit in each of bufs.
func planes(n, hw, stride int, bufs ...[]float32) bool {
	if n <= 0 || hw <= 0 {
		return false
	}
	for _, b := range bufs {
		_ = b[(n-1)*stride+hw-1]
	}
	return true
}

func simdSumPlanes(x []float32, n, hw, stride int) float64 {
	if !planes(n, hw, stride, x) {
		return 0
	}
	return float64(C.macdist_sum_planes(fptr(x), C.long(n), C.long(hw), C.long(stride)))
}

func simdSqDevPlanes(x []float32, n, hw, stride int, mu float64) float64 {
	if !planes(n, hw, stride, x) {
		return 0
	}
	return float64(C.macdist_sqdev_planes(fptr(x), C.long(n), C.long(hw), C.long(stride), C.double(mu)))
}

func simdBNGradSums(x, dy []float32, n, hw, stride int, mu, rs float32) (sdy, sdyx float64) {
	if !planes(n, hw, stride, x, dy) {
		return 0, 0
	}
	r := C.macdist_bn_grad_sums(fptr(x), fptr(dy), C.long(n), C.long(hw), C.long(stride), C.float(mu), C.float(rs))
	return float64(r.a), float64(r.b)
}

func simdBNNorm(y, x []float32, n, hw, stride int, mu, a, b float32) {
	if !planes(n, hw, stride, x, y) {
		return
	}
	C.macdist_bn_norm(fptr(y), fptr(x), C.long(n), C.long(hw), C.long(stride), C.float(mu), C.float(a), C.float(b))
}

func simdBNDx(dx, dy, x []float32, n, hw, stride int, mu, rs, k1, k2, scale float32) {
	if !planes(n, hw, stride, dx, dy, x) {
		return
	}
	C.macdist_bn_dx(fptr(dx), fptr(dy), fptr(x), C.long(n), C.long(hw), C.long(stride),
		C.float(mu), C.float(rs), C.float(k1), C.float(k2), C.float(scale))
}

// simdColSums is colSums.
func simdColSums(acc []float64, x []float32, rows, cols, ld int) {
	if cols <= 0 {
		return
	}
	acc = acc[:cols]
	if rows <= 0 {
		clear(acc)
		return
	}
	_ = x[(rows-1)*ld+cols-1]
	C.macdist_col_sums((*C.double)(unsafe.Pointer(&acc[0])), fptr(x), C.long(rows), C.long(cols), C.long(ld))
}

func fptrOpt(s []float32) *C.float {
	if s == nil {
		return nil
	}
	return fptr(s)
}

func dptrOpt(s []float64) *C.double {
	if s == nil {
		return nil
	}
	return (*C.double)(unsafe.Pointer(unsafe.SliceData(s)))
}

// The row kernels below take rows×cols matrices that the caller has
// sliced to exactly that size.

func simdSoftmaxRows(y, x []float32, rows, cols int) {
	if rows <= 0 || cols <= 0 {
		return
	}
	_, _ = y[rows*cols-1], x[rows*cols-1]
	C.macdist_softmax_rows(fptr(y), fptr(x), C.long(rows), C.long(cols))
}

func simdLayerNormRows(y, mean, rstd, x, gamma, beta []float32, rows, cols int, eps float32) {
	if rows <= 0 || cols <= 0 {
		return
	}
	_, _, _, _ = y[rows*cols-1], x[rows*cols-1], mean[rows-1], rstd[rows-1]
	if gamma != nil {
		_ = gamma[cols-1]
	}
	if beta != nil {
		_ = beta[cols-1]
	}
	C.macdist_layernorm_rows(fptr(y), fptr(mean), fptr(rstd), fptr(x), fptrOpt(gamma), fptrOpt(beta),
		C.long(rows), C.long(cols), C.float(eps))
}

func simdLayerNormBackRows(dx, dy, x, mean, rstd, gamma []float32, rows, cols int) {
	if rows <= 0 || cols <= 0 {
		return
	}
	_, _, _, _, _ = dx[rows*cols-1], dy[rows*cols-1], x[rows*cols-1], mean[rows-1], rstd[rows-1]
	if gamma != nil {
		_ = gamma[cols-1]
	}
	C.macdist_layernorm_back_rows(fptr(dx), fptr(dy), fptr(x), fptr(mean), fptr(rstd), fptrOpt(gamma),
		C.long(rows), C.long(cols))
}

// simdLNParam adds Σ_r dy·x̂ to accG and Σ_r dy to accB (either may be
// nil) for the cols columns of rows of stride ld starting at dy[0], x[0].
func simdLNParam(accG, accB []float64, dy, x, mean, rstd []float32, rows, cols, ld int) {
	if rows <= 0 || cols <= 0 {
		return
	}
	_, _ = dy[(rows-1)*ld+cols-1], x[(rows-1)*ld+cols-1]
	_, _ = mean[rows-1], rstd[rows-1]
	if accG != nil {
		_ = accG[cols-1]
	}
	if accB != nil {
		_ = accB[cols-1]
	}
	C.macdist_ln_param(dptrOpt(accG), dptrOpt(accB), fptr(dy), fptr(x), fptr(mean), fptr(rstd),
		C.long(rows), C.long(cols), C.long(ld))
}

// simdConvPlane is im2colRow (fold false) or col2imRow (fold true) for
// every kernel offset of one plane: x is the plane, col its channel's KH·KW
// rows of OutH·OutW.
func simdConvPlane(fold bool, col, x []float32, g kernels.ConvGeom) {
	oh, ow := g.OutH(), g.OutW()
	_ = col[g.KH*g.KW*oh*ow-1]
	_ = x[g.H*g.W-1]
	f := C.int(0)
	if fold {
		f = 1
	}
	C.macdist_im2col_plane(f, fptr(col), fptr(x), C.long(g.H), C.long(g.W), C.long(g.KH), C.long(g.KW),
		C.long(g.StrideH), C.long(g.StrideW), C.long(g.PadH), C.long(g.PadW), C.long(g.DilH), C.long(g.DilW),
		C.long(oh), C.long(ow))
}

// simdMaxPool2x2 is maxPool2x2 over n planes of h×w; dx nil for forward.
func simdMaxPool2x2(y, x, dx []float32, n, h, w, oh, ow int) {
	if n <= 0 || oh <= 0 || ow <= 0 {
		return
	}
	_, _ = y[n*oh*ow-1], x[n*h*w-1]
	var dp *C.float
	if dx != nil {
		_ = dx[n*h*w-1]
		dp = fptr(dx)
	}
	C.macdist_maxpool2x2(fptr(y), fptr(x), dp, C.long(n), C.long(h), C.long(w), C.long(oh), C.long(ow))
}

// simdAddBias adds bias[(r0+r) mod mid] to row r of the rows×inner x.
func simdAddBias(x, bias []float32, r0, rows, mid, inner int) {
	if rows <= 0 || inner <= 0 {
		return
	}
	_, _ = x[rows*inner-1], bias[mid-1]
	C.macdist_add_bias(fptr(x), fptr(bias), C.long(r0), C.long(rows), C.long(mid), C.long(inner))
}

// simdAddBiasRows adds bias to each row of the rows×len(bias) x.
func simdAddBiasRows(x, bias []float32, rows, cols int) {
	if rows <= 0 || cols <= 0 {
		return
	}
	_, _ = x[rows*cols-1], bias[cols-1]
	C.macdist_add_bias_rows(fptr(x), fptr(bias), C.long(rows), C.long(cols))
}
