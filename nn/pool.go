package nn

import (
	"fmt"

	"github.com/macdist/macdist/kernels"
)

// pool2d is what MaxPool2d and AvgPool2d share: the window, the last input
// and the owned buffers.
type pool2d struct {
	dev                     kernels.Device
	typ                     string
	kernel, stride, padding int
	avg                     bool

	x    *Tensor
	geom kernels.PoolGeom
	y    slot
	dx   lent
	edge plainEdge // for a layout the device does not pool in
	dyIn slot      // dy in y's layout, when it came in another
}

func newPool2d(dev kernels.Device, typ string, kernel, stride, padding int, avg bool) pool2d {
	if stride == 0 {
		stride = kernel // PyTorch's default stride is the kernel size
	}
	if kernel <= 0 || stride <= 0 || padding < 0 || 2*padding > kernel {
		// PyTorch refuses padding over half the kernel: a window could
		// then lie wholly in the padding.
		panic(fmt.Sprintf("nn: %s: invalid kernel %d, stride %d, padding %d", typ, kernel, stride, padding))
	}
	return pool2d{dev: dev, typ: typ, kernel: kernel, stride: stride, padding: padding, avg: avg}
}

func (p *pool2d) forward(x *Tensor) *Tensor {
	if len(x.Shape) != 4 {
		shapePanic(p.typ, x.Shape, "[N C H W]")
	}
	g := kernels.PoolGeom{C: x.Shape[1], H: x.Shape[2], W: x.Shape[3], KH: p.kernel, KW: p.kernel,
		StrideH: p.stride, StrideW: p.stride, PadH: p.padding, PadW: p.padding, CountIncludePad: true}
	oh, ow := g.OutH(), g.OutW()
	if g.H+2*g.PadH < g.KH || g.W+2*g.PadW < g.KW {
		panic(fmt.Sprintf("nn: %s: input %v is smaller than the window %d (padding %d)", p.typ, x.Shape, p.kernel, p.padding))
	}
	lo, ok := p.dev.(kernels.Layouter)
	if !ok || p.avg {
		x = p.edge.in(p.dev, x)
	} else {
		p.edge.from = x.Layout
	}
	p.x, p.geom = x, g
	y := p.y.ensure(p.dev, []int{x.Shape[0], g.C, oh, ow})
	y.Layout = x.Layout
	switch {
	case p.avg:
		p.dev.AvgPool2d(y.Data, x.Data, g, x.Shape[0])
	case ok:
		lo.MaxPool2dIn(x.Layout, y.Data, x.Data, g, x.Shape[0])
	default:
		p.dev.MaxPool2d(y.Data, x.Data, g, x.Shape[0])
	}
	return y
}

func (p *pool2d) backward(dy *Tensor) *Tensor {
	mustForward(p.typ, p.x != nil)
	if !dy.SameShape(p.y.t.Shape) {
		gradPanic(p.typ, dy.Shape, p.y.t.Shape)
	}
	dy = relayout(p.dev, &p.dyIn, dy, p.y.t.Layout)
	dx := p.dx.ensure(p.dev, p.x.Shape)
	dx.Layout = p.x.Layout
	p.dev.Fill(dx.Data, 0)
	lo, ok := p.dev.(kernels.Layouter)
	switch {
	case p.avg:
		p.dev.AvgPool2dBackward(dx.Data, dy.Data, p.geom, p.x.Shape[0])
	case ok:
		lo.MaxPool2dBackwardIn(p.x.Layout, dx.Data, dy.Data, p.x.Data, p.geom, p.x.Shape[0])
	default:
		p.dev.MaxPool2dBackward(dx.Data, dy.Data, p.x.Data, p.geom, p.x.Shape[0])
	}
	return p.edge.out(p.dev, dx)
}

// MaxPool2d is PyTorch's nn.MaxPool2d with square windows, floor mode and
// no dilation. Padding never wins the maximum, as in PyTorch.
type MaxPool2d struct{ p pool2d }

// NewMaxPool2d returns a MaxPool2d; stride 0 means the kernel size.
func NewMaxPool2d(dev kernels.Device, kernel, stride, padding int) *MaxPool2d {
	return &MaxPool2d{newPool2d(dev, "MaxPool2d", kernel, stride, padding, false)}
}

