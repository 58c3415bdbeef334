package nn

import "github.com/macdist/macdist/kernels"

// Sequential runs modules one after another, as PyTorch's nn.Sequential.
// Its modules carry their own full names (Sequential adds no prefix), so a
// torchvision "downsample" is built as convolution "….downsample.0" and norm
// "….downsample.1".
type Sequential struct {
	mods   []Module
	params []*Param
	hook   backwardHook
}

// NewSequential returns a Sequential of mods, in forward order.
func NewSequential(mods ...Module) *Sequential {
	return &Sequential{mods: mods, params: collectParams(mods)}
}

// Forward runs every module in order; a BatchNorm2d followed by a ReLU
// runs as one where the device fuses them (see BatchNorm2d.forwardReLU).
func (s *Sequential) Forward(x *Tensor) *Tensor {
	for i := 0; i < len(s.mods); i++ {
		if bn, r := s.bnReLU(i); r != nil {
			x = bn.forwardReLU(x, r)
			i++
			continue
		}
		x = s.mods[i].Forward(x)
	}
	return x
}

// Backward runs every module's Backward in reverse order. Each gradient
// between two modules goes back to the pool once the earlier module has
// consumed it (see lent).
func (s *Sequential) Backward(dy *Tensor) *Tensor {
	var in kernels.Buffer // the caller's, which it releases
	if dy != nil {
		in = dy.Data
	}
	for i := len(s.mods) - 1; i >= 0; i-- {
		prev := dy
		if bn, r := s.bnReLU(i - 1); r != nil {
			dy = s.hook.backBNReLU(bn, r, dy)
			i--
		} else {
			dy = s.hook.back(s.mods[i], dy)
		}
		if prev != nil && prev.Data != in {
			consumed(prev, dy)
		}
	}
	return dy
}

// bnReLU returns modules i and i+1 when they are a BatchNorm2d and a ReLU.
func (s *Sequential) bnReLU(i int) (*BatchNorm2d, *ReLU) {
	if i < 0 || i+1 >= len(s.mods) {
		return nil, nil
	}
	bn, ok := s.mods[i].(*BatchNorm2d)
	if !ok {
		return nil, nil
	}
	r, ok := s.mods[i+1].(*ReLU)
	if !ok {
		return nil, nil
	}
	return bn, r
}

// SetBackwardHook makes Backward report every layer inside s as its
// gradients become final (see BackwardHooker); nil removes the hook.
func (s *Sequential) SetBackwardHook(fn func(Module)) { s.hook.set(fn, s.mods) }

// Params concatenates the modules' parameters in order.
func (s *Sequential) Params() []*Param { return s.params }

// SetTraining sets the mode of every module.
func (s *Sequential) SetTraining(on bool) {
	for _, m := range s.mods {
		m.SetTraining(on)
	}
}

// SetDeviceLayouts hands the switch on to the modules (see DeviceLayouter).
func (s *Sequential) SetDeviceLayouts(on bool) { setDeviceLayouts(s.mods, on) }

// Children returns the modules in forward order.
func (s *Sequential) Children() []Module { return s.mods }
