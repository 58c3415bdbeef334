package nn

import "github.com/macdist/macdist/kernels"

// ReLU is max(x, 0) element-wise, on a tensor of any shape. Its Backward
// reads its own output, not its input, so the layer before may reuse its
// output buffer.
type ReLU struct {
	dev  kernels.Device
	y    slot
	dx   lent
	dyIn slot // dy in y's layout, when it came in another
	have bool
}

// NewReLU returns a ReLU.
func NewReLU(dev kernels.Device) *ReLU { return &ReLU{dev: dev} }

// Forward computes max(x, 0); the output is owned by r.
func (r *ReLU) Forward(x *Tensor) *Tensor {
	y := r.y.ensure(r.dev, x.Shape)
	y.Layout = x.Layout // element-wise: any layout
	r.dev.ReLU(y.Data, x.Data)
	r.have = true
	return y
}

// Backward passes dy where the output was positive.
func (r *ReLU) Backward(dy *Tensor) *Tensor {
	mustForward("ReLU", r.have)
	if !dy.SameShape(r.y.t.Shape) {
		gradPanic("ReLU", dy.Shape, r.y.t.Shape)
	}
	dy = relayout(r.dev, &r.dyIn, dy, r.y.t.Layout)
	dx := r.dx.ensure(r.dev, dy.Shape)
	dx.Layout = dy.Layout
	r.dev.ReLUBackward(dx.Data, dy.Data, r.y.t.Data)
	return dx
}

// Params returns nil: ReLU has none.
func (r *ReLU) Params() []*Param { return nil }

// SetTraining does nothing: ReLU is the same in both modes.
func (r *ReLU) SetTraining(bool) {}
