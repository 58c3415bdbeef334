package cpu

import (
	"fmt"
	"math"

	"github.com/macdist/macdist/kernels"
)

type poolOp uint8

const (
	opMaxPool poolOp = iota
	opMaxPoolBackward
	opAvgPool
	opAvgPoolBackward
)

// poolTask runs a pooling kernel over the planes [lo, hi); each plane of x
// and y belongs to one range, so backward accumulation does not race.
type poolTask struct {
	op       poolOp
	g        kernels.PoolGeom
	y, x, dx []float32 // dy travels in y for the backward kernels
}

func (t *poolTask) run(lo, hi int) {
	g := t.g
	plane, oplane := g.H*g.W, g.OutH()*g.OutW()
	if haveSIMD && is2x2(g) && (t.op == opMaxPool || t.op == opMaxPoolBackward) {
		var dx []float32
		if t.op == opMaxPoolBackward {
			dx = t.dx[lo*plane : hi*plane]
		}
		simdMaxPool2x2(t.y[lo*oplane:hi*oplane], t.x[lo*plane:hi*plane], dx, hi-lo, g.H, g.W, g.OutH(), g.OutW())
		return
	}
	for p := lo; p < hi; p++ {
		switch t.op {
		case opMaxPool:
			maxPoolPlane(t.y[p*oplane:(p+1)*oplane], t.x[p*plane:(p+1)*plane], nil, g)
		case opMaxPoolBackward:
			maxPoolPlane(t.y[p*oplane:(p+1)*oplane], t.x[p*plane:(p+1)*plane], t.dx[p*plane:(p+1)*plane], g)
		case opAvgPool:
			avgPoolPlane(t.y[p*oplane:(p+1)*oplane], t.x[p*plane:(p+1)*plane], g)
		case opAvgPoolBackward:
			avgPoolBackwardPlane(t.dx[p*plane:(p+1)*plane], t.y[p*oplane:(p+1)*oplane], g)
		}
	}
}

// window returns the rows [hs, he) and columns [ws, we) of the input that
// output (i, j) covers, clipped to the image, and its size counting the
// padding, as PyTorch's count_include_pad divisor does: clipped at the far
// padded edge, which floor-mode outputs never pass.
func window(g kernels.PoolGeom, i, j int) (hs, he, ws, we, padded int) {
	h0, w0 := i*g.StrideH-g.PadH, j*g.StrideW-g.PadW
	padded = (min(h0+g.KH, g.H+g.PadH) - h0) * (min(w0+g.KW, g.W+g.PadW) - w0)
	return max(h0, 0), min(h0+g.KH, g.H), max(w0, 0), min(w0+g.KW, g.W), padded
}

// maxPoolPlane writes the window maxima of x into y; with dx non-nil it
// instead adds y (holding dy) into dx at each window's maximum.
func maxPoolPlane(y, x, dx []float32, g kernels.PoolGeom) {
	if g.PadH == 0 && g.PadW == 0 {
		maxPoolInside(y, x, dx, g)
		return
	}
	ow := g.OutW()
	for i := 0; i < g.OutH(); i++ {
		for j := 0; j < ow; j++ {
			hs, he, ws, we, _ := window(g, i, j)
			best, at := float32(math.Inf(-1)), -1
			for h := hs; h < he; h++ {
				row := x[h*g.W+ws : h*g.W+we]
				for k, v := range row {
					// Strictly greater keeps the first maximum; a NaN
					// wins, as in PyTorch.
					if v > best || (v != v && best == best) {
						best, at = v, h*g.W+ws+k
					}
				}
			}
			if dx == nil {
				y[i*ow+j] = best
			} else if at >= 0 {
				dx[at] += y[i*ow+j]
			}
		}
	}
}

