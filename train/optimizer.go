package train

import (
	"fmt"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/mac"
	"github.com/macdist/macdist/nn"
)

// defaultLR is each method's learning rate when none is given: the CIFAR
// recipe's 0.1 for the momentum methods, torch's 1e-3 for AdamW.
var defaultLR = map[string]float64{"mac": 0.1, "sgd": 0.1, "adamw": 1e-3, "kfac": 0.1, "eva": 0.1, "foof": 0.1}

// OptimizerDefaults returns DefaultConfig with the hyperparameters (the
// HyperFields) of method as the mac package states them.
func OptimizerDefaults(method string) (Config, error) {
	c := DefaultConfig()
	o, err := mac.DefaultOptions(method)
	if err != nil {
		return c, fmt.Errorf("train: %w", err)
	}
	c.setHyper(method, o)
	return c, nil
}

// setHyper sets every HyperField from the mac package's options.
func (c *Config) setHyper(method string, o mac.Options) {
	c.Optimizer = method
	c.LR = defaultLR[method]
	c.Momentum, c.Nesterov, c.WeightDecay, c.DecoupledWD = o.Momentum, o.Nesterov, o.WeightDecay, o.DecoupledWD
	c.Damping, c.StatDecay, c.TCov, c.TInv = o.Damping, o.StatDecay, o.TCov, o.TInv
	c.FirstLayerCov, c.AttentionV = o.FirstLayerCov, o.AttentionV
	c.KLClip, c.Beta1, c.Beta2, c.Eps = o.KLClip, o.Beta1, o.Beta2, o.Eps
}

// newOptimizer builds cfg's method over model.
func newOptimizer(dev kernels.Device, model nn.Module, cfg Config) (mac.Optimizer, error) {
	opts := cfg.macOptions()
	opts.Logger = cfg.Logger
	if cfg.LayerDecay > 0 { // recipe: --layer-decay
		scale, err := layerDecay(model, cfg.LayerDecay)
		if err != nil {
			return nil, err
		}
		opts.LRScale = scale
	}
	opt, err := mac.New(cfg.Optimizer, dev, model, opts)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	return opt, nil
}

// macOptions are cfg's hyperparameters as the mac package takes them.
func (c Config) macOptions() mac.Options {
	return mac.Options{
		Momentum: c.Momentum, Nesterov: c.Nesterov, WeightDecay: c.WeightDecay, DecoupledWD: c.DecoupledWD,
		Damping: c.Damping, StatDecay: c.StatDecay, TCov: c.TCov, TInv: c.TInv,
		FirstLayerCov: c.FirstLayerCov, AttentionV: c.AttentionV,
		KLClip: c.KLClip, Beta1: c.Beta1, Beta2: c.Beta2, Eps: c.Eps,
		NoDecayNormBias: c.NoDecayBNBias || c.LayerDecay > 0,
	}
}
