package nn

import (
	"fmt"

	"github.com/macdist/macdist/kernels"
)

// Tensor is a shaped view of a device buffer, row-major (the last dimension
// varies fastest), as PyTorch's contiguous tensors are, unless Layout says
// that a 4-D activation is in a layout of its device's (see layout.go).
type Tensor struct {
	Shape  []int
	Data   kernels.Buffer
	Layout kernels.Layout // NCHW, the zero value, but between layers that know others
}

// NewTensor allocates a zeroed tensor of the given shape on dev.
func NewTensor(dev kernels.Device, shape ...int) *Tensor {
	return &Tensor{Shape: append([]int(nil), shape...), Data: dev.Alloc(Numel(shape))}
}

// Numel is the number of elements of a shape.
func Numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// Len is the number of elements.
func (t *Tensor) Len() int { return Numel(t.Shape) }

// SameShape reports whether t has exactly the given shape.
func (t *Tensor) SameShape(shape []int) bool {
	if len(t.Shape) != len(shape) {
		return false
	}
	for i := range shape {
		if t.Shape[i] != shape[i] {
			return false
		}
	}
	return true
}

func (t *Tensor) String() string { return fmt.Sprintf("Tensor%v", t.Shape) }
