package nn

import (
	"fmt"
	"math/rand/v2"

	"github.com/macdist/macdist/kernels"
)

// ViTBlock is timm's pre-norm transformer Block without layer scale or
// dropout:
//
//	h = x + drop_path(attn(norm1(x)))
//	y = h + drop_path(mlp.fc2(GELU(mlp.fc1(norm2(h)))))
//
// where drop_path is the identity unless SetDropPath turns it on.
//
// with LayerNorms of eps 1e-6 (timm's ViT passes partial(nn.LayerNorm,
// eps=1e-6)), erf GELU and a qkv bias.
type ViTBlock struct {
	dev          kernels.Device
	name         string
	dim          int
	norm1, norm2 *LayerNorm
	attn         *MultiHeadSelfAttention
	fc1, fc2     *Linear
	act          *GELU
	dp1, dp2     *DropPath // nil without stochastic depth
	hook         backwardHook
	params       []*Param

	x     *Tensor
	h, y  slot // the two residual sums
	shape [3]int
}

// NewViTBlock returns a block of width dim with heads attention heads and an
// MLP of hidden width int(dim·mlpRatio), as timm computes it. Parameter
// names follow timm: name.norm1.*, name.attn.qkv.*, name.attn.proj.*,
// name.norm2.*, name.mlp.fc1.*, name.mlp.fc2.*.
func NewViTBlock(dev kernels.Device, name string, dim, heads int, mlpRatio float64, rng *rand.Rand) *ViTBlock {
	hidden := int(float64(dim) * mlpRatio)
	if hidden <= 0 {
		panic(fmt.Sprintf("nn: %s: MLP ratio %g gives hidden width %d", layerName(name, "ViTBlock"), mlpRatio, hidden))
	}
	v := &ViTBlock{
		dev: dev, name: name, dim: dim,
		norm1: NewLayerNorm(dev, join(name, "norm1"), dim, 1e-6),
		attn:  NewMultiHeadSelfAttention(dev, join(name, "attn"), dim, heads, true, rng),
		norm2: NewLayerNorm(dev, join(name, "norm2"), dim, 1e-6),
		fc1:   NewLinear(dev, join(name, "mlp.fc1"), dim, hidden, true, rng),
		act:   NewGELU(dev, false),
		fc2:   NewLinear(dev, join(name, "mlp.fc2"), hidden, dim, true, rng),
	}
	v.params = collectParams(v.Children())
	return v
}

func (v *ViTBlock) label() string { return layerName(v.name, "ViTBlock") }

// Forward maps x [B, N, dim] to a tensor of the same shape.
func (v *ViTBlock) Forward(x *Tensor) *Tensor {
	if len(x.Shape) != 3 || x.Shape[2] != v.dim || x.Shape[0] == 0 || x.Shape[1] == 0 {
		shapePanic(v.label(), x.Shape, shapeStr("B", "N", v.dim))
	}
	d := v.dev
	v.x = x
	copy(v.shape[:], x.Shape)
	a := v.attn.Forward(v.norm1.Forward(x))
	if v.dp1 != nil {
		a = v.dp1.Forward(a)
	}
	h := v.h.ensure(d, x.Shape)
	d.Add(h.Data, x.Data, a.Data)
	m := v.fc2.Forward(v.act.Forward(v.fc1.Forward(v.norm2.Forward(h))))
	if v.dp2 != nil {
		m = v.dp2.Forward(m)
	}
	y := v.y.ensure(d, x.Shape)
	d.Add(y.Data, h.Data, m.Data)
	return y
}

// Backward accumulates the gradients of every sublayer and returns dL/dx.
func (v *ViTBlock) Backward(dy *Tensor) *Tensor {
	mustForward(v.label(), v.x != nil)
	if !dy.SameShape(v.shape[:]) {
		gradPanic(v.label(), dy.Shape, v.shape[:])
	}
	d := v.dev
	h := &v.hook
	dm := dy
	if v.dp2 != nil {
		dm = v.dp2.Backward(dm)
	}
	t := h.back(v.fc2, dm)
	if dm != dy { // dy is the caller's to give back
		consumed(dm, t)
	}
	dm = h.backInner(v.norm2, h.backInner(v.fc1, h.backInner(v.act, t)))
	// dL/dh = dy + dm, written over dm, which this Backward made and
	// nobody else reads (as the residual blocks do, see addGrad).
	d.Add(dm.Data, dy.Data, dm.Data)
	dh := dm
	da := dh
	if v.dp1 != nil {
		da = v.dp1.Backward(da)
	}
	t = h.back(v.attn, da)
	if da != dh { // dh is read again below
		consumed(da, t)
	}
	dx := h.backInner(v.norm1, t)
	d.Add(dx.Data, dh.Data, dx.Data)
	release(dh)
	return dx
}

// Params returns every parameter in timm's state_dict order.
func (v *ViTBlock) Params() []*Param { return v.params }

// SetTraining passes the mode on to every sublayer.
func (v *ViTBlock) SetTraining(on bool) {
	for _, m := range v.Children() {
		m.SetTraining(on)
	}
}

// SetDropPath gives both residual branches stochastic depth of rate p, as
// timm's Block does with drop_path > 0 (one DropPath module per branch, so
// each branch draws its own mask); seed is the first seed of the attention
// branch's masks, seed+1<<32 the MLP branch's. A rate of 0 removes it.
func (v *ViTBlock) SetDropPath(p float32, seed uint64) {
	if p == 0 {
		v.dp1, v.dp2 = nil, nil
		return
	}
	v.dp1, v.dp2 = NewDropPath(v.dev, p, seed), NewDropPath(v.dev, p, seed+1<<32)
}

// DropPath returns the stochastic depth of the attention and MLP branches
// (nil, nil without).
func (v *ViTBlock) DropPath() (attn, mlp *DropPath) { return v.dp1, v.dp2 }

// Children returns norm1, attn, norm2, mlp.fc1, the GELU and mlp.fc2, in
// forward order, each branch followed by its DropPath when SetDropPath
// gave it one (so that nn.Walk finds them).
func (v *ViTBlock) Children() []Module {
	if v.dp1 != nil {
		return []Module{v.norm1, v.attn, v.dp1, v.norm2, v.fc1, v.act, v.fc2, v.dp2}
	}
	return []Module{v.norm1, v.attn, v.norm2, v.fc1, v.act, v.fc2}
}

// SetBackwardHook makes Backward report each layer as its gradients become
// final (see BackwardHooker).
func (v *ViTBlock) SetBackwardHook(fn func(Module)) {
	v.hook.fn = fn
	v.attn.SetBackwardHook(fn)
}

// Attn returns the block's attention layer.
func (v *ViTBlock) Attn() *MultiHeadSelfAttention { return v.attn }
