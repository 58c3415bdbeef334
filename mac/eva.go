package mac

import (
	"fmt"
	"strconv"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/nn"
)

// EvaConfig holds Eva's hyperparameters (shared/MAC.md, baselines).
type EvaConfig struct {
	Common
	StatDecay float64 // EMA decay of ā and ḡ
	Damping   float64 // λ
	TCov      int     // collect ā and ḡ every TCov steps
	KLClip    float64 // κ of the KL clip; 0 turns it off
}

// DefaultEvaConfig is Eva's reference setting: λ 0.03, EMA 0.95, TCov 5,
// κ 1e-3, with the CIFAR recipe's momentum and decay.
func DefaultEvaConfig() EvaConfig {
	return EvaConfig{
		Common:    Common{Momentum: 0.9, WeightDecay: 5e-4},
		StatDecay: 0.95, Damping: 0.03, TCov: 5, KLClip: 1e-3,
	}
}

// Eva (Zhang, Shi and Li, ICLR 2023) preconditions each layer with the
// Kronecker product of two vectors: ā, the mean input row (with the
// trailing 1), and ḡ, the mean output gradient, as Eva's reference code
// takes them (nn.KFACTapped: ḡ is the plain mean of the raw gradients).
// Each is an EMA started at its first value and collected every TCov
// steps; every step, in closed form (Sherman–Morrison),
//
//	V = (1/λ)·[Gw − (ḡᵀ·Gw·ā / (‖ā‖²‖ḡ‖² + λ))·ḡ·āᵀ]
//
// scaled by the KL clip ν. Its state is O(d + out) a layer.
//
// For a loss that is a mean over the batch, ḡ scales with 1/B: with W ranks
// of batch B each, the averaged ḡ is W times the ḡ of one process running
// the whole batch W·B (and equals the ḡ of the reference code run per GPU
// with batch B, which is how the authors ran it). Eva is therefore not
// invariant to splitting a batch across ranks, unlike KFAC and MAC.
type Eva struct {
	base
	cfg    EvaConfig
	layers []*evaLayer
	clayer []*curvLayer
	flat   kernels.Buffer

	collected, fresh bool
}

type evaLayer struct {
	*curvLayer
	ma, mg kernels.Buffer // EMAs of ā (d) and ḡ (out)
	u      kernels.Buffer // scratch: Gw·ā, out
}

// NewEva returns Eva for model.
func NewEva(dev kernels.Device, model nn.Module, cfg EvaConfig) (*Eva, error) {
	if err := validateCurvature("eva", cfg.Common, cfg.StatDecay, cfg.Damping, cfg.TCov, -1, cfg.KLClip); err != nil {
		return nil, err
	}
	b, err := newBase(dev, "eva", model, cfg.Common)
	if err != nil {
		return nil, err
	}
	cl, err := baselineLayers("eva", model)
	if err != nil {
		return nil, err
	}
	o := &Eva{base: b, cfg: cfg, clayer: cl}
	n, nu := 0, 0
	for _, c := range cl {
		n += c.d + c.out
		nu = max(nu, c.out)
	}
	o.flat = dev.Alloc(n)
	u := dev.Alloc(nu)
	off := 0
	for _, c := range cl {
		l := &evaLayer{curvLayer: c, ma: dev.Alloc(c.d), mg: dev.Alloc(c.out), u: dev.View(u, 0, c.out)}
		l.statA = dev.View(o.flat, off, c.d)
		off += c.d
		l.statG = dev.View(o.flat, off, c.out)
		off += c.out
		o.layers = append(o.layers, l)
	}
	return o, nil
}

// Layers lists the names of the preconditioned weights.
func (o *Eva) Layers() []string { return layerNames(o.clayer) }

// BeginStep turns the ā and ḡ taps on when this step collects (every TCov
// steps) and off otherwise.
func (o *Eva) BeginStep() {
	o.collected = o.steps%o.cfg.TCov == 0
	for _, l := range o.layers {
		l.t.SetTap(o.collected)
		l.t.SetGradMeanTap(o.collected)
	}
}

// Stats returns this step's vectors, ā then ḡ of every layer in order, or
// nil when the step collects none.
func (o *Eva) Stats() kernels.Buffer {
	if !o.collected {
		return nil
	}
	for _, l := range o.layers {
		o.dev.Copy(l.statA, l.t.Tap())
		o.dev.Copy(l.statG, l.t.GradMeanTap())
	}
	o.fresh = true
	return o.flat
}

