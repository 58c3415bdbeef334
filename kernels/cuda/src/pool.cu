// 2-D pooling over planes of H × W. The forward kernels run one thread per
// output; the backward kernels one thread per input element, gathering the
// windows that contain it in row-major order (the order in which
// kernels/cpu scatters into it), so that no atomics are needed and the sums
// round as on the CPU.
#include "common.cuh"

struct pool_geom {
	int H, W, KH, KW, SH, SW, PH, PW, OH, OW;
};

// max_at returns the plane index of the first maximum of window (i, j), a
// NaN winning, or -1 for a window wholly in the padding.
__device__ __forceinline__ int max_at(const float *x, const pool_geom &g, int i, int j, float &best) {
	int h0 = i * g.SH - g.PH, w0 = j * g.SW - g.PW;
	int hs = max(h0, 0), he = min(h0 + g.KH, g.H), ws = max(w0, 0), we = min(w0 + g.KW, g.W);
	best = NEG_INF;
	int at = -1;
	for (int h = hs; h < he; h++) {
		for (int w = ws; w < we; w++) {
			float v = x[h * g.W + w];
			if (v > best || (v != v && best == best)) {
				best = v;
				at = h * g.W + w;
			}
		}
	}
	return at;
}

// avg_div is window (i, j)'s divisor: its size inside the image, or
// clipped at the padded edge when the padding counts.
__device__ __forceinline__ int avg_div(const pool_geom &g, int i, int j, int countPad, int &hs, int &he, int &ws, int &we) {
	int h0 = i * g.SH - g.PH, w0 = j * g.SW - g.PW;
	hs = max(h0, 0);
	he = min(h0 + g.KH, g.H);
	ws = max(w0, 0);
	we = min(w0 + g.KW, g.W);
	if (countPad) return (min(h0 + g.KH, g.H + g.PH) - h0) * (min(w0 + g.KW, g.W + g.PW) - w0);
	return (he - hs) * (we - ws);
}

// The windows that contain input row h are i in [lo, hi]; likewise columns.
__device__ __forceinline__ void covering(int h, int K, int S, int P, int O, int &lo, int &hi) {
	// i·S − P ≤ h < i·S − P + K
	int t = h + P - K + 1;
	lo = t <= 0 ? 0 : (t + S - 1) / S;
	hi = min((h + P) / S, O - 1);
}

KERNEL void max_pool(float *y, const float *x, pool_geom g, i64 n) {
	i64 oplane = (i64)g.OH * g.OW, plane = (i64)g.H * g.W;
	FOR_N(k, n) {
		i64 p = k / oplane;
		int q = (int)(k % oplane);
		float best;
		max_at(x + p * plane, g, q / g.OW, q % g.OW, best);
		y[k] = best;
	}
}

KERNEL void max_pool_backward(float *dx, const float *dy, const float *x, pool_geom g, i64 n) {
	i64 oplane = (i64)g.OH * g.OW, plane = (i64)g.H * g.W;
	FOR_N(k, n) {
		i64 p = k / plane;
		int e = (int)(k % plane), h = e / g.W, w = e % g.W;
		const float *xp = x + p * plane;
		const float *dyp = dy + p * oplane;
		int i0, i1, j0, j1;
		covering(h, g.KH, g.SH, g.PH, g.OH, i0, i1);
		covering(w, g.KW, g.SW, g.PW, g.OW, j0, j1);
		float acc = dx[k];
		for (int i = i0; i <= i1; i++) {
			for (int j = j0; j <= j1; j++) {
				float best;
				if (max_at(xp, g, i, j, best) == e) acc += dyp[i * g.OW + j];
			}
		}
		dx[k] = acc;
	}
}

KERNEL void avg_pool(float *y, const float *x, pool_geom g, int countPad, i64 n) {
	i64 oplane = (i64)g.OH * g.OW, plane = (i64)g.H * g.W;
	FOR_N(k, n) {
		i64 p = k / oplane;
		int q = (int)(k % oplane), i = q / g.OW, j = q % g.OW;
		int hs, he, ws, we;
		int div = avg_div(g, i, j, countPad, hs, he, ws, we);
		if (div <= 0) {
			y[k] = 0.0f;
			continue;
		}
		const float *xp = x + p * plane;
		float s = 0.0f;
		for (int h = hs; h < he; h++)
			for (int w = ws; w < we; w++) s += xp[h * g.W + w];
		y[k] = s * (1.0f / (float)div);
	}
}

KERNEL void avg_pool_backward(float *dx, const float *dy, pool_geom g, int countPad, i64 n) {
	i64 oplane = (i64)g.OH * g.OW, plane = (i64)g.H * g.W;
	FOR_N(k, n) {
		i64 p = k / plane;
		int e = (int)(k % plane), h = e / g.W, w = e % g.W;
		const float *dyp = dy + p * oplane;
		int i0, i1, j0, j1;
		covering(h, g.KH, g.SH, g.PH, g.OH, i0, i1);
		covering(w, g.KW, g.SW, g.PW, g.OW, j0, j1);
		float acc = dx[k];
		for (int i = i0; i <= i1; i++) {
			for (int j = j0; j <= j1; j++) {
				int hs, he, ws, we;
				int div = avg_div(g, i, j, countPad, hs, he, ws, we);
				if (div <= 0) continue;
				acc += __fmul_rn(dyp[i * g.OW + j], 1.0f / (float)div); // no FMA: round as the CPU does
			}
		}
		dx[k] = acc;
	}
}
