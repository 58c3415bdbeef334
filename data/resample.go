package data

import (
	"image"
	"image/color"
	"math"
)

// Resampling follows PIL's Image.resize with BILINEAR, which torchvision's
// Resize and RandomResizedCrop use on PIL images: a separable triangle filter
// whose support widens with the reduction factor, so that a 500-pixel side
// shrunk to 224 is averaged rather than aliased. Like PIL, it works in fixed
// point, horizontal pass then vertical, rounding to a byte after each: the
// coefficients of one axis are computed once per geometry (in float64, as
// PIL does) and quantised, and each pass is a sum of bytes times integer
// weights. PIL keeps 22 fractional bits in an int32 per channel; here the
// three channels of a pixel share one uint64, 21 bits each (8 for the byte,
// 13 for the weight), so that one multiply-add serves the whole pixel. The
// weights are positive and sum to at most 1<<13, so a lane never exceeds
// 255<<13 + 1<<12 < 1<<21 and nothing carries into its neighbour. Against
// PIL's 22 bits the coarser weights move a value across a rounding boundary
// now and then: by one level, in 0.3% of the bytes of random images
// (TestResampleMatchesPILFixedPoint).

const (
	coeffBits = 13
	laneBits  = 21
	// laneMask keeps the byte at the bottom of each lane.
	laneMask = 0xff | 0xff<<laneBits | 0xff<<(2*laneBits)
	// laneHalf is ½ in every lane: the sums round to nearest.
	laneHalf = 1 << (coeffBits - 1) * (1 | 1<<laneBits | 1<<(2*laneBits))
)

// axisKey is what an axis's coefficients depend on: outputs off..off+count−1
// of a resize of the span source samples from x0 on, of an in-sample axis,
// to full output samples.
type axisKey struct {
	in         int
	x0, span   float64
	full       int
	off, count int
}

// axisCoeffs holds, for each output index along one axis, the first source
// index it reads (relative to lo) and taps quantised weights, zero-padded so
// that every output has the same number: the passes then run fixed-length,
// unrolled sums.
type axisCoeffs struct {
	key    axisKey
	valid  bool
	rel    []uint32 // first source index − lo, per output
	w      []uint64 // taps weights per output
	taps   int
	lo, hi int       // the source indices read with a non-zero weight lie in [lo, hi)
	padHi  int       // and the padded taps end before padHi
	fw     []float64 // scratch: one output's weights before quantising
}

// axisCache keeps the coefficients of the last few geometries of an axis:
// evaluation meets the same few image sizes again and again, and a worker's
// cache makes them free after the first.
type axisCache struct {
	e    [4]axisCoeffs
	next int
}

func (c *axisCache) get(in int, x0, span float64, full, off, count int) *axisCoeffs {
	k := axisKey{in: in, x0: x0, span: span, full: full, off: off, count: count}
	for i := range c.e {
		if c.e[i].valid && c.e[i].key == k {
			return &c.e[i]
		}
	}
	a := &c.e[c.next]
	c.next = (c.next + 1) % len(c.e)
	a.compute(k)
	return a
}

