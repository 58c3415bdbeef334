// Batch norm over x viewed as n × c × hw. The per-channel sums are split
// like reduce_mid: block (ch, s) of bn_reduce sums the elements
// k = s·blockDim + tid, stepping splits·blockDim, of the n·hw that channel
// ch holds, in float64, into part[(ch·splits + s)·2 + {0, 1}]; a *_final
// kernel adds the splits in order. The mean is found first and the
// variance from the deviations in a second pass, as kernels/cpu does.
#include "common.cuh"

#define BN_SUM 0      // Σ x
#define BN_SQDEV 1    // Σ (x − mean64[ch])²
#define BN_BACKWARD 2 // Σ dy and Σ dy·x̂ with the saved mean and 1/σ

KERNEL void bn_reduce(double *part, int mode, const float *x, const float *dy, const double *mean64,
                      const float *mean, const float *rstd, int n, int c, i64 hw) {
	int ch = blockIdx.x;
	i64 splits = gridDim.y, total = (i64)n * hw;
	double a = 0, b = 0;
	double mu64 = mode == BN_SQDEV ? mean64[ch] : 0.0;
	float mu = 0.0f, rs = 0.0f;
	if (mode == BN_BACKWARD) {
		mu = mean[ch];
		rs = rstd[ch];
	}
	for (i64 k = (i64)blockIdx.y * blockDim.x + threadIdx.x; k < total; k += splits * blockDim.x) {
		i64 i = k / hw, p = k % hw;
		i64 at = (i * c + ch) * hw + p;
		float v = x[at];
		if (mode == BN_SUM) {
			a += (double)v;
		} else if (mode == BN_SQDEV) {
			double d = (double)v - mu64;
			a += d * d;
		} else {
			float g = dy[at];
			a += (double)g;
			b += (double)g * (double)((v - mu) * rs);
		}
	}
	a = block_sum(a);
	if (mode == BN_BACKWARD) b = block_sum(b);
	if (threadIdx.x == 0) {
		part[((i64)ch * splits + blockIdx.y) * 2] = a;
		part[((i64)ch * splits + blockIdx.y) * 2 + 1] = b;
	}
}

__device__ __forceinline__ void bn_parts(const double *part, int ch, int splits, double &a, double &b) {
	a = 0;
	b = 0;
	for (int s = 0; s < splits; s++) {
		a += part[((i64)ch * splits + s) * 2];
		b += part[((i64)ch * splits + s) * 2 + 1];
	}
}

// bn_mean_final: mean64[ch] = Σx / m.
KERNEL void bn_mean_final(double *mean64, const double *part, int c, int splits, double m) {
	FOR_N(ch, c) {
		double a, b;
		bn_parts(part, (int)ch, splits, a, b);
		mean64[ch] = a / m;
	}
}

// bn_var_final saves the mean and 1/σ (biased variance) and moves the
// running statistics with the unbiased variance, as PyTorch does.
KERNEL void bn_var_final(float *saveMean, float *saveRstd, float *runMean, float *runVar, const double *mean64,
                         const double *part, int c, int splits, double m, float eps, float momentum) {
	FOR_N(ch, c) {
		double a, b;
		bn_parts(part, (int)ch, splits, a, b);
		double mu = mean64[ch], v = a / m, mo = (double)momentum;
		saveMean[ch] = (float)mu;
		saveRstd[ch] = (float)(1.0 / sqrt(v + (double)eps));
		runMean[ch] = (float)((1.0 - mo) * (double)runMean[ch] + mo * mu);
		runVar[ch] = (float)((1.0 - mo) * (double)runVar[ch] + mo * v * m / (m - 1.0));
	}
}

// bn_apply writes y = (x − mean)·rstd·gamma + beta. In eval mode (runVar
// not null) 1/σ comes from the running variance and mean is the running
// mean; gamma and beta may be null.
KERNEL void bn_apply(float *y, const float *x, const float *mean, const float *rstd, const float *runVar, float eps,
                     const float *gamma, const float *beta, int c, i64 hw, i64 n) {
	FOR_N(k, n) {
		int ch = (int)(k / hw % c);
		float rs = runVar ? (float)(1.0 / sqrt((double)runVar[ch] + (double)eps)) : rstd[ch];
		float g = gamma ? gamma[ch] : 1.0f, b = beta ? beta[ch] : 0.0f;
		y[k] = (x[k] - mean[ch]) * (rs * g) + b;
	}
}

// bn_backward_final accumulates dgamma += Σ dy·x̂ and dbeta += Σ dy (either
// may be null) and leaves k1 = Σdy/m, k2 = Σdy·x̂/m in coef[ch], coef[c+ch].
KERNEL void bn_backward_final(float *dgamma, float *dbeta, float *coef, const double *part, int c, int splits, double m) {
	FOR_N(ch, c) {
		double sdy, sdyx;
		bn_parts(part, (int)ch, splits, sdy, sdyx);
		if (dgamma) dgamma[ch] += (float)sdyx;
		if (dbeta) dbeta[ch] += (float)sdy;
		coef[ch] = (float)(sdy / m);
		coef[c + ch] = (float)(sdyx / m);
	}
}

// bn_backward_apply: dx = γ·rstd·(dy − k1 − x̂·k2).
KERNEL void bn_backward_apply(float *dx, const float *dy, const float *x, const float *mean, const float *rstd,
                              const float *gamma, const float *coef, int c, i64 hw, i64 n) {
	FOR_N(k, n) {
		int ch = (int)(k / hw % c);
		float mu = mean[ch], rs = rstd[ch];
		float scale = (gamma ? gamma[ch] : 1.0f) * rs;
		dx[k] = scale * (dy[k] - coef[ch] - (x[k] - mu) * rs * coef[c + ch]);
	}
}
