package nn

import "github.com/macdist/macdist/kernels"

// Flatten reshapes [N, ...] to [N, prod(...)], as PyTorch's nn.Flatten()
// does. It copies nothing: its output shares the input's buffer, and its
// Backward hands back dy's buffer under the input's shape.
type Flatten struct {
	dev     kernels.Device
	y, dx   Tensor
	inShape []int
	edge    plainEdge
}

// NewFlatten returns a Flatten.
func NewFlatten(dev kernels.Device) *Flatten { return &Flatten{dev: dev} }

// Forward returns x's buffer viewed as [N, prod(x.Shape[1:])].
func (f *Flatten) Forward(x *Tensor) *Tensor {
	if len(x.Shape) < 1 {
		shapePanic("Flatten", x.Shape, "[N ...]")
	}
	x = f.edge.in(f.dev, x)
	n := x.Shape[0]
	rest := 1
	for _, d := range x.Shape[1:] {
		rest *= d
	}
	if len(f.y.Shape) != 2 || f.y.Shape[0] != n || f.y.Shape[1] != rest {
		f.y.Shape = []int{n, rest}
	}
	if !sameInts(f.inShape, x.Shape) {
		f.inShape = append([]int(nil), x.Shape...)
	}
	f.y.Data = x.Data
	return &f.y
}

// Backward returns dy's buffer viewed with the shape of the last input.
func (f *Flatten) Backward(dy *Tensor) *Tensor {
	mustForward("Flatten", f.inShape != nil)
	if !dy.SameShape(f.y.Shape) {
		gradPanic("Flatten", dy.Shape, f.y.Shape)
	}
	f.dx.Shape = f.inShape
	f.dx.Data = dy.Data
	return f.edge.out(f.dev, &f.dx)
}

// Params returns nil: Flatten has none.
func (f *Flatten) Params() []*Param { return nil }

// SetTraining does nothing.
func (f *Flatten) SetTraining(bool) {}

func sameInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
