package nn

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/macdist/macdist/kernels"
)

// Conv2dConfig describes a Conv2d as PyTorch's constructor does, with square
// kernels, strides, paddings and dilations. Zero Stride, Dilation and Groups
// mean 1.
type Conv2dConfig struct {
	In, Out  int
	Kernel   int
	Stride   int
	Padding  int
	Dilation int
	Groups   int
	Bias     bool
}

func (c Conv2dConfig) normalized() Conv2dConfig {
	if c.Stride == 0 {
		c.Stride = 1
	}
	if c.Dilation == 0 {
		c.Dilation = 1
	}
	if c.Groups == 0 {
		c.Groups = 1
	}
	return c
}

// Conv2d is PyTorch's nn.Conv2d on NCHW tensors, computed by the device
// where it convolves directly (kernels.Convolver: the cpu Device with
// oneDNN) and as im2col + GEMM otherwise.
//
// The unfolded images live in the device's shared Workspace, a chunk of
// images at a time (as many as its Limit allows), and Backward unfolds the
// input again instead of keeping the columns of the whole batch: memory is
// what limits the batch, and im2col is cheap next to the GEMMs. Each chunk's
// output is one GemmStrided per group with the weight shared (stride 0).
type Conv2d struct {
	dev    kernels.Device
	name   string
	cfg    Conv2dConfig
	weight *Param // [Out, In/Groups, K, K]
	bias   *Param
	params []*Param

	training bool
	x        *Tensor
	geom     kernels.ConvGeom
	y        slot
	dx       lent

	tapOn   bool
	tap     kernels.Buffer
	tapMean kernels.Buffer
	tapOne  kernels.Buffer

	patches patchMean // computes tap
	curv    curvTaps  // KFACTapped, see curvature.go

	wflip kernels.Buffer // the weight for dx as a transposed convolution, see transposedDx

	noDx bool // SkipInputGrad

	devLayouts bool      // SetDeviceLayouts
	edge       plainEdge // to NCHW for im2col
	dyIn       slot      // dy in y's layout, when it came in another
	curvX      slot      // x in NCHW, for KFAC's unfolding
	curvDy     slot      // dy in NCHW, for KFAC's G
}

// NewConv2d returns a Conv2d with parameters name.weight
// [Out, In/Groups, Kernel, Kernel] and name.bias [Out], initialised as
// PyTorch does (uniform in ±1/√fan_in, fan_in = In/Groups·Kernel²).
func NewConv2d(dev kernels.Device, name string, cfg Conv2dConfig, rng *rand.Rand) *Conv2d {
	cfg = cfg.normalized()
	label := layerName(name, "Conv2d")
	if cfg.In <= 0 || cfg.Out <= 0 || cfg.Kernel <= 0 || cfg.Stride < 0 || cfg.Padding < 0 || cfg.Dilation < 0 || cfg.Groups < 0 {
		panic(fmt.Sprintf("nn: %s: invalid config %+v", label, cfg))
	}
	if cfg.In%cfg.Groups != 0 || cfg.Out%cfg.Groups != 0 {
		panic(fmt.Sprintf("nn: %s: In %d and Out %d must be multiples of Groups %d", label, cfg.In, cfg.Out, cfg.Groups))
	}
	c := &Conv2d{dev: dev, name: name, cfg: cfg, training: true}
	fanIn := cfg.In / cfg.Groups * cfg.Kernel * cfg.Kernel
	bound := 1 / math.Sqrt(float64(fanIn))
	c.weight = newParam(dev, join(name, "weight"), KindWeight, rng, bound, cfg.Out, cfg.In/cfg.Groups, cfg.Kernel, cfg.Kernel)
	c.params = []*Param{c.weight}
	if cfg.Bias {
		c.bias = newParam(dev, join(name, "bias"), KindBias, rng, bound, cfg.Out)
		c.params = append(c.params, c.bias)
	}
	return c
}

// Config returns the layer's configuration, with defaults filled in.
func (c *Conv2d) Config() Conv2dConfig { return c.cfg }

