package mac

import (
	"fmt"
	"math"
	"strconv"

	"gonum.org/v1/gonum/mat"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/nn"
)

// Config holds MAC's hyperparameters (shared/MAC.md). The learning rate is
// given to each Step by the schedule.
type Config struct {
	Common
	StatDecay float64 // β of the EMA of ā
	Damping   float64 // λ
	TCov      int     // collect statistics every TCov steps
	TInv      int     // refresh the preconditioner every TInv steps
	// FirstLayerCov preconditions the first layer with its full input
	// covariance (SetFirstLayerCovariance), computed once before training.
	FirstLayerCov bool
	// AttentionV gives the value rows of fused qkv projections their own
	// vector, built from the attention scores.
	AttentionV bool
}

// DefaultConfig is the paper's CIFAR recipe.
func DefaultConfig() Config {
	return Config{
		Common:    Common{Momentum: 0.9, WeightDecay: 5e-4},
		StatDecay: 0.95, Damping: 1.0, TCov: 5, TInv: 50,
		FirstLayerCov: true, AttentionV: true,
	}
}

func (c Config) validate() error {
	if err := c.Common.validate("mac"); err != nil {
		return err
	}
	switch {
	case !(c.Damping > 0) || math.IsInf(c.Damping, 0):
		return &OptionError{"", "damping", c.Damping, "must be positive"}
	case !(c.StatDecay >= 0 && c.StatDecay < 1):
		return &OptionError{"", "stat_decay", c.StatDecay, "outside [0, 1)"}
	case c.TCov < 1:
		return &OptionError{"", "tcov", c.TCov, "must be at least 1"}
	case c.TInv < 1:
		return &OptionError{"", "tinv", c.TInv, "must be at least 1"}
	}
	return nil
}

// MAC is the optimizer of Seung, Lee and Ko (ICDM 2025): each Linear and
// Conv2d gradient matrix Gw = [∇W | ∇b] is preconditioned in closed form by
// V = Gw − (Gw·m̂)·m̂ᵀ/(λ + ‖m̂‖²) = λ·Gw·(m̂m̂ᵀ + λI)⁻¹, with m̂ the
// bias-corrected EMA of the layer's mean input row ā. Everything else takes
// momentum SGD.
type MAC struct {
	base
	cfg    Config
	layers []*macLayer
	attn   []*macAttn

	flat      kernels.Buffer // statistics of this step, see Stats
	early     kernels.Buffer // t̄ of every attention layer, see EarlyStats
	earlyDone bool           // EarlyStats has filled early this step
	collected bool           // this step's taps are on
	firstSet  bool
	host      []float32 // refresh's host copy of a vector, reused
}

// ema is one exponential moving average of a statistics vector with its
// bias-corrected snapshot: what MAC keeps per layer (and per value
// projection), O(d) floats.
type ema struct {
	m, mhat kernels.Buffer // d
	n       int            // updates so far
	refresh int            // n at the last refresh; 0: never refreshed
	s       float32        // 1 / (λ + ‖m̂‖²)
	last    float32        // m̂[d−1], the bias column's element
}

type macLayer struct {
	t        nn.Tapped
	w, b     *nn.Param
	out, din int // Gw is out × (din + 1 with a bias)
	d        int
	stat     kernels.Buffer // view of this layer's ā in MAC.flat
	ema
	u kernels.Buffer // out: Gw·m̂

	// The first layer, when FirstLayerCov is on: V = Gw·(A0 + λI)⁻¹.
	first      bool
	inv        kernels.Buffer // d × d
	invCorner  float32        // inv[d−1][d−1]
	tmpW, tmpB kernels.Buffer // out × din, out

	uRows [3]kernels.Buffer // views of u and of the bias gradient for
	bRows [3]kernels.Buffer // the Q, K and V row blocks of an attention qkv
}

type macAttn struct {
	a      nn.AttentionTapped
	layer  *macLayer
	tokens int
	tbar   kernels.Buffer // view into MAC.early
	av     kernels.Buffer // ā_V = X̄ᵀ·t̄, d: view into MAC.flat
	ema
}

