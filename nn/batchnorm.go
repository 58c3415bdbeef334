package nn

import (
	"fmt"

	"github.com/macdist/macdist/kernels"
)

// BatchNorm2d is PyTorch's nn.BatchNorm2d (eps 1e-5, momentum 0.1, affine,
// tracking running statistics) on inputs [N, C, ...]. In training mode it
// normalises with the batch statistics and moves the running ones; in
// evaluation mode it normalises with the running statistics, and its
// Backward is that of the fixed affine map.
type BatchNorm2d struct {
	dev  kernels.Device
	name string
	c    int

	weight, bias     *Param
	runMean, runVar  *Param
	numBatches       *Param
	params           []*Param
	saveMean, saveRs kernels.Buffer // batch mean and 1/σ of the last training Forward
	zeros, one       kernels.Buffer // c zeros; a single 1 to count batches with

	Eps, Momentum float32

	training bool
	fwdTrain bool // the mode of the last Forward, which Backward follows
	x        *Tensor
	n, hw    int
	y, dx    lent // y is read by the next layer only, never by Backward

	dyIn  slot      // dy in y's layout, when it came in another
	edge  plainEdge // evaluation-mode Backward, which works in NCHW
	fused *ReLU     // the ReLU whose output the last Forward wrote (forwardReLU)
}

// NewBatchNorm2d returns a BatchNorm2d over c channels with parameters
// name.weight (ones) and name.bias (zeros), and buffers name.running_mean,
// name.running_var and name.num_batches_tracked, in state_dict order.
func NewBatchNorm2d(dev kernels.Device, name string, c int) *BatchNorm2d {
	if c <= 0 {
		panic(fmt.Sprintf("nn: %s: %d channels", layerName(name, "BatchNorm2d"), c))
	}
	b := &BatchNorm2d{dev: dev, name: name, c: c, Eps: 1e-5, Momentum: 0.1, training: true}
	b.weight = &Param{Name: join(name, "weight"), Kind: KindNorm, Value: NewTensor(dev, c), Grad: NewTensor(dev, c)}
	dev.Fill(b.weight.Value.Data, 1)
	b.bias = &Param{Name: join(name, "bias"), Kind: KindNorm, Value: NewTensor(dev, c), Grad: NewTensor(dev, c)}
	b.runMean = &Param{Name: join(name, "running_mean"), Kind: KindBuffer, Value: NewTensor(dev, c)}
	b.runVar = &Param{Name: join(name, "running_var"), Kind: KindBuffer, Value: NewTensor(dev, c)}
	dev.Fill(b.runVar.Value.Data, 1)
	b.numBatches = &Param{Name: join(name, "num_batches_tracked"), Kind: KindBuffer, Value: NewTensor(dev)}
	b.params = []*Param{b.weight, b.bias, b.runMean, b.runVar, b.numBatches}
	b.saveMean, b.saveRs = dev.Alloc(c), dev.Alloc(c)
	b.zeros = dev.Alloc(c)
	b.one = dev.Alloc(1)
	dev.Fill(b.one, 1)
	return b
}

func (b *BatchNorm2d) label() string { return layerName(b.name, "BatchNorm2d") }

