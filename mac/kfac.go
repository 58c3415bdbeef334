package mac

import (
	"fmt"
	"math"
	"strconv"

	"gonum.org/v1/gonum/mat"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/nn"
)

// KFACConfig holds KFAC's hyperparameters (shared/MAC.md, baselines).
type KFACConfig struct {
	Common
	StatDecay float64 // EMA decay of the factors
	Damping   float64 // λ
	TCov      int     // collect the factors every TCov steps
	TInv      int     // invert them every TInv steps
	// KLClip is κ of the KL clip ν = min(1, √(κ / |η²·Σ V⊙Gw|)); 0 turns
	// the clip off.
	KLClip float64
}

// DefaultKFACConfig is the baseline of shared/MAC.md: λ 0.03, EMA 0.95,
// TCov 5, TInv 50, κ 1e-3, with the CIFAR recipe's momentum and decay.
func DefaultKFACConfig() KFACConfig {
	return KFACConfig{
		Common:    Common{Momentum: 0.9, WeightDecay: 5e-4},
		StatDecay: 0.95, Damping: 0.03, TCov: 5, TInv: 50, KLClip: 1e-3,
	}
}

// validateCurvature checks the settings the curvature baselines share;
// tinv < 0 means the method has none.
func validateCurvature(method string, c Common, statDecay, damping float64, tcov, tinv int, klClip float64) error {
	if err := c.validate(method); err != nil {
		return err
	}
	switch {
	case !(damping > 0) || math.IsInf(damping, 0):
		return &OptionError{method, "damping", damping, "must be positive"}
	case !(statDecay >= 0 && statDecay < 1):
		return &OptionError{method, "stat_decay", statDecay, "outside [0, 1)"}
	case tcov < 1:
		return &OptionError{method, "tcov", tcov, "must be at least 1"}
	case tinv >= 0 && tinv < 1:
		return &OptionError{method, "tinv", tinv, "must be at least 1"}
	case !(klClip >= 0) || math.IsInf(klClip, 0):
		return &OptionError{method, "kl_clip", klClip, "must be finite and not negative"}
	}
	return nil
}

// curvLayer is a layer preconditioned by a curvature baseline: its weight
// gradient, with the bias gradient as a last column, is Gw, out × d.
type curvLayer struct {
	t         nn.KFACTapped
	w, b      *nn.Param
	out, din  int
	d         int
	zw, zb    kernels.Buffer // views of the shared scratch V is built in
	positions int            // P of the last collecting step
	n         int            // statistics updates so far
	refreshed bool           // the inverses hold a refresh
	statA     kernels.Buffer // views of this step's statistics in the flat vector
	statG     kernels.Buffer
}

// baselineLayers lists the layers a curvature baseline preconditions: every
// Linear and Conv2d that nn.Walk (or the model) reports, grouped
// convolutions excepted (they take momentum SGD, as in MAC).
func baselineLayers(method string, model nn.Module) ([]*curvLayer, error) {
	tapped, _ := curvatureLayers(model)
	var layers []*curvLayer
	for _, t := range tapped {
		if grouped(t) {
			continue
		}
		kt, ok := t.(nn.KFACTapped)
		if !ok {
			return nil, fmt.Errorf("mac: %s: layer %s (%T) records no curvature statistics (nn.KFACTapped)", method, t.Weight().Name, t)
		}
		l := &curvLayer{t: kt, w: t.Weight(), b: t.Bias(), d: t.TapDim(), out: kt.OutDim()}
		l.din = l.w.Value.Len() / l.out
		if want := l.din + btoi(l.b != nil); want != l.d || l.w.Value.Shape[0] != l.out {
			panic(fmt.Sprintf("mac: layer %s: TapDim %d and OutDim %d, but the weight %v gives %d × %d",
				l.w.Name, l.d, l.out, l.w.Value.Shape, l.w.Value.Shape[0], want))
		}
		layers = append(layers, l)
	}
	if len(layers) == 0 {
		return nil, fmt.Errorf("mac: %s: the model has no Linear or Conv2d layer to precondition", method)
	}
	return layers, nil
}

