package nn

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/macdist/macdist/kernels"
)

// residual adds a block's branch and its shortcut, forward and backward,
// into buffers the block owns.
// The two terms of a sum are in one layout but where a layer of one
// path fell back to NCHW; the sum takes the first's.
type residual struct {
	dev  kernels.Device
	sum  slot
	tmp  lent // addReLU's sum where the device does not fuse it
	b    slot // the second term in the first's layout, when it differs
	back slot
}

func (r *residual) add(a, b *Tensor, label string) *Tensor {
	if !a.SameShape(b.Shape) {
		panic(fmt.Sprintf("nn: %s: residual branch %v and shortcut %v differ", label, a.Shape, b.Shape))
	}
	b = relayout(r.dev, &r.b, b, a.Layout)
	s := r.sum.ensure(r.dev, a.Shape)
	s.Layout = a.Layout
	r.dev.Add(s.Data, a.Data, b.Data)
	return s
}

// addReLU is relu.Forward(add(a, b)), in one pass where the device fuses
// them (kernels.ReLUFuser): the sum is written as relu's output.
func (r *residual) addReLU(a, b *Tensor, relu *ReLU, label string) *Tensor {
	if !a.SameShape(b.Shape) {
		panic(fmt.Sprintf("nn: %s: residual branch %v and shortcut %v differ", label, a.Shape, b.Shape))
	}
	b = relayout(r.dev, &r.b, b, a.Layout)
	f, ok := r.dev.(kernels.ReLUFuser)
	if !ok {
		// relu alone reads the sum: its Backward reads its output.
		s := r.tmp.ensure(r.dev, a.Shape)
		s.Layout = a.Layout
		r.dev.Add(s.Data, a.Data, b.Data)
		y := relu.Forward(s)
		release(s)
		return y
	}
	y := relu.y.ensure(r.dev, a.Shape)
	y.Layout = a.Layout
	relu.have = true
	f.AddReLU(y.Data, a.Data, b.Data)
	return y
}

// addGrad returns a + b, the gradient of an input that both paths read,
// written over a: the branch's gradient, which the block made in its own
// Backward and nobody else reads, so that the sum takes no buffer of its
// own.
func (r *residual) addGrad(a, b *Tensor) *Tensor {
	b = relayout(r.dev, &r.back, b, a.Layout)
	r.dev.Add(a.Data, a.Data, b.Data)
	return a
}

// dropShortcut gives back the memory of a projection shortcut's output
// once the sum is made, but never x, the block's input, which the shortcut
// may be and which belongs to the caller.
func dropShortcut(shortcut, x *Tensor) {
	if shortcut != x {
		release(shortcut)
	}
}

// addGradShortcut finishes a Backward whose residual branch returned d:
// it runs the shortcut's Backward on ds, the gradient of the sum (none
// for the identity), and returns the sum of the two paths, giving back
// ds and the terms once consumed.
func (r *residual) addGradShortcut(h *backwardHook, d, ds *Tensor, shortcut Module) *Tensor {
	dsc := ds
	if shortcut != nil {
		dsc = h.backInner(shortcut, ds)
	}
	dx := r.addGrad(d, dsc)
	consumed(d, dx)
	consumed(dsc, dx)
	return dx
}

func conv3x3(dev kernels.Device, name string, in, out, stride int, rng *rand.Rand) *Conv2d {
	return NewConv2d(dev, name, Conv2dConfig{In: in, Out: out, Kernel: 3, Stride: stride, Padding: 1}, rng)
}

func conv1x1(dev kernels.Device, name string, in, out, stride int, rng *rand.Rand) *Conv2d {
	return NewConv2d(dev, name, Conv2dConfig{In: in, Out: out, Kernel: 1, Stride: stride}, rng)
}

// downsample is torchvision's projection shortcut: a strided 1×1
// convolution and a BatchNorm2d, named prefix.downsample.0 and .1.
func downsample(dev kernels.Device, name string, in, out, stride int, rng *rand.Rand) *Sequential {
	ds := join(name, "downsample")
	return NewSequential(conv1x1(dev, join(ds, "0"), in, out, stride, rng), NewBatchNorm2d(dev, join(ds, "1"), out))
}

