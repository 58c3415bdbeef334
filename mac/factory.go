package mac

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/nn"
)

// Methods lists the optimizers New builds.
var Methods = []string{"mac", "sgd", "adamw", "kfac", "eva", "foof"}

// Options holds every hyperparameter of every method, as the command line
// gives them (the learning rate is the schedule's). Each method reads the
// fields it has and ignores the others; DefaultOptions fills them with the
// method's defaults.
type Options struct {
	Momentum    float64 // mac, sgd, kfac, eva, foof
	Nesterov    bool    // sgd
	WeightDecay float64
	DecoupledWD bool    // p ← (1−η·wd)·p instead of g + wd·p (always, for adamw)
	Damping     float64 // λ: mac, kfac, eva, foof
	StatDecay   float64 // EMA decay of the statistics: mac, kfac, eva, foof
	TCov        int     // statistics every TCov steps: mac, kfac, eva, foof
	TInv        int     // preconditioner refresh every TInv steps: mac, kfac, foof
	// FirstLayerCov and AttentionV are MAC's (Config).
	FirstLayerCov bool
	AttentionV    bool
	KLClip        float64 // κ: kfac, eva, foof (0: off)
	Beta1, Beta2  float64 // adamw
	Eps           float64 // adamw
	// NoDecayNormBias spares biases, norm parameters and embeddings weight
	// decay (NormsAndBiases).
	NoDecayNormBias bool
	// LRScale is Common.LRScale.
	LRScale      func(*nn.Param) float64
	MaxNonFinite int
	Logger       *slog.Logger
}

// DefaultOptions returns the defaults of the named method: MAC's
// DefaultConfig, torch's SGD with the CIFAR recipe's momentum 0.9 and
// weight decay 5e-4, torch's AdamW, and the baselines' Default*Config.
func DefaultOptions(name string) (Options, error) {
	switch name {
	case "mac":
		c := DefaultConfig()
		return fromCommon(c.Common, Options{Damping: c.Damping, StatDecay: c.StatDecay, TCov: c.TCov, TInv: c.TInv,
			FirstLayerCov: c.FirstLayerCov, AttentionV: c.AttentionV}), nil
	case "sgd":
		return Options{Momentum: 0.9, WeightDecay: 5e-4}, nil
	case "adamw":
		c := DefaultAdamWConfig()
		return fromCommon(c.Common, Options{Beta1: c.Beta1, Beta2: c.Beta2, Eps: c.Eps}), nil
	case "kfac":
		c := DefaultKFACConfig()
		return fromCommon(c.Common, Options{Damping: c.Damping, StatDecay: c.StatDecay, TCov: c.TCov, TInv: c.TInv,
			KLClip: c.KLClip}), nil
	case "eva":
		c := DefaultEvaConfig()
		return fromCommon(c.Common, Options{Damping: c.Damping, StatDecay: c.StatDecay, TCov: c.TCov,
			KLClip: c.KLClip}), nil
	case "foof":
		c := DefaultFOOFConfig()
		return fromCommon(c.Common, Options{Damping: c.Damping, StatDecay: c.StatDecay, TCov: c.TCov, TInv: c.TInv,
			KLClip: c.KLClip}), nil
	}
	return Options{}, unknownMethod(name)
}

func unknownMethod(name string) error {
	return fmt.Errorf("mac: unknown optimizer %q (want %s)", name, strings.Join(Methods, ", "))
}

func fromCommon(c Common, o Options) Options {
	o.Momentum, o.Nesterov, o.WeightDecay, o.DecoupledWD = c.Momentum, c.Nesterov, c.WeightDecay, c.DecoupledWD
	return o
}

func (o Options) common() Common {
	c := Common{Momentum: o.Momentum, Nesterov: o.Nesterov, WeightDecay: o.WeightDecay, DecoupledWD: o.DecoupledWD,
		MaxNonFinite: o.MaxNonFinite, Logger: o.Logger, LRScale: o.LRScale}
	if o.NoDecayNormBias {
		c.NoDecay = NormsAndBiases
	}
	return c
}

// An OptionError is a hyperparameter outside its method's range.
type OptionError struct {
	Method  string // "" for MAC's own settings
	Option  string // the Options field in snake case, as shared/MAC.md names it
	Value   any
	Problem string
}

func (e *OptionError) Error() string {
	if e.Method == "" {
		return fmt.Sprintf("mac: %s %v %s", e.Option, e.Value, e.Problem)
	}
	return fmt.Sprintf("mac: %s: %s %v %s", e.Method, e.Option, e.Value, e.Problem)
}

// Validate checks opts for the named method without building an
// optimizer: the errors New would return for them, before a model exists.
func (opts Options) Validate(name string) error {
	c := opts.common()
	switch name {
	case "mac":
		return Config{Common: c, StatDecay: opts.StatDecay, Damping: opts.Damping,
			TCov: opts.TCov, TInv: opts.TInv}.validate()
	case "sgd":
		return c.validate(name)
	case "adamw":
		c.Momentum, c.Nesterov = 0, false
		return AdamWConfig{Common: c, Beta1: opts.Beta1, Beta2: opts.Beta2, Eps: opts.Eps}.validate()
	case "kfac", "foof":
		return validateCurvature(name, c, opts.StatDecay, opts.Damping, opts.TCov, opts.TInv, opts.KLClip)
	case "eva":
		return validateCurvature(name, c, opts.StatDecay, opts.Damping, opts.TCov, -1, opts.KLClip)
	}
	return unknownMethod(name)
}

// New builds the named optimizer for model with opts. A MAC with
// FirstLayerCov needs SetFirstLayerCovariance before its first Step.
func New(name string, dev kernels.Device, model nn.Module, opts Options) (Optimizer, error) {
	c := opts.common()
	switch name {
	case "mac":
		return NewMAC(dev, model, Config{Common: c, StatDecay: opts.StatDecay, Damping: opts.Damping,
			TCov: opts.TCov, TInv: opts.TInv, FirstLayerCov: opts.FirstLayerCov, AttentionV: opts.AttentionV})
	case "sgd":
		return NewSGD(dev, model, c)
	case "adamw":
		c.Momentum, c.Nesterov = 0, false // AdamW's momentum is beta1
		return NewAdamW(dev, model, AdamWConfig{Common: c, Beta1: opts.Beta1, Beta2: opts.Beta2, Eps: opts.Eps})
	case "kfac":
		return NewKFAC(dev, model, KFACConfig{Common: c, StatDecay: opts.StatDecay, Damping: opts.Damping,
			TCov: opts.TCov, TInv: opts.TInv, KLClip: opts.KLClip})
	case "eva":
		return NewEva(dev, model, EvaConfig{Common: c, StatDecay: opts.StatDecay, Damping: opts.Damping,
			TCov: opts.TCov, KLClip: opts.KLClip})
	case "foof":
		return NewFOOF(dev, model, FOOFConfig{Common: c, StatDecay: opts.StatDecay, Damping: opts.Damping,
			TCov: opts.TCov, TInv: opts.TInv, KLClip: opts.KLClip})
	}
	return nil, unknownMethod(name)
}