// scratchViews allocates the scratch V is built in, out × d for the
// largest layer, and gives each layer its weight and bias views.
func scratchViews(dev kernels.Device, layers []*curvLayer) kernels.Buffer {
	n := 0
	for _, l := range layers {
		n = max(n, l.out*l.d)
	}
	z := dev.Alloc(n)
	for _, l := range layers {
		l.zw = dev.View(z, 0, l.out*l.din)
		if l.b != nil {
			l.zb = dev.View(z, l.out*l.din, l.out)
		}
	}
	return z
}

// gwTimes computes dst = Gw·M for M d × d (row-major), dst out × d with
// leading dimension d: the weight gradient times M's first din rows, plus
// the bias gradient times its last row.
func gwTimes(dev kernels.Device, l *curvLayer, m, dst kernels.Buffer) {
	dev.Gemm(false, false, l.out, l.d, l.din, 1, l.w.Grad.Data, l.din, m, l.d, 0, dst, l.d)
	if l.b != nil {
		dev.GemmStrided(false, false, l.out, l.d, 1, 1, l.b.Grad.Data, 0, 1, 0, m, l.din*l.d, l.d, 0, 1, dst, 0, l.d, 0, 1)
	}
}

// takeV moves V, held in the layer's scratch views, into the gradients and
// returns Σ V⊙Gw when the KL clip needs it.
func takeV(dev kernels.Device, l *curvLayer, needVG bool) float64 {
	var vg float64
	if needVG {
		vg = dev.Dot(l.zw, l.w.Grad.Data)
		if l.b != nil {
			vg += dev.Dot(l.zb, l.b.Grad.Data)
		}
	}
	dev.Copy(l.w.Grad.Data, l.zw)
	if l.b != nil {
		dev.Copy(l.b.Grad.Data, l.zb)
	}
	return vg
}

// klScale is the KL clip's ν = min(1, √(κ / |η²·vg|)), 1 when the clip is
// off or vg is 0.
func klScale(kappa, lr, vg float64) float64 {
	s := math.Abs(lr * lr * vg)
	if kappa <= 0 || s == 0 || math.IsNaN(s) {
		return 1
	}
	return math.Min(1, math.Sqrt(kappa/s))
}

// scaleGrads multiplies the gradients of the preconditioned layers by s.
func scaleGrads(dev kernels.Device, layers []*curvLayer, s float64) {
	if s == 1 {
		return
	}
	for _, l := range layers {
		dev.Scale(l.w.Grad.Data, float32(s))
		if l.b != nil {
			dev.Scale(l.b.Grad.Data, float32(s))
		}
	}
}

// shiftedInverse sets dst to (sym(scale·a) + shift·I)⁻¹, a and dst n × n
// float32 on the host, computed in float64 by Cholesky; sym averages a
// matrix with its transpose, since a float32 GEMM need not give an exactly
// symmetric AᵀA.
func shiftedInverse(dst, a []float32, n int, scale, shift float64) error {
	s := mat.NewSymDense(n, nil)
	for i := range n {
		for j := i; j < n; j++ {
			v := scale * (float64(a[i*n+j]) + float64(a[j*n+i])) / 2
			if i == j {
				v += shift
			}
			s.SetSym(i, j, v)
		}
	}
	var ch mat.Cholesky
	if !ch.Factorize(s) {
		return fmt.Errorf("matrix of order %d with shift %g is not positive definite", n, shift)
	}
	var inv mat.SymDense
	if err := ch.InverseTo(&inv); err != nil {
		return err
	}
	for i := range n {
		for j := range n {
			dst[i*n+j] = float32(inv.At(i, j))
		}
	}
	return nil
}

func trace(a []float32, n int) float64 {
	var t float64
	for i := range n {
		t += float64(a[i*n+i])
	}
	return t
}

func identity(dev kernels.Device, b kernels.Buffer, n int) {
	h := make([]float32, n*n)
	for i := range n {
		h[i*n+i] = 1
	}
	dev.Upload(b, h)
}

