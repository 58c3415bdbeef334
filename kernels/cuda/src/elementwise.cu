// Element-wise kernels: one thread per element, grid-stride. Where the CPU
// device computes in float64 (the GELUs) these do too, so that the two
// devices agree to a rounding.
#include "common.cuh"

KERNEL void ew_scale(float *x, float alpha, i64 n) {
	FOR_N(i, n) x[i] *= alpha;
}

// y = alpha·x + beta·y; y is not read when beta is 0.
KERNEL void ew_axpby(float *y, const float *x, float alpha, float beta, i64 n) {
	if (beta == 0.0f) {
		FOR_N(i, n) y[i] = alpha * x[i];
	} else {
		FOR_N(i, n) y[i] = alpha * x[i] + beta * y[i];
	}
}

KERNEL void ew_add(float *y, const float *a, const float *b, i64 n) {
	FOR_N(i, n) y[i] = a[i] + b[i];
}

KERNEL void ew_mul(float *y, const float *a, const float *b, i64 n) {
	FOR_N(i, n) y[i] = a[i] * b[i];
}

// ReLU passes a NaN through, as PyTorch and kernels/cpu do (fmaxf would
// not), and maps -0 to +0.
KERNEL void ew_relu(float *y, const float *x, i64 n) {
	FOR_N(i, n) {
		float v = x[i];
		y[i] = (v > 0.0f || v != v) ? v : 0.0f;
	}
}

KERNEL void ew_relu_backward(float *dx, const float *dy, const float *y, i64 n) {
	FOR_N(i, n) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

#define INV_SQRT2 0.70710678118654752440
#define INV_SQRT_2PI 0.3989422804014327
#define SQRT_2_OVER_PI 0.7978845608028654
#define GELU_C 0.044715

__device__ __forceinline__ double gelu(double v, int tanh_approx) {
	if (tanh_approx) return 0.5 * v * (1.0 + tanh(SQRT_2_OVER_PI * (v + GELU_C * v * v * v)));
	return 0.5 * v * (1.0 + erf(v * INV_SQRT2));
}

__device__ __forceinline__ double gelu_grad(double v, int tanh_approx) {
	if (tanh_approx) {
		double th = tanh(SQRT_2_OVER_PI * (v + GELU_C * v * v * v));
		return 0.5 * (1.0 + th) + 0.5 * v * (1.0 - th * th) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * v * v);
	}
	double cdf = 0.5 * (1.0 + erf(v * INV_SQRT2));
	double pdf = INV_SQRT_2PI * exp(-0.5 * v * v);
	return cdf + v * pdf;
}

KERNEL void ew_gelu(float *y, const float *x, int tanh_approx, i64 n) {
	FOR_N(i, n) y[i] = (float)gelu((double)x[i], tanh_approx);
}

// dx may be dy (in place): each element is read before it is written.
KERNEL void ew_gelu_backward(float *dx, const float *dy, const float *x, int tanh_approx, i64 n) {
	FOR_N(i, n) dx[i] = dy[i] * (float)gelu_grad((double)x[i], tanh_approx);
}

// dropout_mask draws kernels.DropoutUniform(seed, i): the splitmix64
// finaliser of seed + (i+1)·0x9E3779B97F4A7C15, top 24 bits over 2^24.
// Element i keeps scale (1/(1-p), computed on the host in float32) when its
// draw is at least p.
KERNEL void dropout_mask(float *mask, float p, float scale, unsigned long long seed, i64 n) {
	FOR_N(i, n) {
		unsigned long long z = seed + (unsigned long long)(i + 1) * 0x9E3779B97F4A7C15ull;
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
		z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
		z ^= z >> 31;
		float u = (float)(z >> 40) * (1.0f / 16777216.0f);
		mask[i] = u >= p ? scale : 0.0f;
	}
}

// copy2d copies rows blocks of cols elements between strided rows.
KERNEL void copy2d(float *dst, i64 dstOff, i64 dstStride, const float *src, i64 srcOff, i64 srcStride, i64 rows, i64 cols) {
	FOR_N(k, rows * cols) {
		i64 r = k / cols, j = k % cols;
		dst[dstOff + r * dstStride + j] = src[srcOff + r * srcStride + j];
	}
}

