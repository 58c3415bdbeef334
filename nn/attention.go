package nn

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/macdist/macdist/kernels"
)

// MultiHeadSelfAttention is timm's ViT Attention: a fused qkv projection
// (output columns [Q | K | V], each of width dim, head h owning columns
// h·dh … (h+1)·dh−1 of each), softmax(Q·Kᵀ·dh^-½) per batch element and
// head, the product with V, heads concatenated back into dim columns, and an
// output projection with bias.
//
// The per-head products read Q, K and V in place inside qkv's output and
// write the context straight into [B, N, dim] through the leading dimensions
// of GemmStrided, so no permute is ever materialised.
//
// Per batch element and head it keeps two N×N matrices: the softmax, which
// Backward needs, and the logits, whose buffer then receives their gradient.
// The logits could live in the shared Workspace if kernels.Device promised
// that Softmax and SoftmaxBackward work in place; it does not.
type MultiHeadSelfAttention struct {
	dev       kernels.Device
	name      string
	dim, dh   int
	heads     int
	scale     float32
	qkvBias   bool
	qkv, proj *Linear
	params    []*Param
	training  bool
	hook      backwardHook

	// State of the last Forward, read by Backward.
	x      *Tensor
	b, n   int
	qkvOut *Tensor        // qkv's output [B, N, 3·dim], owned by qkv
	scores kernels.Buffer // [B, H, N, N] logits; dlogits in Backward
	probs  kernels.Buffer // [B, H, N, N] softmax
	ctx    slot           // [B, N, dim], proj's input
	dqkv   slot           // [B, N, 3·dim]

	kept headCopies

	tapOn     bool
	tapTokens int
	xbar      kernels.Buffer // tokens × (dim [+1])
	tbar      kernels.Buffer // tokens
	xmean     kernels.Buffer // tokens × dim, X̄ before the column of ones
	one       kernels.Buffer // a single 1, source of X̄'s trailing column
}

// NewMultiHeadSelfAttention returns an attention layer over inputs
// [B, N, dim] with heads heads (which must divide dim). Its parameters are
// name.qkv.weight, name.qkv.bias (with qkvBias), name.proj.weight and
// name.proj.bias, initialised as PyTorch's nn.Linear.
func NewMultiHeadSelfAttention(dev kernels.Device, name string, dim, heads int, qkvBias bool, rng *rand.Rand) *MultiHeadSelfAttention {
	if dim <= 0 || heads <= 0 || dim%heads != 0 {
		panic(fmt.Sprintf("nn: %s: %d heads do not divide dimension %d", layerName(name, "MultiHeadSelfAttention"), heads, dim))
	}
	dh := dim / heads
	a := &MultiHeadSelfAttention{
		dev: dev, name: name, dim: dim, dh: dh, heads: heads, qkvBias: qkvBias,
		scale:    float32(1 / math.Sqrt(float64(dh))),
		qkv:      NewLinear(dev, join(name, "qkv"), dim, 3*dim, qkvBias, rng),
		proj:     NewLinear(dev, join(name, "proj"), dim, dim, true, rng),
		training: true,
	}
	a.params = collectParams([]Module{a.qkv, a.proj})
	return a
}

func (a *MultiHeadSelfAttention) label() string { return layerName(a.name, "MultiHeadSelfAttention") }