// Forward pools x [N, C, H, W]; the output is owned by m.
func (m *MaxPool2d) Forward(x *Tensor) *Tensor { return m.p.forward(x) }

// Backward routes dy to each window's maximum.
func (m *MaxPool2d) Backward(dy *Tensor) *Tensor { return m.p.backward(dy) }

// Params returns nil.
func (m *MaxPool2d) Params() []*Param { return nil }

// SetTraining does nothing.
func (m *MaxPool2d) SetTraining(bool) {}

// AvgPool2d is PyTorch's nn.AvgPool2d with square windows, floor mode and
// count_include_pad (the default): the divisor is always kernel².
type AvgPool2d struct{ p pool2d }

// NewAvgPool2d returns an AvgPool2d; stride 0 means the kernel size.
func NewAvgPool2d(dev kernels.Device, kernel, stride, padding int) *AvgPool2d {
	return &AvgPool2d{newPool2d(dev, "AvgPool2d", kernel, stride, padding, true)}
}

// Forward pools x [N, C, H, W]; the output is owned by m.
func (m *AvgPool2d) Forward(x *Tensor) *Tensor { return m.p.forward(x) }

// Backward spreads dy evenly over each window.
func (m *AvgPool2d) Backward(dy *Tensor) *Tensor { return m.p.backward(dy) }

// Params returns nil.
func (m *AvgPool2d) Params() []*Param { return nil }

// SetTraining does nothing.
func (m *AvgPool2d) SetTraining(bool) {}

// GlobalAvgPool2d is PyTorch's nn.AdaptiveAvgPool2d(1): [N, C, H, W] to
// [N, C, 1, 1], the mean of each plane.
//
// Its output has one value a channel, which every layout keeps in NCHW's
// order, so it is where a network in a device layout returns to NCHW
// without a reorder.
type GlobalAvgPool2d struct {
	dev kernels.Device
	x   *Tensor
	y   slot
	dx  lent
}

// NewGlobalAvgPool2d returns a GlobalAvgPool2d.
func NewGlobalAvgPool2d(dev kernels.Device) *GlobalAvgPool2d { return &GlobalAvgPool2d{dev: dev} }

// Forward averages each plane of x; the output is owned by m.
func (m *GlobalAvgPool2d) Forward(x *Tensor) *Tensor {
	if len(x.Shape) != 4 {
		shapePanic("GlobalAvgPool2d", x.Shape, "[N C H W]")
	}
	m.x = x
	n, c, hw := x.Shape[0], x.Shape[1], x.Shape[2]*x.Shape[3]
	y := m.y.ensure(m.dev, []int{n, c, 1, 1})
	if lo, ok := m.dev.(kernels.Layouter); ok {
		lo.PlaneSumIn(x.Layout, y.Data, x.Data, n, c, hw, 1/float32(hw))
	} else {
		m.dev.ReduceSum(y.Data, x.Data, n*c, hw, 1, 1/float32(hw), 0)
	}
	return y
}

// Backward spreads dy/(H·W) over each plane.
func (m *GlobalAvgPool2d) Backward(dy *Tensor) *Tensor {
	mustForward("GlobalAvgPool2d", m.x != nil)
	if !dy.SameShape(m.y.t.Shape) {
		gradPanic("GlobalAvgPool2d", dy.Shape, m.y.t.Shape)
	}
	n, c, hw := m.x.Shape[0], m.x.Shape[1], m.x.Shape[2]*m.x.Shape[3]
	dx := m.dx.ensure(m.dev, m.x.Shape)
	dx.Layout = m.x.Layout
	if lo, ok := m.dev.(kernels.Layouter); ok {
		lo.PlaneSpreadIn(dx.Layout, dx.Data, dy.Data, n, c, hw, 1/float32(hw))
	} else {
		m.dev.Expand(dx.Data, dy.Data, n*c, hw, 1, 1/float32(hw), 0)
	}
	return dx
}

// Params returns nil.
func (m *GlobalAvgPool2d) Params() []*Param { return nil }

// SetTraining does nothing.
func (m *GlobalAvgPool2d) SetTraining(bool) {}
