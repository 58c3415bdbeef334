package nn

import (
	"fmt"

	"github.com/macdist/macdist/kernels"
)

// Dropout is PyTorch's nn.Dropout: in training mode it zeroes each element
// with probability P and scales the others by 1/(1−P); in evaluation mode it
// is the identity and hands its input through without a copy.
//
// The mask comes from the device's counter-based generator, so a given seed
// gives the same mask on every device; the seed advances by one on every
// training-mode Forward, so successive steps draw different masks.
type Dropout struct {
	dev  kernels.Device
	P    float32
	Seed uint64

	training bool
	active   bool // whether the last Forward applied a mask
	have     bool
	mask     slot // per element, or per sample for DropPath
	maskIn   slot // the per-element mask in the input's layout, when that is not NCHW
	full     slot // DropPath: the per-sample mask expanded to the input
	y, dx    slot
	xShape   []int
	// perSample drops whole samples (DropPath) instead of elements.
	perSample bool
}

// NewDropout returns a Dropout with probability p in [0, 1) and a first seed.
func NewDropout(dev kernels.Device, p float32, seed uint64) *Dropout {
	if p < 0 || p >= 1 {
		panic(fmt.Sprintf("nn: Dropout: p = %g, want [0, 1)", p))
	}
	return &Dropout{dev: dev, P: p, Seed: seed, training: true}
}

// Forward applies the mask in training mode; the output is owned by m, or is
// x itself in evaluation mode (or when P is 0).
func (m *Dropout) Forward(x *Tensor) *Tensor {
	if m.perSample && (len(x.Shape) < 1 || x.Shape[0] < 1) {
		shapePanic(m.label(), x.Shape, shapeStr("B", "…"))
	}
	m.have = true
	m.xShape = x.Shape
	if !m.training {
		m.active = false
		return x
	}
	seed := m.Seed
	m.Seed++
	if m.P == 0 {
		m.active = false
		return x
	}
	m.active = true
	y := m.y.ensure(m.dev, x.Shape)
	y.Layout = x.Layout
	if !m.perSample {
		// The mask is drawn in NCHW and reordered, so that an element
		// is dropped or kept whatever the layout.
		mask := m.mask.ensure(m.dev, x.Shape)
		m.dev.DropoutMask(mask.Data, m.P, seed)
		mask = relayout(m.dev, &m.maskIn, mask, x.Layout)
		m.dev.Mul(y.Data, x.Data, mask.Data)
		return y
	}
	// One factor per sample, expanded over the sample's elements.
	B := x.Shape[0]
	mask := m.mask.ensure(m.dev, x.Shape[:1])
	m.dev.DropoutMask(mask.Data, m.P, seed)
	full := m.full.ensure(m.dev, x.Shape)
	m.dev.Expand(full.Data, mask.Data, B, x.Len()/B, 1, 1, 0)
	m.dev.Mul(y.Data, x.Data, full.Data)
	return y
}

func (m *Dropout) label() string {
	if m.perSample {
		return "DropPath"
	}
	return "Dropout"
}

// Backward multiplies dy by the last mask, or returns dy itself when the
// last Forward was the identity.
func (m *Dropout) Backward(dy *Tensor) *Tensor {
	mustForward(m.label(), m.have)
	if !dy.SameShape(m.xShape) {
		gradPanic(m.label(), dy.Shape, m.xShape)
	}
	if !m.active {
		return dy
	}
	applied := m.mask.t
	if m.perSample {
		applied = m.full.t
	} else if m.y.t.Layout != kernels.NCHW {
		applied = m.maskIn.t
	}
	dx := m.dx.ensure(m.dev, dy.Shape)
	dx.Layout = m.y.t.Layout
	m.dev.Mul(dx.Data, dy.Data, applied.Data)
	return dx
}

// Params returns nil: Dropout has none.
func (m *Dropout) Params() []*Param { return nil }

// SetTraining switches dropout on (training) or off (eval).
func (m *Dropout) SetTraining(on bool) { m.training = on }
