package nn

import (
	"fmt"
	"math/rand/v2"

	"github.com/macdist/macdist/kernels"
)

// SwinBlock is torchvision's SwinTransformerBlock on channels-last maps
// [B, H, W, dim]:
//
//	h = x + drop_path(attn(norm1(x)))
//	y = h + drop_path(mlp.3(GELU(mlp.0(norm2(h)))))
//
// with (shifted) WindowAttention, LayerNorms of eps 1e-5 and erf GELU. Its
// parameter names are torchvision's: name.norm1.*, name.attn.*,
// name.norm2.*, name.mlp.0.*, name.mlp.3.*.
type SwinBlock struct {
	dev          kernels.Device
	name         string
	dim          int
	norm1, norm2 *LayerNorm
	attn         *WindowAttention
	fc1, fc2     *Linear
	act          *GELU
	dp1, dp2     *DropPath
	hook         backwardHook
	params       []*Param

	x     *Tensor
	h, y  slot
	dh    slot
	dx    slot
	shape [4]int
}

// NewSwinBlock returns a block of width dim, heads attention heads, windows
// of side ws shifted by shift, and an MLP of hidden width int(dim·mlpRatio).
func NewSwinBlock(dev kernels.Device, name string, dim, heads, ws, shift int, mlpRatio float64, rng *rand.Rand) *SwinBlock {
	hidden := int(float64(dim) * mlpRatio)
	if hidden <= 0 {
		panic(fmt.Sprintf("nn: %s: MLP ratio %g gives hidden width %d", layerName(name, "SwinBlock"), mlpRatio, hidden))
	}
	s := &SwinBlock{
		dev: dev, name: name, dim: dim,
		norm1: NewLayerNorm(dev, join(name, "norm1"), dim, 1e-5),
		attn:  NewWindowAttention(dev, join(name, "attn"), dim, heads, ws, shift, rng),
		norm2: NewLayerNorm(dev, join(name, "norm2"), dim, 1e-5),
		fc1:   NewLinear(dev, join(name, "mlp.0"), dim, hidden, true, rng),
		act:   NewGELU(dev, false),
		fc2:   NewLinear(dev, join(name, "mlp.3"), hidden, dim, true, rng),
	}
	s.params = collectParams(s.Children())
	return s
}

func (s *SwinBlock) label() string { return layerName(s.name, "SwinBlock") }

// Forward maps x [B, H, W, dim] to a tensor of the same shape.
func (s *SwinBlock) Forward(x *Tensor) *Tensor {
	if len(x.Shape) != 4 || x.Shape[3] != s.dim || x.Shape[0] == 0 {
		shapePanic(s.label(), x.Shape, shapeStr("B", "H", "W", s.dim))
	}
	d := s.dev
	s.x = x
	copy(s.shape[:], x.Shape)
	a := s.attn.Forward(s.norm1.Forward(x))
	if s.dp1 != nil {
		a = s.dp1.Forward(a)
	}
	h := s.h.ensure(d, x.Shape)
	d.Add(h.Data, x.Data, a.Data)
	m := s.fc2.Forward(s.act.Forward(s.fc1.Forward(s.norm2.Forward(h))))
	if s.dp2 != nil {
		m = s.dp2.Forward(m)
	}
	y := s.y.ensure(d, x.Shape)
	d.Add(y.Data, h.Data, m.Data)
	return y
}

// Backward accumulates the gradients of every sublayer and returns dL/dx.
func (s *SwinBlock) Backward(dy *Tensor) *Tensor {
	mustForward(s.label(), s.x != nil)
	if !dy.SameShape(s.shape[:]) {
		gradPanic(s.label(), dy.Shape, s.shape[:])
	}
	d := s.dev
	h := &s.hook
	dm := dy
	if s.dp2 != nil {
		dm = s.dp2.Backward(dm)
	}
	dm = h.back(s.norm2, h.back(s.fc1, h.back(s.act, h.back(s.fc2, dm))))
	dh := s.dh.ensure(d, s.shape[:])
	d.Add(dh.Data, dy.Data, dm.Data)
	da := dh
	if s.dp1 != nil {
		da = s.dp1.Backward(da)
	}
	da = h.back(s.norm1, h.back(s.attn, da))
	dx := s.dx.ensure(d, s.shape[:])
	d.Add(dx.Data, dh.Data, da.Data)
	return dx
}

// Params returns every parameter in torchvision's state_dict order.
func (s *SwinBlock) Params() []*Param { return s.params }

// SetTraining passes the mode on to every sublayer.
func (s *SwinBlock) SetTraining(on bool) {
	for _, m := range s.Children() {
		m.SetTraining(on)
	}
}