// Forward normalises x [N, C, ...]; the output is owned by b.
func (b *BatchNorm2d) Forward(x *Tensor) *Tensor {
	if len(x.Shape) < 2 || x.Shape[1] != b.c {
		shapePanic(b.label(), x.Shape, shapeStr("N", b.c, "H", "W"))
	}
	b.x, b.n = x, x.Shape[0]
	b.hw = x.Len() / (b.n * b.c)
	b.fused = nil
	y := b.y.ensure(b.dev, x.Shape)
	y.Layout = x.Layout
	b.fwdTrain = b.training
	lo, _ := b.dev.(kernels.Layouter)
	if b.training {
		if lo != nil {
			lo.BatchNormTrainIn(x.Layout, y.Data, b.saveMean, b.saveRs, b.runMean.Value.Data, b.runVar.Value.Data, x.Data,
				b.weight.Value.Data, b.bias.Value.Data, b.n, b.c, b.hw, b.Momentum, b.Eps)
		} else {
			b.dev.BatchNormTrain(y.Data, b.saveMean, b.saveRs, b.runMean.Value.Data, b.runVar.Value.Data, x.Data,
				b.weight.Value.Data, b.bias.Value.Data, b.n, b.c, b.hw, b.Momentum, b.Eps)
		}
		// Counted on the device, so that a checkpoint loaded into the
		// buffer is continued rather than overwritten by a host counter.
		b.dev.Axpby(b.numBatches.Value.Data, 1, b.one, 1)
	} else if lo != nil {
		lo.BatchNormEvalIn(x.Layout, y.Data, x.Data, b.runMean.Value.Data, b.runVar.Value.Data,
			b.weight.Value.Data, b.bias.Value.Data, b.n, b.c, b.hw, b.Eps)
	} else {
		b.dev.BatchNormEval(y.Data, x.Data, b.runMean.Value.Data, b.runVar.Value.Data,
			b.weight.Value.Data, b.bias.Value.Data, b.n, b.c, b.hw, b.Eps)
	}
	return y
}

// Backward accumulates the gradients of weight and bias and returns dx, for
// the mode of the last Forward.
func (b *BatchNorm2d) Backward(dy *Tensor) *Tensor {
	mustForward(b.label(), b.x != nil)
	if b.fused != nil {
		panic("nn: " + b.label() + ": Backward after a Forward fused with a ReLU (use backwardReLU)")
	}
	// The output has x's shape and layout; after forwardAddReLU b has
	// written no output of its own.
	if !dy.SameShape(b.x.Shape) {
		gradPanic(b.label(), dy.Shape, b.x.Shape)
	}
	d := b.dev
	if b.fwdTrain {
		dy = relayout(d, &b.dyIn, dy, b.x.Layout)
		dx := b.dx.ensure(d, b.x.Shape)
		dx.Layout = b.x.Layout
		if lo, ok := d.(kernels.Layouter); ok {
			lo.BatchNormBackwardIn(b.x.Layout, dx.Data, b.weight.Grad.Data, b.bias.Grad.Data, dy.Data, b.x.Data,
				b.saveMean, b.saveRs, b.weight.Value.Data, b.n, b.c, b.hw)
		} else {
			d.BatchNormBackward(dx.Data, b.weight.Grad.Data, b.bias.Grad.Data, dy.Data, b.x.Data,
				b.saveMean, b.saveRs, b.weight.Value.Data, b.n, b.c, b.hw)
		}
		return dx
	}
	// Evaluation mode is the per-channel affine map y = γ·x̂ + β with
	// x̂ = (x − μ)/√(σ²+ε) fixed, so BatchNormEval itself computes both x̂
	// (γ and β absent) and dx = γ/√(σ²+ε)·dy (μ = 0, β absent). It is
	// rare enough (fine-tuning with frozen statistics) to run in NCHW.
	x := b.edge.in(d, b.x)
	dy = relayout(d, &b.dyIn, dy, kernels.NCHW)
	dx := b.dx.ensure(d, b.x.Shape)
	xhat := Workspace(d).Get(b.x.Len())
	d.BatchNormEval(xhat, x.Data, b.runMean.Value.Data, b.runVar.Value.Data, nil, nil, b.n, b.c, b.hw, b.Eps)
	d.Mul(xhat, xhat, dy.Data)
	d.ReduceSumMid(b.weight.Grad.Data, xhat, b.n, b.c, b.hw, 1, 1)
	d.ReduceSumMid(b.bias.Grad.Data, dy.Data, b.n, b.c, b.hw, 1, 1)
	d.BatchNormEval(dx.Data, dy.Data, b.zeros, b.runVar.Value.Data, b.weight.Value.Data, nil, b.n, b.c, b.hw, b.Eps)
	return b.edge.out(d, dx)
}