// KFAC is Kronecker-factored approximate curvature (Martens and Grosse
// 2015) as shared/MAC.md states the baseline: per layer, A = E[aaᵀ] of the
// input rows (a convolution's patches scaled by 1/positions) and G = E[ggᵀ]
// of the output gradients (scaled by the batch size and the positions),
// both EMAs from the identity, collected every TCov steps; every TInv steps
// the π-damped inverses (A + √λ·π·I)⁻¹ and (G + √λ/π·I)⁻¹, computed on
// the host in float64, with π = √((tr A/dim A)/(tr G/dim G)); every step
// V = (G + √λ/π·I)⁻¹·Gw·(A + √λ·π·I)⁻¹ for every layer, all scaled by the
// KL clip ν. See nn.KFACTapped for the exact factors.
type KFAC struct {
	base
	cfg    KFACConfig
	layers []*kfacLayer
	clayer []*curvLayer
	flat   kernels.Buffer // this step's A and G of every layer, see Stats
	y      kernels.Buffer // scratch: Gw·A⁻¹
	z      kernels.Buffer

	collected, fresh bool // this step collects; Stats was called since
}

type kfacLayer struct {
	*curvLayer
	a, g       kernels.Buffer // EMAs, d × d and out × out
	ainv, ginv kernels.Buffer
}

// NewKFAC returns KFAC for model.
func NewKFAC(dev kernels.Device, model nn.Module, cfg KFACConfig) (*KFAC, error) {
	if err := validateCurvature("kfac", cfg.Common, cfg.StatDecay, cfg.Damping, cfg.TCov, cfg.TInv, cfg.KLClip); err != nil {
		return nil, err
	}
	b, err := newBase(dev, "kfac", model, cfg.Common)
	if err != nil {
		return nil, err
	}
	cl, err := baselineLayers("kfac", model)
	if err != nil {
		return nil, err
	}
	o := &KFAC{base: b, cfg: cfg, clayer: cl}
	n, ny := 0, 0
	for _, c := range cl {
		l := &kfacLayer{curvLayer: c,
			a: dev.Alloc(c.d * c.d), g: dev.Alloc(c.out * c.out),
			ainv: dev.Alloc(c.d * c.d), ginv: dev.Alloc(c.out * c.out)}
		identity(dev, l.a, c.d)
		identity(dev, l.g, c.out)
		o.layers = append(o.layers, l)
		n += c.d*c.d + c.out*c.out
		ny = max(ny, c.out*c.d)
	}
	o.flat, o.y = dev.Alloc(n), dev.Alloc(ny)
	off := 0
	for _, l := range o.layers {
		l.statA = dev.View(o.flat, off, l.d*l.d)
		off += l.d * l.d
		l.statG = dev.View(o.flat, off, l.out*l.out)
		off += l.out * l.out
	}
	o.z = scratchViews(dev, cl)
	return o, nil
}

// Layers lists the names of the preconditioned weights.
func (o *KFAC) Layers() []string { return layerNames(o.clayer) }

func layerNames(ls []*curvLayer) []string {
	names := make([]string, len(ls))
	for i, l := range ls {
		names[i] = l.w.Name
	}
	return names
}

// BeginStep turns the input-covariance and output-gradient taps on when
// this step collects (every TCov steps) and off otherwise.
func (o *KFAC) BeginStep() {
	o.collected = o.steps%o.cfg.TCov == 0
	for _, l := range o.layers {
		l.t.SetCovTap(o.collected)
		l.t.SetGradTap(o.collected)
	}
}

// Stats returns this step's factors as one flat vector, A then G of every
// layer in order, as the taps record them (nn.KFACTapped: means over rows,
// so that ranks of equal batches averaging the vector get the factors of
// the whole batch), or nil when the step collects none.
func (o *KFAC) Stats() kernels.Buffer {
	if !o.collected {
		return nil
	}
	for _, l := range o.layers {
		o.dev.Copy(l.statA, l.t.CovTap())
		o.dev.Copy(l.statG, l.t.GradTap())
		l.positions = l.t.TapPositions()
	}
	o.fresh = true
	return o.flat
}

