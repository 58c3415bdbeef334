package cpu

import (
	"testing"

	"github.com/macdist/macdist/kernels"
)

func TestZZImpl(t *testing.T) {
	d, err := NewWithDNN("onednn")
	if err != nil {
		t.Skip(err)
	}
	for _, c := range []struct {
		g   kernels.ConvGeom
		out int
	}{
		{kernels.ConvGeom{C: 3, H: 32, W: 32, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1, DilH: 1, DilW: 1}, 16},
		{kernels.ConvGeom{C: 16, H: 32, W: 32, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1, DilH: 1, DilW: 1}, 16},
		{kernels.ConvGeom{C: 16, H: 32, W: 32, KH: 3, KW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1, DilH: 1, DilW: 1}, 32},
		{kernels.ConvGeom{C: 32, H: 16, W: 16, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1, DilH: 1, DilW: 1}, 32},
		{kernels.ConvGeom{C: 64, H: 8, W: 8, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1, DilH: 1, DilW: 1}, 64},
		{kernels.ConvGeom{C: 1, H: 28, W: 28, KH: 5, KW: 5, StrideH: 1, StrideW: 1, PadH: 2, PadW: 2, DilH: 1, DilW: 1}, 6},
		{kernels.ConvGeom{C: 6, H: 14, W: 14, KH: 5, KW: 5, StrideH: 1, StrideW: 1, PadH: 0, PadW: 0, DilH: 1, DilW: 1}, 16},
	} {
		d.Convolves(c.g, c.out, 1, 128, false)
		cv, _ := d.dnnConv(d.convKey(c.g, c.out, 1, 128, false))
		t.Logf("%dx%dx%d->%d: %s reorders=%v fwd ports:", c.g.C, c.g.H, c.g.W, c.out, cv.impl(), cv.reorders())
	}
}