// maxKey maps the bits of a float32 to an integer that orders as the floats
// do, −0 equal to +0, and every NaN above +Inf, so that a window's first
// maximum can be found with integer selects instead of branches that a
// predictor loses on activations. A NaN wins a window, as in PyTorch.
func maxKey(b uint32) int64 {
	neg := int64(int32(b) >> 31)
	mag := int64(b & 0x7fffffff)
	nan := (0x7f800000 - mag) >> 63
	return ((mag^neg)-neg)&^nan | math.MaxInt32&nan
}

// maxPoolInside is maxPoolPlane without padding, where every window lies
// inside the plane (floor mode). Its windows start at their first element,
// which keeps it when all are −Inf, as PyTorch does.
func maxPoolInside(y, x, dx []float32, g kernels.PoolGeom) {
	oh, ow := g.OutH(), g.OutW()
	xb := f32bits(x)
	if is2x2(g) {
		maxPool2x2(y, x, xb, dx, g.W, oh, ow)
		return
	}
	for i := 0; i < oh; i++ {
		yr := y[i*ow : (i+1)*ow]
		for j := range yr {
			first := i*g.StrideH*g.W + j*g.StrideW
			at, best := first, maxKey(xb[first])
			for h := 0; h < g.KH; h++ {
				row := xb[first+h*g.W:][:g.KW]
				for k, b := range row {
					key := maxKey(b)
					// All ones where key > best: strictly greater keeps
					// the first maximum.
					gt := (best - key) >> 63
					best ^= (best ^ key) & gt
					at ^= (at ^ (first + h*g.W + k)) & int(gt)
				}
			}
			if dx == nil {
				yr[j] = x[at]
			} else {
				dx[at] += yr[j]
			}
		}
	}
}

// is2x2 reports 2×2 windows at stride 2 without padding.
func is2x2(g kernels.PoolGeom) bool {
	return g.KH == 2 && g.KW == 2 && g.StrideH == 2 && g.StrideW == 2 && g.PadH == 0 && g.PadW == 0
}

// maxPool2x2 is maxPoolInside for 2×2 windows at stride 2, LeNet's and
// VGG's, unrolled.
func maxPool2x2(y, x []float32, xb []uint32, dx []float32, w, oh, ow int) {
	for i := 0; i < oh; i++ {
		r0 := xb[2*i*w:][: 2*ow : 2*ow]
		r1 := xb[(2*i+1)*w:][: 2*ow : 2*ow]
		yr := y[i*ow : (i+1)*ow]
		for j := range yr {
			k0, k1 := maxKey(r0[2*j]), maxKey(r0[2*j+1])
			k2, k3 := maxKey(r1[2*j]), maxKey(r1[2*j+1])
			// Pairwise, first maxima kept: (0, 1), (2, 3), then the two
			// winners, the top row's on a tie.
			g01 := (k0 - k1) >> 63
			ka, ia := k0^(k0^k1)&g01, int(g01&1)
			g23 := (k2 - k3) >> 63
			kb, ib := k2^(k2^k3)&g23, 2+int(g23&1)
			gab := (ka - kb) >> 63
			at := ia ^ (ia^ib)&int(gab)
			off := 2*i*w + 2*j + at&1 + (at>>1)*w
			if dx == nil {
				yr[j] = x[off]
			} else {
				dx[off] += yr[j]
			}
		}
	}
}

func avgPoolPlane(y, x []float32, g kernels.PoolGeom) {
	ow := g.OutW()
	for i := 0; i < g.OutH(); i++ {
		for j := 0; j < ow; j++ {
			hs, he, ws, we, div := window(g, i, j)
			if !g.CountIncludePad {
				div = (he - hs) * (we - ws)
			}
			var s float32
			for h := hs; h < he; h++ {
				for _, v := range x[h*g.W+ws : h*g.W+we] {
					s += v
				}
			}
			if div > 0 {
				s /= float32(div)
			}
			y[i*ow+j] = s
		}
	}
}