func (c *Conv2d) label() string { return layerName(c.name, "Conv2d") }

// direct reports whether the unfolded input is the input itself (a 1×1
// convolution with stride 1 and no padding), so that im2col and col2im are
// skipped and the GEMMs read x and write dx in place.
func (c *Conv2d) direct() bool {
	return c.cfg.Kernel == 1 && c.cfg.Stride == 1 && c.cfg.Padding == 0
}

// chunk is the number of images unfolded at a time. Backward's unfolded
// output gradient (see transposedDx) shares the workspace with the
// unfolded input, so a chunk must fit the larger of the two; batchedDW's
// copies sit behind the unfolded input.
func (c *Conv2d) chunk(n int, backward bool) int {
	per := 0 // workspace per image
	if !c.direct() {
		per = c.geom.ColRows() * c.geom.ColCols()
	}
	if backward && c.batchedDW() {
		per += c.dwExtra()
	}
	if backward && c.transposedDx() {
		g := c.dyGeom()
		per = max(per, g.ColRows()*g.ColCols())
	}
	if per == 0 {
		return n
	}
	return max(1, min(n, Workspace(c.dev).Limit()/per))
}

// batchedDWCols is the number of output positions up to which Backward
// computes a chunk's dW as one GEMM (see batchedDW).
const batchedDWCols = 256

// batchedDW reports whether Backward computes dW for a chunk of images as
// one GEMM of depth images·positions, dyᵀ·colᵀ over copies of dy and of the
// unfolded input transposed so that the images sit side by side, instead
// of one GEMM of depth positions per image. Where a layer's output is small
// (ResNet-50's last stages: 7×7, 14×14; ResNet-20's 8×8 and 16×16) the
// per-image GEMMs are too shallow to keep a GPU or a BLAS busy and their
// number (one per image and layer) costs more than the two copies. That
// holds where calls are expensive (kernels.LaunchBound: a GPU); on the CPU
// the per-image GEMMs, spread over the cores, measured as fast or faster.
// It also needs a device that can transpose in one call (kernels.Permuter)
// and a single group.
func (c *Conv2d) batchedDW() bool {
	if c.cfg.Groups != 1 || c.geom.ColCols() > batchedDWCols || !kernels.IsLaunchBound(c.dev) {
		return false
	}
	_, ok := c.dev.(kernels.Permuter)
	return ok
}

// dwExtra is the workspace per image that batchedDW's transposed copies
// take beyond the unfolded input: rows·positions for the columns and
// Out·positions for dy.
func (c *Conv2d) dwExtra() int {
	return (c.geom.ColRows() + c.cfg.Out) * c.geom.ColCols()
}

// transposedDx reports whether Backward computes dx as the convolution of
// dy with the weight transposed and its kernel reversed: dx = W′·unfold(dy)
// for a stride of 1. That is one GEMM of depth Out·K² per image, writing dx
// directly, where the general way is a GEMM of depth Out into columns as
// large as the unfolded input (In·K²×OutH·OutW), which col2im then adds
// back into dx: three passes over that buffer against two over the unfolded
// dy (Out·K²×H·W), so the transposed way wins unless the layer widens much
// (LeNet's 1→6 and 6→16 do). It needs a device that can reverse the kernel
// (kernels.Permuter), and the padding of the transposed convolution,
// Dilation·(Kernel−1) − Padding, to be non-negative.
func (c *Conv2d) transposedDx() bool {
	cfg, g := c.cfg, c.geom
	if c.direct() || cfg.Stride != 1 || cfg.Dilation*(cfg.Kernel-1) < cfg.Padding ||
		2*cfg.Out*g.H*g.W > 3*cfg.In*g.OutH()*g.OutW() {
		return false
	}
	_, ok := c.dev.(kernels.Permuter)
	return ok
}

