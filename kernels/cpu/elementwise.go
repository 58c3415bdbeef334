package cpu

import (
	"math"
	"unsafe"

	"github.com/macdist/macdist/kernels"
)

type ewOp uint8

const (
	opFill ewOp = iota
	opScale
	opAxpby
	opAdd
	opAddReLU
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
		if math.Float32bits(v) == 0 {
			clear(y) // the runtime's vector clear: 4 times the loop below
			break
		}
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
	case opAdd, opAddReLU:
		// With the ReLU, the sum stays in cache for it.
		a, b := t.a[lo:hi], t.b[lo:hi]
		a, b = a[:len(y)], b[:len(y)]
		if haveSIMD {
			simdAdd(y, a, b, t.op == opAddReLU)
			return
		}
		for i := range y {
			y[i] = a[i] + b[i]
		}
		if t.op == opAddReLU {
			reluBits(f32bits(y), f32bits(y))
		}
	case opMul:
		a, b := t.a[lo:hi], t.b[lo:hi]
		a, b = a[:len(y)], b[:len(y)]
		for i := range y {
			y[i] = a[i] * b[i]
		}
	case opReLU:
		x := t.a[lo:hi]
		if haveSIMD {
			simdReLU(f32bits(y), f32bits(x))
			return
		}
		reluBits(f32bits(y), f32bits(x[:len(y)]))
	case opReLUBackward:
		dy, out := t.a[lo:hi], t.b[lo:hi]
		if haveSIMD {
			simdReLUMask(f32bits(y), f32bits(dy), f32bits(out))
			return
		}
		reluMaskBits(f32bits(y), f32bits(dy[:len(y)]), f32bits(out[:len(y)]))
	case opGELU:
		x := t.a[lo:hi]
		x = x[:len(y)]
		if haveSIMD {
			op := simdGELU
			if t.tanh {
				op = simdGELUTanh
			}
			simdGELUOp(op, y, x, nil)
			return
		}
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
		if haveSIMD {
			op := simdGELUGrad
			if t.tanh {
				op = simdGELUTanhGrad
			}
			simdGELUOp(op, y, x, dy)
			return
		}
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

// The ReLUs work on the bits of the floats, without branches: the sign of
// an activation is a coin toss that a branch predictor loses half the time.

// f32bits reinterprets x as its bit patterns.
func f32bits(x []float32) []uint32 {
	if len(x) == 0 {
		return nil
	}
	return unsafe.Slice((*uint32)(unsafe.Pointer(&x[0])), len(x))
}

// reluBits computes y = max(x, 0) on bit patterns: a negative number
// (sign bit set, −0 included) becomes +0, and a NaN stays NaN, as in PyTorch.
func reluBits(y, x []uint32) {
	x = x[:len(y)]
	for i, b := range x {
		neg := uint32(int32(b) >> 31)
		// All ones when b is a NaN of either sign: its magnitude bits
		// exceed those of +Inf.
		nan := uint32((int64(0x7f800000) - int64(b&0x7fffffff)) >> 63)
		y[i] = b &^ (neg &^ nan)
	}
}

// reluMaskBits computes dx = dy where y > 0, else 0, on bit patterns: y > 0
// is 0 < bits ≤ +Inf as a signed integer, which excludes −0, the negative
// numbers and the NaNs.
func reluMaskBits(dx, dy, y []uint32) {
	dy, y = dy[:len(dx)], y[:len(dx)]
	for i, b := range y {
		s := int64(int32(b))
		keep := uint32((-s & (s - 0x7f800001)) >> 63)
		dx[i] = dy[i] & keep
	}
}

// The GELUs work in float32, with exp32 and an erfc fitted for them: the
// float64 math.Erf and math.Exp they used took a quarter of a ViT step.
// Their errors, a few float32 roundings, are far inside what the kernels'
// conformance tests allow (1e-5 relative, 1e-6 absolute). Their
// polynomials step by fused multiply-adds (fma32), as the SIMD loops do
// in one instruction each: a third less time there than a multiply and
// an add, and the same bits here.

// fma32 is a·b + c rounded once to float32, as an FMA instruction computes
// it. a·b is exact in float64; the sum is rounded there to odd (the
// nearest float64 whose last bit is 1 where the sum is inexact), and a
// value rounded to odd with two bits to spare rounds to nearest as the
// exact one would (Boldo and Melquiond, "Emulation of FMA and correctly
// rounded sums", IEEE TC 2008). Rounding the float64 sum to nearest
// instead would round twice, and miss by an ulp now and then.
func fma32(a, b, c float32) float32 {
	p := float64(a) * float64(b)
	s := p + float64(c)
	// Knuth's TwoSum: the exact p + c is s + e.
	bv := s - p
	e := (p - (s - bv)) + (float64(c) - bv)
	if e != 0 && e == e && !math.IsInf(s, 0) {
		u := math.Float64bits(s)
		if u&1 == 0 {
			if (e > 0) == (s > 0) {
				u++ // away from zero, toward the exact sum
			} else {
				u--
			}
		}
		s = math.Float64frombits(u)
	}
	return float32(s)
}

const (
	invSqrt2    = 0.70710678118654752 // 1/√2
	invSqrt2Pi  = 0.3989422804014327  // 1/√(2π)
	sqrt2OverPi = 0.7978845608028654  // √(2/π)
	geluC       = 0.044715
)

// exp32 is e^v in float32, within a few ulp. It saturates: below −87.3 it
// returns e^−87.3 (a GELU needs no subnormals), above 88.37 +Inf, a little
// early (e^88.72 is the largest float32).
func exp32(v float32) float32 {
	if v < -87.3 {
		v = -87.3
	}
	if v > 88.37 {
		return float32(math.Inf(1))
	}
	// v = n·ln2 + r, |r| ≤ ln2/2, with n rounded by the 1.5·2^23 trick.
	const magic = 12582912
	t := fma32(v, 1.442695041, magic)
	n := t - magic
	r := fma32(-n, 1.42860677e-06, fma32(-n, 0.693145752, v))
	q := fma32(r, 1.0/5040, 1.0/720)
	q = fma32(r, q, 1.0/120)
	q = fma32(r, q, 1.0/24)
	q = fma32(r, q, 1.0/6)
	q = fma32(r, q, 0.5)
	q = fma32(r, q, 1)
	p := fma32(r, q, 1)
	return p * math.Float32frombits(uint32(int32(math.Float32bits(t)-0x4B400000)+127)<<23)
}

// erfcScaled is erfc(z)·e^(z²) as a polynomial in t = 1/(1 + 0.4·z), for
// z ≥ 0. The coefficients are a relative-error fit on z ∈ [0, 10.5] (beyond
// which e^(−z²) is below float32's range): 2e-9 in float64, 2e-7 evaluated
// in float32.
func erfcScaled(t float32) float32 {
	q := fma32(t, -0.03790363059, 0.2457896622)
	q = fma32(t, q, -0.6191120110)
	q = fma32(t, q, 0.7218005321)
	q = fma32(t, q, -0.4451698562)
	q = fma32(t, q, 0.3704830101)
	q = fma32(t, q, 0.08926198892)
	q = fma32(t, q, 0.2259019773)
	q = fma32(t, q, 0.2230639838)
	q = fma32(t, q, 0.2258922335)
	return fma32(t, q, -7.887979515e-06)
}

// normCDF returns Φ(x), the standard normal CDF, and e^(−x²/2). Φ is
// computed from the tail, ½·erfc(|x|/√2), which has no cancellation for
// x < 0, and 1 minus it for x ≥ 0, picked by the sign bit without a branch.
func normCDF(x float32) (cdf, gauss float32) {
	z := math.Float32frombits(math.Float32bits(x)&0x7fffffff) * invSqrt2
	gauss = exp32(-0.5 * x * x)
	q := 0.5 * erfcScaled(1/fma32(0.4, z, 1)) * gauss
	neg := uint32(int32(math.Float32bits(x)) >> 31)
	cdf = math.Float32frombits(math.Float32bits(q)&neg | math.Float32bits(1-q)&^neg)
	return cdf, gauss
}

func geluErf(x float32) float32 {
	cdf, _ := normCDF(x)
	return x * cdf
}

func geluErfGrad(x float32) float32 {
	cdf, gauss := normCDF(x)
	return fma32(x*invSqrt2Pi, gauss, cdf)
}

// The tanh form is x·σ(2u), u = √(2/π)·(x + 0.044715·x³), since
// ½·(1 + tanh u) = σ(2u): no 1 + tanh to cancel for negative x.

func geluTanh(x float32) float32 {
	u := sqrt2OverPi * (x + geluC*x*x*x)
	return x / (1 + exp32(-2*u))
}

func geluTanhGrad(x float32) float32 {
	u := sqrt2OverPi * (x + geluC*x*x*x)
	e := exp32(-2 * u)
	s := 1 / (1 + e)
	// σ' = σ·(1 − σ) = e·σ², without the cancellation of 1 − σ.
	return s + 2*x*e*s*s*sqrt2OverPi*(1+3*geluC*x*x)
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
func (d *Device) Add(dst, a, b kernels.Buffer) { d.binary(opAdd, "Add", dst, a, b) }

// AddReLU computes dst = max(a + b, 0) in one pass over memory.
func (d *Device) AddReLU(dst, a, b kernels.Buffer) { d.binary(opAddReLU, "AddReLU", dst, a, b) }

// Mul computes dst = a ⊙ b.
func (d *Device) Mul(dst, a, b kernels.Buffer) { d.binary(opMul, "Mul", dst, a, b) }

// binary runs the element-wise op dst = a op b.
func (d *Device) binary(op ewOp, name string, dst, a, b kernels.Buffer) {
	ys, as, bs := d.slice(dst, name, "dst"), d.slice(a, name, "a"), d.slice(b, name, "b")
	sameLen(name, len(ys), len(as))
	sameLen(name, len(ys), len(bs))
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ew = ewTask{op: op, y: ys, a: as, b: bs}
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
