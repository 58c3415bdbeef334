package nn

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/macdist/macdist/kernels"
)

// WindowAttention is Swin's (shifted) window attention as torchvision's
// ShiftedWindowAttention computes it, on channels-last maps [B, H, W, dim]:
// the map is rolled by −shift on both axes, cut into ws × ws windows (the
// B·nW windows then play the part of a ViT's batch, N = ws² tokens each),
// each window takes multi-head self-attention with a fused qkv projection
// and a learned relative position bias, the windows that straddle the
// rolled edges mask (−100) the pairs of tokens that come from different
// regions, and the output projection's result is put back in place and
// rolled by +shift. As in torchvision, an axis no longer than the window
// is not shifted.
//
// H and W must be multiples of ws (torchvision pads them instead; the zoo's
// Swin checks its image size so that no stage needs padding).
//
// Its parameters are name.relative_position_bias_table [(2ws−1)², heads],
// the buffer name.relative_position_index [N²] (exported as int64, as
// torchvision keeps it), then name.qkv.* and name.proj.*: torchvision's
// state_dict order.
type WindowAttention struct {
	dev           kernels.Device
	name          string
	dim, dh       int
	heads, ws     int
	shift         int
	scale         float32
	qkv, proj     *Linear
	rpb           *RelativePositionBias
	params        []*Param
	training      bool
	hook          backwardHook
	x             *Tensor
	g             windowGeom
	bw            int
	xw, out, dout slot // [B·nW, N, dim]
	y, dx         slot // [B, H, W, dim]
	qkvOut        *Tensor
	scores, probs kernels.Buffer // [B·nW, heads, N, N]
	ctx, dqkv     slot
	kept          headCopies
	biasMask      slot // [nW, heads·N·N]: bias plus the shift mask
	mask          kernels.Buffer
	maskGeom      windowGeom
	dbias         *Tensor // [heads, N, N]

	tapOn     bool
	tapTokens int
	xbar      kernels.Buffer // N × (dim [+1])
	tbar      kernels.Buffer // N
	xmean     kernels.Buffer // N × dim
	one       kernels.Buffer
}

// NewWindowAttention returns the window attention of a Swin block of width
// dim with heads heads (which must divide dim), windows of side ws and a
// cyclic shift of shift (0 or ws/2 in Swin, < ws). qkv and proj have biases
// and PyTorch's default initialisation; the bias table is drawn as
// torchvision does (truncated normal, σ 0.02).
func NewWindowAttention(dev kernels.Device, name string, dim, heads, ws, shift int, rng *rand.Rand) *WindowAttention {
	if dim <= 0 || heads <= 0 || dim%heads != 0 || ws <= 0 || shift < 0 || shift >= ws {
		panic(fmt.Sprintf("nn: %s: dimension %d, %d heads, window %d, shift %d", layerName(name, "WindowAttention"), dim, heads, ws, shift))
	}
	dh := dim / heads
	a := &WindowAttention{
		dev: dev, name: name, dim: dim, dh: dh, heads: heads, ws: ws, shift: shift,
		scale:    float32(1 / math.Sqrt(float64(dh))),
		rpb:      NewRelativePositionBias(dev, name, ws, heads, rng),
		qkv:      NewLinear(dev, join(name, "qkv"), dim, 3*dim, true, rng),
		proj:     NewLinear(dev, join(name, "proj"), dim, dim, true, rng),
		training: true,
	}
	a.params = collectParams(a.Children())
	return a
}

func (a *WindowAttention) label() string { return layerName(a.name, "WindowAttention") }

// windowGeom is the geometry of one window partition: a batch of b maps of
// h × w tokens of c features, windows of side ws, shifts sh and sw.
type windowGeom struct{ b, h, w, c, ws, sh, sw int }

func (g windowGeom) windows() int { return (g.h / g.ws) * (g.w / g.ws) }