// NewMAC returns a MAC optimizer for model. Every nn.Tapped layer found by
// nn.Walk is preconditioned, the first one found being the first layer;
// grouped convolutions are not (MAC's rule is stated for dense layers) and
// take momentum SGD.
func NewMAC(dev kernels.Device, model nn.Module, cfg Config) (*MAC, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	b, err := newBase(dev, "mac", model, cfg.Common)
	if err != nil {
		return nil, err
	}
	o := &MAC{base: b, cfg: cfg}
	byTap := map[nn.Tapped]*macLayer{}
	tapped, attention := curvatureLayers(model)
	for _, t := range tapped {
		if grouped(t) {
			continue
		}
		l := &macLayer{t: t, w: t.Weight(), b: t.Bias(), d: t.TapDim()}
		l.out = l.w.Value.Shape[0]
		l.din = l.w.Value.Len() / l.out
		if want := l.din + btoi(l.b != nil); want != l.d {
			panic(fmt.Sprintf("mac: layer %s: TapDim %d, but the weight's fan-in gives %d", l.w.Name, l.d, want))
		}
		l.m, l.mhat, l.u = dev.Alloc(l.d), dev.Alloc(l.d), dev.Alloc(l.out)
		o.layers = append(o.layers, l)
		byTap[t] = l
	}
	if len(o.layers) == 0 {
		return nil, fmt.Errorf("mac: the model has no Linear or Conv2d layer to precondition")
	}
	off := 0
	for _, l := range o.layers {
		off += l.d
	}
	if cfg.FirstLayerCov {
		l := o.layers[0]
		l.first = true
		l.inv = dev.Alloc(l.d * l.d)
		l.tmpW, l.tmpB = dev.Alloc(l.out*l.din), dev.Alloc(l.out)
	}
	if cfg.AttentionV {
		for _, a := range attention {
			l := byTap[a.QKV()]
			if l == nil || l.first || l.out%3 != 0 {
				continue
			}
			at := &macAttn{a: a, layer: l}
			at.m, at.mhat = dev.Alloc(l.d), dev.Alloc(l.d)
			rows := l.out / 3
			for i := range 3 {
				l.uRows[i] = dev.View(l.u, i*rows, rows)
				if l.b != nil {
					l.bRows[i] = dev.View(l.b.Grad.Data, i*rows, rows)
				}
			}
			o.attn = append(o.attn, at)
		}
	}
	return o, nil
}

// curvatureLayers lists the tapped layers of model in forward order, and its
// attention layers: as the model reports them when it can (nn/models'
// Model does), found by nn.Walk otherwise, each once.
func curvatureLayers(model nn.Module) ([]nn.Tapped, []nn.AttentionTapped) {
	if m, ok := model.(interface {
		Tapped() []nn.Tapped
		Attention() []nn.AttentionTapped
	}); ok {
		return m.Tapped(), m.Attention()
	}
	var tapped []nn.Tapped
	var attention []nn.AttentionTapped
	seen := map[nn.Module]bool{}
	nn.Walk(model, func(m nn.Module) {
		if seen[m] {
			return
		}
		seen[m] = true
		if t, ok := m.(nn.Tapped); ok {
			tapped = append(tapped, t)
		}
		if a, ok := m.(nn.AttentionTapped); ok {
			attention = append(attention, a)
		}
	})
	return tapped, attention
}

func grouped(m nn.Module) bool {
	c, ok := m.(*nn.Conv2d)
	return ok && c.Config().Groups > 1
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Layers lists the names of the preconditioned weights, first layer first.
func (o *MAC) Layers() []string {
	names := make([]string, len(o.layers))
	for i, l := range o.layers {
		names[i] = l.w.Name
	}
	return names
}

// FirstLayer returns the layer that takes the full-covariance rule, or nil
// when FirstLayerCov is off.
func (o *MAC) FirstLayer() nn.Tapped {
	if o.cfg.FirstLayerCov {
		return o.layers[0].t
	}
	return nil
}

// SetFirstLayerCovariance sets A0 = sum / rows, the first layer's input
// covariance (sum is Σ p·pᵀ over every input row p, d × d, as a
// CovarianceAccumulator gives it), and fixes the first layer's
// preconditioner (A0 + λI)⁻¹ for the rest of training.
func (o *MAC) SetFirstLayerCovariance(sum []float64, rows float64) error {
	if !o.cfg.FirstLayerCov {
		return fmt.Errorf("mac: first_layer_cov is off")
	}
	l := o.layers[0]
	if len(sum) != l.d*l.d {
		return fmt.Errorf("mac: first-layer covariance of %s has %d elements, want %d×%d", l.w.Name, len(sum), l.d, l.d)
	}
	if !(rows > 0) {
		return fmt.Errorf("mac: first-layer covariance of %s: row count %v must be positive", l.w.Name, rows)
	}
	a := mat.NewDense(l.d, l.d, nil)
	for i := range l.d {
		for j := range l.d {
			v := sum[i*l.d+j] / rows
			if i == j {
				v += o.cfg.Damping
			}
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("mac: first-layer covariance of %s holds non-finite values", l.w.Name)
			}
			a.Set(i, j, v)
		}
	}
	var inv mat.Dense
	if err := inv.Inverse(a); err != nil {
		return fmt.Errorf("mac: inverting the first-layer covariance of %s: %w", l.w.Name, err)
	}
	host := make([]float32, l.d*l.d)
	for i := range l.d {
		for j := range l.d {
			host[i*l.d+j] = float32(inv.At(i, j))
		}
	}
	o.dev.Upload(l.inv, host)
	l.invCorner = host[l.d*l.d-1]
	o.firstSet = true
	return nil
}

