package cpu

import (
	"math"

	"github.com/macdist/macdist/kernels"
)

type ewOp uint8

const (
	opFill ewOp = iota
	opScale
	opAxpby
	opAdd
	opMul
	opReLU
	opReLUBackward
	opGELU
	opGELUBackward
	opDropout
)

// ewTask is every element-wise kernel: y[i] = f(a[i], b[i]).
type ewTask struct {
	op          ewOp
	tanh        bool
	y, a, b     []float32
	alpha, beta float32
	seed        uint64
}

func (d *Device) runEW(n, grain int) {
	d.parallel(&d.ew, n, grain)
	d.ew = ewTask{} // drop references to the operands
}

func (t *ewTask) run(lo, hi int) {
	y := t.y[lo:hi]
	switch t.op {
	case opFill:
		v := t.alpha
		for i := range y {
			y[i] = v
		}
	case opScale:
		s := t.alpha
		for i := range y {
			y[i] *= s
		}
	case opAxpby:
		x := t.a[lo:hi]
		x = x[:len(y)]
		alpha, beta := t.alpha, t.beta
		switch beta {
		case 0:
			for i, v := range x {
				y[i] = alpha * v
			}
		case 1:
			for i, v := range x {
				y[i] += alpha * v
			}
		default:
			for i, v := range x {
				y[i] = alpha*v + beta*y[i]
			}
		}
	case opAdd:
		a, b := t.a[lo:hi], t.b[lo:hi]
		a, b = a[:len(y)], b[:len(y)]
		for i := range y {
			y[i] = a[i] + b[i]
		}
	case opMul:
		a, b := t.a[lo:hi], t.b[lo:hi]
		a, b = a[:len(y)], b[:len(y)]
		for i := range y {
			y[i] = a[i] * b[i]
		}
	case opReLU:
		x := t.a[lo:hi]
		x = x[:len(y)]
		for i, v := range x {
			y[i] = max(v, 0) // a NaN stays NaN, as in PyTorch
		}
	case opReLUBackward:
		dy, out := t.a[lo:hi], t.b[lo:hi]
		dy, out = dy[:len(y)], out[:len(y)]
		for i := range y {
			if out[i] > 0 {
				y[i] = dy[i]
			} else {
				y[i] = 0
			}
		}
	case opGELU:
		x := t.a[lo:hi]
		x = x[:len(y)]
		if t.tanh {
			for i, v := range x {
				y[i] = geluTanh(v)
			}
		} else {
			for i, v := range x {
				y[i] = geluErf(v)
			}
		}
	case opGELUBackward:
		dy, x := t.a[lo:hi], t.b[lo:hi]
		dy, x = dy[:len(y)], x[:len(y)]
		if t.tanh {
			for i, v := range x {
				y[i] = dy[i] * geluTanhGrad(v)
			}
		} else {
			for i, v := range x {
				y[i] = dy[i] * geluErfGrad(v)
			}
		}
	case opDropout:
		p, scale := t.alpha, t.beta
		for i := range y {
			if kernels.DropoutUniform(t.seed, lo+i) >= p {
				y[i] = scale
			} else {
				y[i] = 0
			}
		}
	}
}

// The GELUs work in float64: the float32 libm functions Go lacks would save
// little next to the loads and stores.

const (
	invSqrt2    = 1 / math.Sqrt2
	invSqrt2Pi  = 0.3989422804014327 // 1/√(2π)
	sqrt2OverPi = 0.7978845608028654 // √(2/π)
	geluC       = 0.044715
)

func geluErf(x float32) float32 {
	v := float64(x)
	return float32(0.5 * v * (1 + math.Erf(v*invSqrt2)))
}

func geluErfGrad(x float32) float32 {
	v := float64(x)
	cdf := 0.5 * (1 + math.Erf(v*invSqrt2))
	pdf := invSqrt2Pi * math.Exp(-0.5*v*v)
	return float32(cdf + v*pdf)
}

func geluTanh(x float32) float32 {
	v := float64(x)
	return float32(0.5 * v * (1 + math.Tanh(sqrt2OverPi*(v+geluC*v*v*v))))
}

func geluTanhGrad(x float32) float32 {
	v := float64(x)
	th := math.Tanh(sqrt2OverPi * (v + geluC*v*v*v))
	return float32(0.5*(1+th) + 0.5*v*(1-th*th)*sqrt2OverPi*(1+3*geluC*v*v))
}

