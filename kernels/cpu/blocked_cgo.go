//go:build cgo && amd64

package cpu

/*
#cgo CFLAGS: -O3

// AVX2 versions of the Blocked16 batch-norm loops in layout.go: a pixel's
// sixteen channels are two vectors of eight floats (four of doubles for
// the sums). Every lane performs the float32 and float64 operations of
// the Go version, in its order, without contraction into fused
// multiply-adds, so that the two agree to the bit.

#pragma GCC optimize("fp-contract=off")

#include <string.h>

#define BK_AVX2 __attribute__((target("avx2,fma")))

typedef float bk_v8f __attribute__((vector_size(32)));
typedef double bk_v4d __attribute__((vector_size(32)));
typedef int bk_v8i __attribute__((vector_size(32)));

static inline BK_AVX2 bk_v8f bk_ld(const float *p) { bk_v8f v; memcpy(&v, p, sizeof v); return v; }
static inline BK_AVX2 void bk_st(float *p, bk_v8f v) { memcpy(p, &v, sizeof v); }
// As lo4 and hi4 of simd_cgo.go: GCC's builtin for vcvtps2pd.
#if defined(__clang__)
static inline BK_AVX2 bk_v4d bk_lo(bk_v8f v) { return __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1, 2, 3), bk_v4d); }
static inline BK_AVX2 bk_v4d bk_hi(bk_v8f v) { return __builtin_convertvector(__builtin_shufflevector(v, v, 4, 5, 6, 7), bk_v4d); }
#else
static inline BK_AVX2 bk_v4d bk_lo(bk_v8f v) { return __builtin_ia32_cvtps2pd256(__builtin_shufflevector(v, v, 0, 1, 2, 3)); }
static inline BK_AVX2 bk_v4d bk_hi(bk_v8f v) { return __builtin_ia32_cvtps2pd256(__builtin_shufflevector(v, v, 4, 5, 6, 7)); }
#endif
static inline BK_AVX2 void bk_std(double *p, bk_v4d v) { memcpy(p, &v, sizeof v); }

// bk_keep zeroes the lanes of v where m is not > 0 (NaN included).
static inline BK_AVX2 bk_v8f bk_keep(bk_v8f v, bk_v8f m) {
	bk_v8i k = m > (bk_v8f){0};
	return (bk_v8f)((bk_v8i)v & k);
}

static BK_AVX2 void macdist_bk_sums(double *s, double *q, const float *x, long nimg, long hw, long istride) {
	bk_v4d a[4] = {{0}}, b[4] = {{0}};
	for (long i = 0; i < nimg; i++) {
		const float *p = x + i * istride;
		for (long r = 0; r < hw; r++, p += 16) {
			bk_v8f u = bk_ld(p), w = bk_ld(p + 8);
			bk_v4d e[4] = {bk_lo(u), bk_hi(u), bk_lo(w), bk_hi(w)};
			for (int k = 0; k < 4; k++) {
				a[k] += e[k];
				b[k] += e[k] * e[k];
			}
		}
	}
	for (int k = 0; k < 4; k++) {
		bk_std(s + 4 * k, a[k]);
		bk_std(q + 4 * k, b[k]);
	}
}

// macdist_bk_norm writes y = (x − mu)·a + b, then adds z (laid out as x)
// unless it is NULL, then takes ReLU's bits with relu.
static BK_AVX2 void macdist_bk_norm(float *y, const float *x, const float *z, long nimg, long hw, long istride,
	const float *mu, const float *a, const float *b, int relu) {
	bk_v8f m0 = bk_ld(mu), m1 = bk_ld(mu + 8), a0 = bk_ld(a), a1 = bk_ld(a + 8), b0 = bk_ld(b), b1 = bk_ld(b + 8);
	for (long i = 0; i < nimg; i++) {
		const float *p = x + i * istride, *s = z ? z + i * istride : NULL;
		float *o = y + i * istride;
		for (long r = 0; r < hw; r++, p += 16, o += 16) {
			bk_v8f z0 = (bk_ld(p) - m0) * a0 + b0, z1 = (bk_ld(p + 8) - m1) * a1 + b1;
			if (s) { // the norm's float32 result, then the sum, as Add has them
				z0 += bk_ld(s);
				z1 += bk_ld(s + 8);
				s += 16;
			}
			if (relu) { // as ReLU: a NaN stays
				z0 = (bk_v8f)((bk_v8i)z0 & ((z0 > (bk_v8f){0}) | (z0 != z0)));
				z1 = (bk_v8f)((bk_v8i)z1 & ((z1 > (bk_v8f){0}) | (z1 != z1)));
			}
			bk_st(o, z0);
			bk_st(o + 8, z1);
		}
	}
}

static BK_AVX2 void macdist_bk_grad_sums(double *s, double *q, const float *x, const float *dy, const float *y,
	long nimg, long hw, long istride, const float *mu, const float *rs) {
	bk_v8f m0 = bk_ld(mu), m1 = bk_ld(mu + 8), r0 = bk_ld(rs), r1 = bk_ld(rs + 8);
	bk_v4d a[4] = {{0}}, b[4] = {{0}};
	for (long i = 0; i < nimg; i++) {
		const float *p = x + i * istride, *g = dy + i * istride, *o = y ? y + i * istride : NULL;
		for (long r = 0; r < hw; r++, p += 16, g += 16) {
			bk_v8f g0 = bk_ld(g), g1 = bk_ld(g + 8);
			if (o != NULL) {
				g0 = bk_keep(g0, bk_ld(o));
				g1 = bk_keep(g1, bk_ld(o + 8));
				o += 16;
			}
			bk_v8f h0 = (bk_ld(p) - m0) * r0, h1 = (bk_ld(p + 8) - m1) * r1;
			bk_v4d e[4] = {bk_lo(g0), bk_hi(g0), bk_lo(g1), bk_hi(g1)};
			bk_v4d f[4] = {bk_lo(h0), bk_hi(h0), bk_lo(h1), bk_hi(h1)};
			for (int k = 0; k < 4; k++) {
				a[k] += e[k];
				b[k] += e[k] * f[k];
			}
		}
	}
	for (int k = 0; k < 4; k++) {
		bk_std(s + 4 * k, a[k]);
		bk_std(q + 4 * k, b[k]);
	}
}

static BK_AVX2 void macdist_bk_dx(float *dx, const float *dy, const float *x, const float *y, long nimg, long hw, long istride,
	const float *mu, const float *rs, const float *k1, const float *k2, const float *scale) {
	bk_v8f m0 = bk_ld(mu), m1 = bk_ld(mu + 8), r0 = bk_ld(rs), r1 = bk_ld(rs + 8);
	bk_v8f c0 = bk_ld(k1), c1 = bk_ld(k1 + 8), d0 = bk_ld(k2), d1 = bk_ld(k2 + 8), s0 = bk_ld(scale), s1 = bk_ld(scale + 8);
	for (long i = 0; i < nimg; i++) {
		const float *p = x + i * istride, *g = dy + i * istride, *m = y ? y + i * istride : NULL;
		float *o = dx + i * istride;
		for (long r = 0; r < hw; r++, p += 16, g += 16, o += 16) {
			bk_v8f g0 = bk_ld(g), g1 = bk_ld(g + 8);
			if (m != NULL) {
				g0 = bk_keep(g0, bk_ld(m));
				g1 = bk_keep(g1, bk_ld(m + 8));
				m += 16;
			}
			bk_st(o, s0 * (g0 - c0 - (bk_ld(p) - m0) * r0 * d0));
			bk_st(o + 8, s1 * (g1 - c1 - (bk_ld(p + 8) - m1) * r1 * d1));
		}
	}
}
*/
import "C"

