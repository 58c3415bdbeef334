package kernels

import "fmt"

// Buffer is a flat array of float32 that lives on one Device. Its contents are
// reached only through that Device's methods, so that a GPU buffer and a CPU
// buffer look the same to the layers above.
type Buffer interface {
	// Len is the number of float32 elements.
	Len() int
}

// Device is the compute backend a model replica runs on. Every method is
// float32, and every shape is given explicitly in elements: a Device knows
// nothing about tensors, only about flat buffers and the geometry it is told.
//
// Methods panic on programmer errors (a buffer too short for the shape it is
// given, a buffer of another device); they never return errors, because a
// kernel launch that fails is not something a caller can recover from inside a
// training step. Sync reports asynchronous failures of devices that have them.
//
// Unless a method says it accumulates, it overwrites its destination. Methods
// whose comment gives "beta" compute dst = alpha·(result) + beta·dst, as BLAS
// does; beta == 0 means dst is not read (NaNs in it do not propagate).
type Device interface {
	// Name is a short description, such as "cpu (openblas 0.3.21, 2 threads)".
	Name() string

	// Alloc returns a zeroed buffer of n elements.
	Alloc(n int) Buffer
	// Free releases b; b must not be used afterwards. Freeing a view is a no-op.
	Free(b Buffer)
	// View returns the elements [off, off+n) of b, sharing its memory.
	// Views are meant to be made once and kept, not made on every step.
	View(b Buffer, off, n int) Buffer
	// Upload copies host data into dst[0:len(src)].
	Upload(dst Buffer, src []float32)
	// Download copies src[0:len(dst)] to host memory.
	Download(dst []float32, src Buffer)
	// Copy copies src into dst; both have the same length.
	Copy(dst, src Buffer)
	// Copy2D copies rows elements blocks: for r in [0, rows),
	// dst[dstOff + r·dstStride : +cols] = src[srcOff + r·srcStride : +cols].
	// It is how tensors are concatenated and split along an inner axis.
	Copy2D(dst Buffer, dstOff, dstStride int, src Buffer, srcOff, srcStride int, rows, cols int)
	// Fill sets every element of b to v.
	Fill(b Buffer, v float32)
	// Sync waits for queued work and returns the first asynchronous error.
	Sync() error

	// Gemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices,
	// op(A) m×k, op(B) k×n, C m×n, with leading dimensions lda, ldb, ldc
	// (the row lengths of A, B and C as stored).
	Gemm(transA, transB bool, m, n, k int, alpha float32, a Buffer, lda int, b Buffer, ldb int, beta float32, c Buffer, ldc int)
	// GemmStrided runs batch Gemms; matrix i of A starts at aOff + i·strideA
	// (likewise B and C). A stride of 0 shares one matrix of A or B across
	// the batch. The C matrices must not overlap (strideC = 0 with batch > 1
	// is an error): devices run the batch in parallel, so products that
	// would accumulate into one C would race.
	GemmStrided(transA, transB bool, m, n, k int, alpha float32,
		a Buffer, aOff, lda, strideA int,
		b Buffer, bOff, ldb, strideB int,
		beta float32, c Buffer, cOff, ldc, strideC int, batch int)

	// Im2col unfolds images [img0, img0+nimg) of the batch x (N×C×H×W) into
	// col, laid out as nimg × (C·KH·KW) × (OutH·OutW): row c·KH·KW + i·KW + j
	// of an image's block holds input channel c at kernel offset (i, j) for
	// every output position, zero where the window falls in the padding.
	// This is PyTorch's unfold layout.
	Im2col(col Buffer, x Buffer, g ConvGeom, img0, nimg int)
	// Col2im is Im2col's adjoint: it accumulates col into images
	// [img0, img0+nimg) of dx.
	Col2im(dx Buffer, col Buffer, g ConvGeom, img0, nimg int)

	// Axpby computes y = alpha·x + beta·y element-wise.
	Axpby(y Buffer, alpha float32, x Buffer, beta float32)
	// Scale computes x = alpha·x.
	Scale(x Buffer, alpha float32)
	// Add computes dst = a + b.
	Add(dst, a, b Buffer)
	// Mul computes dst = a ⊙ b.
	Mul(dst, a, b Buffer)
	// AddBias adds bias[j] to x[o, j, i] for x viewed as outer × len(bias) × inner.
	AddBias(x, bias Buffer, outer, inner int)
	// ReduceSum computes dst[o, i] = alpha·Σ_j x[o, j, i] + beta·dst[o, i]
	// for x viewed as outer × mid × inner. With outer = 1 and inner = d it is
	// the column sum of a row matrix; with inner = 1 the row sums.
	ReduceSum(dst, x Buffer, outer, mid, inner int, alpha, beta float32)
	// ReduceSumMid computes dst[j] = alpha·Σ_{o,i} x[o, j, i] + beta·dst[j]:
	// the per-channel sum of an N×C×HW tensor, or a bias gradient.
	ReduceSumMid(dst, x Buffer, outer, mid, inner int, alpha, beta float32)
	// Expand is ReduceSum's adjoint: dst[o, j, i] = alpha·src[o, i] + beta·dst[o, j, i].
	Expand(dst, src Buffer, outer, mid, inner int, alpha, beta float32)
	// Dot returns Σ a⊙b, accumulated in float64 (it synchronises the device).
	Dot(a, b Buffer) float64

	// ReLU computes y = max(x, 0).
	ReLU(y, x Buffer)
	// ReLUBackward computes dx = dy where y > 0, else 0 (y the ReLU output).
	ReLUBackward(dx, dy, y Buffer)
	// GELU computes y = x·Φ(x), exactly (erf) or with the tanh approximation.
	GELU(y, x Buffer, tanh bool)
	// GELUBackward computes dx = dy·GELU'(x).
	GELUBackward(dx, dy, x Buffer, tanh bool)

	// Softmax computes row-wise softmax of x (rows × cols).
	Softmax(y, x Buffer, rows, cols int)
	// SoftmaxBackward computes dx = y ⊙ (dy − Σ_row dy⊙y) (y the softmax output).
	SoftmaxBackward(dx, dy, y Buffer, rows, cols int)
	// LogSoftmax computes row-wise log-softmax.
	LogSoftmax(y, x Buffer, rows, cols int)
	// CrossEntropy computes, for logits (rows × cols) and integer labels, the
	// mean over rows of the label-smoothed cross-entropy (PyTorch's
	// CrossEntropyLoss(label_smoothing=s)), writes its gradient with respect to
	// the logits into dlogits (already divided by rows), and returns the loss
	// and the number of rows whose arg-max equals the label. It synchronises.
	CrossEntropy(dlogits, logits Buffer, labels []int32, rows, cols int, smoothing float32) (loss float64, correct int)

	// LayerNorm normalises each row of x (rows × cols) and applies gamma and
	// beta (either may be nil); it saves each row's mean and 1/σ for backward.
	LayerNorm(y, mean, rstd, x, gamma, beta Buffer, rows, cols int, eps float32)
	// LayerNormBackward computes dx and accumulates dgamma and dbeta (nil when
	// the affine part is absent).
	LayerNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma Buffer, rows, cols int)

	// BatchNormTrain normalises x (n × c × hw) with the batch statistics of each
	// channel, saves the mean and 1/σ (biased variance) for backward, and moves
	// the running statistics: running = (1−momentum)·running + momentum·batch,
	// with the unbiased variance, as PyTorch does. gamma and beta may be nil.
	BatchNormTrain(y, saveMean, saveRstd, runMean, runVar, x, gamma, beta Buffer, n, c, hw int, momentum, eps float32)
	// BatchNormEval normalises with the running statistics.
	BatchNormEval(y, x, runMean, runVar, gamma, beta Buffer, n, c, hw int, eps float32)
	// BatchNormBackward computes dx for training-mode batch norm and
	// accumulates dgamma and dbeta (nil when the affine part is absent).
	BatchNormBackward(dx, dgamma, dbeta, dy, x, saveMean, saveRstd, gamma Buffer, n, c, hw int)

	// MaxPool2d pools each of the n·C planes of x. Windows that tie keep the
	// first maximum in row-major order, as PyTorch does.
	MaxPool2d(y, x Buffer, g PoolGeom, n int)
	// MaxPool2dBackward accumulates dy into dx at each window's maximum,
	// found again from x.
	MaxPool2dBackward(dx, dy, x Buffer, g PoolGeom, n int)
	// AvgPool2d averages each window; padding counts in the divisor when
	// g.CountIncludePad is set (PyTorch's default).
	AvgPool2d(y, x Buffer, g PoolGeom, n int)
	// AvgPool2dBackward accumulates the adjoint of AvgPool2d into dx.
	AvgPool2dBackward(dx, dy Buffer, g PoolGeom, n int)

	// DropoutMask fills mask with 0 (probability p) or 1/(1−p), from a
	// counter-based generator: the same seed gives the same mask on every device.
	DropoutMask(mask Buffer, p float32, seed uint64)

	// AdamW applies one step of torch.optim.AdamW (amsgrad off) to the
	// parameters p with gradients g and moments m and v, all of one length;
	// step counts from 1 and sets the bias corrections bc1 = 1 − beta1^step
	// and bc2 = 1 − beta2^step. Element-wise, in float32, in torch's order:
	//
	//	p ← p·(1 − lr·weightDecay)
	//	m ← beta1·m + (1 − beta1)·g
	//	v ← beta2·v + (1 − beta2)·g²
	//	p ← p − (lr/bc1) · m / (√v/√bc2 + eps)
	AdamW(p, g, m, v Buffer, lr, beta1, beta2, eps, weightDecay float32, step int)
	// SGDStep applies one step of torch.optim.SGD (dampening 0) to the
	// parameters p from the gradients g (left as they are) and the momentum
	// buffer buf (nil: no momentum), all of one length, element-wise in
	// float32 and rounding exactly as this sequence of Axpby and Scale calls:
	//
	//	p ← decay·p                      (decoupled weight decay; skipped when decay is 1)
	//	g′ ← weightDecay·p + g           (coupled weight decay; skipped when weightDecay is 0)
	//	buf ← g′ + momentum·buf          (with buf)
	//	s ← momentum·buf + g′ (Nesterov), buf (heavy ball), or g′ (no buf)
	//	p ← −lr·s + p
	//
	// One pass instead of up to five, which on a GPU is one launch instead
	// of five per parameter tensor.
	SGDStep(p, g, buf Buffer, lr, momentum, weightDecay, decay float32, nesterov bool)
}