// Step applies one Eva update.
func (o *Eva) Step(lr float64) error {
	var stats kernels.Buffer
	if o.collected {
		if !o.fresh {
			return fmt.Errorf("mac: eva: Stats was not called before Step on a collecting step")
		}
		stats = o.flat
	}
	o.fresh = false
	if ok, what := o.finite(stats); !ok {
		return o.skip(what)
	}
	d := o.dev
	beta := float32(o.cfg.StatDecay)
	if stats != nil {
		for _, l := range o.layers {
			if l.n == 0 {
				d.Copy(l.ma, l.statA)
				d.Copy(l.mg, l.statG)
			} else {
				d.Axpby(l.ma, 1-beta, l.statA, beta)
				d.Axpby(l.mg, 1-beta, l.statG, beta)
			}
			l.n++
		}
	}
	// Every layer collects on the same steps, so all have statistics or
	// none (only before the first collecting step of a restored run).
	if o.layers[0].n > 0 {
		o.precondition(lr)
	}
	o.applyUpdate(lr)
	return nil
}

// precondition replaces every layer's gradient by ν·V.
func (o *Eva) precondition(lr float64) {
	d := o.dev
	lambda := o.cfg.Damping
	clip := o.cfg.KLClip > 0
	var vg float64
	for _, l := range o.layers {
		wg := l.w.Grad.Data
		// u = Gw·ā; c = ḡᵀ·u.
		d.Gemm(false, false, l.out, 1, l.din, 1, wg, l.din, l.ma, 1, 0, l.u, 1)
		if l.b != nil {
			d.GemmStrided(false, false, l.out, 1, 1, 1, l.b.Grad.Data, 0, 1, 0, l.ma, l.din, 1, 0, 1, l.u, 0, 1, 0, 1)
		}
		c := d.Dot(l.mg, l.u)
		coef := c / (d.Dot(l.ma, l.ma)*d.Dot(l.mg, l.mg) + lambda)
		if clip {
			// Σ V⊙Gw = (‖Gw‖² − coef·c)/λ, without a second pass over V.
			gw2 := d.Dot(wg, wg)
			if l.b != nil {
				gw2 += d.Dot(l.b.Grad.Data, l.b.Grad.Data)
			}
			vg += (gw2 - coef*c) / lambda
		}
		// Gw −= coef·ḡ·āᵀ; the 1/λ is applied with ν below.
		d.GemmStrided(false, false, l.out, l.din, 1, float32(-coef), l.mg, 0, 1, 0, l.ma, 0, l.din, 0, 1, wg, 0, l.din, 0, 1)
		if l.b != nil {
			d.GemmStrided(false, false, l.out, 1, 1, float32(-coef), l.mg, 0, 1, 0, l.ma, l.din, 1, 0, 1, l.b.Grad.Data, 0, 1, 0, 1)
		}
	}
	nu := 1.0
	if clip {
		nu = klScale(o.cfg.KLClip, lr, vg)
	}
	scaleGrads(d, o.clayer, nu/lambda)
}

// StateBytes counts the momentum buffers and the two vectors of every
// layer: O(d + out), as MAC's.
func (o *Eva) StateBytes() int64 {
	n := o.momentumBytes()
	for _, l := range o.layers {
		n += int64(l.d+l.out) * 4
	}
	return n
}

// State returns the momentum buffers and the vectors' EMAs.
func (o *Eva) State() (*State, error) {
	s := newState()
	o.saveCommon(s)
	for _, l := range o.layers {
		k := l.w.Name
		s.Tensors["eva.a."+k] = download(o.dev, l.ma)
		s.Tensors["eva.g."+k] = download(o.dev, l.mg)
		s.Meta["eva.n."+k] = strconv.Itoa(l.n)
	}
	return s, nil
}

// SetState restores what State returned.
func (o *Eva) SetState(s *State) error {
	if err := o.loadCommon(s); err != nil {
		return err
	}
	for _, l := range o.layers {
		k := l.w.Name
		if err := upload(o.dev, l.ma, s, "eva.a."+k); err != nil {
			return err
		}
		if err := upload(o.dev, l.mg, s, "eva.g."+k); err != nil {
			return err
		}
		if err := loadLayerMeta(s, "eva", k, l.curvLayer); err != nil {
			return err
		}
	}
	return nil
}