// runs lists the pieces of a window's rows (or columns) that stay
// contiguous in the map after the cyclic shift: window index k of side ws
// over an axis of length n shifted by s takes map lines (k·ws + r + s) mod n
// for r in [0, ws), which wrap at most once.
func runs(k, ws, n, s int, out *[2][3]int) [][3]int {
	start := k*ws + s
	first := min(ws, n-start)
	if first >= ws {
		out[0] = [3]int{0, ws, start}
		return out[:1]
	}
	out[0] = [3]int{0, first, start}
	out[1] = [3]int{first, ws - first, 0}
	return out[:2]
}

// copyWindows moves tokens between a map img [b, h, w, c] and its windows
// win [b·nW, ws², c] (rolled by −shift, then partitioned, as torchvision
// does): toWindows partitions img into win, otherwise win is put back into
// img, the inverse permutation.
func copyWindows(dev kernels.Device, win, img kernels.Buffer, g windowGeom, toWindows bool) {
	nh, nw := g.h/g.ws, g.w/g.ws
	n := g.ws * g.ws
	c := g.c
	imgB, winB := g.h*g.w*c, nh*nw*n*c
	perm, _ := dev.(kernels.Permuter)
	var rr, cr [2][3]int
	for wh := range nh {
		rows := runs(wh, g.ws, g.h, g.sh, &rr)
		for ww := range nw {
			cols := runs(ww, g.ws, g.w, g.sw, &cr)
			for _, r := range rows {
				for _, q := range cols {
					imgOff := r[2]*g.w*c + q[2]*c
					winOff := (wh*nw+ww)*n*c + r[0]*g.ws*c + q[0]*c
					shape := [4]int{1, g.b, r[1], q[1] * c}
					imgS := [4]int{0, imgB, g.w * c, 1}
					winS := [4]int{0, winB, g.ws * c, 1}
					switch {
					case perm != nil && toWindows:
						perm.CopyStrided(win, winOff, winS, img, imgOff, imgS, shape)
					case perm != nil:
						perm.CopyStrided(img, imgOff, imgS, win, winOff, winS, shape)
					default:
						for b := range g.b {
							if toWindows {
								dev.Copy2D(win, winOff+b*winB, g.ws*c, img, imgOff+b*imgB, g.w*c, r[1], q[1]*c)
							} else {
								dev.Copy2D(img, imgOff+b*imgB, g.w*c, win, winOff+b*winB, g.ws*c, r[1], q[1]*c)
							}
						}
					}
				}
			}
		}
	}
}

// shiftMask returns torchvision's attention mask of a shifted partition,
// [nW, N, N]: 0 where the two tokens come from the same region of the
// rolled map, −100 elsewhere. The regions split each shifted axis at n−ws
// and n−s.
func shiftMask(g windowGeom) []float32 {
	region := func(i, n, s int) int {
		switch {
		case s == 0 || i < n-g.ws:
			return 0
		case i < n-s:
			return 1
		}
		return 2
	}
	nh, nw := g.h/g.ws, g.w/g.ws
	n := g.ws * g.ws
	m := make([]float32, nh*nw*n*n)
	label := make([]int, n)
	for wh := range nh {
		for ww := range nw {
			for r := range g.ws {
				for q := range g.ws {
					label[r*g.ws+q] = 3*region(wh*g.ws+r, g.h, g.sh) + region(ww*g.ws+q, g.w, g.sw)
				}
			}
			base := (wh*nw + ww) * n * n
			for i := range n {
				for j := range n {
					if label[i] != label[j] {
						m[base+i*n+j] = -100
					}
				}
			}
		}
	}
	return m
}

