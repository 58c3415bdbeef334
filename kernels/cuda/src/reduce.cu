// Sums over x viewed as outer × mid × inner, accumulated in float64 like
// kernels/cpu. Large sums are split into a fixed number of partial sums
// (chosen on the host from the shape alone) written to a float64 scratch
// buffer, then added up in order by a *_final kernel, so that the result
// does not depend on scheduling.
#include "common.cuh"

// reduce_rows: inner == 1, dst[o] = alpha·Σ_j x[o, j] + beta·dst[o]; one
// block per row.
KERNEL void reduce_rows(float *dst, const float *x, i64 mid, float alpha, float beta) {
	i64 o = blockIdx.x;
	const float *row = x + o * mid;
	double s = 0;
	for (i64 j = threadIdx.x; j < mid; j += blockDim.x) s += (double)row[j];
	s = block_sum(s);
	if (threadIdx.x == 0) dst[o] = combine(alpha, s, beta, dst + o);
}

// reduce_cols: inner > 1. Block (32 × 8 threads) bx covers columns
// [32·t, 32·t+32) of slice o (bx = o·tiles + t), rows [chunk·chunkLen,
// +chunkLen) of mid for chunk = blockIdx.y. With one chunk it writes dst;
// otherwise part[(o·chunks + chunk)·inner + i], for reduce_cols_final.
KERNEL void reduce_cols(float *dst, double *part, const float *x, i64 mid, i64 inner, i64 tiles, i64 chunkLen,
                        float alpha, float beta) {
	__shared__ double acc[8][33];
	i64 o = blockIdx.x / tiles, i = (blockIdx.x % tiles) * 32 + threadIdx.x;
	i64 j0 = (i64)blockIdx.y * chunkLen, j1 = min(j0 + chunkLen, mid);
	double s = 0;
	if (i < inner) {
		const float *base = x + o * mid * inner + i;
		for (i64 j = j0 + threadIdx.y; j < j1; j += 8) s += (double)base[j * inner];
	}
	acc[threadIdx.y][threadIdx.x] = s;
	__syncthreads();
	if (threadIdx.y == 0 && i < inner) {
		for (int k = 1; k < 8; k++) s += acc[k][threadIdx.x];
		if (gridDim.y == 1) {
			float *d = dst + o * inner + i;
			*d = combine(alpha, s, beta, d);
		} else {
			part[(o * gridDim.y + blockIdx.y) * inner + i] = s;
		}
	}
}

// reduce_cols_final adds the chunks of reduce_cols in order: one thread per
// element of dst (outer·inner of them).
KERNEL void reduce_cols_final(float *dst, const double *part, i64 inner, i64 chunks, i64 n, float alpha, float beta) {
	FOR_N(k, n) {
		i64 o = k / inner, i = k % inner;
		const double *p = part + o * chunks * inner + i;
		double s = 0;
		for (i64 c = 0; c < chunks; c++) s += p[c * inner];
		dst[k] = combine(alpha, s, beta, dst + k);
	}
}

// reduce_mid: dst[j] = alpha·Σ_{o,i} x[o, j, i] + beta·dst[j]. Block
// (j, s) sums the elements k = s·blockDim + tid, stepping splits·blockDim,
// of the outer·inner that channel j holds. With one split it writes dst;
// otherwise part[j·splits + s], for reduce_mid_final.
KERNEL void reduce_mid(float *dst, double *part, const float *x, i64 outer, i64 mid, i64 inner, float alpha, float beta) {
	i64 j = blockIdx.x, splits = gridDim.y, total = outer * inner;
	double s = 0;
	for (i64 k = (i64)blockIdx.y * blockDim.x + threadIdx.x; k < total; k += splits * blockDim.x) {
		i64 o = k / inner, i = k % inner;
		s += (double)x[(o * mid + j) * inner + i];
	}
	s = block_sum(s);
	if (threadIdx.x == 0) {
		if (splits == 1) {
			dst[j] = combine(alpha, s, beta, dst + j);
		} else {
			part[j * splits + blockIdx.y] = s;
		}
	}
}

KERNEL void reduce_mid_final(float *dst, const double *part, i64 splits, i64 mid, float alpha, float beta) {
	FOR_N(j, mid) {
		double s = 0;
		for (i64 k = 0; k < splits; k++) s += part[j * splits + k];
		dst[j] = combine(alpha, s, beta, dst + j);
	}
}

// dot_partial writes block b's share of Σ a⊙b into part[b]; the host adds
// the gridDim.x partial sums in order.
KERNEL void dot_partial(double *part, const float *a, const float *b, i64 n) {
	double s = 0;
	FOR_N(i, n) s += (double)a[i] * (double)b[i];
	s = block_sum(s);
	if (threadIdx.x == 0) part[blockIdx.x] = s;
}
