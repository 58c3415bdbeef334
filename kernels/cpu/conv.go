package cpu

import (
	"fmt"

	"github.com/macdist/macdist/kernels"
)

// convTask unfolds (Im2col) or folds back (Col2im) the planes [lo, hi) of
// nimg images × C channels. Each plane owns its rows of col and its plane
// of the image, so planes run in parallel without sharing writes.
type convTask struct {
	fold     bool // Col2im
	g        kernels.ConvGeom
	img0     int
	img, col []float32
}

func (t *convTask) run(lo, hi int) {
	g := t.g
	oh, ow := g.OutH(), g.OutW()
	plane, kk := g.H*g.W, g.KH*g.KW
	for p := lo; p < hi; p++ {
		im, c := p/g.C, p%g.C
		x := t.img[((t.img0+im)*g.C+c)*plane:][:plane]
		// Rows c·KH·KW … of image im's block.
		base := (im*g.ColRows() + c*kk) * oh * ow
		col := t.col[base : base+kk*oh*ow]
		if haveSIMD {
			simdConvPlane(t.fold, col, x, g)
		} else {
			convPlane(t.fold, col, x, g)
		}
	}
}

// convPlane unfolds plane x into its channel's KH·KW rows of col, or with
// fold adds them back into x.
func convPlane(fold bool, col, x []float32, g kernels.ConvGeom) {
	oh, ow := g.OutH(), g.OutW()
	for ki := 0; ki < g.KH; ki++ {
		for kj := 0; kj < g.KW; kj++ {
			row := col[(ki*g.KW+kj)*oh*ow:][:oh*ow]
			if fold {
				col2imRow(x, row, g, ki, kj, oh, ow)
			} else {
				im2colRow(row, x, g, ki, kj, oh, ow)
			}
		}
	}
}

// validRange returns the outputs [lo, hi) of n whose input coordinate
// o·stride − pad + k·dil falls inside [0, size).
func validRange(n, size, stride, pad, off int) (lo, hi int) {
	// o·stride ≥ pad − off  and  o·stride ≤ size − 1 + pad − off.
	first := pad - off
	if first > 0 {
		lo = (first + stride - 1) / stride
	}
	last := size - 1 + pad - off
	if last < 0 {
		return 0, 0
	}
	hi = min(n, last/stride+1)
	if lo > hi {
		lo = hi
	}
	return lo, hi
}

// im2colRow fills the row of col for kernel offset (ki, kj) from plane x.
func im2colRow(row, x []float32, g kernels.ConvGeom, ki, kj, oh, ow int) {
	offH, offW := ki*g.DilH, kj*g.DilW
	h0, h1 := validRange(oh, g.H, g.StrideH, g.PadH, offH)
	w0, w1 := validRange(ow, g.W, g.StrideW, g.PadW, offW)
	if g.StrideH == 1 && g.StrideW == 1 && ow == g.W {
		im2colShift(row, x, g.W, offH-g.PadH, offW-g.PadW, h0, h1, w0, w1)
		return
	}
	clear(row[:h0*ow])
	clear(row[h1*ow:])
	for o := h0; o < h1; o++ {
		out := row[o*ow : (o+1)*ow]
		in := x[(o*g.StrideH-g.PadH+offH)*g.W:][:g.W]
		clear(out[:w0])
		clear(out[w1:])
		iw := w0*g.StrideW - g.PadW + offW
		if g.StrideW == 1 {
			copy(out[w0:w1], in[iw:])
			continue
		}
		if w0 >= w1 {
			continue
		}
		out = out[w0:w1]
		in = in[iw : iw+(w1-w0-1)*g.StrideW+1]
		for q := range out {
			out[q] = in[q*g.StrideW]
		}
	}
}

// im2colShift is im2colRow for a stride of 1 and an output as wide as the
// input ("same" padding across), the usual 3×3 convolution. Output element
// o·w + q then reads input element o·w + q + dh·w + dw: the valid rows are
// one shifted copy of the plane, after which the |dw| columns of each row
// that wrapped around into the neighbouring row are zeroed.
func im2colShift(row, x []float32, w, dh, dw, h0, h1, w0, w1 int) {
	delta := dh*w + dw
	lo, hi := h0*w, h1*w
	// The first and last elements of the range may read outside the
	// plane (they are wrapped columns, zeroed below).
	lo2, hi2 := max(lo, -delta), min(hi, len(x)-delta)
	if lo2 >= hi2 || w0 >= w1 {
		clear(row)
		return
	}
	clear(row[:lo2])
	copy(row[lo2:hi2], x[lo2+delta:hi2+delta])
	clear(row[hi2:])
	if w0 == 0 && w1 == w {
		return
	}
	for o := h0; o < h1; o++ {
		r := row[o*w : (o+1)*w]
		for q := 0; q < w0; q++ {
			r[q] = 0
		}
		for q := w1; q < w; q++ {
			r[q] = 0
		}
	}
}