import "unsafe"

func dptr(s []float64) *C.double { return (*C.double)(unsafe.Pointer(unsafe.SliceData(s))) }

// bkSpan checks that nimg images of hw·16 elements at istride fit in each
// of bufs (nil ones aside).
func bkSpan(nimg, hw, istride int, bufs ...[]float32) bool {
	if nimg <= 0 || hw <= 0 {
		return false
	}
	for _, b := range bufs {
		if b != nil {
			_ = b[(nimg-1)*istride+hw*16-1]
		}
	}
	return true
}

func simdBkSums(s, q []float64, x []float32, nimg, hw, istride int) {
	_, _ = s[15], q[15]
	if !bkSpan(nimg, hw, istride, x) {
		clear(s[:16])
		clear(q[:16])
		return
	}
	C.macdist_bk_sums(dptr(s), dptr(q), fptr(x), C.long(nimg), C.long(hw), C.long(istride))
}

func simdBkNorm(y, x, z []float32, nimg, hw, istride int, mu, a, b []float32, relu bool) {
	_, _, _ = mu[15], a[15], b[15]
	if !bkSpan(nimg, hw, istride, y, x, z) {
		return
	}
	var zp *C.float
	if z != nil {
		zp = fptr(z)
	}
	r := C.int(0)
	if relu {
		r = 1
	}
	C.macdist_bk_norm(fptr(y), fptr(x), zp, C.long(nimg), C.long(hw), C.long(istride), fptr(mu), fptr(a), fptr(b), r)
}

func simdBkGradSums(s, q []float64, x, dy, y []float32, nimg, hw, istride int, mu, rs []float32) {
	_, _, _, _ = s[15], q[15], mu[15], rs[15]
	if !bkSpan(nimg, hw, istride, x, dy, y) {
		clear(s[:16])
		clear(q[:16])
		return
	}
	C.macdist_bk_grad_sums(dptr(s), dptr(q), fptr(x), fptr(dy), fptrOpt(y), C.long(nimg), C.long(hw), C.long(istride),
		fptr(mu), fptr(rs))
}

func simdBkDx(dx, dy, x, y []float32, nimg, hw, istride int, mu, rs, k1, k2, scale []float32) {
	_, _, _, _, _ = mu[15], rs[15], k1[15], k2[15], scale[15]
	if !bkSpan(nimg, hw, istride, dx, dy, x, y) {
		return
	}
	C.macdist_bk_dx(fptr(dx), fptr(dy), fptr(x), fptrOpt(y), C.long(nimg), C.long(hw), C.long(istride),
		fptr(mu), fptr(rs), fptr(k1), fptr(k2), fptr(scale))
}
