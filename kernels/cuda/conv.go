package cuda

import (
	"fmt"

	"github.com/macdist/macdist/kernels"
)

func checkConv(op string, g kernels.ConvGeom, img0, nimg int) {
	if g.C < 0 || g.H < 0 || g.W < 0 || g.KH < 1 || g.KW < 1 || g.StrideH < 1 || g.StrideW < 1 ||
		g.PadH < 0 || g.PadW < 0 || g.DilH < 1 || g.DilW < 1 || img0 < 0 || nimg < 0 || g.OutH() < 1 || g.OutW() < 1 {
		panic(fmt.Sprintf("cuda: %s: bad geometry %+v (img0=%d nimg=%d)", op, g, img0, nimg))
	}
}

// convGeom adds g as the kernels' conv_geom struct.
func (l *launcher) convGeom(g kernels.ConvGeom) *launcher {
	return l.geom('G', g.C, g.H, g.W, g.KH, g.KW, g.StrideH, g.StrideW, g.PadH, g.PadW, g.DilH, g.DilW, g.OutH(), g.OutW())
}

// Im2col unfolds images [img0, img0+nimg) of x into col.
func (d *Device) Im2col(col, x kernels.Buffer, g kernels.ConvGeom, img0, nimg int) {
	cb, xb := d.buf(col, "Im2col", "col"), d.buf(x, "Im2col", "x")
	checkConv("Im2col", g, img0, nimg)
	n := nimg * g.ColRows() * g.ColCols()
	needLen("Im2col", "col", cb.n, n)
	needLen("Im2col", "x", xb.n, (img0+nimg)*g.C*g.H*g.W)
	if n == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.k(kIm2col).ptr(cb).ptr(xb).convGeom(g).i64(img0).i64(n).run1D(int64(n))
}

// Col2im adds col into images [img0, img0+nimg) of dx.
func (d *Device) Col2im(dx, col kernels.Buffer, g kernels.ConvGeom, img0, nimg int) {
	xb, cb := d.buf(dx, "Col2im", "dx"), d.buf(col, "Col2im", "col")
	checkConv("Col2im", g, img0, nimg)
	needLen("Col2im", "col", cb.n, nimg*g.ColRows()*g.ColCols())
	needLen("Col2im", "dx", xb.n, (img0+nimg)*g.C*g.H*g.W)
	n := nimg * g.C * g.H * g.W
	if n == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.k(kCol2im).ptr(xb).ptr(cb).convGeom(g).i64(img0).i64(n).run1D(int64(n))
}
