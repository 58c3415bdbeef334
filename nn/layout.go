package nn

import (
	"fmt"

	"github.com/macdist/macdist/kernels"
)

// Device layouts. A Device may keep activations in a layout of its own
// (kernels.Layouter: the cpu Device with oneDNN keeps nChw16c or nhwc), so that
// its convolutions read and write them without a reorder on every call.
// A Tensor says which layout its Data is in, and the layers split in two:
//
//   - those that know layouts (Conv2d, BatchNorm2d, ReLU, the residual
//     blocks' sums, Dropout, MaxPool2d, GlobalAvgPool2d) take any layout their device
//     has, produce the same (Conv2d: the one ActivationLayout gives), and
//     return dx in the layout their input was in;
//   - every other layer converts its input to NCHW at its edge and its dx
//     back (plainEdge), so it works unchanged, at the price of a copy.
//
// Which of its convolutions may produce the device's layout is a model's
// choice (SetDeviceLayouts), off by default: a Conv2d on its own gives
// NCHW, so that what a caller reads from a layer is what PyTorch would
// give. The zoo's models turn it on; their logits, parameters and
// gradients are NCHW whatever the layout inside.

// DeviceLayouter is a module that can let its convolutions produce their
// device's own layout (see kernels.Layouter): Conv2d, and the containers
// that hand the switch on to their children (Sequential, the residual
// blocks). A container that reads its children's outputs itself, such as
// PatchEmbed, does not implement it, and its convolutions stay NCHW.
type DeviceLayouter interface {
	SetDeviceLayouts(on bool)
}

// layoutTaker is a module that takes its input in any layout its device
// has: it computes in it, or converts at its own edge (plainEdge).
type layoutTaker interface {
	takesLayouts() bool
}

// takesLayouts reports whether m is a layoutTaker that says yes.
func takesLayouts(m Module) bool {
	t, ok := m.(layoutTaker)
	return ok && t.takesLayouts()
}

// setDeviceLayouts hands on to every DeviceLayouter among mods, run in
// that order, but for one whose output goes to a module that does not
// take layouts (Swin's patch convolution feeds ChannelsLast, which reads
// NCHW): that one is switched off. The last hands its output to the
// caller's next module, which the caller has vetted.
func setDeviceLayouts(mods []Module, on bool) {
	for i, m := range mods {
		if l, ok := m.(DeviceLayouter); ok {
			l.SetDeviceLayouts(on && (i == len(mods)-1 || takesLayouts(mods[i+1])))
		}
	}
}

// nchw returns the n, c and h·w of an activation's shape [N, C, ...].
func nchw(shape []int) (n, c, hw int) {
	if len(shape) < 2 {
		panic(fmt.Sprintf("nn: an activation in a device layout has shape %v, want [N C ...]", shape))
	}
	return shape[0], shape[1], Numel(shape) / (shape[0] * shape[1])
}

// relayout returns x laid out as l: x itself, or a copy in s.
func relayout(dev kernels.Device, s *slot, x *Tensor, l kernels.Layout) *Tensor {
	if x == nil || x.Layout == l {
		return x
	}
	lo, ok := dev.(kernels.Layouter)
	if !ok {
		panic(fmt.Sprintf("nn: a tensor in layout %v on a device without layouts", x.Layout))
	}
	t := s.ensure(dev, x.Shape)
	n, c, hw := nchw(x.Shape)
	lo.Relayout(t.Data, l, x.Data, x.Layout, n, c, hw)
	t.Layout = l
	return t
}

// plainEdge is where a layer that knows only NCHW meets one that may have
// handed it another layout: in converts the input, out converts dx back
// to the layout the input came in.
type plainEdge struct {
	from  kernels.Layout
	x, dx slot
}

func (e *plainEdge) in(dev kernels.Device, x *Tensor) *Tensor {
	e.from = x.Layout
	return relayout(dev, &e.x, x, kernels.NCHW)
}

func (e *plainEdge) out(dev kernels.Device, dx *Tensor) *Tensor {
	return relayout(dev, &e.dx, dx, e.from)
}

func (*Conv2d) takesLayouts() bool          { return true }
func (*BatchNorm2d) takesLayouts() bool     { return true }
func (*ReLU) takesLayouts() bool            { return true }
func (*Dropout) takesLayouts() bool         { return true }
func (*GlobalAvgPool2d) takesLayouts() bool { return true }
func (*MaxPool2d) takesLayouts() bool       { return true }
func (*AvgPool2d) takesLayouts() bool       { return true } // at its edge
func (*Flatten) takesLayouts() bool         { return true } // at its edge
func (*Linear) takesLayouts() bool          { return true } // at its edge
func (*BasicBlock) takesLayouts() bool      { return true }
func (*Bottleneck) takesLayouts() bool      { return true }
func (*WideBlock) takesLayouts() bool       { return true }

// A Sequential takes what its first module takes.
func (s *Sequential) takesLayouts() bool { return len(s.mods) > 0 && takesLayouts(s.mods[0]) }
