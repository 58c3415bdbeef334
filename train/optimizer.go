package train

import (
	"fmt"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/mac"
	"github.com/macdist/macdist/nn"
)

// hyper is a method's default hyperparameters as the mac package states
// them; apply copies them into a Config.
type hyper struct{ c Config }

func (h hyper) apply(c *Config) {
	c.LR, c.Momentum, c.Nesterov = h.c.LR, h.c.Momentum, h.c.Nesterov
	c.WeightDecay, c.DecoupledWD = h.c.WeightDecay, h.c.DecoupledWD
	c.Damping, c.StatDecay, c.TCov, c.TInv = h.c.Damping, h.c.StatDecay, h.c.TCov, h.c.TInv
	c.FirstLayerCov, c.AttentionV = h.c.FirstLayerCov, h.c.AttentionV
}

// methodDefaults returns what the mac package says a method's defaults
// are, where it says.
func methodDefaults(method string) (hyper, bool) {
	if method != "mac" {
		return hyper{}, false
	}
	d := mac.DefaultConfig()
	c := DefaultConfig()
	c.Momentum, c.Nesterov, c.WeightDecay, c.DecoupledWD = d.Momentum, d.Nesterov, d.WeightDecay, d.DecoupledWD
	c.Damping, c.StatDecay, c.TCov, c.TInv = d.Damping, d.StatDecay, d.TCov, d.TInv
	c.FirstLayerCov, c.AttentionV = d.FirstLayerCov, d.AttentionV
	return hyper{c}, true
}

// newOptimizer builds cfg's method over model.
func newOptimizer(dev kernels.Device, model nn.Module, cfg Config) (mac.Optimizer, error) {
	common := mac.Common{
		Momentum: cfg.Momentum, Nesterov: cfg.Nesterov,
		WeightDecay: cfg.WeightDecay, DecoupledWD: cfg.DecoupledWD,
		Logger: cfg.Logger,
	}
	switch cfg.Optimizer {
	case "mac":
		return mac.NewMAC(dev, model, mac.Config{
			Common: common, StatDecay: cfg.StatDecay, Damping: cfg.Damping,
			TCov: cfg.TCov, TInv: cfg.TInv, FirstLayerCov: cfg.FirstLayerCov, AttentionV: cfg.AttentionV,
		})
	case "sgd":
		return mac.NewSGD(dev, model, common)
	}
	return nil, fmt.Errorf("train: optimizer %q is not available in this build", cfg.Optimizer)
}
