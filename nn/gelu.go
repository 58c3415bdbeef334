package nn

import "github.com/macdist/macdist/kernels"

// GELU is the Gaussian error linear unit, x·Φ(x): exact (erf), as PyTorch's
// nn.GELU() and timm's ViT use it, or with PyTorch's tanh approximation
// (nn.GELU(approximate="tanh")).
type GELU struct {
	dev  kernels.Device
	tanh bool
	x    *Tensor // input of the last Forward, read by Backward
	y    slot
	dx   lent
}

// NewGELU returns a GELU; tanh selects the tanh approximation.
func NewGELU(dev kernels.Device, tanh bool) *GELU {
	return &GELU{dev: dev, tanh: tanh}
}

// Forward computes GELU(x) for x of any shape.
func (g *GELU) Forward(x *Tensor) *Tensor {
	g.x = x
	y := g.y.ensure(g.dev, x.Shape)
	g.dev.GELU(y.Data, x.Data, g.tanh)
	return y
}

// Backward returns dL/dx.
func (g *GELU) Backward(dy *Tensor) *Tensor {
	mustForward("GELU", g.x != nil)
	if !dy.SameShape(g.x.Shape) {
		gradPanic("GELU", dy.Shape, g.x.Shape)
	}
	dx := g.dx.ensure(g.dev, g.x.Shape)
	g.dev.GELUBackward(dx.Data, dy.Data, g.x.Data, g.tanh)
	return dx
}

// Params returns nil: GELU has no parameters.
func (g *GELU) Params() []*Param { return nil }

// SetTraining does nothing: GELU behaves the same in both modes.
func (g *GELU) SetTraining(bool) {}