// Axpby computes y = alpha·x + beta·y; with beta == 0, y is not read.
func (d *Device) Axpby(y kernels.Buffer, alpha float32, x kernels.Buffer, beta float32) {
	ys, xs := d.slice(y, "Axpby", "y"), d.slice(x, "Axpby", "x")
	sameLen("Axpby", len(ys), len(xs))
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ew = ewTask{op: opAxpby, y: ys, a: xs, alpha: alpha, beta: beta}
	d.runEW(len(ys), grainCheap)
}

// Scale computes x = alpha·x.
func (d *Device) Scale(x kernels.Buffer, alpha float32) {
	xs := d.slice(x, "Scale", "x")
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ew = ewTask{op: opScale, y: xs, alpha: alpha}
	d.runEW(len(xs), grainCheap)
}

// Add computes dst = a + b.
func (d *Device) Add(dst, a, b kernels.Buffer) {
	ys, as, bs := d.slice(dst, "Add", "dst"), d.slice(a, "Add", "a"), d.slice(b, "Add", "b")
	sameLen("Add", len(ys), len(as))
	sameLen("Add", len(ys), len(bs))
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ew = ewTask{op: opAdd, y: ys, a: as, b: bs}
	d.runEW(len(ys), grainCheap)
}

// Mul computes dst = a ⊙ b.
func (d *Device) Mul(dst, a, b kernels.Buffer) {
	ys, as, bs := d.slice(dst, "Mul", "dst"), d.slice(a, "Mul", "a"), d.slice(b, "Mul", "b")
	sameLen("Mul", len(ys), len(as))
	sameLen("Mul", len(ys), len(bs))
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ew = ewTask{op: opMul, y: ys, a: as, b: bs}
	d.runEW(len(ys), grainCheap)
}

// ReLU computes y = max(x, 0).
func (d *Device) ReLU(y, x kernels.Buffer) {
	ys, xs := d.slice(y, "ReLU", "y"), d.slice(x, "ReLU", "x")
	sameLen("ReLU", len(ys), len(xs))
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ew = ewTask{op: opReLU, y: ys, a: xs}
	d.runEW(len(ys), grainCheap)
}

// ReLUBackward computes dx = dy where y > 0, else 0.
func (d *Device) ReLUBackward(dx, dy, y kernels.Buffer) {
	dxs, dys, ys := d.slice(dx, "ReLUBackward", "dx"), d.slice(dy, "ReLUBackward", "dy"), d.slice(y, "ReLUBackward", "y")
	sameLen("ReLUBackward", len(dxs), len(dys))
	sameLen("ReLUBackward", len(dxs), len(ys))
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ew = ewTask{op: opReLUBackward, y: dxs, a: dys, b: ys}
	d.runEW(len(dxs), grainCheap)
}

// GELU computes y = x·Φ(x), with the tanh approximation when tanh is set.
func (d *Device) GELU(y, x kernels.Buffer, tanh bool) {
	ys, xs := d.slice(y, "GELU", "y"), d.slice(x, "GELU", "x")
	sameLen("GELU", len(ys), len(xs))
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ew = ewTask{op: opGELU, tanh: tanh, y: ys, a: xs}
	d.runEW(len(ys), grainMath)
}

// GELUBackward computes dx = dy·GELU'(x).
func (d *Device) GELUBackward(dx, dy, x kernels.Buffer, tanh bool) {
	dxs, dys, xs := d.slice(dx, "GELUBackward", "dx"), d.slice(dy, "GELUBackward", "dy"), d.slice(x, "GELUBackward", "x")
	sameLen("GELUBackward", len(dxs), len(dys))
	sameLen("GELUBackward", len(dxs), len(xs))
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ew = ewTask{op: opGELUBackward, tanh: tanh, y: dxs, a: dys, b: xs}
	d.runEW(len(dxs), grainMath)
}

// DropoutMask fills mask with 0 where kernels.DropoutUniform(seed, i) < p
// and 1/(1−p) elsewhere.
func (d *Device) DropoutMask(mask kernels.Buffer, p float32, seed uint64) {
	ms := d.slice(mask, "DropoutMask", "mask")
	if !(p >= 0 && p <= 1) {
		panic("cpu: DropoutMask: p = " + formatFloat(p) + " is not in [0, 1]")
	}
	var scale float32
	if p < 1 {
		scale = 1 / (1 - p)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ew = ewTask{op: opDropout, y: ms, alpha: p, beta: scale, seed: seed}
	d.runEW(len(ms), grainMath)
}