// Step applies one KFAC update.
func (o *KFAC) Step(lr float64) error {
	var stats kernels.Buffer
	if o.collected {
		if !o.fresh {
			return fmt.Errorf("mac: kfac: Stats was not called before Step on a collecting step")
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
			// kfac-pytorch's factors from the taps': A/P and P²·G.
			p := float64(l.positions)
			d.Axpby(l.a, float32((1-beta)/p), l.statA, float32(beta))
			d.Axpby(l.g, float32((1-beta)*p*p), l.statG, float32(beta))
			l.n++
		}
	}
	if o.steps%o.cfg.TInv == 0 {
		for _, l := range o.layers {
			if err := o.invert(l); err != nil {
				return err
			}
		}
	}
	var vg float64
	clip := o.cfg.KLClip > 0
	for _, l := range o.layers {
		if !l.refreshed {
			continue
		}
		// V = G⁻¹·(Gw·A⁻¹), the weight and bias columns apart.
		gwTimes(d, l.curvLayer, l.ainv, o.y)
		d.Gemm(false, false, l.out, l.din, l.out, 1, l.ginv, l.out, o.y, l.d, 0, l.zw, l.din)
		if l.b != nil {
			d.GemmStrided(false, false, l.out, 1, l.out, 1, l.ginv, 0, l.out, 0, o.y, l.din, l.d, 0, 0, l.zb, 0, 1, 0, 1)
		}
		vg += takeV(d, l.curvLayer, clip)
	}
	if clip {
		scaleGrads(d, o.clayer, klScale(o.cfg.KLClip, lr, vg))
	}
	o.applyUpdate(lr)
	return nil
}

// invert computes the π-damped inverses of a layer's factors on the host.
func (o *KFAC) invert(l *kfacLayer) error {
	a, g := download(o.dev, l.a), download(o.dev, l.g)
	ta, tg := trace(a, l.d)/float64(l.d), trace(g, l.out)/float64(l.out)
	pi := 1.0
	if ta > 0 && tg > 0 {
		pi = math.Sqrt(ta / tg)
	}
	sq := math.Sqrt(o.cfg.Damping)
	if err := shiftedInverse(a, a, l.d, 1, sq*pi); err != nil {
		return fmt.Errorf("mac: kfac: inverting A of %s: %w", l.w.Name, err)
	}
	if err := shiftedInverse(g, g, l.out, 1, sq/pi); err != nil {
		return fmt.Errorf("mac: kfac: inverting G of %s: %w", l.w.Name, err)
	}
	o.dev.Upload(l.ainv, a)
	o.dev.Upload(l.ginv, g)
	l.refreshed = true
	return nil
}

// StateBytes counts the momentum buffers and, per layer, the factors A
// (d × d) and G (out × out) and their inverses. The flat statistics vector,
// the taps' buffers and the scratch are transient and not counted.
func (o *KFAC) StateBytes() int64 {
	n := o.momentumBytes()
	for _, l := range o.layers {
		n += int64(2*l.d*l.d+2*l.out*l.out) * 4
	}
	return n
}

// State returns the momentum buffers, the factors and their inverses.
func (o *KFAC) State() (*State, error) {
	s := newState()
	o.saveCommon(s)
	for _, l := range o.layers {
		k := l.w.Name
		s.Tensors["kfac.A."+k] = download(o.dev, l.a)
		s.Tensors["kfac.G."+k] = download(o.dev, l.g)
		s.Tensors["kfac.Ainv."+k] = download(o.dev, l.ainv)
		s.Tensors["kfac.Ginv."+k] = download(o.dev, l.ginv)
		s.Meta["kfac.n."+k] = strconv.Itoa(l.n)
		s.Meta["kfac.refreshed."+k] = strconv.FormatBool(l.refreshed)
	}
	return s, nil
}

// SetState restores what State returned.
func (o *KFAC) SetState(s *State) error {
	if err := o.loadCommon(s); err != nil {
		return err
	}
	for _, l := range o.layers {
		k := l.w.Name
		for key, b := range map[string]kernels.Buffer{"kfac.A.": l.a, "kfac.G.": l.g, "kfac.Ainv.": l.ainv, "kfac.Ginv.": l.ginv} {
			if err := upload(o.dev, b, s, key+k); err != nil {
				return err
			}
		}
		if err := loadLayerMeta(s, "kfac", k, l.curvLayer); err != nil {
			return err
		}
	}
	return nil
}

func loadLayerMeta(s *State, method, key string, l *curvLayer) error {
	n, err := strconv.Atoi(s.Meta[method+".n."+key])
	if err != nil {
		return fmt.Errorf("mac: state: bad %s.n.%s: %w", method, key, err)
	}
	l.n = n
	if v, ok := s.Meta[method+".refreshed."+key]; ok {
		r, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("mac: state: bad %s.refreshed.%s: %w", method, key, err)
		}
		l.refreshed = r
	}
	return nil
}