// dyGeom is the geometry of the transposed convolution: dy's Out channels
// of OutH×OutW, padded so that its output is the input's H×W.
func (c *Conv2d) dyGeom() kernels.ConvGeom {
	g := c.geom
	return kernels.ConvGeom{C: c.cfg.Out, H: g.OutH(), W: g.OutW(), KH: g.KH, KW: g.KW,
		StrideH: 1, StrideW: 1,
		PadH: g.DilH*(g.KH-1) - g.PadH, PadW: g.DilW*(g.KW-1) - g.PadW,
		DilH: g.DilH, DilW: g.DilW}
}

// flipWeight writes into wflip the weight of the transposed convolution,
// group by group: W′[g][c][o][k] = W[g·Out/G + o][c][K²−1−k], the roles of
// input and output channels exchanged and the kernel reversed.
func (c *Conv2d) flipWeight() {
	cfg := c.cfg
	kk := cfg.Kernel * cfg.Kernel
	og, cg := cfg.Out/cfg.Groups, cfg.In/cfg.Groups
	if c.wflip == nil {
		c.wflip = c.dev.Alloc(cfg.Out * cg * kk)
	}
	c.dev.(kernels.Permuter).CopyStrided(
		c.wflip, 0, [4]int{cg * og * kk, og * kk, kk, 1},
		c.weight.Value.Data, kk-1, [4]int{og * cg * kk, kk, cg * kk, -1},
		[4]int{cfg.Groups, cg, og, kk})
}

// unfold returns the unfolded images [i0, i0+nimg) of x and the offset of
// the first one in the returned buffer.
func (c *Conv2d) unfold(x kernels.Buffer, i0, nimg int) (col kernels.Buffer, off int) {
	per := c.geom.ColRows() * c.geom.ColCols()
	if c.direct() {
		return x, i0 * per
	}
	col = Workspace(c.dev).Get(nimg * per)
	c.dev.Im2col(col, x, c.geom, i0, nimg)
	return col, 0
}

// backwardDW adds a chunk's share of dW as one GEMM (see batchedDW): col
// holds images [i0, i0+nimg) unfolded from off; ws has room for their
// transposed copies from wsOff.
func (c *Conv2d) backwardDW(dy *Tensor, col kernels.Buffer, off int, ws kernels.Buffer, wsOff, i0, nimg int) {
	p := c.dev.(kernels.Permuter)
	rows, cols, out := c.geom.ColRows(), c.geom.ColCols(), c.cfg.Out
	k := nimg * cols
	colT, dyT := wsOff, wsOff+rows*k
	// colT[r][i][j] = col[i][r][j] and dyT[o][i][j] = dy[i0+i][o][j].
	p.CopyStrided(ws, colT, [4]int{0, cols, k, 1}, col, off, [4]int{0, rows * cols, cols, 1}, [4]int{1, nimg, rows, cols})
	p.CopyStrided(ws, dyT, [4]int{0, cols, k, 1}, dy.Data, i0*out*cols, [4]int{0, out * cols, cols, 1}, [4]int{1, nimg, out, cols})
	c.dev.GemmStrided(false, true, out, rows, k, 1,
		ws, dyT, k, 0,
		ws, colT, k, 0,
		1, c.weight.Grad.Data, 0, rows, 0, 1)
}