// BeginStep turns the taps on when this step collects statistics
// (every TCov steps) and off otherwise, so that steps in between pay nothing.
func (o *MAC) BeginStep() {
	o.collected = o.steps%o.cfg.TCov == 0
	o.earlyDone = false
	for _, l := range o.layers {
		l.t.SetTap(o.collected && !l.first)
	}
	for _, a := range o.attn {
		a.a.SetAttentionTap(o.collected)
	}
}

// EarlyStats returns this step's mean attention t̄ of every attention
// layer, one after another, or nil when the step collects none or the
// model has no attention layer. It implements EarlyStatser: ā_V = X̄ᵀ·t̄
// is a product of two batch means, and the mean over ranks of each rank's
// X̄ᵀ·t̄ is the full batch's only when t̄ is already the full batch's. So a
// data-parallel trainer averages this vector (tokens floats per layer)
// before calling Stats, which then forms each rank's ā_V (d floats) from
// it; averaging X̄ itself would cost tokens × d floats per layer.
func (o *MAC) EarlyStats() kernels.Buffer {
	if !o.collected || len(o.attn) == 0 {
		return nil
	}
	if o.flat == nil {
		o.layout()
	}
	for _, a := range o.attn {
		_, t, tokens := a.a.AttentionTap()
		if tokens != a.tokens {
			panic(fmt.Sprintf("mac: attention %s: %d tokens, but %d when statistics were first laid out", a.layer.w.Name, tokens, a.tokens))
		}
		o.dev.Copy(a.tbar, t)
	}
	o.earlyDone = true
	return o.early
}

// Stats gathers this step's statistics into one flat vector: ā of every
// preconditioned layer in order (the first layer's excluded when it uses
// its fixed covariance), then ā_V = X̄ᵀ·t̄ of every attention layer, from
// this rank's X̄ and EarlyStats' t̄ (taken now if EarlyStats was not
// called). It returns nil when the step collects none. The vector is
// MAC's to read in Step: averaging it in place across ranks is what keeps
// replicas identical.
func (o *MAC) Stats() kernels.Buffer {
	if !o.collected {
		return nil
	}
	if o.flat == nil {
		o.layout()
	}
	if !o.earlyDone {
		o.EarlyStats()
	}
	for _, l := range o.layers {
		if l.stat != nil {
			o.dev.Copy(l.stat, l.t.Tap())
		}
	}
	for _, a := range o.attn {
		// ā_V = X̄ᵀ·t̄: the token rows weighted by the attention they receive.
		x, _, _ := a.a.AttentionTap()
		o.dev.Gemm(true, false, a.layer.d, 1, a.tokens, 1, x, a.layer.d, a.tbar, 1, 0, a.av, 1)
	}
	return o.flat
}

// layout allocates the statistics vectors once the token counts of the
// attention layers are known (after the first collecting Forward).
func (o *MAC) layout() {
	n, early := 0, 0
	for _, l := range o.layers {
		if !l.first {
			n += l.d
		}
	}
	for _, a := range o.attn {
		_, _, a.tokens = a.a.AttentionTap()
		n += a.layer.d
		early += a.tokens
	}
	o.flat = o.dev.Alloc(n)
	off := 0
	for _, l := range o.layers {
		if !l.first {
			l.stat = o.dev.View(o.flat, off, l.d)
			off += l.d
		}
	}
	for _, a := range o.attn {
		a.av = o.dev.View(o.flat, off, a.layer.d)
		off += a.layer.d
	}
	if early > 0 {
		o.early = o.dev.Alloc(early)
		off = 0
		for _, a := range o.attn {
			a.tbar = o.dev.View(o.early, off, a.tokens)
			off += a.tokens
		}
	}
}

