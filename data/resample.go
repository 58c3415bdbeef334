package data

import (
	"image"
	"image/color"
	"math"
)

// Resampling follows PIL's Image.resize with BILINEAR, which torchvision's
// Resize and RandomResizedCrop use on PIL images: a separable triangle filter
// whose support widens with the reduction factor, so that a 500-pixel side
// shrunk to 224 is averaged rather than aliased. PIL computes in 8-bit fixed
// point and rounds after each pass; this computes in float32 and rounds once,
// at the end, to the byte the normalisation table expects. The difference is
// at most a level or two of 255.

// axisCoeffs holds, for each output index along one axis, the first source
// index, the number of taps and the normalised tap weights.
type axisCoeffs struct {
	start, n []int
	w        []float32 // stride taps per output
	stride   int
}

// compute fills the coefficients for outputs off..off+count−1 of a resize of
// the span source samples from x0 on to full output samples (the outputs
// outside the window are a crop that is never computed), as PIL's resize
// with a box: x0 and span may be fractional, taps outside [0, in) are left
// out, as are those outside the region.
func (a *axisCoeffs) compute(in int, x0, span float64, full, off, count int) {
	scale := span / float64(full)
	filterscale := math.Max(scale, 1)
	support := filterscale // bilinear support is 1 at unit scale
	a.stride = int(math.Ceil(support))*2 + 1
	a.start = grow(a.start, count)
	a.n = grow(a.n, count)
	a.w = grow(a.w, count*a.stride)
	ss := 1 / filterscale
	// torchvision crops before it resizes, so taps stop at the region's
	// edge (a fractional edge includes its partly covered pixel).
	first := max(int(math.Floor(x0)), 0)
	last := min(int(math.Ceil(x0+span)), in)
	for o := range count {
		center := x0 + (float64(o+off)+0.5)*scale
		lo := max(int(center-support+0.5), first)
		hi := min(int(center+support+0.5), last)
		ws := a.w[o*a.stride : (o+1)*a.stride]
		var sum float64
		k := 0
		for x := lo; x < hi && k < a.stride; x++ {
			t := math.Abs((float64(x) - center + 0.5) * ss)
			v := 0.0
			if t < 1 {
				v = 1 - t
			}
			ws[k] = float32(v)
			sum += v
			k++
		}
		if sum != 0 {
			for j := range k {
				ws[j] = float32(float64(ws[j]) / sum)
			}
		}
		a.start[o], a.n[o] = lo, k
	}
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// resampler is one worker's scratch for turning a decoded image into a
// normalised CHW tensor; reused across samples, so that after warm-up only
// the JPEG decoder allocates.
type resampler struct {
	rgb    []uint8   // source region, interleaved RGB
	tmp    []float32 // horizontal pass: rows × outW × 3
	xs, ys axisCoeffs
	file   []byte    // encoded bytes read from disk
	chw    []float32 // crop-flip: the image before its random shift
	acc    []float32 // one output row of the second pass
	tj     *turboDecoder
}

// toRGB copies region r of img into s.rgb as interleaved 8-bit RGB, the way
// PIL's convert("RGB") does: grey is replicated, alpha is dropped (not
// composited), palettes are looked up.
func (s *resampler) toRGB(img image.Image, r image.Rectangle) []uint8 {
	w, h := r.Dx(), r.Dy()
	out := grow(s.rgb, w*h*3)
	s.rgb = out
	i := 0
	switch m := img.(type) {
	case *image.YCbCr:
		for y := r.Min.Y; y < r.Max.Y; y++ {
			for x := r.Min.X; x < r.Max.X; x++ {
				yi, ci := m.YOffset(x, y), m.COffset(x, y)
				out[i], out[i+1], out[i+2] = color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
				i += 3
			}
		}
	case *image.Gray:
		for y := r.Min.Y; y < r.Max.Y; y++ {
			row := m.Pix[m.PixOffset(r.Min.X, y):]
			for x := range w {
				g := row[x]
				out[i], out[i+1], out[i+2] = g, g, g
				i += 3
			}
		}
	case *image.NRGBA:
		for y := r.Min.Y; y < r.Max.Y; y++ {
			row := m.Pix[m.PixOffset(r.Min.X, y):]
			for x := range w {
				out[i], out[i+1], out[i+2] = row[4*x], row[4*x+1], row[4*x+2]
				i += 3
			}
		}
	case *image.RGBA:
		for y := r.Min.Y; y < r.Max.Y; y++ {
			row := m.Pix[m.PixOffset(r.Min.X, y):]
			for x := range w {
				out[i], out[i+1], out[i+2] = row[4*x], row[4*x+1], row[4*x+2]
				i += 3
			}
		}
	case *image.Paletted:
		for y := r.Min.Y; y < r.Max.Y; y++ {
			for x := r.Min.X; x < r.Max.X; x++ {
				c := color.NRGBAModel.Convert(m.Palette[m.ColorIndexAt(x, y)]).(color.NRGBA)
				out[i], out[i+1], out[i+2] = c.R, c.G, c.B
				i += 3
			}
		}
	default: // CMYK JPEGs, 16-bit PNGs, …: slow but rare.
		for y := r.Min.Y; y < r.Max.Y; y++ {
			for x := r.Min.X; x < r.Max.X; x++ {
				c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
				out[i], out[i+1], out[i+2] = c.R, c.G, c.B
				i += 3
			}
		}
	}
	return out
}

// resample resizes the w×h RGB region src to fullW×fullH (bilinear, PIL
// style), keeps the outW×outH window at (offX, offY) of that, mirrors it
// when flip, and writes it normalised through luts into dst (3 planes).
func (s *resampler) resample(dst []float32, src []uint8, w, h, fullW, fullH, offX, offY, outW, outH int, flip bool, luts []lut) {
	s.resampleBox(dst, src, w, h, 0, 0, float64(w), float64(h), fullW, fullH, offX, offY, outW, outH, flip, luts)
}

// resampleBox is resample of the region (x0, y0, bw, bh), in pixels that
// may be fractional, of the w×h RGB image src.
func (s *resampler) resampleBox(dst []float32, src []uint8, w, h int, bx, by, bw, bh float64, fullW, fullH, offX, offY, outW, outH int, flip bool, luts []lut) {
	s.xs.compute(w, bx, bw, fullW, offX, outW)
	s.ys.compute(h, by, bh, fullH, offY, outH)
	// Only the source rows some output row reads go through the first pass.
	y0 := s.ys.start[0]
	y1 := s.ys.start[outH-1] + s.ys.n[outH-1]
	for o := range outH {
		y0 = min(y0, s.ys.start[o])
		y1 = max(y1, s.ys.start[o]+s.ys.n[o])
	}
	tmp := grow(s.tmp, (y1-y0)*outW*3)
	s.tmp = tmp
	xs := &s.xs
	for y := y0; y < y1; y++ {
		row := src[y*w*3 : (y+1)*w*3]
		t := tmp[(y-y0)*outW*3 : (y-y0+1)*outW*3]
		for o := range outW {
			n := xs.n[o]
			ws := xs.w[o*xs.stride : o*xs.stride+n]
			px := row[xs.start[o]*3 : xs.start[o]*3+3*n]
			var r, g, b float32
			for k, wk := range ws {
				q := px[3*k : 3*k+3]
				r += wk * float32(q[0])
				g += wk * float32(q[1])
				b += wk * float32(q[2])
			}
			// The weights are positive and sum to 1: the sums lie in
			// [0, 255] and need no clamping before PIL's rounding.
			to := t[3*o : 3*o+3]
			to[0], to[1], to[2] = float32(int32(r+0.5)), float32(int32(g+0.5)), float32(int32(b+0.5))
		}
	}
	// Second pass: each output row is a weighted sum of whole rows of tmp,
	// accumulated row by row so that the inner loop runs over contiguous
	// memory.
	ys := &s.ys
	plane := outW * outH
	acc := grow(s.acc, outW*3)
	s.acc = acc
	for o := range outH {
		ws := ys.w[o*ys.stride : o*ys.stride+ys.n[o]]
		base := (ys.start[o] - y0) * outW * 3
		rowAt := func(k int) []float32 { return tmp[base+k*outW*3 : base+(k+1)*outW*3][:len(acc)] }
		k := 0
		if len(ws)%2 == 1 {
			w0, a := ws[0], rowAt(0)
			for j, v := range a {
				acc[j] = w0 * v
			}
			k = 1
		} else {
			clear(acc)
		}
		for ; k+1 < len(ws); k += 2 { // two rows at a time: half the passes over acc
			wa, wb := ws[k], ws[k+1]
			a, b := rowAt(k), rowAt(k+1)
			for j := range acc {
				acc[j] += wa*a[j] + wb*b[j]
			}
		}
		r0 := dst[o*outW : (o+1)*outW]
		r1 := dst[plane+o*outW : plane+(o+1)*outW]
		r2 := dst[2*plane+o*outW : 2*plane+(o+1)*outW]
		l0, l1, l2 := &luts[0], &luts[1], &luts[2]
		for x := range outW {
			ox := x
			if flip {
				ox = outW - 1 - x
			}
			a := acc[3*x : 3*x+3]
			r0[ox] = l0[uint8(int32(a[0]+0.5))] // in [0, 255] as in the first pass
			r1[ox] = l1[uint8(int32(a[1]+0.5))]
			r2[ox] = l2[uint8(int32(a[2]+0.5))]
		}
	}
}