// Forward convolves x [N, In, H, W] into [N, Out, OH, OW], owned by c.
func (c *Conv2d) Forward(x *Tensor) *Tensor {
	cfg := c.cfg
	if len(x.Shape) != 4 || x.Shape[1] != cfg.In {
		shapePanic(c.label(), x.Shape, shapeStr("N", cfg.In, "H", "W"))
	}
	g := kernels.ConvGeom{C: cfg.In, H: x.Shape[2], W: x.Shape[3], KH: cfg.Kernel, KW: cfg.Kernel,
		StrideH: cfg.Stride, StrideW: cfg.Stride, PadH: cfg.Padding, PadW: cfg.Padding,
		DilH: cfg.Dilation, DilW: cfg.Dilation}
	// Checked before OutH, whose integer division would round a slightly
	// negative extent up to one output row.
	if span := cfg.Dilation*(cfg.Kernel-1) + 1; g.H+2*g.PadH < span || g.W+2*g.PadW < span {
		panic(fmt.Sprintf("nn: %s: input %v is smaller than the dilated kernel %d (padding %d)",
			c.label(), x.Shape, span, cfg.Padding))
	}
	oh, ow := g.OutH(), g.OutW()
	n := x.Shape[0]
	c.geom = g
	cv := c.convolver(n)
	lo, _ := c.dev.(kernels.Layouter)
	if cv == nil || lo == nil {
		x = c.edge.in(c.dev, x) // im2col unfolds NCHW
	} else {
		c.edge.from = x.Layout
	}
	c.x = x
	y := c.y.ensure(c.dev, []int{n, cfg.Out, oh, ow})
	if cv != nil && lo != nil && c.devLayouts {
		y.Layout = lo.ActivationLayout(cfg.Out)
	}

	d := c.dev
	rows, cols := g.ColRows(), g.ColCols()
	groups := cfg.Groups
	og, rg := cfg.Out/groups, rows/groups
	tap := c.tapOn && c.training
	cov := c.curv.covOn && c.training
	if c.training {
		c.curv.samples, c.curv.positions = n, cols
	}
	if tap {
		// ā: mean over images and positions of every row of the unfolded
		// input, all groups' rows together; from the mean image, so that
		// neither path unfolds for it.
		c.patches.compute(d, c.tapMean, x, g)
	}
	if cv != nil {
		if cov {
			c.collect(relayout(d, &c.curvX, x, kernels.NCHW), n)
		}
		var b kernels.Buffer
		if c.bias != nil {
			b = c.bias.Value.Data
		}
		if lo != nil {
			lo.ConvForwardIn(x.Layout, y.Layout, y.Data, x.Data, c.weight.Value.Data, b, g, cfg.Out, groups, n)
		} else {
			cv.ConvForward(y.Data, x.Data, c.weight.Value.Data, b, g, cfg.Out, groups, n)
		}
		c.finishTaps(tap, cov, rows)
		return y
	}
	step := c.chunk(n, false)
	for i0 := 0; i0 < n; i0 += step {
		nimg := min(step, n-i0)
		col, off := c.unfold(x.Data, i0, nimg)
		if cov {
			c.covChunk(col, off, i0, nimg, n)
		}
		for gi := 0; gi < groups; gi++ {
			d.GemmStrided(false, false, og, cols, rg, 1,
				c.weight.Value.Data, gi*og*rg, rg, 0,
				col, off+gi*rg*cols, cols, rows*cols,
				0, y.Data, (i0*cfg.Out+gi*og)*cols, cols, cfg.Out*cols, nimg)
		}
	}
	if c.bias != nil {
		d.AddBias(y.Data, c.bias.Value.Data, n, cols)
	}
	c.finishTaps(tap, cov, rows)
	return y
}

// convolver returns the device as a kernels.Convolver if it convolves a
// batch of n with this layer's shape directly, and nil otherwise.
func (c *Conv2d) convolver(n int) kernels.Convolver {
	cv, ok := c.dev.(kernels.Convolver)
	if !ok || !cv.Convolves(c.geom, c.cfg.Out, c.cfg.Groups, n, c.bias != nil) {
		return nil
	}
	return cv
}

// collect records KFAC's and FOOF's covariance A for a Forward whose
// convolution the device computes directly: a statistic of the unfolded
// input, which is unfolded for it, a chunk at a time, on the steps that
// collect. (MAC's ā needs no unfolding: see patchMean.)
func (c *Conv2d) collect(x *Tensor, n int) {
	step := c.chunk(n, false)
	for i0 := 0; i0 < n; i0 += step {
		nimg := min(step, n-i0)
		col, off := c.unfold(x.Data, i0, nimg)
		c.covChunk(col, off, i0, nimg, n)
	}
}