// Step applies one MAC update (see the package documentation for the order).
func (o *MAC) Step(lr float64) error {
	if o.cfg.FirstLayerCov && !o.firstSet {
		return fmt.Errorf("mac: first_layer_cov is on but SetFirstLayerCovariance was not called for %s", o.layers[0].w.Name)
	}
	var stats kernels.Buffer
	if o.collected {
		stats = o.flat
		if stats == nil {
			return fmt.Errorf("mac: Stats was not called before Step on a collecting step")
		}
	}
	if ok, what := o.finite(stats); !ok {
		return o.skip(what)
	}
	d := o.dev
	beta := float32(o.cfg.StatDecay)
	if stats != nil {
		for _, l := range o.layers {
			if !l.first {
				d.Axpby(l.m, 1-beta, l.stat, beta)
				l.n++
			}
		}
		for _, a := range o.attn {
			d.Axpby(a.m, 1-beta, a.av, beta)
			a.n++
		}
	}
	if o.steps%o.cfg.TInv == 0 {
		for _, l := range o.layers {
			if !l.first {
				o.refresh(&l.ema)
			}
		}
		for _, a := range o.attn {
			o.refresh(&a.ema)
		}
	}
	for _, l := range o.layers {
		switch {
		case l.first:
			o.preconditionFirst(l)
		case l.refresh == 0:
			// No statistics yet (possible only after a restore into a
			// different schedule): the gradient passes unchanged.
		default:
			o.precondition(l)
		}
	}
	o.applyUpdate(lr)
	return nil
}

// refresh takes the bias-corrected snapshot m̂ = m/(1−βⁿ) and its
// Sherman–Morrison scale s = 1/(λ + ‖m̂‖²). It is done on the host in
// float64: d numbers every TInv steps.
func (o *MAC) refresh(e *ema) {
	if e.n == 0 {
		return
	}
	if cap(o.host) < e.m.Len() {
		o.host = make([]float32, e.m.Len())
	}
	m := o.host[:e.m.Len()]
	o.dev.Download(m, e.m)
	corr := 1 - math.Pow(o.cfg.StatDecay, float64(e.n))
	var norm2 float64
	for i, v := range m {
		h := float32(float64(v) / corr)
		m[i] = h
		norm2 += float64(h) * float64(h)
	}
	o.dev.Upload(e.mhat, m)
	e.s = float32(1 / (o.cfg.Damping + norm2))
	e.last = m[len(m)-1]
	e.refresh = e.n
}

// precondition computes V = Gw − s·(Gw·m̂)·m̂ᵀ in place on the gradients:
// one GEMV and one rank-1 update, never a d × d matrix. For an attention
// qkv layer with AttentionV, the value rows use their own vector.
func (o *MAC) precondition(l *macLayer) {
	var at *macAttn
	for _, a := range o.attn {
		if a.layer == l {
			at = a
		}
	}
	if at == nil || at.refresh == 0 {
		o.rank1(l, 0, l.out, &l.ema, l.u, l.bGrad())
		return
	}
	rows := l.out / 3
	o.rank1(l, 0, rows, &l.ema, l.uRows[0], l.bRows[0])
	o.rank1(l, rows, rows, &l.ema, l.uRows[1], l.bRows[1])
	o.rank1(l, 2*rows, rows, &at.ema, l.uRows[2], l.bRows[2])
}

func (l *macLayer) bGrad() kernels.Buffer {
	if l.b == nil {
		return nil
	}
	return l.b.Grad.Data
}

// rank1 preconditions rows [row0, row0+rows) of Gw with the vector of e; u
// and bg are the matching views of the scratch vector and bias gradient.
func (o *MAC) rank1(l *macLayer, row0, rows int, e *ema, u, bg kernels.Buffer) {
	d := o.dev
	wg := l.w.Grad.Data
	d.GemmStrided(false, false, rows, 1, l.din, 1, wg, row0*l.din, l.din, 0, e.mhat, 0, 1, 0, 0, u, 0, 1, 0, 1)
	if bg != nil {
		d.Axpby(u, e.last, bg, 1)
	}
	d.GemmStrided(false, false, rows, l.din, 1, -e.s, u, 0, 1, 0, e.mhat, 0, l.din, 0, 1, wg, row0*l.din, l.din, 0, 1)
	if bg != nil {
		d.Axpby(bg, -e.s*e.last, u, 1)
	}
}