// Permuter is a Device that can copy a strided 4-D block in one call:
// transposing axes, reversing them, or broadcasting, where Copy2D would
// take one call per line. Layers use it when their Device has it (the cpu
// and cuda Devices do) and fall back to Copy2D or to another algorithm when
// it does not, so a device gains it without breaking; it is meant to join
// Device once the cuda one has been through scripts/gpu-check.sh with it.
type Permuter interface {
	// CopyStrided copies shape[0]×shape[1]×shape[2]×shape[3] elements: for
	// every index i with 0 ≤ i[k] < shape[k],
	//
	//	dst[dstOff + Σ_k i[k]·dstStride[k]] = src[srcOff + Σ_k i[k]·srcStride[k]].
	//
	// Strides may be negative (to reverse an axis) or, in src, zero (to
	// broadcast). The destination elements must be distinct and must not
	// overlap the source's; both extents must lie inside their buffers.
	CopyStrided(dst Buffer, dstOff int, dstStride [4]int, src Buffer, srcOff int, srcStride [4]int, shape [4]int)
}

// Convolver is a Device that computes 2-D convolutions directly, without
// unfolding the input, for the shapes it accepts (the cpu Device through
// oneDNN). Conv2d uses it where Convolves says yes and im2col and Gemm
// otherwise, so a device gains it without breaking.
//
// Tensors are NCHW: x is n×g.C×g.H×g.W, y and dy n×out×g.OutH()×g.OutW(),
// w out×(g.C/groups)×g.KH×g.KW (PyTorch's layout), bias out.
type Convolver interface {
	// Convolves reports whether the device convolves this shape directly,
	// with a bias or without. It may prepare the shape (on the cpu Device,
	// make and cache its primitives), so it is meant to be asked once per
	// shape before the calls below, which panic for a shape it refused.
	Convolves(g ConvGeom, out, groups, n int, bias bool) bool
	// ConvForward computes y = conv(x, w) + bias; bias may be nil.
	ConvForward(y, x, w, bias Buffer, g ConvGeom, out, groups, n int)
	// ConvBackward computes from dy the gradient with respect to x into dx
	// (overwriting it), and accumulates those with respect to w into dw
	// and, unless db is nil, to the bias into db. One call for the three,
	// so that a device converts dy's layout once for both products. A nil
	// dx skips the input gradient (a network's first layer).
	ConvBackward(dx, dw, db, x, dy, w Buffer, g ConvGeom, out, groups, n int)
}

