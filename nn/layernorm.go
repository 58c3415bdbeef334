package nn

import (
	"fmt"

	"github.com/macdist/macdist/kernels"
)

// LayerNorm normalises over the last dimension and applies a per-feature
// scale and shift, as PyTorch's nn.LayerNorm(dim, eps) with
// elementwise_affine=True.
type LayerNorm struct {
	dev    kernels.Device
	name   string
	dim    int
	eps    float32
	weight *Param
	bias   *Param
	params []*Param

	x          *Tensor // input of the last Forward, read by Backward
	y          slot
	dx         lent
	mean, rstd kernels.Buffer // per row, saved by Forward for Backward
	rows       int
}

// NewLayerNorm returns a LayerNorm over a last dimension of size dim, with
// PyTorch's initialisation (weight 1, bias 0). Parameters are
// name.weight and name.bias.
func NewLayerNorm(dev kernels.Device, name string, dim int, eps float32) *LayerNorm {
	if dim <= 0 {
		panic(fmt.Sprintf("nn: %s: LayerNorm of dimension %d", layerName(name, "LayerNorm"), dim))
	}
	l := &LayerNorm{dev: dev, name: name, dim: dim, eps: eps}
	l.weight = &Param{Name: join(name, "weight"), Kind: KindNorm, Value: NewTensor(dev, dim), Grad: NewTensor(dev, dim)}
	l.bias = &Param{Name: join(name, "bias"), Kind: KindNorm, Value: NewTensor(dev, dim), Grad: NewTensor(dev, dim)}
	l.params = []*Param{l.weight, l.bias}
	dev.Fill(l.weight.Value.Data, 1)
	return l
}

// Forward normalises x of shape [..., dim].
func (l *LayerNorm) Forward(x *Tensor) *Tensor {
	if len(x.Shape) == 0 || x.Shape[len(x.Shape)-1] != l.dim {
		shapePanic(layerName(l.name, "LayerNorm"), x.Shape, shapeStr("...", l.dim))
	}
	l.x = x
	rows := x.Len() / l.dim
	if rows != l.rows || l.mean == nil {
		if l.mean != nil {
			l.dev.Free(l.mean)
			l.dev.Free(l.rstd)
		}
		l.mean, l.rstd, l.rows = l.dev.Alloc(rows), l.dev.Alloc(rows), rows
	}
	y := l.y.ensure(l.dev, x.Shape)
	l.dev.LayerNorm(y.Data, l.mean, l.rstd, x.Data, l.weight.Value.Data, l.bias.Value.Data, rows, l.dim, l.eps)
	return y
}

// Backward accumulates the gradients of weight and bias and returns dL/dx.
func (l *LayerNorm) Backward(dy *Tensor) *Tensor {
	mustForward(layerName(l.name, "LayerNorm"), l.x != nil)
	if !dy.SameShape(l.x.Shape) {
		gradPanic(layerName(l.name, "LayerNorm"), dy.Shape, l.x.Shape)
	}
	dx := l.dx.ensure(l.dev, l.x.Shape)
	l.dev.LayerNormBackward(dx.Data, l.weight.Grad.Data, l.bias.Grad.Data, dy.Data, l.x.Data, l.mean, l.rstd,
		l.weight.Value.Data, l.rows, l.dim)
	return dx
}

// Params returns weight and bias.
func (l *LayerNorm) Params() []*Param { return l.params }

// SetTraining does nothing: LayerNorm behaves the same in both modes.
func (l *LayerNorm) SetTraining(bool) {}