// Forward computes the attention of x [B, H, W, dim]; the output has x's
// shape.
func (a *WindowAttention) Forward(x *Tensor) *Tensor {
	if len(x.Shape) != 4 || x.Shape[3] != a.dim || x.Shape[0] == 0 || x.Shape[1]%a.ws != 0 || x.Shape[2]%a.ws != 0 || x.Shape[1] == 0 || x.Shape[2] == 0 {
		shapePanic(a.label(), x.Shape, shapeStr("B", fmt.Sprintf("H=k·%d", a.ws), fmt.Sprintf("W=k·%d", a.ws), a.dim))
	}
	d, dh, h := a.dev, a.dh, a.heads
	g := windowGeom{b: x.Shape[0], h: x.Shape[1], w: x.Shape[2], c: a.dim, ws: a.ws, sh: a.shift, sw: a.shift}
	if a.ws >= g.h {
		g.sh = 0
	}
	if a.ws >= g.w {
		g.sw = 0
	}
	a.x, a.g = x, g
	N, D, nW := a.ws*a.ws, a.dim, g.windows()
	bw := g.b * nW
	a.bw = bw
	sz := bw * h * N * N
	if a.probs == nil || a.probs.Len() != sz {
		if a.probs != nil {
			d.Free(a.probs)
			d.Free(a.scores)
		}
		a.probs, a.scores = d.Alloc(sz), d.Alloc(sz)
	}
	wshape := [3]int{bw, N, D}
	xw := a.xw.ensure(d, wshape[:])
	copyWindows(d, xw.Data, x.Data, g, true)

	qkv := a.qkv.Forward(xw)
	a.qkvOut = qkv
	c := &a.kept
	c.startForward(h, a.training)
	for i := 0; i < h; i++ {
		kernels.MatMulStridedKept(d, c.at(c.q, i), c.at(c.k, i), false, true, N, N, dh, a.scale,
			qkv.Data, i*dh, 3*D, N*3*D,
			qkv.Data, D+i*dh, 3*D, N*3*D,
			0, a.scores, i*N*N, N, h*N*N, bw)
	}
	bias := a.rpb.Forward(nil)
	if g.sh+g.sw > 0 {
		if a.mask == nil || a.maskGeom != g {
			if a.mask != nil {
				d.Free(a.mask)
			}
			a.mask = d.Alloc(nW * N * N)
			d.Upload(a.mask, shiftMask(g))
			a.maskGeom = g
		}
		bmShape := [2]int{nW, h * N * N}
		bm := a.biasMask.ensure(d, bmShape[:])
		d.Expand(bm.Data, bias.Data, 1, nW, h*N*N, 1, 0)
		d.Expand(bm.Data, a.mask, nW, h, N*N, 1, 1)
		d.AddBias(a.scores, bm.Data, g.b, 1)
	} else {
		d.AddBias(a.scores, bias.Data, bw, 1)
	}
	d.Softmax(a.probs, a.scores, bw*h*N, N)
	ctx := a.ctx.ensure(d, wshape[:])
	for i := 0; i < h; i++ {
		kernels.MatMulStridedKept(d, c.at(c.p, i), c.at(c.v, i), false, false, N, dh, N, 1,
			a.probs, i*N*N, N, h*N*N,
			qkv.Data, 2*D+i*dh, 3*D, N*3*D,
			0, ctx.Data, i*dh, D, N*D, bw)
	}
	if a.training && a.tapOn {
		a.recordTap(xw)
	}
	out := a.proj.Forward(ctx)
	y := a.y.ensure(d, x.Shape)
	copyWindows(d, out.Data, y.Data, g, false)
	return y
}

// recordTap computes X̄ and t̄ of the window attention rule (package mac):
// the windows are the batch, so X̄[j] is window position j's input row
// averaged over every window of every map, t̄[j] the attention position j
// receives averaged over windows, heads and queries.
func (a *WindowAttention) recordTap(xw *Tensor) {
	d := a.dev
	N, D := a.ws*a.ws, a.dim
	w := D + 1
	if a.xbar == nil {
		a.xbar, a.tbar, a.xmean, a.tapTokens = d.Alloc(N*w), d.Alloc(N), d.Alloc(N*D), N
		a.one = d.Alloc(1)
		d.Fill(a.one, 1)
	}
	d.ReduceSum(a.xmean, xw.Data, 1, a.bw, N*D, 1/float32(a.bw), 0)
	d.Copy2D(a.xbar, 0, w, a.xmean, 0, D, N, D)
	d.Copy2D(a.xbar, D, w, a.one, 0, 0, N, 1)
	d.ReduceSum(a.tbar, a.probs, 1, a.bw*a.heads*N, N, 1/float32(a.bw*a.heads*N), 0)
}