// Forward computes the attention of x [B, N, dim]; the output has x's shape.
func (a *MultiHeadSelfAttention) Forward(x *Tensor) *Tensor {
	if len(x.Shape) != 3 || x.Shape[2] != a.dim || x.Shape[0] == 0 || x.Shape[1] == 0 {
		shapePanic(a.label(), x.Shape, shapeStr("B", "N", a.dim))
	}
	d, dh, h := a.dev, a.dh, a.heads
	B, N, D := x.Shape[0], x.Shape[1], a.dim
	a.x, a.b, a.n = x, B, N
	sz := B * h * N * N
	if a.probs == nil || a.probs.Len() != sz {
		if a.probs != nil {
			d.Free(a.probs)
			d.Free(a.scores)
		}
		a.probs, a.scores = d.Alloc(sz), d.Alloc(sz)
	}

	qkv := a.qkv.Forward(x)
	a.qkvOut = qkv
	c := &a.kept
	c.startForward(h, a.training)
	// Matrix (b, h) of the scores sits at (b·H + h)·N·N; one GemmStrided per
	// head walks the batch, Q and K rows being 3·D apart in qkv's output.
	for i := 0; i < h; i++ {
		kernels.MatMulStridedKept(d, c.at(c.q, i), c.at(c.k, i), false, true, N, N, dh, a.scale,
			qkv.Data, i*dh, 3*D, N*3*D,
			qkv.Data, D+i*dh, 3*D, N*3*D,
			0, a.scores, i*N*N, N, h*N*N, B)
	}
	d.Softmax(a.probs, a.scores, B*h*N, N)
	ctx := a.ctx.ensure(d, x.Shape)
	for i := 0; i < h; i++ {
		kernels.MatMulStridedKept(d, c.at(c.p, i), c.at(c.v, i), false, false, N, dh, N, 1,
			a.probs, i*N*N, N, h*N*N,
			qkv.Data, 2*D+i*dh, 3*D, N*3*D,
			0, ctx.Data, i*dh, D, N*D, B)
	}
	if a.training && a.tapOn {
		a.recordTap()
	}
	return a.proj.Forward(ctx)
}

// recordTap computes X̄ and t̄ (shared/MAC.md §Attention) from the input
// and the attention probabilities of the current Forward.
func (a *MultiHeadSelfAttention) recordTap() {
	d := a.dev
	B, N, D := a.b, a.n, a.dim
	w := a.tapWidth()
	if a.tapTokens != N || a.xbar == nil {
		if a.xbar != nil {
			d.Free(a.xbar)
			d.Free(a.tbar)
			d.Free(a.xmean)
		}
		a.xbar, a.tbar, a.xmean, a.tapTokens = d.Alloc(N*w), d.Alloc(N), d.Alloc(N*D), N
	}
	if a.one == nil {
		a.one = d.Alloc(1)
		d.Fill(a.one, 1)
	}
	d.ReduceSum(a.xmean, a.x.Data, 1, B, N*D, 1/float32(B), 0)
	d.Copy2D(a.xbar, 0, w, a.xmean, 0, D, N, D)
	if a.qkvBias {
		// Rewritten every time rather than once, so that a consumer that
		// scales X̄ in place cannot corrupt the next step's column of ones.
		d.Copy2D(a.xbar, D, w, a.one, 0, 0, N, 1)
	}
	d.ReduceSum(a.tbar, a.probs, 1, B*a.heads*N, N, 1/float32(B*a.heads*N), 0)
}

func (a *MultiHeadSelfAttention) tapWidth() int {
	if a.qkvBias {
		return a.dim + 1
	}
	return a.dim
}

// Backward accumulates the gradients of qkv and proj and returns dL/dx.
func (a *MultiHeadSelfAttention) Backward(dy *Tensor) *Tensor {
	mustForward(a.label(), a.x != nil)
	if !dy.SameShape(a.x.Shape) {
		gradPanic(a.label(), dy.Shape, a.x.Shape)
	}
	d, dh, h := a.dev, a.dh, a.heads
	B, N, D := a.b, a.n, a.dim
	qkv := a.qkvOut

	dctx := a.hook.back(a.proj, dy)
	dqkv := a.dqkv.ensure(d, qkv.Shape)
	c := &a.kept
	c.startBackward()
	// dV = Pᵀ·dctx, written into the V columns of dqkv.
	for i := 0; i < h; i++ {
		kernels.MatMulStridedKept(d, &c.p[i], &c.dctx[i], true, false, N, dh, N, 1,
			a.probs, i*N*N, N, h*N*N,
			dctx.Data, i*dh, D, N*D,
			0, dqkv.Data, 2*D+i*dh, 3*D, N*3*D, B)
	}
	// dP = dctx·Vᵀ lives only until the softmax backward, so it borrows
	// the device's shared scratch; the logits buffer receives dS.
	dp := Workspace(d).Get(B * h * N * N)
	for i := 0; i < h; i++ {
		kernels.MatMulStridedKept(d, &c.dctx[i], &c.v[i], false, true, N, N, dh, 1,
			dctx.Data, i*dh, D, N*D,
			qkv.Data, 2*D+i*dh, 3*D, N*3*D,
			0, dp, i*N*N, N, h*N*N, B)
	}
	ds := a.scores
	d.SoftmaxBackward(ds, dp, a.probs, B*h*N, N)
	// S = scale·Q·Kᵀ: dQ = scale·dS·K, dK = scale·dSᵀ·Q.
	for i := 0; i < h; i++ {
		kernels.MatMulStridedKept(d, &c.ds[i], &c.k[i], false, false, N, dh, N, a.scale,
			ds, i*N*N, N, h*N*N,
			qkv.Data, D+i*dh, 3*D, N*3*D,
			0, dqkv.Data, i*dh, 3*D, N*3*D, B)
		kernels.MatMulStridedKept(d, &c.ds[i], &c.q[i], true, false, N, dh, N, a.scale,
			ds, i*N*N, N, h*N*N,
			qkv.Data, i*dh, 3*D, N*3*D,
			0, dqkv.Data, D+i*dh, 3*D, N*3*D, B)
	}
	return a.hook.back(a.qkv, dqkv)
}

