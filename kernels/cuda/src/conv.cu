// im2col and col2im in PyTorch's unfold layout: image im's block of col is
// (C·KH·KW) × (OH·OW), row c·KH·KW + ki·KW + kj holding channel c at
// kernel offset (ki, kj) for every output position.
#include "common.cuh"

struct conv_geom {
	int C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW;
};

// im2col: one thread per element of col (nimg blocks). Padding is written
// as 0.
KERNEL void im2col(float *col, const float *x, conv_geom g, i64 img0, i64 n) {
	i64 cc = (i64)g.OH * g.OW, cr = (i64)g.C * g.KH * g.KW;
	FOR_N(k, n) {
		i64 q = k % cc, row = k / cc % cr, im = k / (cc * cr);
		int c = (int)(row / (g.KH * g.KW)), ki = (int)(row / g.KW % g.KH), kj = (int)(row % g.KW);
		int oh = (int)(q / g.OW), ow = (int)(q % g.OW);
		int ih = oh * g.SH - g.PH + ki * g.DH, iw = ow * g.SW - g.PW + kj * g.DW;
		float v = 0.0f;
		if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) v = x[(((img0 + im) * g.C + c) * g.H + ih) * g.W + iw];
		col[k] = v;
	}
}

// col2im adds col into images [img0, img0+nimg) of dx: one thread per
// element of dx, gathering the at most KH·KW entries of col that read it,
// in the order (ki, kj) in which kernels/cpu scatters them, so that the
// two devices round alike and no atomics are needed.
KERNEL void col2im(float *dx, const float *col, conv_geom g, i64 img0, i64 n) {
	i64 plane = (i64)g.H * g.W, cc = (i64)g.OH * g.OW, cr = (i64)g.C * g.KH * g.KW;
	FOR_N(k, n) {
		int w = (int)(k % g.W), h = (int)(k / g.W % g.H);
		i64 c = k / plane % g.C, im = k / (plane * g.C);
		i64 at = (img0 * g.C) * plane + k;
		float acc = dx[at];
		const float *blk = col + im * cr * cc;
		for (int ki = 0; ki < g.KH; ki++) {
			int th = h + g.PH - ki * g.DH;
			if (th < 0 || th % g.SH != 0) continue;
			int oh = th / g.SH;
			if (oh >= g.OH) continue;
			for (int kj = 0; kj < g.KW; kj++) {
				int tw = w + g.PW - kj * g.DW;
				if (tw < 0 || tw % g.SW != 0) continue;
				int ow = tw / g.SW;
				if (ow >= g.OW) continue;
				acc += blk[((c * g.KH + ki) * g.KW + kj) * cc + (i64)oh * g.OW + ow];
			}
		}
		dx[at] = acc;
	}
}