// forwardReLU is r.Forward(b.Forward(x)), computed in one pass where the
// device fuses the two (kernels.ReLUFuser): the norm writes r's output and
// no output of its own. Backward must then go through backwardReLU.
func (b *BatchNorm2d) forwardReLU(x *Tensor, r *ReLU) *Tensor {
	f, ok := b.dev.(kernels.ReLUFuser)
	if !ok || !b.training || !f.FusesReLU(x.Layout) || len(x.Shape) < 2 || x.Shape[1] != b.c {
		// The norm's output is read by r alone: r's Backward reads its
		// own output, the norm's its input.
		t := b.Forward(x)
		y := r.Forward(t)
		release(t)
		return y
	}
	b.x, b.n = x, x.Shape[0]
	b.hw = x.Len() / (b.n * b.c)
	b.fwdTrain = true
	y := r.y.ensure(b.dev, x.Shape)
	y.Layout = x.Layout
	r.have = true
	f.BatchNormReLUTrainIn(x.Layout, y.Data, b.saveMean, b.saveRs, b.runMean.Value.Data, b.runVar.Value.Data, x.Data,
		b.weight.Value.Data, b.bias.Value.Data, b.n, b.c, b.hw, b.Momentum, b.Eps)
	b.dev.Axpby(b.numBatches.Value.Data, 1, b.one, 1)
	b.fused = r
	return y
}

// forwardAddReLU is res.addReLU(b.Forward(x), z, r, label), in one pass
// where the device fuses them (kernels.ReLUFuser): the norm writes r's
// output and neither its own nor the sum. Backward stays b.Backward after
// r.Backward, whose gradient the shortcut needs as well.
func (b *BatchNorm2d) forwardAddReLU(x, z *Tensor, r *ReLU, res *residual, label string) *Tensor {
	f, ok := b.dev.(kernels.ReLUFuser)
	if !ok || !b.training || !f.FusesReLU(x.Layout) || len(x.Shape) < 2 || x.Shape[1] != b.c || !x.SameShape(z.Shape) {
		h := b.Forward(x)
		y := res.addReLU(h, z, r, label)
		release(h) // read by nobody: b's Backward reads x, r's its own output
		return y
	}
	z = relayout(b.dev, &res.b, z, x.Layout)
	b.x, b.n = x, x.Shape[0]
	b.hw = x.Len() / (b.n * b.c)
	b.fwdTrain = true
	b.fused = nil
	y := r.y.ensure(b.dev, x.Shape)
	y.Layout = x.Layout
	r.have = true
	f.BatchNormAddReLUTrainIn(x.Layout, y.Data, b.saveMean, b.saveRs, b.runMean.Value.Data, b.runVar.Value.Data, x.Data,
		z.Data, b.weight.Value.Data, b.bias.Value.Data, b.n, b.c, b.hw, b.Momentum, b.Eps)
	b.dev.Axpby(b.numBatches.Value.Data, 1, b.one, 1)
	return y
}

// backwardReLU is b.Backward(r.Backward(dy)) after forwardReLU, in one
// pass where that fused them.
func (b *BatchNorm2d) backwardReLU(dy *Tensor, r *ReLU) *Tensor {
	if b.fused != r {
		t := r.Backward(dy)
		dx := b.Backward(t)
		consumed(t, dx)
		return dx
	}
	if !dy.SameShape(r.y.t.Shape) {
		gradPanic(b.label(), dy.Shape, r.y.t.Shape)
	}
	d := b.dev
	dy = relayout(d, &b.dyIn, dy, r.y.t.Layout)
	dx := b.dx.ensure(d, b.x.Shape)
	dx.Layout = b.x.Layout
	d.(kernels.ReLUFuser).BatchNormReLUBackwardIn(b.x.Layout, dx.Data, b.weight.Grad.Data, b.bias.Grad.Data, dy.Data,
		r.y.t.Data, b.x.Data, b.saveMean, b.saveRs, b.weight.Value.Data, b.n, b.c, b.hw)
	return dx
}

// Params returns weight, bias, running_mean, running_var and
// num_batches_tracked, in state_dict order.
func (b *BatchNorm2d) Params() []*Param { return b.params }

// SetTraining chooses batch (training) or running (eval) statistics.
func (b *BatchNorm2d) SetTraining(on bool) { b.training = on }

// Channels is C.
func (b *BatchNorm2d) Channels() int { return b.c }