// finishTaps completes the taps after the chunks: the bias's 1 in ā and
// the border of A.
func (c *Conv2d) finishTaps(tap, cov bool, rows int) {
	if tap && c.tapOne != nil {
		c.dev.Fill(c.tapOne, 1)
	}
	if cov {
		c.curv.biasBorder(c.dev, rows)
	}
}

// Backward accumulates dW and db and returns dx. It unfolds the input again,
// a chunk of images at a time, and reuses the same workspace for the
// columns' gradient.
func (c *Conv2d) Backward(dy *Tensor) *Tensor {
	mustForward(c.label(), c.x != nil)
	if !dy.SameShape(c.y.t.Shape) {
		gradPanic(c.label(), dy.Shape, c.y.t.Shape)
	}
	d := c.dev
	cfg := c.cfg
	n := c.x.Shape[0]
	rows, cols := c.geom.ColRows(), c.geom.ColCols()
	groups := cfg.Groups
	og, rg := cfg.Out/groups, rows/groups
	dy = relayout(d, &c.dyIn, dy, c.y.t.Layout)
	if c.training && (c.curv.gradOn || c.curv.gmeanOn) {
		c.backwardCurv(relayout(d, &c.curvDy, dy, kernels.NCHW), n)
	}
	var dx *Tensor
	if !c.noDx {
		dx = c.dx.ensure(d, c.x.Shape)
		dx.Layout = c.x.Layout
	}
	if cv := c.convolver(n); cv != nil {
		var db, dxb kernels.Buffer
		if c.bias != nil {
			db = c.bias.Grad.Data
		}
		if dx != nil {
			dxb = dx.Data
		}
		if lo, ok := d.(kernels.Layouter); ok {
			lo.ConvBackwardIn(c.x.Layout, dy.Layout, dxb, c.weight.Grad.Data, db, c.x.Data, dy.Data, c.weight.Value.Data, c.geom, cfg.Out, groups, n)
		} else {
			cv.ConvBackward(dxb, c.weight.Grad.Data, db, c.x.Data, dy.Data, c.weight.Value.Data, c.geom, cfg.Out, groups, n)
		}
		return c.edge.out(d, dx)
	}
	if c.bias != nil {
		d.ReduceSumMid(c.bias.Grad.Data, dy.Data, n, cfg.Out, cols, 1, 1)
	}
	direct := c.direct()
	tdx := c.transposedDx()
	switch {
	case c.noDx:
	case tdx:
		c.flipWeight()
	case !direct:
		d.Fill(dx.Data, 0) // Col2im accumulates
	}
	step := c.chunk(n, true)
	bdw := c.batchedDW()
	for i0 := 0; i0 < n; i0 += step {
		nimg := min(step, n-i0)
		var col kernels.Buffer
		var off int
		if bdw {
			// One workspace for the unfolded input and, behind it, the
			// transposed copies.
			per := 0
			if !direct {
				per = rows * cols
			}
			ws := Workspace(d).Get(nimg * (per + c.dwExtra()))
			col, off = c.x.Data, i0*rows*cols
			if !direct {
				d.Im2col(ws, c.x.Data, c.geom, i0, nimg)
				col, off = ws, 0
			}
			c.backwardDW(dy, col, off, ws, nimg*per, i0, nimg)
		} else {
			col, off = c.unfold(c.x.Data, i0, nimg)
			// dW += dy·colᵀ, image by image, the groups of one image as
			// one strided batch (their blocks of dW are disjoint).
			// Batching over images instead would make every output land
			// on the same matrix, which races on devices that run a
			// batch in parallel.
			for i := 0; i < nimg; i++ {
				d.GemmStrided(false, true, og, rg, cols, 1,
					dy.Data, (i0+i)*cfg.Out*cols, cols, og*cols,
					col, off+i*rows*cols, cols, rg*cols,
					1, c.weight.Grad.Data, 0, rg, og*rg, groups)
			}
		}
		if c.noDx {
			continue
		}
		if tdx {
			c.backwardDxTransposed(dy, dx, i0, nimg)
			continue
		}
		// dcol = Wᵀ·dy, written over the columns just used and folded
		// back into dx; a direct convolution writes dx itself.
		dcol := col
		if direct {
			dcol = dx.Data
		}
		for gi := 0; gi < groups; gi++ {
			d.GemmStrided(true, false, rg, cols, og, 1,
				c.weight.Value.Data, gi*og*rg, rg, 0,
				dy.Data, (i0*cfg.Out+gi*og)*cols, cols, cfg.Out*cols,
				0, dcol, off+gi*rg*cols, cols, rows*cols, nimg)
		}
		if !direct {
			d.Col2im(dx.Data, col, c.geom, i0, nimg)
		}
	}
	return c.edge.out(d, dx)
}

