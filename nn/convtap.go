package nn

import "github.com/macdist/macdist/kernels"

// patchMean computes a convolution's ā, the mean over images and output
// positions of every row (c, kh, kw) of the unfolded input, without
// unfolding it. Averaging is linear, so ā is a function of the batch's mean
// image M alone:
//
//	ā[c,kh,kw] = 1/(OH·OW) · Σ_{oh,ow} M[c, oh·s+kh·d−p, ow·s+kw·d−p]
//
// (zero outside the image), and the set of (oh, ow) is a product, so the
// sum separates: ā_c = Sh · M_c · Swᵀ / (OH·OW), where Sh[kh,h] is 1 when
// input row h is kernel row kh's row for some output row (likewise Sw).
// That is one reduction over the batch (N·C·H·W reads, as against the
// K²-fold unfolded columns) and two small GEMMs, on any device.
type patchMean struct {
	geom   kernels.ConvGeom
	sh, sw kernels.Buffer // Sh [KH, H] and Swᵀ [W, KW], for geom
	mean   kernels.Buffer // the mean image in the device's layout, for geom
}

// selection returns the k×n 0/1 matrix S[i][j] = 1 when j is kernel tap
// i's input index at some output index, or its transpose.
func selection(k, n, out, stride, pad, dil int, transpose bool) []float32 {
	s := make([]float32, k*n)
	for i := range k {
		for o := range out {
			j := o*stride + i*dil - pad
			if j < 0 || j >= n {
				continue
			}
			if transpose {
				s[j*k+i] = 1
			} else {
				s[i*n+j] = 1
			}
		}
	}
	return s
}

// compute writes ā (C·KH·KW values) into dst from the images of x, shaped
// as g describes. The selections are made once per geometry; the mean
// image and the half-reduced rows live in the device's Workspace. The mean
// of images in a device layout is an image in that layout: it is averaged
// there and reordered alone, not the batch.
func (p *patchMean) compute(d kernels.Device, dst kernels.Buffer, x *Tensor, g kernels.ConvGeom) {
	n := x.Shape[0]
	if p.sh == nil || p.geom != g {
		if p.sh != nil {
			d.Free(p.sh)
			d.Free(p.sw)
		}
		if p.mean != nil {
			d.Free(p.mean)
			p.mean = nil
		}
		p.geom = g
		p.sh = d.Alloc(g.KH * g.H)
		p.sw = d.Alloc(g.W * g.KW)
		d.Upload(p.sh, selection(g.KH, g.H, g.OutH(), g.StrideH, g.PadH, g.DilH, false))
		d.Upload(p.sw, selection(g.KW, g.W, g.OutW(), g.StrideW, g.PadW, g.DilW, true))
	}
	img := g.C * g.H * g.W
	ws := Workspace(d).Get(img + g.C*g.H*g.KW)
	// M = mean of the batch's images, then R = M·Swᵀ ([C·H, KW]) behind it.
	if x.Layout == kernels.NCHW {
		d.ReduceSumMid(ws, x.Data, n, img, 1, 1/float32(n), 0)
	} else {
		if p.mean == nil {
			p.mean = d.Alloc(img)
		}
		d.ReduceSumMid(p.mean, x.Data, n, img, 1, 1/float32(n), 0)
		d.(kernels.Layouter).Relayout(ws, kernels.NCHW, p.mean, x.Layout, 1, g.C, g.H*g.W)
	}
	d.GemmStrided(false, false, g.C*g.H, g.KW, g.W, 1,
		ws, 0, g.W, 0,
		p.sw, 0, g.KW, 0,
		0, ws, img, g.KW, 0, 1)
	// ā_c = Sh·R_c / (OH·OW), one channel per batch entry.
	d.GemmStrided(false, false, g.KH, g.KW, g.H, 1/float32(g.OutH()*g.OutW()),
		p.sh, 0, g.H, 0,
		ws, img, g.KW, g.H*g.KW,
		0, dst, 0, g.KW, g.KH*g.KW, g.C)
}