// Backward accumulates the gradients of the bias table, qkv and proj and
// returns dL/dx.
func (a *WindowAttention) Backward(dy *Tensor) *Tensor {
	mustForward(a.label(), a.x != nil)
	if !dy.SameShape(a.x.Shape) {
		gradPanic(a.label(), dy.Shape, a.x.Shape)
	}
	d, dh, h := a.dev, a.dh, a.heads
	N, D, bw := a.ws*a.ws, a.dim, a.bw
	qkv := a.qkvOut
	wshape := [3]int{bw, N, D}
	dout := a.dout.ensure(d, wshape[:])
	copyWindows(d, dout.Data, dy.Data, a.g, true)

	dctx := a.hook.back(a.proj, dout)
	dqkv := a.dqkv.ensure(d, qkv.Shape)
	c := &a.kept
	c.startBackward()
	for i := 0; i < h; i++ {
		kernels.MatMulStridedKept(d, &c.p[i], &c.dctx[i], true, false, N, dh, N, 1,
			a.probs, i*N*N, N, h*N*N,
			dctx.Data, i*dh, D, N*D,
			0, dqkv.Data, 2*D+i*dh, 3*D, N*3*D, bw)
	}
	dp := Workspace(d).Get(bw * h * N * N)
	for i := 0; i < h; i++ {
		kernels.MatMulStridedKept(d, &c.dctx[i], &c.v[i], false, true, N, N, dh, 1,
			dctx.Data, i*dh, D, N*D,
			qkv.Data, 2*D+i*dh, 3*D, N*3*D,
			0, dp, i*N*N, N, h*N*N, bw)
	}
	ds := a.scores
	d.SoftmaxBackward(ds, dp, a.probs, bw*h*N, N)
	// The bias is shared by every window: its gradient is dS summed over
	// them (the mask takes none).
	if a.dbias == nil {
		a.dbias = NewTensor(d, h, N, N)
	}
	d.ReduceSum(a.dbias.Data, ds, 1, bw, h*N*N, 1, 0)
	a.hook.back(a.rpb, a.dbias)
	for i := 0; i < h; i++ {
		kernels.MatMulStridedKept(d, &c.ds[i], &c.k[i], false, false, N, dh, N, a.scale,
			ds, i*N*N, N, h*N*N,
			qkv.Data, D+i*dh, 3*D, N*3*D,
			0, dqkv.Data, i*dh, 3*D, N*3*D, bw)
		kernels.MatMulStridedKept(d, &c.ds[i], &c.q[i], true, false, N, dh, N, a.scale,
			ds, i*N*N, N, h*N*N,
			qkv.Data, i*dh, 3*D, N*3*D,
			0, dqkv.Data, D+i*dh, 3*D, N*3*D, bw)
	}
	dxw := a.hook.back(a.qkv, dqkv)
	dx := a.dx.ensure(d, a.x.Shape)
	copyWindows(d, dxw.Data, dx.Data, a.g, false)
	return dx
}

// Params returns the bias table and index, then qkv's and proj's
// parameters, in torchvision's state_dict order.
func (a *WindowAttention) Params() []*Param { return a.params }

// SetTraining switches the layer and its projections between modes; the
// attention tap records only in training mode.
func (a *WindowAttention) SetTraining(on bool) {
	a.training = on
	a.qkv.SetTraining(on)
	a.proj.SetTraining(on)
}

// Children returns the relative position bias, qkv and proj.
func (a *WindowAttention) Children() []Module { return []Module{a.rpb, a.qkv, a.proj} }

// SetBackwardHook makes Backward report proj, the bias table and qkv as
// their gradients become final (see BackwardHooker).
func (a *WindowAttention) SetBackwardHook(fn func(Module)) { a.hook.fn = fn }

// QKV returns the fused projection, whose V rows MAC treats with X̄ and t̄.
func (a *WindowAttention) QKV() Tapped { return a.qkv }

// SetAttentionTap switches the recording of X̄ and t̄ on or off.
func (a *WindowAttention) SetAttentionTap(on bool) { a.tapOn = on }

// AttentionTap returns X̄ (N × QKV().TapDim(): each window position's input
// row with a trailing 1, averaged over every window of the batch) and t̄
// (N: the attention each window position receives, averaged over windows,
// heads and queries) of the last training-mode Forward with the tap on;
// nil buffers and 0 tokens before the first.
func (a *WindowAttention) AttentionTap() (xbar, tbar kernels.Buffer, tokens int) {
	return a.xbar, a.tbar, a.tapTokens
}

