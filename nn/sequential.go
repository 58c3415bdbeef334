package nn

// Sequential runs modules one after another, as PyTorch's nn.Sequential.
// Its modules carry their own full names (Sequential adds no prefix), so a
// torchvision "downsample" is built as convolution "….downsample.0" and norm
// "….downsample.1".
type Sequential struct {
	mods          []Module
	params        []*Param
	afterBackward func(Module)
}

// NewSequential returns a Sequential of mods, in forward order.
func NewSequential(mods ...Module) *Sequential {
	s := &Sequential{mods: mods}
	for _, m := range mods {
		s.params = append(s.params, m.Params()...)
	}
	return s
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
		dy = s.mods[i].Backward(dy)
		if s.afterBackward != nil {
			s.afterBackward(s.mods[i])
		}
	}
	return dy
}

// SetBackwardHook makes Backward call fn with each module right after that
// module's Backward, when its parameters' gradients are final for the step
// (nil removes the hook). A data-parallel trainer uses it to start the
// all-reduce of those gradients while backward goes on.
func (s *Sequential) SetBackwardHook(fn func(Module)) { s.afterBackward = fn }

// Params concatenates the modules' parameters in order.
func (s *Sequential) Params() []*Param { return s.params }

// SetTraining sets the mode of every module.
func (s *Sequential) SetTraining(on bool) {
	for _, m := range s.mods {
		m.SetTraining(on)
	}
}

// Children returns the modules in forward order.
func (s *Sequential) Children() []Module { return s.mods }
