package nn

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

// Forward runs every module in order.
func (s *Sequential) Forward(x *Tensor) *Tensor {
	for _, m := range s.mods {
		x = m.Forward(x)
	}
	return x
}

// Backward runs every module's Backward in reverse order.
func (s *Sequential) Backward(dy *Tensor) *Tensor {
	for i := len(s.mods) - 1; i >= 0; i-- {
		dy = s.hook.back(s.mods[i], dy)
	}
	return dy
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
