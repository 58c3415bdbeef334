package mac

import (
	"math"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/nn"
)

// AdamWConfig holds AdamW's hyperparameters. Of Common, WeightDecay,
// NoDecay, MaxNonFinite and Logger apply; AdamW's decay is decoupled by
// definition, and its momentum is Beta1.
type AdamWConfig struct {
	Common
	Beta1, Beta2 float64
	Eps          float64
}

// DefaultAdamWConfig is torch.optim.AdamW's defaults.
func DefaultAdamWConfig() AdamWConfig {
	return AdamWConfig{
		Common: Common{WeightDecay: 0.01, DecoupledWD: true},
		Beta1:  0.9, Beta2: 0.999, Eps: 1e-8,
	}
}

func (c AdamWConfig) validate() error {
	if err := c.Common.validate("adamw"); err != nil {
		return err
	}
	switch {
	case c.Momentum != 0 || c.Nesterov:
		return &OptionError{"adamw", "momentum", c.Momentum, "must be 0 and nesterov unset (beta1 is AdamW's momentum)"}
	case c.WeightDecay > 0 && !c.DecoupledWD:
		return &OptionError{"adamw", "decoupled_wd", false, "contradicts AdamW, whose weight decay is decoupled by definition"}
	case !(c.Beta1 >= 0 && c.Beta1 < 1):
		return &OptionError{"adamw", "beta1", c.Beta1, "outside [0, 1)"}
	case !(c.Beta2 >= 0 && c.Beta2 < 1):
		return &OptionError{"adamw", "beta2", c.Beta2, "outside [0, 1)"}
	case !(c.Eps >= 0) || math.IsInf(c.Eps, 0):
		return &OptionError{"adamw", "eps", c.Eps, "must be finite and not negative"}
	}
	return nil
}

// AdamW is torch.optim.AdamW (amsgrad off) over every trainable parameter,
// one Device.AdamW kernel a parameter.
type AdamW struct {
	base
	acfg AdamWConfig
	m, v []kernels.Buffer
}

// NewAdamW returns AdamW over model's trainable parameters.
func NewAdamW(dev kernels.Device, model nn.Module, cfg AdamWConfig) (*AdamW, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	b, err := newBase(dev, "adamw", model, cfg.Common)
	if err != nil {
		return nil, err
	}
	o := &AdamW{base: b, acfg: cfg}
	for _, p := range o.params {
		o.m = append(o.m, dev.Alloc(p.Value.Len()))
		o.v = append(o.v, dev.Alloc(p.Value.Len()))
	}
	return o, nil
}

// BeginStep does nothing: AdamW needs no statistics.
func (o *AdamW) BeginStep() {}

// Stats is always nil.
func (o *AdamW) Stats() kernels.Buffer { return nil }

// Step applies one update with learning rate lr, or skips it when a
// gradient is not finite. The step count of the bias corrections counts
// applied steps only.
func (o *AdamW) Step(lr float64) error {
	if ok, what := o.finite(); !ok {
		return o.skip(what)
	}
	c := o.acfg
	for i, p := range o.params {
		wd := 0.0
		if o.decay[i] {
			wd = c.WeightDecay
		}
		o.dev.AdamW(p.Value.Data, p.Grad.Data, o.m[i], o.v[i], float32(lr*o.scale[i]), float32(c.Beta1), float32(c.Beta2),
			float32(c.Eps), float32(wd), o.steps+1)
	}
	o.steps++
	o.inARow = 0
	return nil
}

// StateBytes counts the two moments, twice the parameters.
func (o *AdamW) StateBytes() int64 {
	var n int64
	for _, m := range o.m {
		n += 2 * int64(m.Len()) * 4
	}
	return n
}

// State returns the moments (named as torch's state: exp_avg, exp_avg_sq)
// and the counters.
func (o *AdamW) State() (*State, error) {
	s := newState()
	o.saveCommon(s)
	for i, p := range o.params {
		s.Tensors["exp_avg."+p.Name] = download(o.dev, o.m[i])
		s.Tensors["exp_avg_sq."+p.Name] = download(o.dev, o.v[i])
	}
	return s, nil
}

// SetState restores what State returned.
func (o *AdamW) SetState(s *State) error {
	if err := o.loadCommon(s); err != nil {
		return err
	}
	for i, p := range o.params {
		if err := upload(o.dev, o.m[i], s, "exp_avg."+p.Name); err != nil {
			return err
		}
		if err := upload(o.dev, o.v[i], s, "exp_avg_sq."+p.Name); err != nil {
			return err
		}
	}
	return nil
}