// LaunchBound is a Device on which every call has a fixed cost large next
// to the work of a small one (a GPU: a kernel launch, a few microseconds),
// so that layers should prefer fewer, larger calls even at the price of
// extra copies. The cpu Device is not: its calls are function calls.
type LaunchBound interface {
	LaunchBound() bool
}

// IsLaunchBound reports whether dev says it is LaunchBound.
func IsLaunchBound(dev Device) bool {
	l, ok := dev.(LaunchBound)
	return ok && l.LaunchBound()
}

// CheckStrided is the argument check every CopyStrided implementation
// makes, for a dst of dstLen and a src of srcLen elements: it panics (a
// programmer error, the message prefixed with who, the device's package)
// when a shape is negative or a block reaches outside its buffer, and
// reports whether there is anything to copy.
func CheckStrided(who string, dstLen, dstOff int, dstStride [4]int, srcLen, srcOff int, srcStride [4]int, shape [4]int) bool {
	for _, n := range shape {
		if n < 0 {
			panic(fmt.Sprintf("%s: CopyStrided: negative shape %v", who, shape))
		}
		if n == 0 {
			return false
		}
	}
	for _, b := range [...]struct {
		name   string
		n, off int
		stride [4]int
	}{{"dst", dstLen, dstOff, dstStride}, {"src", srcLen, srcOff, srcStride}} {
		var lo, hi int // the offsets the block touches, relative to its first element
		for k, n := range shape {
			if e := (n - 1) * b.stride[k]; e < 0 {
				lo += e
			} else {
				hi += e
			}
		}
		if b.off+lo < 0 || b.off+hi >= b.n {
			panic(fmt.Sprintf("%s: CopyStrided: %s block of shape %v, strides %v at offset %d spans [%d, %d], outside its %d elements",
				who, b.name, shape, b.stride, b.off, b.off+lo, b.off+hi, b.n))
		}
	}
	return true
}