// backwardDxTransposed writes dx of images [i0, i0+nimg) as the transposed
// convolution of dy (see transposedDx), reusing the workspace: the caller
// is done with the unfolded input.
func (c *Conv2d) backwardDxTransposed(dy, dx *Tensor, i0, nimg int) {
	d := c.dev
	cfg := c.cfg
	g := c.dyGeom()
	rows, hw := g.ColRows(), g.ColCols() // Out·K², H·W
	col := Workspace(d).Get(nimg * rows * hw)
	d.Im2col(col, dy.Data, g, i0, nimg)
	og, cg := cfg.Out/cfg.Groups, cfg.In/cfg.Groups
	kk := cfg.Kernel * cfg.Kernel
	for gi := 0; gi < cfg.Groups; gi++ {
		d.GemmStrided(false, false, cg, hw, og*kk, 1,
			c.wflip, gi*cg*og*kk, og*kk, 0,
			col, gi*og*kk*hw, hw, rows*hw,
			0, dx.Data, (i0*cfg.In+gi*cg)*hw, hw, cfg.In*hw, nimg)
	}
}

// SetDeviceLayouts lets Forward produce the device's own layout where the
// device convolves the shape (see DeviceLayouter); off, it produces NCHW.
// Either way it takes its input in any layout the device has.
func (c *Conv2d) SetDeviceLayouts(on bool) { c.devLayouts = on }

// SkipInputGrad makes Backward compute dW and db only and return nil (see
// InputGradSkipper).
func (c *Conv2d) SkipInputGrad(on bool) { c.noDx = on }

// Params returns weight and bias, in state_dict order.
func (c *Conv2d) Params() []*Param { return c.params }

// SetTraining switches the tap's recording on (training) or off (eval).
func (c *Conv2d) SetTraining(on bool) { c.training = on }

// Weight returns the weight parameter [Out, In/Groups, K, K].
func (c *Conv2d) Weight() *Param { return c.weight }

// Bias returns the bias parameter, or nil.
func (c *Conv2d) Bias() *Param { return c.bias }

// TapDim is In·K·K, plus one with a bias. With groups it counts every input
// channel, not In/Groups: ā is the mean of the whole unfolded column (see
// SetTap), so it is longer than a row of the reshaped weight.
func (c *Conv2d) TapDim() int {
	d := c.cfg.In * c.cfg.Kernel * c.cfg.Kernel
	if c.bias != nil {
		d++
	}
	return d
}

// SetTap turns the recording of ā on or off: the mean over images and output
// positions of the im2col patches (zero padding included), in PyTorch's
// unfold order (channel, kernel row, kernel column), followed by a 1 with a
// bias. For Groups > 1 the patches span all In channels, so group g's
// statistics are the slice [g·In/Groups·K², (g+1)·In/Groups·K²) of ā.
func (c *Conv2d) SetTap(on bool) {
	c.tapOn = on
	if on && c.tap == nil {
		c.tap, c.tapMean, c.tapOne = newTap(c.dev, c.cfg.In*c.cfg.Kernel*c.cfg.Kernel, c.bias != nil)
	}
}

// Tap returns ā of the last training-mode Forward with the tap on.
func (c *Conv2d) Tap() kernels.Buffer { return c.tap }
