package cuda

import (
	"fmt"
	"math"

	"github.com/macdist/macdist/kernels"
)

// SGDStep applies one torch.optim.SGD step (see kernels.Device) in one
// launch, rounding as kernels/cpu does.
func (d *Device) SGDStep(p, g, buf kernels.Buffer, lr, momentum, weightDecay, decay float32, nesterov bool) {
	const op = "SGDStep"
	pb, gb := d.buf(p, op, "p"), d.buf(g, op, "g")
	sameLen(op, pb.n, gb.n)
	var bb *buffer
	if buf != nil {
		bb = d.buf(buf, op, "buf")
		sameLen(op, pb.n, bb.n)
	}
	flag := func(b bool) int {
		if b {
			return 1
		}
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.k(kSGDStep).ptr(pb).ptr(gb).ptr(bb).f32(lr).f32(momentum).f32(weightDecay).f32(decay).
		i32(flag(decay != 1)).i32(flag(weightDecay != 0)).i32(flag(nesterov)).
		i64(pb.n).run1D(int64(pb.n))
}

// AdamW applies one torch.optim.AdamW step (see kernels.Device), with the
// same float32 operations in the same order as kernels/cpu.
func (d *Device) AdamW(p, g, m, v kernels.Buffer, lr, beta1, beta2, eps, weightDecay float32, step int) {
	const op = "AdamW"
	pb, gb, mb, vb := d.buf(p, op, "p"), d.buf(g, op, "g"), d.buf(m, op, "m"), d.buf(v, op, "v")
	sameLen(op, pb.n, gb.n)
	sameLen(op, pb.n, mb.n)
	sameLen(op, pb.n, vb.n)
	if step < 1 {
		panic(fmt.Sprintf("cuda: AdamW: step %d, want ≥ 1", step))
	}
	bc1 := 1 - math.Pow(float64(beta1), float64(step))
	bc2 := 1 - math.Pow(float64(beta2), float64(step))
	d.mu.Lock()
	defer d.mu.Unlock()
	d.k(kAdamW).ptr(pb).ptr(gb).ptr(mb).ptr(vb).
		f32(float32(1 - float64(lr)*float64(weightDecay))).
		f32(beta1).f32(float32(1 - float64(beta1))).
		f32(beta2).f32(float32(1 - float64(beta2))).
		f32(float32(float64(lr) / bc1)).f32(float32(math.Sqrt(bc2))).f32(eps).
		i64(pb.n).run1D(int64(pb.n))
}