// BasicBlock is torchvision's ResNet BasicBlock: relu(bn2(conv2(relu(bn1(
// conv1(x))))) + shortcut(x)), with a projection shortcut (Downsample) when
// the stride or the width changes, and the identity otherwise.
type BasicBlock struct {
	Conv1      *Conv2d
	BN1        *BatchNorm2d
	ReLU1      *ReLU
	Conv2      *Conv2d
	BN2        *BatchNorm2d
	Downsample *Sequential // nil for the identity shortcut
	ReLU2      *ReLU

	name     string
	res      residual
	children []Module
	params   []*Param
	hook     backwardHook
}

// NewBasicBlock returns a BasicBlock from in to out channels whose first
// convolution has the given stride. Names follow torchvision inside the
// prefix: conv1, bn1, conv2, bn2, downsample.0, downsample.1.
func NewBasicBlock(dev kernels.Device, name string, in, out, stride int, rng *rand.Rand) *BasicBlock {
	b := &BasicBlock{
		Conv1: conv3x3(dev, join(name, "conv1"), in, out, stride, rng),
		BN1:   NewBatchNorm2d(dev, join(name, "bn1"), out),
		ReLU1: NewReLU(dev),
		Conv2: conv3x3(dev, join(name, "conv2"), out, out, 1, rng),
		BN2:   NewBatchNorm2d(dev, join(name, "bn2"), out),
		ReLU2: NewReLU(dev),
		name:  name,
		res:   residual{dev: dev},
	}
	b.children = []Module{b.Conv1, b.BN1, b.ReLU1, b.Conv2, b.BN2}
	if stride != 1 || in != out {
		b.Downsample = downsample(dev, name, in, out, stride, rng)
		b.children = append(b.children, b.Downsample)
	}
	b.children = append(b.children, b.ReLU2)
	b.params = collectParams(b.children)
	return b
}

// Forward runs the block; the output is owned by the block.
func (b *BasicBlock) Forward(x *Tensor) *Tensor {
	h := b.BN1.forwardReLU(b.Conv1.Forward(x), b.ReLU1)
	h = b.Conv2.Forward(h)
	sc := x
	if b.Downsample != nil {
		sc = b.Downsample.Forward(x)
	}
	y := b.BN2.forwardAddReLU(h, sc, b.ReLU2, &b.res, layerName(b.name, "BasicBlock"))
	dropShortcut(sc, x)
	return y
}

// Backward returns the sum of the gradients through both paths.
func (b *BasicBlock) Backward(dy *Tensor) *Tensor {
	h := &b.hook
	ds := h.back(b.ReLU2, dy)
	d := h.back(b.BN2, ds)
	d = h.backInner(b.Conv1, h.backBNReLUInner(b.BN1, b.ReLU1, h.backInner(b.Conv2, d)))
	var sc Module // nil, not a nil *Sequential, for the identity
	if b.Downsample != nil {
		sc = b.Downsample
	}
	return b.res.addGradShortcut(&b.hook, d, ds, sc)
}

// SetBackwardHook makes Backward report each layer as its gradients become
// final (see BackwardHooker).
func (b *BasicBlock) SetBackwardHook(fn func(Module)) { b.hook.set(fn, b.children) }

// Params returns every state_dict entry, in torchvision's order.
func (b *BasicBlock) Params() []*Param { return b.params }

// SetTraining sets the mode of every layer.
func (b *BasicBlock) SetTraining(on bool) { setTraining(b.children, on) }

// SetDeviceLayouts hands the switch on to the layers (see DeviceLayouter).
func (b *BasicBlock) SetDeviceLayouts(on bool) { setDeviceLayouts(b.children, on) }

// Children returns the layers in forward order, the shortcut after the
// residual branch.
func (b *BasicBlock) Children() []Module { return b.children }

// Bottleneck is torchvision's ResNet v1.5 Bottleneck: 1×1 to width, 3×3 with
// the stride, 1×1 to 4·width, each followed by BatchNorm (and ReLU but for
// the last), plus the shortcut, then ReLU.
type Bottleneck struct {
	Conv1      *Conv2d
	BN1        *BatchNorm2d
	ReLU1      *ReLU
	Conv2      *Conv2d
	BN2        *BatchNorm2d
	ReLU2      *ReLU
	Conv3      *Conv2d
	BN3        *BatchNorm2d
	Downsample *Sequential // nil for the identity shortcut
	ReLU3      *ReLU

	name     string
	res      residual
	children []Module
	params   []*Param
	hook     backwardHook
}