// Params returns qkv's then proj's parameters, in state_dict order.
func (a *MultiHeadSelfAttention) Params() []*Param {
	return a.params
}

// SetTraining switches the layer and its projections between modes; the
// attention tap records only in training mode.
func (a *MultiHeadSelfAttention) SetTraining(on bool) {
	a.training = on
	a.qkv.SetTraining(on)
	a.proj.SetTraining(on)
}

// Children returns qkv and proj.
func (a *MultiHeadSelfAttention) Children() []Module { return []Module{a.qkv, a.proj} }

// SetBackwardHook makes Backward report proj, then qkv, as their gradients
// become final (see BackwardHooker).
func (a *MultiHeadSelfAttention) SetBackwardHook(fn func(Module)) { a.hook.fn = fn }

// QKV returns the fused projection, whose V rows MAC treats with X̄ and t̄.
func (a *MultiHeadSelfAttention) QKV() Tapped { return a.qkv }

// Proj returns the output projection.
func (a *MultiHeadSelfAttention) Proj() *Linear { return a.proj }

// SetAttentionTap switches the recording of X̄ and t̄ on or off. It does not
// touch qkv's own ā tap, which is switched through QKV().
func (a *MultiHeadSelfAttention) SetAttentionTap(on bool) { a.tapOn = on }

// AttentionTap returns X̄ (tokens × QKV().TapDim(): each token's input row,
// with a trailing 1 when qkv has a bias, averaged over the batch) and t̄
// (tokens: the attention each key receives, averaged over batch, heads and
// queries) of the last training-mode Forward with the tap on; nil buffers
// and 0 tokens before the first.
func (a *MultiHeadSelfAttention) AttentionTap() (xbar, tbar kernels.Buffer, tokens int) {
	return a.xbar, a.tbar, a.tapTokens
}

// headCopies are, per head, the rounded copies attention's products share
// where the device rounds them (bf16, kernels.MatMulKept): Q, K, V and P
// made by the forward and read again by the backward, as autocast saves
// them, and the backward's own dctx and dS, each read by two products.
type headCopies struct {
	q, k, v, p, dctx, ds []kernels.KeptOperand
	keep                 bool // the forward keeps Q, K, V and P (training)
}

// startForward readies the copies for a Forward over h heads: Q's, K's,
// V's and P's forgotten, their matrices being new (startBackward does
// dctx's and dS's).
func (c *headCopies) startForward(h int, training bool) {
	if len(c.q) != h {
		for _, k := range []*[]kernels.KeptOperand{&c.q, &c.k, &c.v, &c.p, &c.dctx, &c.ds} {
			*k = make([]kernels.KeptOperand, h)
		}
	}
	for i := range h {
		for _, k := range [...][]kernels.KeptOperand{c.q, c.k, c.v, c.p} {
			k[i].Forget()
		}
	}
	c.keep = training
}

// at is head i's copy in k for a Forward's product: none outside
// training, where no backward will read it.
func (c *headCopies) at(k []kernels.KeptOperand, i int) *kernels.KeptOperand {
	if !c.keep {
		return nil
	}
	return &k[i]
}

// startBackward forgets dctx's and dS's copies, the Backward's new
// matrices.
func (c *headCopies) startBackward() {
	for i := range c.dctx {
		c.dctx[i].Forget()
		c.ds[i].Forget()
	}
}
