package nn

// BackwardHooker is a Container that reports each layer inside it as soon
// as that layer's Backward has returned, which is when the layer's
// parameters have their final gradients of the step. A data-parallel
// trainer uses the reports to start all-reducing gradients while the rest
// of backward runs, as PyTorch DDP's per-parameter hooks do.
//
// Sequential, the residual blocks, the ViT block and the attention layer
// are BackwardHookers. They hand the hook on to the BackwardHookers among
// their children and report the other children themselves, so fn sees the
// smallest modules that own parameters (a convolution, a norm, a
// projection), each once per Backward, never a container that reports its
// own layers. A module fn receives may hold no parameters (an activation).
type BackwardHooker interface {
	Container
	// SetBackwardHook makes Backward call fn as described above; nil
	// removes it.
	SetBackwardHook(fn func(Module))
}

// backwardHook is the state a BackwardHooker keeps.
type backwardHook struct{ fn func(Module) }

// set installs fn and hands it on to the hookers among children.
func (h *backwardHook) set(fn func(Module), children []Module) {
	h.fn = fn
	for _, c := range children {
		if hc, ok := c.(BackwardHooker); ok {
			hc.SetBackwardHook(fn)
		}
	}
}

// back runs m's Backward and then reports m, unless m reports its own
// layers.
func (h *backwardHook) back(m Module, dy *Tensor) *Tensor {
	dx := m.Backward(dy)
	if h.fn != nil {
		if _, ok := m.(BackwardHooker); !ok {
			h.fn(m)
		}
	}
	return dx
}

// backInner is back for a dy that the caller's own Backward made: once m
// has consumed it, its memory goes back to the pool (see lent).
func (h *backwardHook) backInner(m Module, dy *Tensor) *Tensor {
	dx := h.back(m, dy)
	consumed(dy, dx)
	return dx
}

// backBNReLUInner is backBNReLU for a dy that the caller's own Backward
// made, as backInner is back.
func (h *backwardHook) backBNReLUInner(bn *BatchNorm2d, r *ReLU, dy *Tensor) *Tensor {
	dx := h.backBNReLU(bn, r, dy)
	consumed(dy, dx)
	return dx
}

// backBNReLU runs the Backward of r after bn, fused where bn's Forward
// fused them (see BatchNorm2d.forwardReLU), and reports r and then bn, as
// two calls of back would.
func (h *backwardHook) backBNReLU(bn *BatchNorm2d, r *ReLU, dy *Tensor) *Tensor {
	dx := bn.backwardReLU(dy, r)
	if h.fn != nil {
		h.fn(r)
		h.fn(bn)
	}
	return dx
}
