package nn

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/macdist/macdist/kernels"
)

// TokenEmbed prepends the class token to a sequence of patch tokens and adds
// the learned position embedding, as timm's VisionTransformer does between
// patch_embed and the blocks (_pos_embed with class token, no register
// tokens, no dropout):
//
//	y = cat(cls_token.expand(B, 1, D), x) + pos_embed
type TokenEmbed struct {
	dev         kernels.Device
	name        string
	tokens, dim int
	cls, pos    *Param
	params      []*Param
	x           *Tensor
	y, dx       slot
	sum         kernels.Buffer // Σ_b dy[b], (tokens+1)·dim
	sumCls      kernels.Buffer // view of sum's first row
	batch       int
}

// NewTokenEmbed returns the embedding for sequences of tokens patch tokens of
// width dim. Its parameters are <name>cls_token [1, 1, dim] and
// <name>pos_embed [1, tokens+1, dim], kind KindEmbedding, initialised as timm
// does (truncated normal, σ 0.02, cut at ±2); name is normally "", giving the
// state_dict keys cls_token and pos_embed of a timm ViT.
func NewTokenEmbed(dev kernels.Device, name string, tokens, dim int, rng *rand.Rand) *TokenEmbed {
	if tokens <= 0 || dim <= 0 {
		panic(fmt.Sprintf("nn: %s: TokenEmbed of %d tokens of dimension %d", layerName(name, "TokenEmbed"), tokens, dim))
	}
	e := &TokenEmbed{dev: dev, name: name, tokens: tokens, dim: dim}
	e.cls = &Param{Name: join(name, "cls_token"), Kind: KindEmbedding,
		Value: NewTensor(dev, 1, 1, dim), Grad: NewTensor(dev, 1, 1, dim)}
	e.pos = &Param{Name: join(name, "pos_embed"), Kind: KindEmbedding,
		Value: NewTensor(dev, 1, tokens+1, dim), Grad: NewTensor(dev, 1, tokens+1, dim)}
	// DeiT's recipe (timm 0.4, which DeiT trains with): trunc_normal_ σ .02
	// for both. Current timm draws the class token from N(0, 1e-12) instead;
	// a model builder that wants that overwrites it.
	dev.Upload(e.cls.Value.Data, truncNormal(rng, dim, 0.02))
	dev.Upload(e.pos.Value.Data, truncNormal(rng, (tokens+1)*dim, 0.02))
	e.params = []*Param{e.cls, e.pos}
	e.sum = dev.Alloc((tokens + 1) * dim)
	e.sumCls = dev.View(e.sum, 0, dim)
	return e
}

// truncNormal draws n numbers from N(0, σ²) conditioned on [−2, 2], as
// PyTorch's trunc_normal_(std=σ) with its default absolute bounds a=−2,
// b=2 (which, for σ = 0.02, never bind: 100σ).
func truncNormal(rng *rand.Rand, n int, std float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		for {
			x := rng.NormFloat64() * std
			if math.Abs(x) <= 2 {
				v[i] = float32(x)
				break
			}
		}
	}
	return v
}

func (e *TokenEmbed) label() string { return layerName(e.name, "TokenEmbed") }

// Forward maps patch tokens x [B, tokens, dim] to [B, tokens+1, dim].
func (e *TokenEmbed) Forward(x *Tensor) *Tensor {
	if len(x.Shape) != 3 || x.Shape[1] != e.tokens || x.Shape[2] != e.dim {
		shapePanic(e.label(), x.Shape, shapeStr("B", e.tokens, e.dim))
	}
	d := e.dev
	B, T, D := x.Shape[0], e.tokens, e.dim
	e.x, e.batch = x, B
	shape := [3]int{B, T + 1, D}
	y := e.y.ensure(d, shape[:])
	d.Copy2D(y.Data, D, (T+1)*D, x.Data, 0, T*D, B, T*D)
	d.Copy2D(y.Data, 0, (T+1)*D, e.cls.Value.Data, 0, 0, B, D)
	d.Expand(y.Data, e.pos.Value.Data, 1, B, (T+1)*D, 1, 1)
	return y
}

// Backward accumulates the gradients of cls_token and pos_embed and returns
// dL/dx.
func (e *TokenEmbed) Backward(dy *Tensor) *Tensor {
	mustForward(e.label(), e.x != nil)
	if !dy.SameShape(e.y.t.Shape) {
		gradPanic(e.label(), dy.Shape, e.y.t.Shape)
	}
	d := e.dev
	B, T, D := e.batch, e.tokens, e.dim
	// Both gradients are batch sums of dy: pos_embed's all of it, the class
	// token's its first row.
	d.ReduceSum(e.sum, dy.Data, 1, B, (T+1)*D, 1, 0)
	d.Axpby(e.pos.Grad.Data, 1, e.sum, 1)
	d.Axpby(e.cls.Grad.Data, 1, e.sumCls, 1)
	dx := e.dx.ensure(d, e.x.Shape)
	d.Copy2D(dx.Data, 0, T*D, dy.Data, D, (T+1)*D, B, T*D)
	return dx
}

// Params returns cls_token and pos_embed, in timm's state_dict order.
func (e *TokenEmbed) Params() []*Param { return e.params }

// SetTraining does nothing: position dropout is not implemented.
func (e *TokenEmbed) SetTraining(bool) {}

// TakeToken selects one token of each sequence: [B, N, D] → [B, D]. With
// index 0 it is timm's class-token pooling (global_pool="token").
type TakeToken struct {
	dev   kernels.Device
	index int
	x     *Tensor
	y, dx slot
}

// NewTakeToken returns the selection of token index.
func NewTakeToken(dev kernels.Device, index int) *TakeToken {
	if index < 0 {
		panic(fmt.Sprintf("nn: TakeToken: negative index %d", index))
	}
	return &TakeToken{dev: dev, index: index}
}

// Forward returns x[:, index].
func (t *TakeToken) Forward(x *Tensor) *Tensor {
	if len(x.Shape) != 3 || x.Shape[1] <= t.index {
		shapePanic("TakeToken", x.Shape, shapeStr("B", fmt.Sprintf("N>%d", t.index), "D"))
	}
	B, N, D := x.Shape[0], x.Shape[1], x.Shape[2]
	t.x = x
	shape := [2]int{B, D}
	y := t.y.ensure(t.dev, shape[:])
	t.dev.Copy2D(y.Data, 0, D, x.Data, t.index*D, N*D, B, D)
	return y
}

// Backward scatters dy into the selected token of a zero gradient.
func (t *TakeToken) Backward(dy *Tensor) *Tensor {
	mustForward("TakeToken", t.x != nil)
	if !dy.SameShape(t.y.t.Shape) {
		gradPanic("TakeToken", dy.Shape, t.y.t.Shape)
	}
	N, D := t.x.Shape[1], t.x.Shape[2]
	dx := t.dx.ensure(t.dev, t.x.Shape)
	t.dev.Fill(dx.Data, 0)
	t.dev.Copy2D(dx.Data, t.index*D, N*D, dy.Data, 0, D, t.x.Shape[0], D)
	return dx
}

// Params returns nil: TakeToken has no parameters.
func (t *TakeToken) Params() []*Param { return nil }

// SetTraining does nothing.
func (t *TakeToken) SetTraining(bool) {}
