package nn

import (
	"fmt"

	"github.com/macdist/macdist/kernels"
)

// DropPath is stochastic depth as timm's DropPath (and torchvision's
// StochasticDepth in "row" mode) applies it to a residual branch: in
// training mode each sample's whole branch output is zeroed with
// probability P and the kept ones are scaled by 1/(1−P); in evaluation mode
// it is the identity.
//
// The per-sample mask comes from the device's counter-based generator (one
// DropoutMask of batch-size length), so a seed gives the same mask on every
// device; the seed advances by one on every training-mode Forward.
type DropPath struct {
	dev  kernels.Device
	P    float32
	Seed uint64

	training bool
	active   bool // whether the last Forward applied a mask
	have     bool
	mask     slot // [B]: 0 or 1/(1−P)
	full     slot // the mask expanded to the input's shape
	y, dx    slot
	xShape   []int
}

// NewDropPath returns a DropPath with probability p in [0, 1) and a first
// seed.
func NewDropPath(dev kernels.Device, p float32, seed uint64) *DropPath {
	if p < 0 || p >= 1 {
		panic(fmt.Sprintf("nn: DropPath: p = %g, want [0, 1)", p))
	}
	return &DropPath{dev: dev, P: p, Seed: seed, training: true}
}

// Forward scales each sample x[b] (x's first dimension is the batch) by its
// mask in training mode; the output is owned by m, or is x itself when
// nothing is dropped (evaluation mode, or P = 0).
func (m *DropPath) Forward(x *Tensor) *Tensor {
	if len(x.Shape) < 1 || x.Shape[0] < 1 {
		shapePanic("DropPath", x.Shape, shapeStr("B", "…"))
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
	B := x.Shape[0]
	mask := m.mask.ensure(m.dev, x.Shape[:1])
	m.dev.DropoutMask(mask.Data, m.P, seed)
	full := m.full.ensure(m.dev, x.Shape)
	m.dev.Expand(full.Data, mask.Data, B, x.Len()/B, 1, 1, 0)
	y := m.y.ensure(m.dev, x.Shape)
	m.dev.Mul(y.Data, x.Data, full.Data)
	return y
}

// Backward multiplies dy by the last mask, or returns dy itself when the
// last Forward was the identity.
func (m *DropPath) Backward(dy *Tensor) *Tensor {
	mustForward("DropPath", m.have)
	if !dy.SameShape(m.xShape) {
		gradPanic("DropPath", dy.Shape, m.xShape)
	}
	if !m.active {
		return dy
	}
	dx := m.dx.ensure(m.dev, dy.Shape)
	m.dev.Mul(dx.Data, dy.Data, m.full.t.Data)
	return dx
}

// Mask returns the per-sample factors of the last training-mode Forward
// (0 or 1/(1−P)), or nil when it applied none.
func (m *DropPath) Mask() []float32 {
	if !m.active {
		return nil
	}
	v := make([]float32, m.mask.t.Len())
	m.dev.Download(v, m.mask.t.Data)
	return v
}

// Params returns nil: DropPath has none.
func (m *DropPath) Params() []*Param { return nil }

// SetTraining switches stochastic depth on (training) or off (eval).
func (m *DropPath) SetTraining(on bool) { m.training = on }
