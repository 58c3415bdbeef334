package cuda

import (
	"fmt"

	"github.com/macdist/macdist/kernels"
)

func checkPool(op string, g kernels.PoolGeom, n int) {
	if n < 0 || g.C < 0 || g.H < 1 || g.W < 1 || g.KH < 1 || g.KW < 1 || g.StrideH < 1 || g.StrideW < 1 ||
		g.PadH < 0 || g.PadW < 0 || g.OutH() < 1 || g.OutW() < 1 {
		panic(fmt.Sprintf("cuda: %s: bad geometry %+v (n=%d)", op, g, n))
	}
}

// poolGeom adds g as the kernels' pool_geom struct.
func (l *launcher) poolGeom(g kernels.PoolGeom) *launcher {
	return l.geom('P', g.H, g.W, g.KH, g.KW, g.StrideH, g.StrideW, g.PadH, g.PadW, g.OutH(), g.OutW())
}

// MaxPool2d pools each plane of x, keeping the first maximum of a window.
func (d *Device) MaxPool2d(y, x kernels.Buffer, g kernels.PoolGeom, n int) {
	yb, xb := d.buf(y, "MaxPool2d", "y"), d.buf(x, "MaxPool2d", "x")
	checkPool("MaxPool2d", g, n)
	out := n * g.C * g.OutH() * g.OutW()
	needLen("MaxPool2d", "y", yb.n, out)
	needLen("MaxPool2d", "x", xb.n, n*g.C*g.H*g.W)
	if out == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.k(kMaxPool).ptr(yb).ptr(xb).poolGeom(g).i64(out).run1D(int64(out))
}

// MaxPool2dBackward adds dy into dx at each window's first maximum in x.
func (d *Device) MaxPool2dBackward(dx, dy, x kernels.Buffer, g kernels.PoolGeom, n int) {
	const op = "MaxPool2dBackward"
	dxb, dyb, xb := d.buf(dx, op, "dx"), d.buf(dy, op, "dy"), d.buf(x, op, "x")
	checkPool(op, g, n)
	in := n * g.C * g.H * g.W
	needLen(op, "dy", dyb.n, n*g.C*g.OutH()*g.OutW())
	needLen(op, "x", xb.n, in)
	needLen(op, "dx", dxb.n, in)
	if in == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.k(kMaxPoolBackward).ptr(dxb).ptr(dyb).ptr(xb).poolGeom(g).i64(in).run1D(int64(in))
}

// AvgPool2d averages each window of each plane of x.
func (d *Device) AvgPool2d(y, x kernels.Buffer, g kernels.PoolGeom, n int) {
	yb, xb := d.buf(y, "AvgPool2d", "y"), d.buf(x, "AvgPool2d", "x")
	checkPool("AvgPool2d", g, n)
	out := n * g.C * g.OutH() * g.OutW()
	needLen("AvgPool2d", "y", yb.n, out)
	needLen("AvgPool2d", "x", xb.n, n*g.C*g.H*g.W)
	if out == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.k(kAvgPool).ptr(yb).ptr(xb).poolGeom(g).flag(g.CountIncludePad).i64(out).run1D(int64(out))
}

// AvgPool2dBackward adds the adjoint of AvgPool2d applied to dy into dx.
func (d *Device) AvgPool2dBackward(dx, dy kernels.Buffer, g kernels.PoolGeom, n int) {
	const op = "AvgPool2dBackward"
	dxb, dyb := d.buf(dx, op, "dx"), d.buf(dy, op, "dy")
	checkPool(op, g, n)
	in := n * g.C * g.H * g.W
	needLen(op, "dy", dyb.n, n*g.C*g.OutH()*g.OutW())
	needLen(op, "dx", dxb.n, in)
	if in == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.k(kAvgPoolBackward).ptr(dxb).ptr(dyb).poolGeom(g).flag(g.CountIncludePad).i64(in).run1D(int64(in))
}