// ConvGeom is the geometry of one image of a 2-D convolution, for Im2col and
// Col2im. Groups are the caller's business: the rows of a group's input
// channels are contiguous in the unfolded matrix.
type ConvGeom struct {
	C, H, W          int // input channels and size
	KH, KW           int // kernel size
	StrideH, StrideW int
	PadH, PadW       int
	DilH, DilW       int
}

// OutH is the output height.
func (g ConvGeom) OutH() int { return (g.H+2*g.PadH-g.DilH*(g.KH-1)-1)/g.StrideH + 1 }

// OutW is the output width.
func (g ConvGeom) OutW() int { return (g.W+2*g.PadW-g.DilW*(g.KW-1)-1)/g.StrideW + 1 }

// ColRows is the number of rows of one image's unfolded matrix, C·KH·KW.
func (g ConvGeom) ColRows() int { return g.C * g.KH * g.KW }

// ColCols is the number of columns of one image's unfolded matrix, OutH·OutW.
func (g ConvGeom) ColCols() int { return g.OutH() * g.OutW() }

// PoolGeom is the geometry of 2-D pooling over planes of H×W (C planes per image).
type PoolGeom struct {
	C, H, W          int
	KH, KW           int
	StrideH, StrideW int
	PadH, PadW       int
	CountIncludePad  bool // AvgPool2d only
}

// OutH is the output height (floor mode, as PyTorch's default).
func (g PoolGeom) OutH() int { return (g.H+2*g.PadH-g.KH)/g.StrideH + 1 }

// OutW is the output width.
func (g PoolGeom) OutW() int { return (g.W+2*g.PadW-g.KW)/g.StrideW + 1 }

// Layout is the order in which a Device keeps the elements of an
// activation of n images, c channels and h×w pixels in its buffer.
type Layout uint8

const (
	// NCHW is PyTorch's contiguous layout, the one every method of Device
	// and Convolver assumes.
	NCHW Layout = iota
	// Blocked16 is oneDNN's nChw16c: [n][c/16][h][w][16], channel 16·k+j
	// of a pixel in lane j of block k, for c a multiple of 16. oneDNN's
	// AVX-512 convolutions compute in it, so keeping activations in it
	// between them saves two reorders per convolution and pass; a
	// per-channel reduction then reads sixteen channels side by side, a
	// vector wide, instead of one plane at a time.
	Blocked16
	// NHWC is [n][h][w][c], a pixel's channels side by side: PyTorch's
	// channels_last, for any c. oneDNN's brgemm convolutions compute in
	// it natively, and so do its kernels for channel counts that are no
	// multiple of 16; per-channel reductions read a pixel's channels a
	// vector at a time, as in Blocked16.
	NHWC
)

func (l Layout) String() string {
	switch l {
	case NCHW:
		return "nchw"
	case Blocked16:
		return "nChw16c"
	case NHWC:
		return "nhwc"
	}
	return fmt.Sprintf("layout(%d)", uint8(l))
}

