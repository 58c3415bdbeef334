package cpu

import "github.com/macdist/macdist/kernels"

// sgdTask is one SGDStep over a range of elements (see kernels.Device).
type sgdTask struct {
	p, g, buf          []float32 // buf nil: no momentum
	lr, mom, wd, decay float32
	nesterov, hasDecay bool
	hasWD              bool
}

func (t *sgdTask) run(lo, hi int) {
	p := t.p[lo:hi]
	g := t.g[lo:hi]
	g = g[:len(p)]
	var buf []float32
	if t.buf != nil {
		buf = t.buf[lo:hi]
		buf = buf[:len(p)]
	}
	for i := range p {
		pi, gi := p[i], g[i]
		if t.hasDecay {
			pi *= t.decay
		}
		// The float32 conversions round each product, as the separate
		// calls do: Go may otherwise fuse a multiply-add.
		if t.hasWD {
			gi = float32(t.wd*pi) + gi
		}
		s := gi
		if buf != nil {
			b := gi + float32(t.mom*buf[i])
			buf[i] = b
			s = b
			if t.nesterov {
				s = float32(t.mom*b) + gi
			}
		}
		p[i] = float32(-t.lr*s) + pi
	}
}

// SGDStep applies one torch.optim.SGD step (see kernels.Device).
func (d *Device) SGDStep(p, g, buf kernels.Buffer, lr, momentum, weightDecay, decay float32, nesterov bool) {
	ps, gs := d.slice(p, "SGDStep", "p"), d.slice(g, "SGDStep", "g")
	sameLen("SGDStep", len(ps), len(gs))
	var bs []float32
	if buf != nil {
		bs = d.slice(buf, "SGDStep", "buf")
		sameLen("SGDStep", len(ps), len(bs))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sgd = sgdTask{p: ps, g: gs, buf: bs, lr: lr, mom: momentum, wd: weightDecay, decay: decay,
		nesterov: nesterov, hasDecay: decay != 1, hasWD: weightDecay != 0}
	d.parallel(&d.sgd, len(ps), grainMath)
	d.sgd = sgdTask{}
}
