//go:build cgo && amd64

package cpu

/*
#cgo CFLAGS: -O3

// AVX2 versions of the NHWC batch-norm loops in nhwc.go: a row of c
// channels eight at a time (two vectors of four doubles for the sums,
// which stay in memory beside the row), the last c mod 8 one by one.
// Every channel performs the float32 and float64 operations of the Go
// version, in its order, without contraction into fused multiply-adds,
// so that the two agree to the bit.

#pragma GCC optimize("fp-contract=off")

#include <string.h>

#define NH_AVX2 __attribute__((target("avx2,fma")))

typedef float nh_v8f __attribute__((vector_size(32)));
typedef double nh_v4d __attribute__((vector_size(32)));
typedef int nh_v8i __attribute__((vector_size(32)));

static inline NH_AVX2 nh_v8f nh_ld(const float *p) { nh_v8f v; memcpy(&v, p, sizeof v); return v; }
static inline NH_AVX2 void nh_st(float *p, nh_v8f v) { memcpy(p, &v, sizeof v); }
static inline NH_AVX2 nh_v4d nh_ldd(const double *p) { nh_v4d v; memcpy(&v, p, sizeof v); return v; }
static inline NH_AVX2 void nh_std(double *p, nh_v4d v) { memcpy(p, &v, sizeof v); }
// As lo4 and hi4 of simd_cgo.go: GCC's builtin for vcvtps2pd.
#if defined(__clang__)
static inline NH_AVX2 nh_v4d nh_lo(nh_v8f v) { return __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1, 2, 3), nh_v4d); }
static inline NH_AVX2 nh_v4d nh_hi(nh_v8f v) { return __builtin_convertvector(__builtin_shufflevector(v, v, 4, 5, 6, 7), nh_v4d); }
#else
static inline NH_AVX2 nh_v4d nh_lo(nh_v8f v) { return __builtin_ia32_cvtps2pd256(__builtin_shufflevector(v, v, 0, 1, 2, 3)); }
static inline NH_AVX2 nh_v4d nh_hi(nh_v8f v) { return __builtin_ia32_cvtps2pd256(__builtin_shufflevector(v, v, 4, 5, 6, 7)); }
#endif

// nh_keep zeroes the lanes of v where m is not > 0 (NaN included).
static inline NH_AVX2 nh_v8f nh_keep(nh_v8f v, nh_v8f m) {
	nh_v8i k = m > (nh_v8f){0};
	return (nh_v8f)((nh_v8i)v & k);
}

static NH_AVX2 void macdist_nhwc_sums(double *s, double *q, const float *x, long rows, long c) {
	memset(s, 0, c * sizeof *s);
	memset(q, 0, c * sizeof *q);
	for (long r = 0; r < rows; r++, x += c) {
		long j = 0;
		for (; j + 8 <= c; j += 8) {
			nh_v8f u = nh_ld(x + j);
			nh_v4d a = nh_lo(u), b = nh_hi(u);
			nh_std(s + j, nh_ldd(s + j) + a);
			nh_std(s + j + 4, nh_ldd(s + j + 4) + b);
			nh_std(q + j, nh_ldd(q + j) + a * a);
			nh_std(q + j + 4, nh_ldd(q + j + 4) + b * b);
		}
		for (; j < c; j++) {
			double f = x[j];
			s[j] += f;
			q[j] += f * f;
		}
	}
}

// macdist_nhwc_norm is macdist_bk_norm for rows of c channels.
static NH_AVX2 void macdist_nhwc_norm(float *y, const float *x, const float *s, long rows, long c,
	const float *mu, const float *a, const float *b, int relu) {
	for (long r = 0; r < rows; r++, x += c, y += c, s = s ? s + c : NULL) {
		long j = 0;
		for (; j + 8 <= c; j += 8) {
			nh_v8f z = (nh_ld(x + j) - nh_ld(mu + j)) * nh_ld(a + j) + nh_ld(b + j);
			if (s) {
				z += nh_ld(s + j);
			}
			if (relu) { // as ReLU: a NaN stays
				z = (nh_v8f)((nh_v8i)z & ((z > (nh_v8f){0}) | (z != z)));
			}
			nh_st(y + j, z);
		}
		for (; j < c; j++) {
			float z = (x[j] - mu[j]) * a[j] + b[j];
			if (s) {
				z += s[j];
			}
			if (relu && !(z > 0) && z == z) {
				z = 0;
			}
			y[j] = z;
		}
	}
}

static NH_AVX2 void macdist_nhwc_grad_sums(double *s, double *q, const float *x, const float *dy, const float *y,
	long rows, long c, const float *mu, const float *rs) {
	memset(s, 0, c * sizeof *s);
	memset(q, 0, c * sizeof *q);
	for (long r = 0; r < rows; r++, x += c, dy += c) {
		long j = 0;
		for (; j + 8 <= c; j += 8) {
			nh_v8f g = nh_ld(dy + j);
			if (y != NULL) {
				g = nh_keep(g, nh_ld(y + j));
			}
			nh_v8f h = (nh_ld(x + j) - nh_ld(mu + j)) * nh_ld(rs + j);
			nh_v4d g0 = nh_lo(g), g1 = nh_hi(g);
			nh_std(s + j, nh_ldd(s + j) + g0);
			nh_std(s + j + 4, nh_ldd(s + j + 4) + g1);
			nh_std(q + j, nh_ldd(q + j) + g0 * nh_lo(h));
			nh_std(q + j + 4, nh_ldd(q + j + 4) + g1 * nh_hi(h));
		}
		for (; j < c; j++) {
			float d = dy[j];
			if (y != NULL && !(y[j] > 0)) {
				d = 0;
			}
			double f = d;
			s[j] += f;
			q[j] += f * (double)((x[j] - mu[j]) * rs[j]);
		}
		if (y != NULL) {
			y += c;
		}
	}
}

static NH_AVX2 void macdist_nhwc_dx(float *dx, const float *dy, const float *x, const float *y, long rows, long c,
	const float *mu, const float *rs, const float *k1, const float *k2, const float *scale) {
	for (long r = 0; r < rows; r++, x += c, dy += c, dx += c) {
		long j = 0;
		for (; j + 8 <= c; j += 8) {
			nh_v8f g = nh_ld(dy + j);
			if (y != NULL) {
				g = nh_keep(g, nh_ld(y + j));
			}
			nh_st(dx + j, nh_ld(scale + j) * (g - nh_ld(k1 + j) - (nh_ld(x + j) - nh_ld(mu + j)) * nh_ld(rs + j) * nh_ld(k2 + j)));
		}
		for (; j < c; j++) {
			float d = dy[j];
			if (y != NULL && !(y[j] > 0)) {
				d = 0;
			}
			dx[j] = scale[j] * (d - k1[j] - (x[j] - mu[j]) * rs[j] * k2[j]);
		}
		if (y != NULL) {
			y += c;
		}
	}
}
*/
import "C"