// SetDropPath gives both residual branches stochastic depth of rate p
// (torchvision's StochasticDepth in "row" mode, one mask per branch); seed
// is the first seed of the attention branch's masks, seed+1<<32 the MLP
// branch's. A rate of 0 removes it.
func (s *SwinBlock) SetDropPath(p float32, seed uint64) {
	if p == 0 {
		s.dp1, s.dp2 = nil, nil
		return
	}
	s.dp1, s.dp2 = NewDropPath(s.dev, p, seed), NewDropPath(s.dev, p, seed+1<<32)
}

// DropPath returns the stochastic depth of the two branches (nil without).
func (s *SwinBlock) DropPath() (attn, mlp *DropPath) { return s.dp1, s.dp2 }

// Children returns norm1, attn, norm2, mlp.0, the GELU and mlp.3, each
// branch followed by its DropPath when SetDropPath gave it one (so that
// nn.Walk finds them).
func (s *SwinBlock) Children() []Module {
	if s.dp1 != nil {
		return []Module{s.norm1, s.attn, s.dp1, s.norm2, s.fc1, s.act, s.fc2, s.dp2}
	}
	return []Module{s.norm1, s.attn, s.norm2, s.fc1, s.act, s.fc2}
}

// SetBackwardHook makes Backward report each layer as its gradients become
// final (see BackwardHooker).
func (s *SwinBlock) SetBackwardHook(fn func(Module)) {
	s.hook.fn = fn
	s.attn.SetBackwardHook(fn)
}

// Attn returns the block's window attention.
func (s *SwinBlock) Attn() *WindowAttention { return s.attn }

// PatchMerging is torchvision's Swin PatchMerging on channels-last maps:
// [B, H, W, C] → [B, H/2, W/2, 2C], each output token the LayerNorm (eps
// 1e-5) of its 2 × 2 input tokens concatenated as x[0::2, 0::2],
// x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2], then reduced by a Linear
// without bias. H and W must be even (torchvision pads them).
type PatchMerging struct {
	dev       kernels.Device
	name      string
	dim       int
	norm      *LayerNorm
	reduction *Linear
	hook      backwardHook
	params    []*Param
	x         *Tensor
	cat, dx   slot
}

// NewPatchMerging returns the merging of dim-channel maps; its parameters
// are name.reduction.weight, name.norm.weight and name.norm.bias.
func NewPatchMerging(dev kernels.Device, name string, dim int, rng *rand.Rand) *PatchMerging {
	p := &PatchMerging{dev: dev, name: name, dim: dim,
		reduction: NewLinear(dev, join(name, "reduction"), 4*dim, 2*dim, false, rng),
		norm:      NewLayerNorm(dev, join(name, "norm"), 4*dim, 1e-5),
	}
	p.params = collectParams([]Module{p.reduction, p.norm})
	return p
}

// gather moves the 2 × 2 neighbourhoods between x [B, H, W, C] and cat
// [B, H/2, W/2, 4C], in either direction.
func (p *PatchMerging) gather(x, cat kernels.Buffer, b, h, w int, toCat bool) {
	c := p.dim
	rows := b * h / 2 // an image's row pairs fold into the batch
	perm, _ := p.dev.(kernels.Permuter)
	for k, off := range [4][2]int{{0, 0}, {1, 0}, {0, 1}, {1, 1}} {
		xOff := off[0]*w*c + off[1]*c
		cOff := k * c
		xS := [4]int{0, 2 * w * c, 2 * c, 1}
		cS := [4]int{0, (w / 2) * 4 * c, 4 * c, 1}
		shape := [4]int{1, rows, w / 2, c}
		switch {
		case perm != nil && toCat:
			perm.CopyStrided(cat, cOff, cS, x, xOff, xS, shape)
		case perm != nil:
			perm.CopyStrided(x, xOff, xS, cat, cOff, cS, shape)
		default:
			for r := range rows {
				if toCat {
					p.dev.Copy2D(cat, cOff+r*cS[1], 4*c, x, xOff+r*xS[1], 2*c, w/2, c)
				} else {
					p.dev.Copy2D(x, xOff+r*xS[1], 2*c, cat, cOff+r*cS[1], 4*c, w/2, c)
				}
			}
		}
	}
}

// Forward maps x [B, H, W, dim] to [B, H/2, W/2, 2·dim].
func (p *PatchMerging) Forward(x *Tensor) *Tensor {
	if len(x.Shape) != 4 || x.Shape[3] != p.dim || x.Shape[0] == 0 || x.Shape[1]%2 != 0 || x.Shape[2]%2 != 0 || x.Shape[1] == 0 || x.Shape[2] == 0 {
		shapePanic(layerName(p.name, "PatchMerging"), x.Shape, shapeStr("B", "2k", "2k", p.dim))
	}
	p.x = x
	b, h, w := x.Shape[0], x.Shape[1], x.Shape[2]
	shape := [4]int{b, h / 2, w / 2, 4 * p.dim}
	cat := p.cat.ensure(p.dev, shape[:])
	p.gather(x.Data, cat.Data, b, h, w, true)
	return p.reduction.Forward(p.norm.Forward(cat))
}