// compute fills the coefficients for k, as PIL's resize with a box: x0 and
// span may be fractional, and taps outside [0, in) are left out, as are
// those outside the region (torchvision crops before it resizes; a
// fractional edge includes its partly covered pixel).
func (a *axisCoeffs) compute(k axisKey) {
	a.key, a.valid = k, true
	scale := k.span / float64(k.full)
	support := math.Max(scale, 1) // bilinear support is 1 at unit scale, widened when reducing
	ss := 1 / support
	first := max(int(math.Floor(k.x0)), 0)
	last := min(int(math.Ceil(k.x0+k.span)), k.in)
	bounds := func(o int) (center float64, lo, hi int) {
		center = k.x0 + (float64(o+k.off)+0.5)*scale
		lo = max(int(center-support+0.5), first)
		hi = max(min(int(center+support+0.5), last), lo)
		return center, lo, hi
	}
	a.taps, a.lo, a.hi = 1, math.MaxInt, 0
	for o := range k.count {
		_, lo, hi := bounds(o)
		a.taps = max(a.taps, hi-lo)
		a.lo = min(a.lo, lo)
		a.hi = max(a.hi, hi)
	}
	a.hi = max(a.hi, a.lo)
	a.rel = grow(a.rel, k.count)
	a.w = grow(a.w, k.count*a.taps)
	clear(a.w)
	a.fw = grow(a.fw, a.taps)
	a.padHi = a.hi
	const one = 1 << coeffBits
	for o := range k.count {
		center, lo, hi := bounds(o)
		a.rel[o] = uint32(lo - a.lo)
		a.padHi = max(a.padHi, lo+a.taps)
		fw := a.fw[:hi-lo]
		var sum float64
		for j := range fw {
			t := math.Abs((float64(lo+j) - center + 0.5) * ss)
			fw[j] = max(1-t, 0)
			sum += fw[j]
		}
		if sum == 0 {
			continue
		}
		ws := a.w[o*a.taps : o*a.taps+len(fw)]
		var total uint64
		big := 0
		for j, v := range fw {
			ws[j] = uint64(math.Floor(0.5 + v/sum*one))
			total += ws[j]
			if ws[j] > ws[big] {
				big = j
			}
		}
		// Rounding up may leave the weights summing past 1, which would
		// let a lane overflow: the largest weight gives back the excess.
		if total > one {
			ws[big] -= total - one
		}
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
	rgb    []uint8  // source region, interleaved RGB
	packed []uint64 // two source rows, a pixel per word, interleaved
	tmp    []uint64 // horizontal pass: rows × outW, a pixel per word
	row    []uint64 // one output row of the vertical pass
	xs, ys axisCache
	file   []byte    // encoded bytes read from disk
	chw    []float32 // crop-flip: the image before its random shift
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
	xs := s.xs.get(w, bx, bw, fullW, offX, outW)
	ys := s.ys.get(h, by, bh, fullH, offY, outH)
	// Horizontal pass, over only the source rows some output row reads and
	// the source columns some output column reads. The rows past ys.hi are
	// read with weight 0 by the zero-padded taps; they only need to exist.
	rowLen := outW
	tmp := grow(s.tmp, (ys.padHi-ys.lo)*rowLen)
	s.tmp = tmp
	packed := grow(s.packed, 2*(xs.padHi-xs.lo))
	s.packed = packed
	clear(packed[2*(xs.hi-xs.lo):])
	out := grow(s.row, outW)
	s.row = out
	for y := ys.lo; y < ys.hi; y += 2 {
		// Rows go in pairs; an odd last one is paired with itself and its
		// twin's output dropped into out.
		y1 := min(y+1, ys.hi-1)
		r0 := src[(y*w+xs.lo)*3 : (y*w+xs.hi)*3]
		r1 := src[(y1*w+xs.lo)*3 : (y1*w+xs.hi)*3]
		packRGB2(packed[:2*(xs.hi-xs.lo)], r0, r1)
		d0 := tmp[(y-ys.lo)*rowLen : (y-ys.lo+1)*rowLen]
		d1 := out
		if y1 > y {
			d1 = tmp[(y1-ys.lo)*rowLen : (y1-ys.lo+1)*rowLen]
		}
		horizontal(d0, d1, packed, xs)
	}
	// Vertical pass, one output row at a time into a packed row that the
	// last step flips and normalises into the three planes.
	plane := outW * outH
	l0, l1, l2 := &luts[0], &luts[1], &luts[2]
	for o := range outH {
		first := int(ys.rel[o]) * rowLen
		vertical(out, tmp[first:], rowLen, ys.w[o*ys.taps:(o+1)*ys.taps])
		emitRow(dst[o*outW:(o+1)*outW], dst[plane+o*outW:plane+(o+1)*outW], dst[2*plane+o*outW:2*plane+(o+1)*outW], out, flip, l0, l1, l2)
	}
}

// packRGB2 packs two rows of interleaved RGB bytes, a pixel per word, one
// channel per lane, interleaving the rows: dst[2x] is pixel x of r0,
// dst[2x+1] pixel x of r1. The horizontal pass then reads both rows' taps
// of an output with one slice of dst and shares the weights between them.
func packRGB2(dst []uint64, r0, r1 []uint8) {
	for len(dst) >= 2 && len(r0) >= 3 && len(r1) >= 3 {
		dst[0] = uint64(r0[0]) | uint64(r0[1])<<laneBits | uint64(r0[2])<<(2*laneBits)
		dst[1] = uint64(r1[0]) | uint64(r1[1])<<laneBits | uint64(r1[2])<<(2*laneBits)
		dst, r0, r1 = dst[2:], r0[3:], r1[3:]
	}
}

// horizontal resamples two rows, packed by packRGB2 from a.lo on and
// zero-padded to a.padHi, into d0 and d1, a byte per lane. The common tap
// counts are unrolled.
func horizontal(d0, d1, src []uint64, a *axisCoeffs) {
	rel := a.rel[:len(d0)]
	d1 = d1[:len(rel)]
	w := a.w
	switch a.taps {
	case 2:
		for o, st := range rel {
			p, k := (*[4]uint64)(src[2*st:]), (*[2]uint64)(w[2*o:])
			d0[o] = (laneHalf + p[0]*k[0] + p[2]*k[1]) >> coeffBits & laneMask
			d1[o] = (laneHalf + p[1]*k[0] + p[3]*k[1]) >> coeffBits & laneMask
		}
	case 3:
		for o, st := range rel {
			p, k := (*[6]uint64)(src[2*st:]), (*[3]uint64)(w[3*o:])
			d0[o] = (laneHalf + p[0]*k[0] + p[2]*k[1] + p[4]*k[2]) >> coeffBits & laneMask
			d1[o] = (laneHalf + p[1]*k[0] + p[3]*k[1] + p[5]*k[2]) >> coeffBits & laneMask
		}
	case 4:
		for o, st := range rel {
			p, k := (*[8]uint64)(src[2*st:]), (*[4]uint64)(w[4*o:])
			d0[o] = (laneHalf + p[0]*k[0] + p[2]*k[1] + p[4]*k[2] + p[6]*k[3]) >> coeffBits & laneMask
			d1[o] = (laneHalf + p[1]*k[0] + p[3]*k[1] + p[5]*k[2] + p[7]*k[3]) >> coeffBits & laneMask
		}
	case 5:
		for o, st := range rel {
			p, k := (*[10]uint64)(src[2*st:]), (*[5]uint64)(w[5*o:])
			d0[o] = (laneHalf + p[0]*k[0] + p[2]*k[1] + p[4]*k[2] + p[6]*k[3] + p[8]*k[4]) >> coeffBits & laneMask
			d1[o] = (laneHalf + p[1]*k[0] + p[3]*k[1] + p[5]*k[2] + p[7]*k[3] + p[9]*k[4]) >> coeffBits & laneMask
		}
	default:
		n := a.taps
		for o, st := range rel {
			p, k := src[2*st:2*(int(st)+n)], w[o*n:o*n+n]
			a0, a1 := uint64(laneHalf), uint64(laneHalf)
			for j, kj := range k {
				a0 += p[2*j] * kj
				a1 += p[2*j+1] * kj
			}
			d0[o], d1[o] = a0>>coeffBits&laneMask, a1>>coeffBits&laneMask
		}
	}
}

// vertical writes into out the weighted sum of the len(w) rows of tmp that
// start at 0, stride, 2·stride, …, shifted down so that the byte of each
// lane is at its bottom (the bits above are left for emitRow to ignore).
func vertical(out, tmp []uint64, stride int, w []uint64) {
	n := len(out)
	switch len(w) {
	case 1:
		a, w0 := tmp[:n], w[0]
		for x := range out {
			out[x] = (laneHalf + a[x]*w0) >> coeffBits
		}
	case 2:
		a, b := tmp[:n], tmp[stride:][:n]
		w0, w1 := w[0], w[1]
		for x := range out {
			out[x] = (laneHalf + a[x]*w0 + b[x]*w1) >> coeffBits
		}
	case 3:
		a, b, c := tmp[:n], tmp[stride:][:n], tmp[2*stride:][:n]
		w0, w1, w2 := w[0], w[1], w[2]
		for x := range out {
			out[x] = (laneHalf + a[x]*w0 + b[x]*w1 + c[x]*w2) >> coeffBits
		}
	case 4:
		a, b, c, d := tmp[:n], tmp[stride:][:n], tmp[2*stride:][:n], tmp[3*stride:][:n]
		w0, w1, w2, w3 := w[0], w[1], w[2], w[3]
		for x := range out {
			out[x] = (laneHalf + a[x]*w0 + b[x]*w1 + c[x]*w2 + d[x]*w3) >> coeffBits
		}
	default:
		// Four rows at a time into out, then the rest: each pass over out
		// stays in L1.
		a, b, c, d := tmp[:n], tmp[stride:][:n], tmp[2*stride:][:n], tmp[3*stride:][:n]
		w0, w1, w2, w3 := w[0], w[1], w[2], w[3]
		for x := range out {
			out[x] = laneHalf + a[x]*w0 + b[x]*w1 + c[x]*w2 + d[x]*w3
		}
		for k := 4; k < len(w); k++ {
			r, wk := tmp[k*stride:][:n], w[k]
			for x := range out {
				out[x] += r[x] * wk
			}
		}
		for x := range out {
			out[x] >>= coeffBits
		}
	}
}

// emitRow normalises the packed row through the channels' tables into the
// rows of the three planes, mirrored when flip.
func emitRow(r0, r1, r2 []float32, row []uint64, flip bool, l0, l1, l2 *lut) {
	n := len(row)
	r0, r1, r2 = r0[:n], r1[:n], r2[:n]
	if flip {
		for i := range r0 {
			v := row[n-1-i]
			r0[i], r1[i], r2[i] = l0[uint8(v)], l1[uint8(v>>laneBits)], l2[uint8(v>>(2*laneBits))]
		}
		return
	}
	for x, v := range row {
		r0[x], r1[x], r2[x] = l0[uint8(v)], l1[uint8(v>>laneBits)], l2[uint8(v>>(2*laneBits))]
	}
}