// col2imRow adds the row of col for kernel offset (ki, kj) into plane x.
func col2imRow(x, row []float32, g kernels.ConvGeom, ki, kj, oh, ow int) {
	offH, offW := ki*g.DilH, kj*g.DilW
	h0, h1 := validRange(oh, g.H, g.StrideH, g.PadH, offH)
	w0, w1 := validRange(ow, g.W, g.StrideW, g.PadW, offW)
	if w0 >= w1 {
		return
	}
	n := w1 - w0
	for o := h0; o < h1; o++ {
		src := row[o*ow+w0:][:n]
		iw := (o*g.StrideH-g.PadH+offH)*g.W + w0*g.StrideW - g.PadW + offW
		if g.StrideW == 1 {
			AddTo(x[iw:iw+n], src)
			continue
		}
		dst := x[iw : iw+(n-1)*g.StrideW+1]
		for q, v := range src {
			dst[q*g.StrideW] += v
		}
	}
}

// AddTo computes dst += src on host slices of equal length. Col2im sums
// short rows through it, the TCP ring's reduce-scatter chunks of 64Ki
// floats: long slices go to the AVX2 loop (four vectors per iteration)
// when the build and the CPU have it, where a cgo call costs less than the
// adds it vectorises; the rest to addTo. Both give the same bits.
func AddTo(dst, src []float32) {
	src = src[:len(dst)]
	if haveSIMD && len(dst) >= simdAddMin {
		simdAddTo(dst, src)
		return
	}
	addTo(dst, src)
}

// simdAddMin is the length from which AddTo calls the AVX2 loop: a cgo
// call costs about as much as 100 adds in Go.
const simdAddMin = 512

// addTo is AddTo in Go, eight elements at a time (Go does not vectorise,
// and eight independent adds per iteration run about half again as fast as
// the plain loop).
func addTo(dst, src []float32) {
	i := 0
	for ; i+8 <= len(dst); i += 8 {
		d, s := dst[i:i+8:i+8], src[i:i+8:i+8]
		d[0] += s[0]
		d[1] += s[1]
		d[2] += s[2]
		d[3] += s[3]
		d[4] += s[4]
		d[5] += s[5]
		d[6] += s[6]
		d[7] += s[7]
	}
	for ; i < len(dst); i++ {
		dst[i] += src[i]
	}
}

func checkConv(op string, g kernels.ConvGeom, img0, nimg int) {
	if g.C < 0 || g.H < 0 || g.W < 0 || g.KH < 1 || g.KW < 1 || g.StrideH < 1 || g.StrideW < 1 ||
		g.PadH < 0 || g.PadW < 0 || g.DilH < 1 || g.DilW < 1 || img0 < 0 || nimg < 0 || g.OutH() < 1 || g.OutW() < 1 {
		panic(fmt.Sprintf("cpu: %s: bad geometry %+v (img0=%d nimg=%d)", op, g, img0, nimg))
	}
}

// Im2col unfolds images [img0, img0+nimg) of x into col.
func (d *Device) Im2col(col, x kernels.Buffer, g kernels.ConvGeom, img0, nimg int) {
	cs, xs := d.slice(col, "Im2col", "col"), d.slice(x, "Im2col", "x")
	checkConv("Im2col", g, img0, nimg)
	needLen("Im2col", "col", len(cs), nimg*g.ColRows()*g.ColCols())
	needLen("Im2col", "x", len(xs), (img0+nimg)*g.C*g.H*g.W)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.conv = convTask{g: g, img0: img0, img: xs, col: cs}
	d.parallel(&d.conv, nimg*g.C, max(1, grainCheap/max(1, g.KH*g.KW*g.ColCols())))
	d.conv = convTask{}
}

// Col2im adds col into images [img0, img0+nimg) of dx.
func (d *Device) Col2im(dx, col kernels.Buffer, g kernels.ConvGeom, img0, nimg int) {
	xs, cs := d.slice(dx, "Col2im", "dx"), d.slice(col, "Col2im", "col")
	checkConv("Col2im", g, img0, nimg)
	needLen("Col2im", "col", len(cs), nimg*g.ColRows()*g.ColCols())
	needLen("Col2im", "dx", len(xs), (img0+nimg)*g.C*g.H*g.W)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.conv = convTask{fold: true, g: g, img0: img0, img: xs, col: cs}
	d.parallel(&d.conv, nimg*g.C, max(1, grainCheap/max(1, g.KH*g.KW*g.ColCols())))
	d.conv = convTask{}
}