// Layouter is a Device that can keep activations between layers in a
// layout of its own. Which layout is the Device's business: layers that
// understand layouts ask ActivationLayout what a convolution should
// produce and hand every kernel the layout of the tensors they pass it;
// layers that do not get NCHW through Relayout, at their edge. What
// crosses a model's edges (inputs, logits, parameters, gradients) stays
// NCHW.
//
// The methods named …In take the arguments of the Device or Convolver
// method of the same name, preceded by layouts; with NCHW they are that
// method. For a Device without Layouter, every tensor is NCHW.
type Layouter interface {
	// ActivationLayout is the layout a convolution should produce for an
	// output of c channels: NCHW where the device has nothing better.
	ActivationLayout(c int) Layout
	// Relayout copies the n×c×hw activation src, laid out as from, into
	// dst, laid out as to.
	Relayout(dst Buffer, to Layout, src Buffer, from Layout, n, c, hw int)

	// ConvForwardIn is ConvForward with x laid out as xl and y as yl.
	ConvForwardIn(xl, yl Layout, y, x, w, bias Buffer, g ConvGeom, out, groups, n int)
	// ConvBackwardIn is ConvBackward with x and dx laid out as xl, dy as yl.
	ConvBackwardIn(xl, yl Layout, dx, dw, db, x, dy, w Buffer, g ConvGeom, out, groups, n int)

	BatchNormTrainIn(l Layout, y, saveMean, saveRstd, runMean, runVar, x, gamma, beta Buffer, n, c, hw int, momentum, eps float32)
	BatchNormEvalIn(l Layout, y, x, runMean, runVar, gamma, beta Buffer, n, c, hw int, eps float32)
	BatchNormBackwardIn(l Layout, dx, dgamma, dbeta, dy, x, saveMean, saveRstd, gamma Buffer, n, c, hw int)

	// PlaneSumIn writes y[i, ch] = alpha·Σ_s x[i, ch, s], y an NCHW n×c,
	// for x n×c×hw laid out as l: global average pooling.
	PlaneSumIn(l Layout, y, x Buffer, n, c, hw int, alpha float32)
	// PlaneSpreadIn is PlaneSumIn's adjoint: dx[i, ch, s] = alpha·dy[i, ch],
	// dx laid out as l.
	PlaneSpreadIn(l Layout, dx, dy Buffer, n, c, hw int, alpha float32)

	// MaxPool2dIn is MaxPool2d with x and y laid out as l.
	MaxPool2dIn(l Layout, y, x Buffer, g PoolGeom, n int)
	// MaxPool2dBackwardIn is MaxPool2dBackward with dx, dy and x laid out as l.
	MaxPool2dBackwardIn(l Layout, dx, dy, x Buffer, g PoolGeom, n int)
}

// LayoutOf returns what a Layouter dev would produce for c channels, and
// NCHW for any other Device.
func LayoutOf(dev Device, c int) Layout {
	if l, ok := dev.(Layouter); ok {
		return l.ActivationLayout(c)
	}
	return NCHW
}

// ReLUFuser is a Device that applies a ReLU in the same pass as the
// operation before it, for activations in the layouts FusesReLU accepts:
// the ReLU then costs no pass over memory of its own. Layers use it where
// their Device has it (the residual blocks, for batch norm and for the
// sum), and call the unfused methods otherwise. The ReLU is ReLU's: a
// NaN stays, and its backward passes dy where the output is > 0.
type ReLUFuser interface {
	// FusesReLU reports whether the methods below take layout l.
	FusesReLU(l Layout) bool
	// BatchNormReLUTrainIn is BatchNormTrainIn followed by y = max(y, 0).
	BatchNormReLUTrainIn(l Layout, y, saveMean, saveRstd, runMean, runVar, x, gamma, beta Buffer, n, c, hw int, momentum, eps float32)
	// BatchNormAddReLUTrainIn is BatchNormTrainIn followed by
	// y = max(y + z, 0), z laid out as x: a residual block's last norm,
	// its shortcut and its ReLU. Its Backward is ReLUBackward on y, then
	// BatchNormBackwardIn.
	BatchNormAddReLUTrainIn(l Layout, y, saveMean, saveRstd, runMean, runVar, x, z, gamma, beta Buffer, n, c, hw int, momentum, eps float32)
	// BatchNormReLUBackwardIn is BatchNormBackwardIn for dy the gradient
	// with respect to the ReLU's output y (dy counts where y > 0).
	BatchNormReLUBackwardIn(l Layout, dx, dgamma, dbeta, dy, y, x, saveMean, saveRstd, gamma Buffer, n, c, hw int)
	// AddReLU computes dst = max(a + b, 0) element-wise, in any layout.
	AddReLU(dst, a, b Buffer)
}
