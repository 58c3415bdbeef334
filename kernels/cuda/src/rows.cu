// Kernels on the rows of a rows × cols matrix: one block per row
// (blockIdx.x), its threads striding over the columns. Sums are float64.
// Each thread reads an element before writing the same element, and every
// read of the row that a later write could clobber happens before a
// barrier, so y may be x (in place).
#include "common.cuh"

KERNEL void softmax(float *y, const float *x, int cols) {
	i64 off = (i64)blockIdx.x * cols;
	const float *xr = x + off;
	float m;
	int at;
	row_argmax(xr, cols, m, at);
	double s = 0;
	for (int j = threadIdx.x; j < cols; j += blockDim.x) s += (double)expf(xr[j] - m);
	s = block_sum(s);
	float inv = (float)(1.0 / s);
	for (int j = threadIdx.x; j < cols; j += blockDim.x) y[off + j] = expf(xr[j] - m) * inv;
}

KERNEL void softmax_backward(float *dx, const float *dy, const float *y, int cols) {
	i64 off = (i64)blockIdx.x * cols;
	double s = 0;
	for (int j = threadIdx.x; j < cols; j += blockDim.x) s += (double)dy[off + j] * (double)y[off + j];
	float sf = (float)block_sum(s);
	for (int j = threadIdx.x; j < cols; j += blockDim.x) dx[off + j] = y[off + j] * (dy[off + j] - sf);
}

KERNEL void log_softmax(float *y, const float *x, int cols) {
	i64 off = (i64)blockIdx.x * cols;
	const float *xr = x + off;
	float m;
	int at;
	row_argmax(xr, cols, m, at);
	double s = 0;
	for (int j = threadIdx.x; j < cols; j += blockDim.x) s += (double)expf(xr[j] - m);
	double shift = (double)m + log(block_sum(s));
	for (int j = threadIdx.x; j < cols; j += blockDim.x) y[off + j] = (float)((double)xr[j] - shift);
}

// cross_entropy computes one row's label-smoothed loss,
// (1−s)·(−log p_label) + s·mean_j(−log p_j), into out[row], 1 into
// out[rows + row] when the first arg-max is the label (else 0), and the
// gradient divided by rows into dx. The host adds out in row order.
KERNEL void cross_entropy(float *dx, double *out, const float *x, const int *labels, int rows, int cols, float smoothing) {
	int r = blockIdx.x;
	i64 off = (i64)r * cols;
	const float *xr = x + off;
	float m;
	int arg;
	row_argmax(xr, cols, m, arg);
	double se = 0, sx = 0;
	for (int j = threadIdx.x; j < cols; j += blockDim.x) {
		double v = (double)xr[j];
		se += exp(v - (double)m);
		sx += v;
	}
	se = block_sum(se);
	sx = block_sum(sx);
	int label = labels[r];
	double shift = (double)m + log(se);
	double n = (double)cols, sm = (double)smoothing;
	double xl = (double)xr[label];
	__syncthreads(); // every thread has read x[label] before any dx is written
	if (threadIdx.x == 0) {
		double nll = shift - xl, smooth = shift - sx / n;
		out[r] = (1.0 - sm) * nll + sm * smooth;
		out[rows + r] = arg == label ? 1.0 : 0.0;
	}
	double offs = sm / n, inv = 1.0 / (double)rows;
	for (int j = threadIdx.x; j < cols; j += blockDim.x) {
		double g = exp((double)xr[j] - shift) - offs;
		if (j == label) g -= 1.0 - sm;
		dx[off + j] = (float)(g * inv);
	}
}

