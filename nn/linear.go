package nn

import (
	"math"
	"math/rand/v2"

	"github.com/macdist/macdist/kernels"
)

// Linear is PyTorch's nn.Linear: y = x·Wᵀ + b over the last dimension of an
// input of any rank, the leading dimensions flattened into rows.
type Linear struct {
	dev     kernels.Device
	name    string
	in, out int
	weight  *Param
	bias    *Param
	params  []*Param

	training bool
	x        *Tensor
	rows     int
	y        slot
	dx       lent
	// xr is x as the forward's product rounded it, where the device
	// rounds (bf16): the backward's dW reads it instead of rounding x
	// again, as autocast saves the bf16 input.
	xr kernels.KeptOperand

	tapOn   bool
	tap     kernels.Buffer // TapDim elements
	tapMean kernels.Buffer // view of the first in elements
	tapOne  kernels.Buffer // view of the trailing 1 (bias only)

	curv curvTaps // KFACTapped, see curvature.go

	noDx bool      // SkipInputGrad
	edge plainEdge // a 4-D input from a layer in a device layout
}

// NewLinear returns a Linear layer mapping [..., in] to [..., out], with
// parameters name.weight [out, in] and name.bias [out], initialised as
// PyTorch does (uniform in ±1/√in).
func NewLinear(dev kernels.Device, name string, in, out int, bias bool, rng *rand.Rand) *Linear {
	if in <= 0 || out <= 0 {
		panic("nn: " + layerName(name, "Linear") + ": in and out must be positive, got " + shapeStr(in, out))
	}
	l := &Linear{dev: dev, name: name, in: in, out: out, training: true}
	bound := 1 / math.Sqrt(float64(in))
	l.weight = newParam(dev, join(name, "weight"), KindWeight, rng, bound, out, in)
	l.params = []*Param{l.weight}
	if bias {
		l.bias = newParam(dev, join(name, "bias"), KindBias, rng, bound, out)
		l.params = append(l.params, l.bias)
	}
	return l
}

// newParam allocates a trainable parameter with its gradient, uniform in
// ±bound (zero when bound is 0).
func newParam(dev kernels.Device, name string, kind ParamKind, rng *rand.Rand, bound float64, shape ...int) *Param {
	p := &Param{Name: name, Kind: kind, Value: NewTensor(dev, shape...), Grad: NewTensor(dev, shape...)}
	if bound != 0 {
		v := make([]float32, p.Value.Len())
		for i := range v {
			v[i] = float32((2*rng.Float64() - 1) * bound)
		}
		dev.Upload(p.Value.Data, v)
	}
	return p
}

func (l *Linear) label() string { return layerName(l.name, "Linear") }

// Forward computes x·Wᵀ + b; the output is owned by l.
func (l *Linear) Forward(x *Tensor) *Tensor {
	x = l.edge.in(l.dev, x)
	nd := len(x.Shape)
	if nd == 0 || x.Shape[nd-1] != l.in {
		shapePanic(l.label(), x.Shape, shapeStr("...", l.in))
	}
	rows := x.Len() / l.in
	var sh [8]int
	shape := sh[:0]
	if nd > len(sh) {
		shape = make([]int, 0, nd)
	}
	shape = append(shape, x.Shape[:nd-1]...)
	shape = append(shape, l.out)
	y := l.y.ensure(l.dev, shape)
	l.x, l.rows = x, rows

	d := l.dev
	l.xr.Forget() // x is new, or new data in the old buffer
	keep := &l.xr
	if !l.training {
		keep = nil // no backward to keep it for
	}
	kernels.MatMulKept(d, keep, nil, false, true, rows, l.out, l.in, 1, x.Data, l.in, l.weight.Value.Data, l.in, 0, y.Data, l.out)
	if l.bias != nil {
		d.AddBias(y.Data, l.bias.Value.Data, rows, 1)
	}
	if l.tapOn && l.training {
		d.ReduceSum(l.tapMean, x.Data, 1, rows, l.in, 1/float32(rows), 0)
		if l.tapOne != nil {
			d.Fill(l.tapOne, 1)
		}
	}
	if l.training {
		l.forwardCurv(x, rows)
	}
	return y
}

