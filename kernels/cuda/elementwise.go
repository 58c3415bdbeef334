package cuda

import (
	"strconv"

	"github.com/macdist/macdist/kernels"
)

// Axpby computes y = alpha·x + beta·y; with beta == 0, y is not read.
func (d *Device) Axpby(y kernels.Buffer, alpha float32, x kernels.Buffer, beta float32) {
	yb, xb := d.buf(y, "Axpby", "y"), d.buf(x, "Axpby", "x")
	sameLen("Axpby", yb.n, xb.n)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.k(kAxpby).ptr(yb).ptr(xb).f32(alpha).f32(beta).i64(yb.n).run1D(int64(yb.n))
}

// Scale computes x = alpha·x.
func (d *Device) Scale(x kernels.Buffer, alpha float32) {
	xb := d.buf(x, "Scale", "x")
	d.mu.Lock()
	defer d.mu.Unlock()
	d.k(kScale).ptr(xb).f32(alpha).i64(xb.n).run1D(int64(xb.n))
}

// binary queues dst = f(a, b) element-wise.
func (d *Device) binary(f kernel, op string, dst, a, b kernels.Buffer, names [3]string) {
	yb, ab, bb := d.buf(dst, op, names[0]), d.buf(a, op, names[1]), d.buf(b, op, names[2])
	sameLen(op, yb.n, ab.n)
	sameLen(op, yb.n, bb.n)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.k(f).ptr(yb).ptr(ab).ptr(bb).i64(yb.n).run1D(int64(yb.n))
}

// Add computes dst = a + b.
func (d *Device) Add(dst, a, b kernels.Buffer) {
	d.binary(kAdd, "Add", dst, a, b, [3]string{"dst", "a", "b"})
}

// Mul computes dst = a ⊙ b.
func (d *Device) Mul(dst, a, b kernels.Buffer) {
	d.binary(kMul, "Mul", dst, a, b, [3]string{"dst", "a", "b"})
}

// ReLU computes y = max(x, 0); a NaN stays NaN.
func (d *Device) ReLU(y, x kernels.Buffer) {
	yb, xb := d.buf(y, "ReLU", "y"), d.buf(x, "ReLU", "x")
	sameLen("ReLU", yb.n, xb.n)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.k(kReLU).ptr(yb).ptr(xb).i64(yb.n).run1D(int64(yb.n))
}

// ReLUBackward computes dx = dy where y > 0, else 0.
func (d *Device) ReLUBackward(dx, dy, y kernels.Buffer) {
	d.binary(kReLUBackward, "ReLUBackward", dx, dy, y, [3]string{"dx", "dy", "y"})
}

// GELU computes y = x·Φ(x) in float64, with the tanh approximation when
// tanh is set.
func (d *Device) GELU(y, x kernels.Buffer, tanh bool) {
	yb, xb := d.buf(y, "GELU", "y"), d.buf(x, "GELU", "x")
	sameLen("GELU", yb.n, xb.n)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.k(kGELU).ptr(yb).ptr(xb).flag(tanh).i64(yb.n).run1D(int64(yb.n))
}

// GELUBackward computes dx = dy·GELU'(x).
func (d *Device) GELUBackward(dx, dy, x kernels.Buffer, tanh bool) {
	const op = "GELUBackward"
	dxb, dyb, xb := d.buf(dx, op, "dx"), d.buf(dy, op, "dy"), d.buf(x, op, "x")
	sameLen(op, dxb.n, dyb.n)
	sameLen(op, dxb.n, xb.n)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.k(kGELUBackward).ptr(dxb).ptr(dyb).ptr(xb).flag(tanh).i64(dxb.n).run1D(int64(dxb.n))
}

// DropoutMask fills mask with 0 where kernels.DropoutUniform(seed, i) < p
// and 1/(1−p) elsewhere, i counting from the start of mask.
func (d *Device) DropoutMask(mask kernels.Buffer, p float32, seed uint64) {
	mb := d.buf(mask, "DropoutMask", "mask")
	if !(p >= 0 && p <= 1) {
		panic("cuda: DropoutMask: p = " + strconv.FormatFloat(float64(p), 'g', -1, 32) + " is not in [0, 1]")
	}
	var scale float32
	if p < 1 {
		scale = 1 / (1 - p)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.k(kDropout).ptr(mb).f32(p).f32(scale).u64(seed).i64(mb.n).run1D(int64(mb.n))
}