// preconditionFirst computes V = Gw·(A0 + λI)⁻¹ for the first layer, with
// Gw = [∇W | ∇b] split into its weight and bias parts.
func (o *MAC) preconditionFirst(l *macLayer) {
	d := o.dev
	wg := l.w.Grad.Data
	dd := l.d
	// tmpW = ∇W·inv[:din, :din] + ∇b ⊗ inv[din, :din]
	d.Gemm(false, false, l.out, l.din, l.din, 1, wg, l.din, l.inv, dd, 0, l.tmpW, l.din)
	if l.b == nil {
		d.Copy(wg, l.tmpW)
		return
	}
	bg := l.b.Grad.Data
	d.GemmStrided(false, false, l.out, l.din, 1, 1, bg, 0, 1, 0, l.inv, l.din*dd, dd, 0, 1, l.tmpW, 0, l.din, 0, 1)
	// tmpB = ∇W·inv[:din, din] + ∇b·inv[din, din]
	d.GemmStrided(false, false, l.out, 1, l.din, 1, wg, 0, l.din, 0, l.inv, l.din, dd, 0, 0, l.tmpB, 0, 1, 0, 1)
	d.Axpby(l.tmpB, l.invCorner, bg, 1)
	d.Copy(wg, l.tmpW)
	d.Copy(bg, l.tmpB)
}

// StateBytes counts momentum buffers, the O(d) vectors of every layer and
// the first layer's d × d inverse.
func (o *MAC) StateBytes() int64 {
	n := o.momentumBytes()
	for _, l := range o.layers {
		n += int64(2*l.d) * 4
		if l.first {
			n += int64(l.d*l.d) * 4
		}
	}
	for _, a := range o.attn {
		n += int64(2*a.layer.d) * 4
	}
	return n
}

// State returns the momentum buffers, every EMA with its snapshot, and the
// first layer's inverse.
func (o *MAC) State() (*State, error) {
	s := newState()
	o.saveCommon(s)
	save := func(key string, e *ema) {
		s.Tensors["mac.m."+key] = download(o.dev, e.m)
		s.Tensors["mac.mhat."+key] = download(o.dev, e.mhat)
		s.Meta["mac.n."+key] = strconv.Itoa(e.n)
		s.Meta["mac.refresh."+key] = strconv.Itoa(e.refresh)
		s.Meta["mac.s."+key] = strconv.FormatFloat(float64(e.s), 'g', -1, 32)
	}
	for _, l := range o.layers {
		if l.first {
			if o.firstSet {
				s.Tensors["mac.first_inv."+l.w.Name] = download(o.dev, l.inv)
			}
			continue
		}
		save(l.w.Name, &l.ema)
	}
	for _, a := range o.attn {
		save("attn_v."+a.layer.w.Name, &a.ema)
	}
	return s, nil
}

// SetState restores what State returned.
func (o *MAC) SetState(s *State) error {
	if err := o.loadCommon(s); err != nil {
		return err
	}
	load := func(key string, e *ema) error {
		if err := upload(o.dev, e.m, s, "mac.m."+key); err != nil {
			return err
		}
		if err := upload(o.dev, e.mhat, s, "mac.mhat."+key); err != nil {
			return err
		}
		for k, dst := range map[string]*int{"mac.n.": &e.n, "mac.refresh.": &e.refresh} {
			v, err := strconv.Atoi(s.Meta[k+key])
			if err != nil {
				return fmt.Errorf("mac: state: bad %s%s: %w", k, key, err)
			}
			*dst = v
		}
		f, err := strconv.ParseFloat(s.Meta["mac.s."+key], 32)
		if err != nil {
			return fmt.Errorf("mac: state: bad mac.s.%s: %w", key, err)
		}
		e.s = float32(f)
		mh := download(o.dev, e.mhat)
		e.last = mh[len(mh)-1]
		return nil
	}
	for _, l := range o.layers {
		if l.first {
			key := "mac.first_inv." + l.w.Name
			if _, ok := s.Tensors[key]; ok {
				if err := upload(o.dev, l.inv, s, key); err != nil {
					return err
				}
				inv := s.Tensors[key]
				l.invCorner = inv[len(inv)-1]
				o.firstSet = true
			}
			continue
		}
		if err := load(l.w.Name, &l.ema); err != nil {
			return err
		}
	}
	for _, a := range o.attn {
		if err := load("attn_v."+a.layer.w.Name, &a.ema); err != nil {
			return err
		}
	}
	return nil
}
