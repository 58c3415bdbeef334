//go:build cgo && amd64

package cpu

/*
#cgo CFLAGS: -O3

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

#pragma GCC optimize("fp-contract=off")

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

// exp32 of elementwise.go.
static inline AVX2 v8f vexp32(v8f v) {
	v = sel(v < splat(-87.3f), splat(-87.3f), v);
	v8i big = v > splat(88.37f);
	const float magic = 12582912.0f;
	v8f t = v * splat(1.442695041f) + splat(magic);
	v8f n = t - splat(magic);
	v8f r = v - n * splat(0.693145752f) - n * splat(1.42860677e-06f);
	v8f p = splat(1) + r * (splat(1) + r * (splat(0.5f) + r * (splat(1.0f / 6) + r * (splat(1.0f / 24) +
		r * (splat(1.0f / 120) + r * (splat(1.0f / 720) + r * splat(1.0f / 5040)))))));
	v8i e = (((v8i)t - splati(0x4B400000)) + splati(127)) << 23;
	return sel(big, splat(__builtin_inff()), p * (v8f)e);
}

// erfcScaled of elementwise.go.
static inline AVX2 v8f verfc(v8f t) {
	return splat(-7.887979515e-06f) + t * (splat(0.2258922335f) + t * (splat(0.2230639838f) + t * (splat(0.2259019773f) +
		t * (splat(0.08926198892f) + t * (splat(0.3704830101f) + t * (splat(-0.4451698562f) + t * (splat(0.7218005321f) +
		t * (splat(-0.6191120110f) + t * (splat(0.2457896622f) + t * splat(-0.03790363059f))))))))));
}

// normCDF of elementwise.go.
static inline AVX2 v8f vcdf(v8f x, v8f *gauss) {
	v8f z = (v8f)((v8i)x & splati(0x7fffffff)) * splat(0.70710678118654752f);
	*gauss = vexp32(splat(-0.5f) * x * x);
	v8f q = splat(0.5f) * verfc(splat(1) / (splat(1) + splat(0.4f) * z)) * *gauss;
	v8i neg = (v8i)x >> 31;
	return sel(neg, q, splat(1) - q);
}

enum { gelu, geluGrad, geluTanh, geluTanhGrad };

static inline AVX2 v8f vgelu(int op, v8f x) {
	const float sqrt2OverPi = 0.7978845608028654f, geluC = 0.044715f, geluC3 = 0.134145f;
	v8f g, u, e, s;
	switch (op) {
	case gelu:
		return x * vcdf(x, &g);
	case geluGrad: {
		v8f c = vcdf(x, &g);
		return c + x * splat(0.3989422804014327f) * g;
	}
	case geluTanh:
		u = splat(sqrt2OverPi) * (x + splat(geluC) * x * x * x);
		return x / (splat(1) + vexp32(splat(-2) * u));
	default:
		u = splat(sqrt2OverPi) * (x + splat(geluC) * x * x * x);
		e = vexp32(splat(-2) * u);
		s = splat(1) / (splat(1) + e);
		return s + splat(2) * x * e * s * s * splat(sqrt2OverPi) * (splat(1) + splat(geluC3) * x * x);
	}
}

// macdist_gelu computes y = f(x), or y = dy·f'(x) for the gradients, for op
// one of the enum above. A tail of fewer than eight goes through a padded
// copy, so that every element takes the same path.
static AVX2 void macdist_gelu(int op, float *y, const float *x, const float *dy, long n) {
	long i = 0;
	int grad = op == geluGrad || op == geluTanhGrad;
	for (; i + 8 <= n; i += 8) {
		v8f v = vgelu(op, load8(x + i));
		store8(y + i, grad ? v * load8(dy + i) : v);
	}
	if (i < n) {
		float bx[8] = {0}, bd[8] = {0}, by[8];
		memcpy(bx, x + i, (n - i) * sizeof(float));
		if (grad) memcpy(bd, dy + i, (n - i) * sizeof(float));
		v8f v = vgelu(op, load8(bx));
		store8(by, grad ? v * load8(bd) : v);
		memcpy(y + i, by, (n - i) * sizeof(float));
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

static AVX2 void macdist_relu_mask(uint32_t *dx, const uint32_t *dy, const uint32_t *y, long n) {
	for (long i = 0; i < n; i++) {
		int32_t s = (int32_t)y[i];
		dx[i] = s > 0 && s <= 0x7f800000 ? dy[i] : 0;
	}
}

// macdist_add_rows adds rows of n elements: dst[r·ds + j] += src[r·ss + j].
static AVX2 void macdist_add_rows(float *dst, const float *src, long rows, long n, long ds, long ss) {
	for (long r = 0; r < rows; r++) {
		float *d = dst + r * ds;
		const float *s = src + r * ss;
		for (long j = 0; j < n; j++) {
			d[j] += s[j];
		}
	}
}

// Sums over planes: n planes of hw floats, plane i at x + i·stride, summed
// in float64 in eight lanes (lane k takes the elements k mod 8 of each
// plane; a short tail is padded with zeros), the lanes then combined as
// lanesTotal in reduce.go does. The Go versions keep the same lanes, so
// that the two agree to the bit.

typedef double v4d __attribute__((vector_size(32)));

static inline AVX2 v4d lo4(v8f v) { return __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1, 2, 3), v4d); }
static inline AVX2 v4d hi4(v8f v) { return __builtin_convertvector(__builtin_shufflevector(v, v, 4, 5, 6, 7), v4d); }
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
*/
import "C"

import "unsafe"

var haveSIMD = C.macdist_have_avx2() != 0

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
	C.macdist_gelu(C.int(op), fptr(y), fptr(x), dp, C.long(len(y)))
}

func simdReLU(y, x []uint32) {
	if len(y) == 0 {
		return
	}
	C.macdist_relu(uptr(y), uptr(x[:len(y)]), C.long(len(y)))
}

func simdReLUMask(dx, dy, y []uint32) {
	if len(dx) == 0 {
		return
	}
	C.macdist_relu_mask(uptr(dx), uptr(dy[:len(dx)]), uptr(y[:len(dx)]), C.long(len(dx)))
}

// simdAddRows adds rows of n elements: dst[r·ds + j] += src[r·ss + j].
func simdAddRows(dst, src []float32, rows, n, ds, ss int) {
	if rows <= 0 || n <= 0 {
		return
	}
	_ = dst[(rows-1)*ds+n-1]
	_ = src[(rows-1)*ss+n-1]
	C.macdist_add_rows(fptr(dst), fptr(src), C.long(rows), C.long(n), C.long(ds), C.long(ss))
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