// Backward accumulates the gradients of norm and reduction and returns
// dL/dx.
func (p *PatchMerging) Backward(dy *Tensor) *Tensor {
	mustForward(layerName(p.name, "PatchMerging"), p.x != nil)
	dcat := p.hook.back(p.norm, p.hook.back(p.reduction, dy))
	dx := p.dx.ensure(p.dev, p.x.Shape)
	p.gather(dx.Data, dcat.Data, p.x.Shape[0], p.x.Shape[1], p.x.Shape[2], false)
	return dx
}

// Params returns reduction.weight, then norm's, torchvision's order.
func (p *PatchMerging) Params() []*Param { return p.params }

// SetTraining passes the mode on.
func (p *PatchMerging) SetTraining(on bool) {
	p.norm.SetTraining(on)
	p.reduction.SetTraining(on)
}

// Children returns norm and reduction, in forward order.
func (p *PatchMerging) Children() []Module { return []Module{p.norm, p.reduction} }

// SetBackwardHook makes Backward report reduction, then norm.
func (p *PatchMerging) SetBackwardHook(fn func(Module)) { p.hook.fn = fn }

// ChannelsLast is torchvision's Permute([0, 2, 3, 1]): [B, C, H, W] →
// [B, H, W, C].
type ChannelsLast struct {
	dev   kernels.Device
	x     *Tensor
	y, dx slot
}

// NewChannelsLast returns the permutation.
func NewChannelsLast(dev kernels.Device) *ChannelsLast { return &ChannelsLast{dev: dev} }

// Forward transposes each image's channels to the last axis.
func (p *ChannelsLast) Forward(x *Tensor) *Tensor {
	if len(x.Shape) != 4 {
		shapePanic("ChannelsLast", x.Shape, shapeStr("B", "C", "H", "W"))
	}
	p.x = x
	b, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	shape := [4]int{b, h, w, c}
	y := p.y.ensure(p.dev, shape[:])
	transposeBatched(p.dev, y.Data, x.Data, b, c, h*w)
	return y
}

// Backward transposes the gradient back.
func (p *ChannelsLast) Backward(dy *Tensor) *Tensor {
	mustForward("ChannelsLast", p.x != nil)
	if !dy.SameShape(p.y.t.Shape) {
		gradPanic("ChannelsLast", dy.Shape, p.y.t.Shape)
	}
	b, c, h, w := p.x.Shape[0], p.x.Shape[1], p.x.Shape[2], p.x.Shape[3]
	dx := p.dx.ensure(p.dev, p.x.Shape)
	transposeBatched(p.dev, dx.Data, dy.Data, b, h*w, c)
	return dx
}

// Params returns nil.
func (p *ChannelsLast) Params() []*Param { return nil }

// SetTraining does nothing.
func (p *ChannelsLast) SetTraining(bool) {}

// MeanTokens averages a channels-last map over its positions, [B, …, C] →
// [B, C]: torchvision's Swin head pooling (permute, AdaptiveAvgPool2d(1),
// flatten).
type MeanTokens struct {
	dev   kernels.Device
	x     *Tensor
	y, dx slot
}

// NewMeanTokens returns the pooling.
func NewMeanTokens(dev kernels.Device) *MeanTokens { return &MeanTokens{dev: dev} }

// Forward averages x over every axis but the first and the last.
func (m *MeanTokens) Forward(x *Tensor) *Tensor {
	if len(x.Shape) < 3 {
		shapePanic("MeanTokens", x.Shape, shapeStr("B", "…", "C"))
	}
	m.x = x
	b, c := x.Shape[0], x.Shape[len(x.Shape)-1]
	n := x.Len() / (b * c)
	shape := [2]int{b, c}
	y := m.y.ensure(m.dev, shape[:])
	m.dev.ReduceSum(y.Data, x.Data, b, n, c, 1/float32(n), 0)
	return y
}

// Backward spreads dy evenly over the positions.
func (m *MeanTokens) Backward(dy *Tensor) *Tensor {
	mustForward("MeanTokens", m.x != nil)
	if !dy.SameShape(m.y.t.Shape) {
		gradPanic("MeanTokens", dy.Shape, m.y.t.Shape)
	}
	b, c := m.x.Shape[0], m.x.Shape[len(m.x.Shape)-1]
	n := m.x.Len() / (b * c)
	dx := m.dx.ensure(m.dev, m.x.Shape)
	m.dev.Expand(dx.Data, dy.Data, b, n, c, 1/float32(n), 0)
	return dx
}

// Params returns nil.
func (m *MeanTokens) Params() []*Param { return nil }

// SetTraining does nothing.
func (m *MeanTokens) SetTraining(bool) {}