// nhwcRows checks that each of bufs (nil ones aside) holds as many whole
// rows of c as x, and returns that number.
func nhwcRows(c int, x []float32, bufs ...[]float32) int {
	if c <= 0 || len(x)%c != 0 {
		panic("cpu: NHWC rows of a length that is no multiple of the channels")
	}
	for _, b := range bufs {
		if b != nil && len(b) < len(x) {
			panic("cpu: NHWC rows: a buffer shorter than x")
		}
	}
	return len(x) / c
}

func simdNHWCSums(s, q []float64, x []float32) {
	c := len(s)
	_ = q[c-1]
	rows := nhwcRows(c, x)
	C.macdist_nhwc_sums(dptr(s), dptr(q), fptr(x), C.long(rows), C.long(c))
}

func simdNHWCNorm(y, x, s, mu, a, b []float32, relu bool) {
	c := len(mu)
	_, _ = a[c-1], b[c-1]
	rows := nhwcRows(c, x, y, s)
	var sp *C.float
	if s != nil {
		sp = fptr(s)
	}
	r := C.int(0)
	if relu {
		r = 1
	}
	C.macdist_nhwc_norm(fptr(y), fptr(x), sp, C.long(rows), C.long(c), fptr(mu), fptr(a), fptr(b), r)
}

func simdNHWCGradSums(s, q []float64, x, dy, y, mu, rs []float32) {
	c := len(s)
	_, _, _ = q[c-1], mu[c-1], rs[c-1]
	rows := nhwcRows(c, x, dy, y)
	C.macdist_nhwc_grad_sums(dptr(s), dptr(q), fptr(x), fptr(dy), fptr(y), C.long(rows), C.long(c), fptr(mu), fptr(rs))
}

func simdNHWCDx(dx, dy, x, y, mu, rs, k1, k2, scale []float32) {
	c := len(mu)
	_, _, _, _ = rs[c-1], k1[c-1], k2[c-1], scale[c-1]
	rows := nhwcRows(c, x, dx, dy, y)
	C.macdist_nhwc_dx(fptr(dx), fptr(dy), fptr(x), fptr(y), C.long(rows), C.long(c),
		fptr(mu), fptr(rs), fptr(k1), fptr(k2), fptr(scale))
}
