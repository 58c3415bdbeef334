package nn

import "github.com/macdist/macdist/kernels"

// KFACTapped is a Tapped layer (Linear, Conv2d) that can also record the
// statistics of the curvature baselines of shared/MAC.md: the input
// covariance (KFAC's A, FOOF's E[aaᵀ]), the output-gradient covariance
// (KFAC's G) and the mean output gradient (Eva's ḡ). Each tap is off by
// default and costs nothing then; its buffer is allocated the first time it
// is turned on.
//
// What the taps record, for the last training-mode pass: the layer's input
// holds B samples (its first dimension) and R rows, P = R/B rows a sample
// (Linear: R = the product of the leading dimensions, so P = 1 for a
// [B, in] input and P = N for tokens [B, N, in]; Conv2d: one row a sample
// and output position, P = OutH·OutW). a_r is input row r (Conv2d: its
// im2col patch, zero padding included, in PyTorch's unfold order) with a
// trailing 1 when the layer has a bias; g_r is the gradient of the loss
// with respect to output row r (Conv2d: the Out channels at one image and
// position), as Backward receives it.
//
//	CovTap      A = (1/R) Σ_r a_r a_rᵀ                    TapDim × TapDim
//	GradTap     G = (1/R) Σ_r (B·g_r)(B·g_r)ᵀ             OutDim × OutDim
//	GradMeanTap ḡ = (1/R) Σ_r g_r                          OutDim
//
// A is the plain mean over rows, what FOOF and MAC's first-layer rule use.
// G scales g by B, as kfac-pytorch does for a loss that is a mean over the
// batch: B·g_r is then sample r's own gradient, and G does not depend on
// the batch size, so that ranks of equal batches averaging their G get the
// G of the whole batch. KFAC's factors are A/P and P²·G (the patches scaled
// by 1/P and the gradients by B·P, as kfac-pytorch's convolution factors;
// a Linear over tokens is treated as a 1×1 convolution over N positions);
// the optimizer applies that scaling with TapPositions. ḡ is the plain mean
// of the raw output gradients, as Eva's reference code takes it
// (get_vector_g: torch.mean over every dimension but the last, or over
// images and positions): for a mean loss it scales with 1/B.
//
// With groups, a Conv2d's rows span all In channels, so A is the covariance
// of the whole unfolded column, not one group's.
type KFACTapped interface {
	Tapped
	// OutDim is the number of output features: the rows of Gw.
	OutDim() int
	SetCovTap(on bool)
	// CovTap holds A of the last training-mode Forward with the tap on.
	CovTap() kernels.Buffer
	SetGradTap(on bool)
	// GradTap holds G of the last Backward after a training-mode Forward
	// with the tap on.
	GradTap() kernels.Buffer
	SetGradMeanTap(on bool)
	// GradMeanTap holds ḡ, recorded like GradTap.
	GradMeanTap() kernels.Buffer
	// TapPositions is P, the rows a sample of the last training-mode
	// Forward (0 before any).
	TapPositions() int
}

var (
	_ KFACTapped = (*Linear)(nil)
	_ KFACTapped = (*Conv2d)(nil)
)

// curvTaps is the state of the KFACTapped taps, shared by Linear and Conv2d.
type curvTaps struct {
	covOn, gradOn, gmeanOn bool
	cov                    kernels.Buffer // d × d
	covMean                kernels.Buffer // din: the bias row and column of cov
	grad                   kernels.Buffer // out × out
	gmean                  kernels.Buffer // out
	samples, positions     int            // B and P of the last training-mode Forward
}

// setCov allocates A on first use; with a bias its corner, Σ 1·1 / R, is 1
// and never written again (the GEMM writes only the din × din block).
func (c *curvTaps) setCov(dev kernels.Device, on bool, din int, bias bool) {
	c.covOn = on
	if !on || c.cov != nil {
		return
	}
	d := din + btoi(bias)
	c.cov = dev.Alloc(d * d)
	if bias {
		c.covMean = dev.Alloc(din)
		dev.Fill(dev.View(c.cov, d*d-1, 1), 1)
	}
}

func (c *curvTaps) setGrad(dev kernels.Device, on bool, out int) {
	c.gradOn = on
	if on && c.grad == nil {
		c.grad = dev.Alloc(out * out)
	}
}

func (c *curvTaps) setGradMean(dev kernels.Device, on bool, out int) {
	c.gmeanOn = on
	if on && c.gmean == nil {
		c.gmean = dev.Alloc(out)
	}
}