// copy_strided copies a strided 4-D block of n0×n1×n2×n3 elements
// (kernels.Permuter): element (i0, i1, i2, i3) goes from src[sOff + Σ ik·ssk]
// to dst[dOff + Σ ik·dsk]. Strides may be negative or, in src, zero. One
// launch instead of a Copy2D per line of a transpose.
KERNEL void copy_strided(float *dst, i64 dOff, i64 ds0, i64 ds1, i64 ds2, i64 ds3,
                         const float *src, i64 sOff, i64 ss0, i64 ss1, i64 ss2, i64 ss3,
                         i64 n1, i64 n2, i64 n3, i64 total) {
	FOR_N(k, total) {
		i64 i3 = k % n3, r = k / n3;
		i64 i2 = r % n2;
		r /= n2;
		i64 i1 = r % n1, i0 = r / n1;
		dst[dOff + i0 * ds0 + i1 * ds1 + i2 * ds2 + i3 * ds3] = src[sOff + i0 * ss0 + i1 * ss1 + i2 * ss2 + i3 * ss3];
	}
}

// scale2d computes C = beta·C for batch m×n matrices with leading dimension
// ldc, strideC apart: what is left of a Gemm whose product vanishes. C is
// not read when beta is 0.
KERNEL void scale2d(float *c, float beta, i64 m, i64 n, i64 ldc, i64 strideC, i64 batch) {
	FOR_N(k, batch * m * n) {
		i64 b = k / (m * n), r = k / n % m, j = k % n;
		float *p = c + b * strideC + r * ldc + j;
		*p = beta == 0.0f ? 0.0f : beta * *p;
	}
}

// add_bias adds bias[j] to x[o, j, i] for x viewed as outer × mid × inner.
KERNEL void add_bias(float *x, const float *bias, i64 mid, i64 inner, i64 n) {
	FOR_N(k, n) x[k] += bias[k / inner % mid];
}

// expand computes dst[o, j, i] = alpha·src[o, i] + beta·dst[o, j, i].
KERNEL void expand(float *dst, const float *src, i64 mid, i64 inner, float alpha, float beta, i64 n) {
	FOR_N(k, n) {
		i64 o = k / (mid * inner), i = k % inner;
		float v = alpha * src[o * inner + i];
		dst[k] = beta == 0.0f ? v : v + beta * dst[k];
	}
}

// sgd_step is one torch.optim.SGD step (kernels.Device.SGDStep): the
// operations of the Axpby and Scale calls it replaces, each product and sum
// rounded as they round it. buf is null without momentum; hasDecay and
// hasWD say whether decay and wd apply.
KERNEL void sgd_step(float *p, const float *g, float *buf, float lr, float mom, float wd, float decay,
                     int hasDecay, int hasWD, int nesterov, i64 n) {
	FOR_N(i, n) {
		float pi = p[i], gi = g[i];
		if (hasDecay) pi = __fmul_rn(pi, decay);
		if (hasWD) gi = __fadd_rn(__fmul_rn(wd, pi), gi);
		float s = gi;
		if (buf) {
			float b = __fadd_rn(gi, __fmul_rn(mom, buf[i]));
			buf[i] = b;
			s = nesterov ? __fadd_rn(__fmul_rn(mom, b), gi) : b;
		}
		p[i] = __fadd_rn(__fmul_rn(-lr, s), pi);
	}
}

// adamw is one torch.optim.AdamW step, in float32 in torch's order, the
// scalars computed on the host in float64 as kernels/cpu does. The
// explicit roundings keep nvcc from fusing multiply-adds, so that the GPU
// and the CPU devices move the parameters identically.
KERNEL void adamw(float *p, const float *g, float *m, float *v, float decay, float beta1, float c1, float beta2,
                  float c2, float stepSize, float bc2Sqrt, float eps, i64 n) {
	FOR_N(i, n) {
		float gi = g[i];
		float pi = __fmul_rn(p[i], decay);
		float mi = __fadd_rn(__fmul_rn(m[i], beta1), __fmul_rn(c1, gi));
		float vi = __fadd_rn(__fmul_rn(v[i], beta2), __fmul_rn(__fmul_rn(c2, gi), gi));
		float denom = __fadd_rn(__fdiv_rn(sqrtf(vi), bc2Sqrt), eps);
		p[i] = __fsub_rn(pi, __fmul_rn(stepSize, __fdiv_rn(mi, denom)));
		m[i] = mi;
		v[i] = vi;
	}
}
