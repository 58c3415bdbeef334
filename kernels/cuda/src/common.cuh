// Shared helpers of macdist's CUDA kernels. Every kernel is extern "C", so
// that its PTX .entry name is the name the Go side looks up, and takes its
// sizes as int (geometry) or long long (element counts and offsets).
//
// Reductions are deterministic: each thread sums a fixed set of elements in
// a fixed order, and the block combines the threads' sums with a fixed
// shuffle tree. A result depends on the shape and the launch configuration,
// which the Go side derives from the shape alone, never on scheduling.
#pragma once

#define KERNEL extern "C" __global__

typedef long long i64;

#define NEG_INF __int_as_float(0xff800000)

// Grid-stride loop over [0, n).
#define FOR_N(i, n) \
	for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)blockDim.x * gridDim.x)

__device__ __forceinline__ double warp_sum(double v) {
	for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
	return v;
}

// block_sum returns the sum of v over the block to every thread. blockDim.x
// must be a multiple of 32 (and blockDim.y, blockDim.z 1). It ends with a
// barrier, so that it may be called again at once.
__device__ double block_sum(double v) {
	__shared__ double part[32];
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
	v = warp_sum(v);
	if (lane == 0) part[w] = v;
	__syncthreads();
	if (w == 0) {
		v = lane < nw ? part[lane] : 0.0;
		v = warp_sum(v);
		if (lane == 0) part[0] = v;
	}
	__syncthreads();
	double r = part[0];
	__syncthreads();
	return r;
}

// better reports whether (v, i) beats (bv, bi) as a row's arg-max: a NaN
// beats a number (so that it reaches the loss instead of hiding), a larger
// value beats a smaller one, and of equal values the first index wins.
__device__ __forceinline__ bool better(float v, int i, float bv, int bi) {
	bool vn = v != v, bn = bv != bv;
	if (vn != bn) return vn;
	if (!vn && v != bv) return v > bv;
	return i < bi;
}

// block_argmax returns the first maximum of the values the threads hold
// (v at index i; a thread with none passes -inf and INT_MAX) to every
// thread. Same rules for blockDim as block_sum.
__device__ void block_argmax(float &v, int &i) {
	__shared__ float pv[32];
	__shared__ int pi[32];
	for (int o = 16; o > 0; o >>= 1) {
		float ov = __shfl_down_sync(0xffffffffu, v, o);
		int oi = __shfl_down_sync(0xffffffffu, i, o);
		if (better(ov, oi, v, i)) { v = ov; i = oi; }
	}
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
	if (lane == 0) { pv[w] = v; pi[w] = i; }
	__syncthreads();
	if (w == 0) {
		v = lane < nw ? pv[lane] : NEG_INF;
		i = lane < nw ? pi[lane] : 0x7fffffff;
		for (int o = 16; o > 0; o >>= 1) {
			float ov = __shfl_down_sync(0xffffffffu, v, o);
			int oi = __shfl_down_sync(0xffffffffu, i, o);
			if (better(ov, oi, v, i)) { v = ov; i = oi; }
		}
		if (lane == 0) { pv[0] = v; pi[0] = i; }
	}
	__syncthreads();
	v = pv[0];
	i = pi[0];
	__syncthreads();
}

// row_argmax scans row (cols elements) for its first maximum.
__device__ void row_argmax(const float *row, int cols, float &m, int &at) {
	float bv = NEG_INF;
	int bi = 0x7fffffff;
	for (int j = threadIdx.x; j < cols; j += blockDim.x) {
		float v = row[j];
		if (better(v, j, bv, bi)) { bv = v; bi = j; }
	}
	block_argmax(bv, bi);
	m = bv;
	at = bi;
}

// combine returns alpha·s + beta·d, not reading d when beta is 0 (so that
// a NaN there does not propagate), as kernels/cpu does.
__device__ __forceinline__ float combine(float alpha, double s, float beta, const float *d) {
	float r = (float)((double)alpha * s);
	if (beta != 0.0f) r += beta * *d;
	return r;
}