// Backward accumulates dW = dyᵀ·x and db = Σ dy, and returns dx = dy·W.
func (l *Linear) Backward(dy *Tensor) *Tensor {
	if l.x == nil {
		panic("nn: " + l.label() + ": Backward before Forward")
	}
	if !dy.SameShape(l.y.t.Shape) {
		gradPanic(l.label(), dy.Shape, l.y.t.Shape)
	}
	d := l.dev
	if l.training && (l.curv.gradOn || l.curv.gmeanOn) {
		l.backwardCurv(dy)
	}
	if l.bias != nil {
		d.ReduceSum(l.bias.Grad.Data, dy.Data, 1, l.rows, l.out, 1, 1)
	}
	dw := kernels.Product{TransA: true, M: l.out, N: l.in, K: l.rows, Alpha: 1,
		B: l.x.Data, LDB: l.in, Beta: 1, C: l.weight.Grad.Data, LDC: l.in, KeptB: &l.xr}
	if l.noDx {
		kernels.MatMulKept(d, nil, dw.KeptB, dw.TransA, dw.TransB, dw.M, dw.N, dw.K, dw.Alpha, dy.Data, l.out, dw.B, dw.LDB, dw.Beta, dw.C, dw.LDC)
		return nil
	}
	dx := l.dx.ensure(d, l.x.Shape)
	// One product after the other on the same dy: in bf16 it is rounded once.
	kernels.MatMulSharedA(d, dy.Data, l.out, dw, kernels.Product{M: l.rows, N: l.in, K: l.out, Alpha: 1,
		B: l.weight.Value.Data, LDB: l.in, C: dx.Data, LDC: l.in})
	return l.edge.out(d, dx)
}

// SkipInputGrad makes Backward compute the parameter gradients only and
// return nil (see InputGradSkipper).
func (l *Linear) SkipInputGrad(on bool) { l.noDx = on }

// Params returns weight and bias, in state_dict order.
func (l *Linear) Params() []*Param { return l.params }

// SetTraining switches the tap's recording on (training) or off (eval).
func (l *Linear) SetTraining(on bool) { l.training = on }

// Weight returns the weight parameter [out, in].
func (l *Linear) Weight() *Param { return l.weight }

// Bias returns the bias parameter, or nil.
func (l *Linear) Bias() *Param { return l.bias }

// TapDim is in, plus one with a bias.
func (l *Linear) TapDim() int {
	if l.bias != nil {
		return l.in + 1
	}
	return l.in
}

// SetTap turns the recording of ā on or off. Its buffer is allocated on
// first use, so a layer whose tap is never on holds none.
func (l *Linear) SetTap(on bool) {
	l.tapOn = on
	if on && l.tap == nil {
		l.tap, l.tapMean, l.tapOne = newTap(l.dev, l.in, l.bias != nil)
	}
}

// Tap returns ā of the last training-mode Forward with the tap on (nil
// before the tap was first turned on).
func (l *Linear) Tap() kernels.Buffer { return l.tap }

// In and Out are the feature sizes.
func (l *Linear) In() int  { return l.in }
func (l *Linear) Out() int { return l.out }

// newTap allocates a tap of n means, plus a trailing 1 with a bias, and the
// views the layer writes through.
func newTap(dev kernels.Device, n int, bias bool) (tap, mean, one kernels.Buffer) {
	if !bias {
		tap = dev.Alloc(n)
		return tap, tap, nil
	}
	tap = dev.Alloc(n + 1)
	dev.Fill(tap, 1)
	return tap, dev.View(tap, 0, n), dev.View(tap, n, 1)
}