// layer_norm normalises a row with its mean and biased variance (two
// passes, so that a large mean costs no precision) and saves the mean and
// 1/σ. gamma and beta may be null.
KERNEL void layer_norm(float *y, float *mean, float *rstd, const float *x, const float *gamma, const float *beta,
                       int cols, float eps) {
	i64 off = (i64)blockIdx.x * cols;
	const float *xr = x + off;
	double s = 0;
	for (int j = threadIdx.x; j < cols; j += blockDim.x) s += (double)xr[j];
	double mu = block_sum(s) / cols;
	double ss = 0;
	for (int j = threadIdx.x; j < cols; j += blockDim.x) {
		double d = (double)xr[j] - mu;
		ss += d * d;
	}
	double rs = 1.0 / sqrt(block_sum(ss) / cols + (double)eps);
	float muf = (float)mu, rsf = (float)rs;
	if (threadIdx.x == 0) {
		mean[blockIdx.x] = muf;
		rstd[blockIdx.x] = rsf;
	}
	for (int j = threadIdx.x; j < cols; j += blockDim.x) {
		float h = (xr[j] - muf) * rsf;
		if (gamma) h *= gamma[j];
		if (beta) h += beta[j];
		y[off + j] = h;
	}
}

// layer_norm_backward computes dx = rstd·(g − mean(g) − x̂·mean(g⊙x̂)) for
// g = dy⊙gamma (gamma may be null).
KERNEL void layer_norm_backward(float *dx, const float *dy, const float *x, const float *mean, const float *rstd,
                                const float *gamma, int cols) {
	i64 off = (i64)blockIdx.x * cols;
	float mu = mean[blockIdx.x], rs = rstd[blockIdx.x];
	double sg = 0, sgx = 0;
	for (int j = threadIdx.x; j < cols; j += blockDim.x) {
		float g = dy[off + j];
		if (gamma) g = __fmul_rn(g, gamma[j]);
		float xh = (x[off + j] - mu) * rs;
		sg += (double)g;
		sgx += (double)g * (double)xh;
	}
	sg = block_sum(sg);
	sgx = block_sum(sgx);
	float mg = (float)(sg / cols), mgx = (float)(sgx / cols);
	for (int j = threadIdx.x; j < cols; j += blockDim.x) {
		// __fmul_rn keeps dy·gamma rounded as in the first loop: contracted
		// into an FMA with −mg, a one-column row would leave the product's
		// rounding error where the exact answer is 0.
		float g = dy[off + j];
		if (gamma) g = __fmul_rn(g, gamma[j]);
		float xh = (x[off + j] - mu) * rs;
		dx[off + j] = rs * (g - mg - xh * mgx);
	}
}

// ln_param sums LayerNorm's parameter gradients over a chunk of rows:
// block (32 × 8 threads) covers columns [32·blockIdx.x, +32) and rows
// [blockIdx.y·chunkLen, +chunkLen), and writes Σ dy·x̂ to
// part[blockIdx.y·cols + j] and Σ dy to part[(chunks + blockIdx.y)·cols + j].
KERNEL void ln_param(double *part, const float *dy, const float *x, const float *mean, const float *rstd,
                     int rows, int cols, int chunkLen) {
	__shared__ double ag[8][33], ab[8][33];
	int j = blockIdx.x * 32 + threadIdx.x;
	int r0 = blockIdx.y * chunkLen, r1 = min(r0 + chunkLen, rows);
	double g = 0, b = 0;
	if (j < cols) {
		for (int r = r0 + threadIdx.y; r < r1; r += 8) {
			i64 k = (i64)r * cols + j;
			float d = dy[k];
			g += (double)d * (double)((x[k] - mean[r]) * rstd[r]);
			b += (double)d;
		}
	}
	ag[threadIdx.y][threadIdx.x] = g;
	ab[threadIdx.y][threadIdx.x] = b;
	__syncthreads();
	if (threadIdx.y == 0 && j < cols) {
		for (int k = 1; k < 8; k++) {
			g += ag[k][threadIdx.x];
			b += ab[k][threadIdx.x];
		}
		part[(i64)blockIdx.y * cols + j] = g;
		part[(i64)(gridDim.y + blockIdx.y) * cols + j] = b;
	}
}

// ln_param_final adds the chunks of ln_param in order into dgamma and
// dbeta (either may be null).
KERNEL void ln_param_final(float *dgamma, float *dbeta, const double *part, int cols, int chunks) {
	FOR_N(j, cols) {
		double g = 0, b = 0;
		for (int c = 0; c < chunks; c++) {
			g += part[(i64)c * cols + j];
			b += part[(i64)(chunks + c) * cols + j];
		}
		if (dgamma) dgamma[j] += (float)g;
		if (dbeta) dbeta[j] += (float)b;
	}
}