// BottleneckExpansion is the ratio of a Bottleneck's output channels to its
// width.
const BottleneckExpansion = 4

// NewBottleneck returns a Bottleneck from in to 4·width channels.
func NewBottleneck(dev kernels.Device, name string, in, width, stride int, rng *rand.Rand) *Bottleneck {
	out := width * BottleneckExpansion
	b := &Bottleneck{
		Conv1: conv1x1(dev, join(name, "conv1"), in, width, 1, rng),
		BN1:   NewBatchNorm2d(dev, join(name, "bn1"), width),
		ReLU1: NewReLU(dev),
		Conv2: conv3x3(dev, join(name, "conv2"), width, width, stride, rng),
		BN2:   NewBatchNorm2d(dev, join(name, "bn2"), width),
		ReLU2: NewReLU(dev),
		Conv3: conv1x1(dev, join(name, "conv3"), width, out, 1, rng),
		BN3:   NewBatchNorm2d(dev, join(name, "bn3"), out),
		ReLU3: NewReLU(dev),
		name:  name,
		res:   residual{dev: dev},
	}
	b.children = []Module{b.Conv1, b.BN1, b.ReLU1, b.Conv2, b.BN2, b.ReLU2, b.Conv3, b.BN3}
	if stride != 1 || in != out {
		b.Downsample = downsample(dev, name, in, out, stride, rng)
		b.children = append(b.children, b.Downsample)
	}
	b.children = append(b.children, b.ReLU3)
	b.params = collectParams(b.children)
	return b
}

// Forward runs the block; the output is owned by the block.
func (b *Bottleneck) Forward(x *Tensor) *Tensor {
	h := b.BN1.forwardReLU(b.Conv1.Forward(x), b.ReLU1)
	h = b.BN2.forwardReLU(b.Conv2.Forward(h), b.ReLU2)
	h = b.Conv3.Forward(h)
	sc := x
	if b.Downsample != nil {
		sc = b.Downsample.Forward(x)
	}
	y := b.BN3.forwardAddReLU(h, sc, b.ReLU3, &b.res, layerName(b.name, "Bottleneck"))
	dropShortcut(sc, x)
	return y
}

// Backward returns the sum of the gradients through both paths.
func (b *Bottleneck) Backward(dy *Tensor) *Tensor {
	h := &b.hook
	ds := h.back(b.ReLU3, dy)
	d := h.backInner(b.Conv3, h.back(b.BN3, ds))
	d = h.backInner(b.Conv1, h.backBNReLUInner(b.BN1, b.ReLU1, h.backInner(b.Conv2, h.backBNReLUInner(b.BN2, b.ReLU2, d))))
	var sc Module // nil, not a nil *Sequential, for the identity
	if b.Downsample != nil {
		sc = b.Downsample
	}
	return b.res.addGradShortcut(&b.hook, d, ds, sc)
}

// SetBackwardHook makes Backward report each layer as its gradients become
// final (see BackwardHooker).
func (b *Bottleneck) SetBackwardHook(fn func(Module)) { b.hook.set(fn, b.children) }

// Params returns every state_dict entry, in torchvision's order.
func (b *Bottleneck) Params() []*Param { return b.params }

// SetTraining sets the mode of every layer.
func (b *Bottleneck) SetTraining(on bool) { setTraining(b.children, on) }

// SetDeviceLayouts hands the switch on to the layers (see DeviceLayouter).
func (b *Bottleneck) SetDeviceLayouts(on bool) { setDeviceLayouts(b.children, on) }

// Children returns the layers in forward order, the shortcut after the
// residual branch.
func (b *Bottleneck) Children() []Module { return b.children }

// WideBlock is the pre-activation block of the common PyTorch WideResNet
// (xternalz/WideResNet-pytorch): conv2(dropout(relu(bn2(conv1(a))))) +
// shortcut, a = relu(bn1(x)). With equal widths the shortcut is x itself;
// otherwise it is the 1×1 convolution convShortcut applied to a, not to x,
// as that code does. There is no activation after the sum.
type WideBlock struct {
	BN1          *BatchNorm2d
	ReLU1        *ReLU
	Conv1        *Conv2d
	BN2          *BatchNorm2d
	ReLU2        *ReLU
	Drop         *Dropout
	Conv2        *Conv2d
	ConvShortcut *Conv2d // nil when in == out

	name     string
	res      residual
	children []Module
	params   []*Param
	hook     backwardHook
}

