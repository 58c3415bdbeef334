package mac

import (
	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/nn"
)

// SGD is torch.optim.SGD: momentum without dampening, optional Nesterov,
// coupled or decoupled weight decay.
type SGD struct{ base }

// NewSGD returns momentum SGD over model's trainable parameters.
func NewSGD(dev kernels.Device, model nn.Module, cfg Common) (*SGD, error) {
	b, err := newBase(dev, "sgd", model, cfg)
	if err != nil {
		return nil, err
	}
	return &SGD{b}, nil
}

// BeginStep does nothing: SGD needs no statistics.
func (o *SGD) BeginStep() {}

// Stats is always nil.
func (o *SGD) Stats() kernels.Buffer { return nil }

// Step applies one update, or skips it when a gradient is not finite.
func (o *SGD) Step(lr float64) error {
	if ok, what := o.finite(); !ok {
		return o.skip(what)
	}
	o.applyUpdate(lr)
	return nil
}

// StateBytes is the size of the momentum buffers.
func (o *SGD) StateBytes() int64 { return o.momentumBytes() }

// State returns the momentum buffers and counters.
func (o *SGD) State() (*State, error) {
	s := newState()
	o.saveCommon(s)
	return s, nil
}

// SetState restores what State returned.
func (o *SGD) SetState(s *State) error { return o.loadCommon(s) }
