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
	Dropout // with perSample: the mask is [B], expanded over each sample
}

// NewDropPath returns a DropPath with probability p in [0, 1) and a first
// seed.
func NewDropPath(dev kernels.Device, p float32, seed uint64) *DropPath {
	if p < 0 || p >= 1 {
		panic(fmt.Sprintf("nn: DropPath: p = %g, want [0, 1)", p))
	}
	return &DropPath{Dropout{dev: dev, P: p, Seed: seed, training: true, perSample: true}}
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
