package mac

import (
	"fmt"
	"math"
	"strconv"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/nn"
)

// FOOFConfig holds FOOF's hyperparameters (shared/MAC.md, baselines).
type FOOFConfig struct {
	Common
	StatDecay float64 // EMA decay of A
	Damping   float64 // λ
	TCov      int     // collect A every TCov steps
	TInv      int     // invert it every TInv steps
	KLClip    float64 // κ of the KL clip; 0 (the default) turns it off
}

// DefaultFOOFConfig is the MAC authors' FOOF setting: λ 1, EMA 0.95, TCov
// 5, TInv 50, no KL clip, with the CIFAR recipe's momentum and decay.
func DefaultFOOFConfig() FOOFConfig {
	return FOOFConfig{
		Common:    Common{Momentum: 0.9, WeightDecay: 5e-4},
		StatDecay: 0.95, Damping: 1.0, TCov: 5, TInv: 50,
	}
}

// FOOF (Benzing 2022, "fast first-order optimizer") preconditions each
// layer with its input covariance alone: V = Gw·(Â + λI)⁻¹, with Â the
// bias-corrected EMA (from zero) of A = E[aaᵀ], the plain mean over the
// input rows (a convolution's patches unscaled, as the MAC authors' FOOF
// takes them, and as MAC's first-layer rule), collected every TCov steps
// and inverted on the host in float64 every TInv steps.
type FOOF struct {
	base
	cfg    FOOFConfig
	layers []*foofLayer
	clayer []*curvLayer
	flat   kernels.Buffer

	collected, fresh bool
}

type foofLayer struct {
	*curvLayer
	a, ainv kernels.Buffer // d × d
}

// NewFOOF returns FOOF for model.
func NewFOOF(dev kernels.Device, model nn.Module, cfg FOOFConfig) (*FOOF, error) {
	if err := validateCurvature("foof", cfg.Common, cfg.StatDecay, cfg.Damping, cfg.TCov, cfg.TInv, cfg.KLClip); err != nil {
		return nil, err
	}
	b, err := newBase(dev, "foof", model, cfg.Common)
	if err != nil {
		return nil, err
	}
	cl, err := baselineLayers("foof", model)
	if err != nil {
		return nil, err
	}
	o := &FOOF{base: b, cfg: cfg, clayer: cl}
	n := 0
	for _, c := range cl {
		n += c.d * c.d
	}
	o.flat = dev.Alloc(n)
	off := 0
	for _, c := range cl {
		l := &foofLayer{curvLayer: c, a: dev.Alloc(c.d * c.d), ainv: dev.Alloc(c.d * c.d)}
		l.statA = dev.View(o.flat, off, c.d*c.d)
		off += c.d * c.d
		o.layers = append(o.layers, l)
	}
	scratchViews(dev, cl)
	return o, nil
}

// Layers lists the names of the preconditioned weights.
func (o *FOOF) Layers() []string { return layerNames(o.clayer) }

// BeginStep turns the input-covariance taps on when this step collects
// (every TCov steps) and off otherwise.
func (o *FOOF) BeginStep() {
	o.collected = o.steps%o.cfg.TCov == 0
	for _, l := range o.layers {
		l.t.SetCovTap(o.collected)
	}
}

// Stats returns this step's covariances A of every layer in order, or nil
// when the step collects none.
func (o *FOOF) Stats() kernels.Buffer {
	if !o.collected {
		return nil
	}
	for _, l := range o.layers {
		o.dev.Copy(l.statA, l.t.CovTap())
	}
	o.fresh = true
	return o.flat
}

// Step applies one FOOF update.
func (o *FOOF) Step(lr float64) error {
	var stats kernels.Buffer
	if o.collected {
		if !o.fresh {
			return fmt.Errorf("mac: foof: Stats was not called before Step on a collecting step")
		}
		stats = o.flat
	}
	o.fresh = false
	if ok, what := o.finite(stats); !ok {
		return o.skip(what)
	}
	d := o.dev
	beta := o.cfg.StatDecay
	if stats != nil {
		for _, l := range o.layers {
			d.Axpby(l.a, float32(1-beta), l.statA, float32(beta))
			l.n++
		}
	}
	if o.steps%o.cfg.TInv == 0 {
		for _, l := range o.layers {
			if l.n == 0 {
				continue
			}
			a := download(d, l.a)
			if err := shiftedInverse(a, a, l.d, 1/(1-math.Pow(beta, float64(l.n))), o.cfg.Damping); err != nil {
				return fmt.Errorf("mac: foof: inverting A of %s: %w", l.w.Name, err)
			}
			d.Upload(l.ainv, a)
			l.refreshed = true
		}
	}
	clip := o.cfg.KLClip > 0
	var vg float64
	for _, l := range o.layers {
		if !l.refreshed {
			continue
		}
		// V = Gw·(Â + λI)⁻¹, computed into the scratch as one out × d
		// matrix whose last column is the bias's.
		o.gwInv(l)
		vg += takeV(d, l.curvLayer, clip)
	}
	if clip {
		scaleGrads(d, o.clayer, klScale(o.cfg.KLClip, lr, vg))
	}
	o.applyUpdate(lr)
	return nil
}

// gwInv writes Gw·A⁻¹ into the layer's scratch views: the weight columns
// and the bias column apart, since the views split them.
func (o *FOOF) gwInv(l *foofLayer) {
	d := o.dev
	wg := l.w.Grad.Data
	d.Gemm(false, false, l.out, l.din, l.din, 1, wg, l.din, l.ainv, l.d, 0, l.zw, l.din)
	if l.b == nil {
		return
	}
	bg := l.b.Grad.Data
	d.GemmStrided(false, false, l.out, l.din, 1, 1, bg, 0, 1, 0, l.ainv, l.din*l.d, l.d, 0, 1, l.zw, 0, l.din, 0, 1)
	d.GemmStrided(false, false, l.out, 1, l.din, 1, wg, 0, l.din, 0, l.ainv, l.din, l.d, 0, 0, l.zb, 0, 1, 0, 1)
	d.GemmStrided(false, false, l.out, 1, 1, 1, bg, 0, 1, 0, l.ainv, l.d*l.d-1, 1, 0, 1, l.zb, 0, 1, 0, 1)
}

// StateBytes counts the momentum buffers and, per layer, A and its
// inverse (d × d each).
func (o *FOOF) StateBytes() int64 {
	n := o.momentumBytes()
	for _, l := range o.layers {
		n += int64(2*l.d*l.d) * 4
	}
	return n
}

// State returns the momentum buffers, the EMAs of A and their inverses.
func (o *FOOF) State() (*State, error) {
	s := newState()
	o.saveCommon(s)
	for _, l := range o.layers {
		k := l.w.Name
		s.Tensors["foof.A."+k] = download(o.dev, l.a)
		s.Tensors["foof.Ainv."+k] = download(o.dev, l.ainv)
		s.Meta["foof.n."+k] = strconv.Itoa(l.n)
		s.Meta["foof.refreshed."+k] = strconv.FormatBool(l.refreshed)
	}
	return s, nil
}

// SetState restores what State returned.
func (o *FOOF) SetState(s *State) error {
	if err := o.loadCommon(s); err != nil {
		return err
	}
	for _, l := range o.layers {
		k := l.w.Name
		if err := upload(o.dev, l.a, s, "foof.A."+k); err != nil {
			return err
		}
		if err := upload(o.dev, l.ainv, s, "foof.Ainv."+k); err != nil {
			return err
		}
		if err := loadLayerMeta(s, "foof", k, l.curvLayer); err != nil {
			return err
		}
	}
	return nil
}