// biasBorder copies the mean input row, already in covMean, into the last
// row and column of A.
func (c *curvTaps) biasBorder(dev kernels.Device, din int) {
	if c.covMean == nil {
		return
	}
	d := din + 1
	dev.Copy2D(c.cov, din, d, c.covMean, 0, 1, din, 1) // column din
	dev.Copy2D(c.cov, din*d, d, c.covMean, 0, din, 1, din)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// OutDim is out.
func (l *Linear) OutDim() int { return l.out }

// SetCovTap turns the recording of A on or off (see KFACTapped).
func (l *Linear) SetCovTap(on bool) { l.curv.setCov(l.dev, on, l.in, l.bias != nil) }

// CovTap returns A (nil before the tap was first turned on).
func (l *Linear) CovTap() kernels.Buffer { return l.curv.cov }

// SetGradTap turns the recording of G on or off.
func (l *Linear) SetGradTap(on bool) { l.curv.setGrad(l.dev, on, l.out) }

// GradTap returns G (nil before the tap was first turned on).
func (l *Linear) GradTap() kernels.Buffer { return l.curv.grad }

// SetGradMeanTap turns the recording of ḡ on or off.
func (l *Linear) SetGradMeanTap(on bool) { l.curv.setGradMean(l.dev, on, l.out) }

// GradMeanTap returns ḡ (nil before the tap was first turned on).
func (l *Linear) GradMeanTap() kernels.Buffer { return l.curv.gmean }

// TapPositions returns P of the last training-mode Forward.
func (l *Linear) TapPositions() int { return l.curv.positions }

// forwardCurv records what the curvature taps need from a training-mode
// Forward of x, rows × in.
func (l *Linear) forwardCurv(x *Tensor, rows int) {
	c := &l.curv
	c.samples = 1
	if len(x.Shape) > 1 {
		c.samples = x.Shape[0]
	}
	c.positions = rows / max(c.samples, 1)
	if !c.covOn || rows == 0 {
		return
	}
	d, dd := l.dev, l.TapDim()
	d.Gemm(true, false, l.in, l.in, rows, 1/float32(rows), x.Data, l.in, x.Data, l.in, 0, c.cov, dd)
	if c.covMean != nil {
		d.ReduceSum(c.covMean, x.Data, 1, rows, l.in, 1/float32(rows), 0)
		c.biasBorder(d, l.in)
	}
}

// backwardCurv records G and ḡ from dy, rows × out.
func (l *Linear) backwardCurv(dy *Tensor) {
	c := &l.curv
	rows := l.rows
	if rows == 0 {
		return
	}
	d := l.dev
	if c.gradOn {
		b := float32(c.samples)
		d.Gemm(true, false, l.out, l.out, rows, b*b/float32(rows), dy.Data, l.out, dy.Data, l.out, 0, c.grad, l.out)
	}
	if c.gmeanOn {
		d.ReduceSum(c.gmean, dy.Data, 1, rows, l.out, 1/float32(rows), 0)
	}
}

// OutDim is the number of output channels.
func (c *Conv2d) OutDim() int { return c.cfg.Out }

// SetCovTap turns the recording of A on or off (see KFACTapped).
func (c *Conv2d) SetCovTap(on bool) {
	c.curv.setCov(c.dev, on, c.cfg.In*c.cfg.Kernel*c.cfg.Kernel, c.bias != nil)
}

// CovTap returns A (nil before the tap was first turned on).
func (c *Conv2d) CovTap() kernels.Buffer { return c.curv.cov }

// SetGradTap turns the recording of G on or off.
func (c *Conv2d) SetGradTap(on bool) { c.curv.setGrad(c.dev, on, c.cfg.Out) }

// GradTap returns G (nil before the tap was first turned on).
func (c *Conv2d) GradTap() kernels.Buffer { return c.curv.grad }

// SetGradMeanTap turns the recording of ḡ on or off.
func (c *Conv2d) SetGradMeanTap(on bool) { c.curv.setGradMean(c.dev, on, c.cfg.Out) }

// GradMeanTap returns ḡ (nil before the tap was first turned on).
func (c *Conv2d) GradMeanTap() kernels.Buffer { return c.curv.gmean }

// TapPositions returns P = OutH·OutW of the last training-mode Forward.
func (c *Conv2d) TapPositions() int { return c.curv.positions }

// covChunk adds the patches of images [i0, i0+nimg) of an n-image batch,
// unfolded in col from offset off, to A: one GEMM an image, since a batched
// GEMM into one matrix would race. The first chunk overwrites A.
func (c *Conv2d) covChunk(col kernels.Buffer, off, i0, nimg, n int) {
	d := c.dev
	rows, cols := c.geom.ColRows(), c.geom.ColCols()
	dd := c.TapDim()
	alpha := 1 / float32(n*cols)
	for i := range nimg {
		beta := float32(1)
		if i0+i == 0 {
			beta = 0
		}
		o := off + i*rows*cols
		d.GemmStrided(false, true, rows, rows, cols, alpha, col, o, cols, 0, col, o, cols, 0, beta, c.curv.cov, 0, dd, 0, 1)
	}
	if c.curv.covMean != nil {
		beta := float32(1)
		if i0 == 0 {
			beta = 0
		}
		d.ReduceSumMid(c.curv.covMean, col, nimg, rows, cols, alpha, beta)
	}
}

// backwardCurv records G and ḡ from dy [n, Out, OH·OW].
func (c *Conv2d) backwardCurv(dy *Tensor, n int) {
	cv := &c.curv
	d := c.dev
	out, cols := c.cfg.Out, c.geom.ColCols()
	r := float32(n * cols)
	if cv.gradOn {
		b := float32(n)
		for i := range n {
			beta := float32(1)
			if i == 0 {
				beta = 0
			}
			o := i * out * cols
			d.GemmStrided(false, true, out, out, cols, b*b/r, dy.Data, o, cols, 0, dy.Data, o, cols, 0, beta, cv.grad, 0, out, 0, 1)
		}
	}
	if cv.gmeanOn {
		d.ReduceSumMid(cv.gmean, dy.Data, n, out, cols, 1/r, 0)
	}
}