func avgPoolBackwardPlane(dx, dy []float32, g kernels.PoolGeom) {
	ow := g.OutW()
	for i := 0; i < g.OutH(); i++ {
		for j := 0; j < ow; j++ {
			hs, he, ws, we, div := window(g, i, j)
			if !g.CountIncludePad {
				div = (he - hs) * (we - ws)
			}
			if div <= 0 {
				continue
			}
			gv := dy[i*ow+j] / float32(div)
			for h := hs; h < he; h++ {
				row := dx[h*g.W+ws : h*g.W+we]
				for k := range row {
					row[k] += gv
				}
			}
		}
	}
}

func checkPool(op string, g kernels.PoolGeom, n int) {
	if n < 0 || g.C < 0 || g.H < 1 || g.W < 1 || g.KH < 1 || g.KW < 1 || g.StrideH < 1 || g.StrideW < 1 ||
		g.PadH < 0 || g.PadW < 0 || g.OutH() < 1 || g.OutW() < 1 {
		panic(fmt.Sprintf("cpu: %s: bad geometry %+v (n=%d)", op, g, n))
	}
}

func (d *Device) runPool(t poolTask, n int) {
	g := t.g
	d.pool = t
	d.parallel(&d.pool, n*g.C, max(1, grainCheap/max(1, g.OutH()*g.OutW()*g.KH*g.KW)))
	d.pool = poolTask{}
}

// MaxPool2d pools each plane of x, keeping the first maximum of a window.
func (d *Device) MaxPool2d(y, x kernels.Buffer, g kernels.PoolGeom, n int) {
	ys, xs := d.slice(y, "MaxPool2d", "y"), d.slice(x, "MaxPool2d", "x")
	checkPool("MaxPool2d", g, n)
	needLen("MaxPool2d", "y", len(ys), n*g.C*g.OutH()*g.OutW())
	needLen("MaxPool2d", "x", len(xs), n*g.C*g.H*g.W)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.runPool(poolTask{op: opMaxPool, g: g, y: ys, x: xs}, n)
}

// MaxPool2dBackward adds dy into dx at each window's first maximum in x.
func (d *Device) MaxPool2dBackward(dx, dy, x kernels.Buffer, g kernels.PoolGeom, n int) {
	const op = "MaxPool2dBackward"
	dxs, dys, xs := d.slice(dx, op, "dx"), d.slice(dy, op, "dy"), d.slice(x, op, "x")
	checkPool(op, g, n)
	needLen(op, "dy", len(dys), n*g.C*g.OutH()*g.OutW())
	needLen(op, "x", len(xs), n*g.C*g.H*g.W)
	needLen(op, "dx", len(dxs), n*g.C*g.H*g.W)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.runPool(poolTask{op: opMaxPoolBackward, g: g, y: dys, x: xs, dx: dxs}, n)
}

// AvgPool2d averages each window of each plane of x.
func (d *Device) AvgPool2d(y, x kernels.Buffer, g kernels.PoolGeom, n int) {
	ys, xs := d.slice(y, "AvgPool2d", "y"), d.slice(x, "AvgPool2d", "x")
	checkPool("AvgPool2d", g, n)
	needLen("AvgPool2d", "y", len(ys), n*g.C*g.OutH()*g.OutW())
	needLen("AvgPool2d", "x", len(xs), n*g.C*g.H*g.W)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.runPool(poolTask{op: opAvgPool, g: g, y: ys, x: xs}, n)
}

// AvgPool2dBackward adds the adjoint of AvgPool2d applied to dy into dx.
func (d *Device) AvgPool2dBackward(dx, dy kernels.Buffer, g kernels.PoolGeom, n int) {
	const op = "AvgPool2dBackward"
	dxs, dys := d.slice(dx, op, "dx"), d.slice(dy, op, "dy")
	checkPool(op, g, n)
	needLen(op, "dy", len(dys), n*g.C*g.OutH()*g.OutW())
	needLen(op, "dx", len(dxs), n*g.C*g.H*g.W)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.runPool(poolTask{op: opAvgPoolBackward, g: g, y: dys, dx: dxs}, n)
}