// NewWideBlock returns a WideBlock from in to out channels whose first
// convolution has the given stride, with dropout rate dropRate between the
// convolutions. Names inside the prefix: bn1, conv1, bn2, conv2,
// convShortcut. As in the reference code, equal widths mean an identity
// shortcut, so they require stride 1.
func NewWideBlock(dev kernels.Device, name string, in, out, stride int, dropRate float32, rng *rand.Rand) *WideBlock {
	if in == out && stride != 1 {
		panic(fmt.Sprintf("nn: %s: identity shortcut with stride %d (in = out = %d)", layerName(name, "WideBlock"), stride, in))
	}
	b := &WideBlock{
		BN1:   NewBatchNorm2d(dev, join(name, "bn1"), in),
		ReLU1: NewReLU(dev),
		Conv1: conv3x3(dev, join(name, "conv1"), in, out, stride, rng),
		BN2:   NewBatchNorm2d(dev, join(name, "bn2"), out),
		ReLU2: NewReLU(dev),
		Drop:  NewDropout(dev, dropRate, rng.Uint64()),
		Conv2: conv3x3(dev, join(name, "conv2"), out, out, 1, rng),
		name:  name,
		res:   residual{dev: dev},
	}
	b.children = []Module{b.BN1, b.ReLU1, b.Conv1, b.BN2, b.ReLU2, b.Drop, b.Conv2}
	if in != out {
		b.ConvShortcut = conv1x1(dev, join(name, "convShortcut"), in, out, stride, rng)
		b.children = append(b.children, b.ConvShortcut)
	}
	b.params = collectParams(b.children)
	return b
}

// Forward runs the block; the output is owned by the block.
func (b *WideBlock) Forward(x *Tensor) *Tensor {
	a := b.BN1.forwardReLU(x, b.ReLU1)
	h := b.BN2.forwardReLU(b.Conv1.Forward(a), b.ReLU2)
	h = b.Conv2.Forward(b.Drop.Forward(h))
	sc := x
	if b.ConvShortcut != nil {
		sc = b.ConvShortcut.Forward(a)
	}
	return b.res.add(h, sc, layerName(b.name, "WideBlock"))
}

// Backward returns the sum of the gradients through both paths.
func (b *WideBlock) Backward(dy *Tensor) *Tensor {
	h := &b.hook
	da := h.backInner(b.Conv1, h.backBNReLUInner(b.BN2, b.ReLU2, h.backInner(b.Drop, h.back(b.Conv2, dy))))
	if b.ConvShortcut == nil {
		d := h.backBNReLUInner(b.BN1, b.ReLU1, da)
		dx := b.res.addGrad(d, dy)
		consumed(d, dx)
		return dx
	}
	// Both paths start from a, so their gradients meet there.
	dsc := h.back(b.ConvShortcut, dy)
	sum := b.res.addGrad(da, dsc)
	consumed(da, sum)
	consumed(dsc, sum)
	return h.backBNReLUInner(b.BN1, b.ReLU1, sum)
}

// SetBackwardHook makes Backward report each layer as its gradients become
// final (see BackwardHooker).
func (b *WideBlock) SetBackwardHook(fn func(Module)) { b.hook.set(fn, b.children) }

// Params returns every state_dict entry, in the reference code's order.
func (b *WideBlock) Params() []*Param { return b.params }

// SetTraining sets the mode of every layer.
func (b *WideBlock) SetTraining(on bool) { setTraining(b.children, on) }

// SetDeviceLayouts hands the switch on to the layers (see DeviceLayouter).
func (b *WideBlock) SetDeviceLayouts(on bool) { setDeviceLayouts(b.children, on) }

// Children returns the layers in forward order, the shortcut last.
func (b *WideBlock) Children() []Module { return b.children }

// collectParams concatenates the modules' parameters into a slice of its
// own, clipped so that a caller's append cannot write into it.
func collectParams(mods []Module) []*Param {
	var ps []*Param
	for _, m := range mods {
		ps = append(ps, m.Params()...)
	}
	return slices.Clip(ps)
}

func setTraining(mods []Module, on bool) {
	for _, m := range mods {
		m.SetTraining(on)
	}
}