// RelativePositionBias is Swin's learned bias of window attention: a table
// of (2ws−1)² × heads entries, one per relative offset of two tokens of a
// window, spread into a [heads, N, N] bias by the fixed index of
// torchvision's define_relative_position_index. The spreading is a product
// with a fixed one-hot matrix [N², (2ws−1)²], so that both directions are
// one GEMM on any device.
type RelativePositionBias struct {
	dev          kernels.Device
	ws, heads    int
	table, index *Param
	params       []*Param
	onehot       kernels.Buffer
	bias         *Tensor
}

// NewRelativePositionBias returns the bias of name (an attention layer's
// name: its parameters are name.relative_position_bias_table and
// name.relative_position_index).
func NewRelativePositionBias(dev kernels.Device, name string, ws, heads int, rng *rand.Rand) *RelativePositionBias {
	t := (2*ws - 1) * (2*ws - 1)
	n := ws * ws
	r := &RelativePositionBias{dev: dev, ws: ws, heads: heads}
	r.table = &Param{Name: join(name, "relative_position_bias_table"), Kind: KindEmbedding,
		Value: NewTensor(dev, t, heads), Grad: NewTensor(dev, t, heads)}
	dev.Upload(r.table.Value.Data, truncNormal(rng, t*heads, 0.02))
	r.index = &Param{Name: join(name, "relative_position_index"), Kind: KindBuffer, Value: NewTensor(dev, n*n)}
	idx := RelativePositionIndex(ws)
	v := make([]float32, n*n)
	hot := make([]float32, n*n*t)
	for p, k := range idx {
		v[p] = float32(k)
		hot[p*t+k] = 1
	}
	dev.Upload(r.index.Value.Data, v)
	r.params = []*Param{r.table, r.index}
	r.onehot = dev.Alloc(n * n * t)
	dev.Upload(r.onehot, hot)
	r.bias = NewTensor(dev, heads, n, n)
	return r
}

// RelativePositionIndex is torchvision's relative_position_index for
// windows of side ws: entry i·N + j is the table row of tokens i = (r1, c1)
// and j = (r2, c2), (r1−r2+ws−1)·(2ws−1) + (c1−c2+ws−1).
func RelativePositionIndex(ws int) []int {
	n := ws * ws
	idx := make([]int, n*n)
	for i := range n {
		for j := range n {
			idx[i*n+j] = (i/ws-j/ws+ws-1)*(2*ws-1) + (i%ws - j%ws + ws - 1)
		}
	}
	return idx
}

// Forward ignores x and returns the bias [heads, N, N] from the table.
func (r *RelativePositionBias) Forward(*Tensor) *Tensor {
	t, nn := (2*r.ws-1)*(2*r.ws-1), r.ws*r.ws*r.ws*r.ws
	// bias[h, p] = Σ_k table[k, h]·onehot[p, k]
	r.dev.Gemm(true, true, r.heads, nn, t, 1, r.table.Value.Data, r.heads, r.onehot, t, 0, r.bias.Data, nn)
	return r.bias
}

// Backward accumulates the table's gradient from dL/dbias [heads, N, N]
// and returns nil: the bias has no input.
func (r *RelativePositionBias) Backward(dbias *Tensor) *Tensor {
	t, nn := (2*r.ws-1)*(2*r.ws-1), r.ws*r.ws*r.ws*r.ws
	if !dbias.SameShape(r.bias.Shape) {
		gradPanic("RelativePositionBias", dbias.Shape, r.bias.Shape)
	}
	// dtable[k, h] += Σ_p onehot[p, k]·dbias[h, p]
	r.dev.Gemm(true, true, t, r.heads, nn, 1, r.onehot, t, dbias.Data, nn, 1, r.table.Grad.Data, r.heads)
	return nil
}

// Params returns the table and the index buffer.
func (r *RelativePositionBias) Params() []*Param { return r.params }

// SetTraining does nothing.
func (r *RelativePositionBias) SetTraining(bool) {}
