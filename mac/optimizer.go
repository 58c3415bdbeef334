package mac

import (
	"errors"
	"fmt"
	"log/slog"
	"math"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/nn"
)

// Optimizer updates a model's parameters from their gradients and, for the
// curvature methods, from the statistics the layers' taps recorded.
//
// One training step calls, in order:
//
//	opt.BeginStep()         // before Forward: switches taps on when this step collects
//	... Forward, loss, Backward ...
//	stats := opt.Stats()    // this step's statistics as one flat vector, or nil
//	// a data-parallel trainer all-reduces stats to their mean across ranks here
//	err := opt.Step(lr)
//
// Step may overwrite the gradients (they hold the preconditioned update
// afterwards), as the reference implementations do.
type Optimizer interface {
	// Name is the method's short name: "mac", "sgd", "adamw", "kfac", "eva", "foof".
	Name() string
	BeginStep()
	// Stats returns the flat statistics vector of this step, in a fixed
	// order that is the same on every rank, or nil when the step collects
	// none. Averaging it across ranks before Step is all that distributed
	// training needs to keep every replica's preconditioner identical.
	Stats() kernels.Buffer
	// Step applies one update with learning rate lr. A step whose gradients
	// or statistics hold a NaN or an Inf is skipped, leaving parameters and
	// state untouched; Step then returns nil, unless MaxNonFinite such steps
	// came in a row, when it returns an error wrapping ErrNonFinite.
	Step(lr float64) error
	// Steps is the number of steps applied (skipped ones excluded).
	Steps() int
	// Skipped is the number of steps skipped for non-finite values.
	Skipped() int
	// StateBytes is the size of the optimizer's state on the device.
	StateBytes() int64
	// State returns everything a resumed run needs, as named tensors and
	// small metadata; SetState restores it into an optimizer built with the
	// same model and configuration.
	State() (*State, error)
	SetState(*State) error
}

// EarlyStatser is implemented by optimizers some of whose statistics are
// products of batch means (MAC's attention rule: ā_V = X̄ᵀ·t̄), which the
// mean over ranks of per-rank products does not give. A data-parallel
// trainer averages EarlyStats across ranks after Forward and before
// Stats; Stats then forms the rest from the averaged vector:
//
//	opt.BeginStep()
//	... Forward ...
//	if e, ok := opt.(EarlyStatser); ok { average e.EarlyStats() (nil: nothing) }
//	... loss, Backward ...
//	average opt.Stats()
//	err := opt.Step(lr)
//
// Without the early average each rank's Stats uses its own.
type EarlyStatser interface {
	EarlyStats() kernels.Buffer
}

// ErrNonFinite is wrapped by Step's error after too many steps in a row
// were skipped because a gradient or statistic was NaN or infinite.
var ErrNonFinite = errors.New("mac: non-finite gradients or statistics")

// State is an optimizer's saved state.
type State struct {
	Tensors map[string][]float32
	Meta    map[string]string
}

// Common are the settings every optimizer has.
type Common struct {
	Momentum    float64
	Nesterov    bool
	WeightDecay float64
	// DecoupledWD decays parameters directly (p ← (1−η·wd)·p) instead of
	// adding wd·p to the gradient.
	DecoupledWD bool
	// NoDecay, when set, exempts the parameters it accepts from weight
	// decay (NormsAndBiases is the usual choice).
	NoDecay func(*nn.Param) bool
	// LRScale, when set, multiplies each parameter's learning rate (timm's
	// lr_scale of --layer-decay); nil means 1 for every parameter.
	LRScale func(*nn.Param) float64
	// MaxNonFinite is how many skipped steps in a row Step tolerates before
	// it returns an error; 0 means 10.
	MaxNonFinite int
	// Logger receives a warning for every skipped step; nil means slog.Default().
	Logger *slog.Logger
}

// NormsAndBiases accepts biases, norm scales and shifts and embeddings:
// the parameters conventionally spared weight decay.
func NormsAndBiases(p *nn.Param) bool {
	return p.Kind == nn.KindBias || p.Kind == nn.KindNorm || p.Kind == nn.KindEmbedding
}

func (c Common) validate(method string) error {
	switch {
	case c.Momentum < 0 || c.Momentum >= 1 || math.IsNaN(c.Momentum):
		return &OptionError{method, "momentum", c.Momentum, "outside [0, 1)"}
	case c.WeightDecay < 0 || math.IsNaN(c.WeightDecay):
		return &OptionError{method, "weight_decay", c.WeightDecay, "is negative"}
	case c.MaxNonFinite < 0:
		return &OptionError{method, "max_non_finite", c.MaxNonFinite, "is negative"}
	case c.Nesterov && c.Momentum == 0:
		return &OptionError{method, "nesterov", true, "needs a momentum above 0"}
	}
	return nil
}

// base holds what every optimizer shares: the trainable parameters, the
// momentum buffers, weight decay, step counting and non-finite guarding.
type base struct {
	dev    kernels.Device
	name   string
	cfg    Common
	params []*nn.Param // trainable, in model order
	decay  []bool
	scale  []float64        // each parameter's learning-rate factor (LRScale)
	buf    []kernels.Buffer // momentum buffers, allocated on first use

	// sums holds one sum per checked buffer (see finite): slot views
	// made once, and the host copy one Download fills.
	sums     kernels.Buffer
	sumSlots []kernels.Buffer
	sumsHost []float32

	steps, skipped, inARow int
}

func newBase(dev kernels.Device, name string, model nn.Module, cfg Common) (base, error) {
	if err := cfg.validate(name); err != nil {
		return base{}, err
	}
	if cfg.MaxNonFinite == 0 {
		cfg.MaxNonFinite = 10
	}
	b := base{dev: dev, name: name, cfg: cfg}
	for _, p := range model.Params() {
		if !p.Trainable() {
			continue
		}
		b.params = append(b.params, p)
		b.decay = append(b.decay, cfg.WeightDecay > 0 && (cfg.NoDecay == nil || !cfg.NoDecay(p)))
		s := 1.0
		if cfg.LRScale != nil {
			s = cfg.LRScale(p)
		}
		b.scale = append(b.scale, s)
	}
	if len(b.params) == 0 {
		return base{}, fmt.Errorf("mac: %s: the model has no trainable parameters", name)
	}
	if cfg.Momentum > 0 {
		b.buf = make([]kernels.Buffer, len(b.params))
		for i, p := range b.params {
			b.buf[i] = dev.Alloc(p.Value.Len())
		}
	}
	return b, nil
}

func (b *base) Name() string { return b.name }
func (b *base) Steps() int   { return b.steps }
func (b *base) Skipped() int { return b.skipped }
func (b *base) logger() *slog.Logger {
	if b.cfg.Logger != nil {
		return b.cfg.Logger
	}
	return slog.Default()
}

// finite reports whether every gradient and every given buffer holds only
// finite numbers. Each buffer is summed into its own slot of a device
// buffer and one Download brings the sums back: one synchronisation per
// step, where a Dot per parameter would synchronise a GPU once per
// parameter. A NaN or an infinity in a buffer makes its sum NaN or
// infinite (+Inf plus −Inf is NaN); a finite sum can only overflow from
// elements near float32's largest, which are skipped as diverged too.
func (b *base) finite(extra ...kernels.Buffer) (bool, string) {
	n := len(b.params) + len(extra)
	if len(b.sumSlots) < n {
		if b.sums != nil {
			b.dev.Free(b.sums)
		}
		b.sums = b.dev.Alloc(n)
		b.sumSlots = make([]kernels.Buffer, n)
		for i := range b.sumSlots {
			b.sumSlots[i] = b.dev.View(b.sums, i, 1)
		}
		b.sumsHost = make([]float32, n)
	}
	// ReduceSumMid with one channel: the GPU splits a long sum over many
	// blocks (ReduceSum of one row would take one).
	for i, p := range b.params {
		b.dev.ReduceSumMid(b.sumSlots[i], p.Grad.Data, 1, 1, p.Grad.Data.Len(), 1, 0)
	}
	for j, e := range extra {
		if e != nil && e.Len() > 0 {
			b.dev.ReduceSumMid(b.sumSlots[len(b.params)+j], e, 1, 1, e.Len(), 1, 0)
		} else {
			b.dev.Fill(b.sumSlots[len(b.params)+j], 0)
		}
	}
	sums := b.sumsHost[:n]
	b.dev.Download(sums, b.sums)
	for i, v := range sums {
		if !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) {
			continue
		}
		if i < len(b.params) {
			return false, "gradient of " + b.params[i].Name
		}
		return false, "statistics"
	}
	return true, ""
}

// skip records a skipped step and says whether training must stop.
func (b *base) skip(what string) error {
	b.skipped++
	b.inARow++
	b.logger().Warn("optimizer step skipped: non-finite values", "optimizer", b.name, "step", b.steps, "in", what, "in_a_row", b.inARow)
	if b.inARow >= b.cfg.MaxNonFinite {
		return fmt.Errorf("%w: %d steps in a row (last in the %s at step %d)", ErrNonFinite, b.inARow, what, b.steps)
	}
	return nil
}

// applyUpdate turns the (preconditioned) gradients into a parameter update:
// weight decay, heavy-ball momentum without dampening, and p ← p − lr·buf,
// as torch.optim.SGD does: one fused Device call per tensor (SGDStep).
func (b *base) applyUpdate(lr float64) {
	var mom float32
	if b.buf != nil {
		mom = float32(b.cfg.Momentum)
	}
	lr0 := lr
	for i, p := range b.params {
		lr := lr0 * b.scale[i]
		wd, decay := float32(0), float32(1)
		if b.decay[i] {
			if b.cfg.DecoupledWD {
				decay = float32(1 - lr*b.cfg.WeightDecay)
			} else {
				wd = float32(b.cfg.WeightDecay)
			}
		}
		var buf kernels.Buffer
		if b.buf != nil {
			buf = b.buf[i]
		}
		b.dev.SGDStep(p.Value.Data, p.Grad.Data, buf, float32(lr), mom, wd, decay, b.cfg.Nesterov && b.buf != nil)
	}
	b.steps++
	b.inARow = 0
}

func (b *base) momentumBytes() int64 {
	var n int64
	for _, m := range b.buf {
		n += int64(m.Len()) * 4
	}
	return n
}

// saveCommon and loadCommon carry the momentum buffers and counters.
func (b *base) saveCommon(s *State) {
	for i, p := range b.params {
		if b.buf != nil {
			s.Tensors["momentum_buffer."+p.Name] = download(b.dev, b.buf[i])
		}
	}
	s.Meta["optimizer"] = b.name
	s.Meta["steps"] = fmt.Sprint(b.steps)
	s.Meta["skipped"] = fmt.Sprint(b.skipped)
	s.Meta["in_a_row"] = fmt.Sprint(b.inARow)
}

func (b *base) loadCommon(s *State) error {
	if got := s.Meta["optimizer"]; got != b.name {
		return fmt.Errorf("mac: state is of optimizer %q, this one is %q", got, b.name)
	}
	for i, p := range b.params {
		if b.buf != nil {
			if err := upload(b.dev, b.buf[i], s, "momentum_buffer."+p.Name); err != nil {
				return err
			}
		}
	}
	for key, dst := range map[string]*int{"steps": &b.steps, "skipped": &b.skipped, "in_a_row": &b.inARow} {
		if _, err := fmt.Sscan(s.Meta[key], dst); err != nil {
			return fmt.Errorf("mac: state: bad %s %q: %w", key, s.Meta[key], err)
		}
	}
	return nil
}

func newState() *State {
	return &State{Tensors: map[string][]float32{}, Meta: map[string]string{}}
}

func download(dev kernels.Device, b kernels.Buffer) []float32 {
	v := make([]float32, b.Len())
	dev.Download(v, b)
	return v
}

func upload(dev kernels.Device, b kernels.Buffer, s *State, key string) error {
	v, ok := s.Tensors[key]
	if !ok {
		return fmt.Errorf("mac: state has no tensor %q", key)
	}
	if len(v) != b.Len() {
		return fmt.Errorf("mac: state tensor %q has %d elements, want %d", key, len(v), b.Len())
	}
	dev.Upload(b, v)
	return nil
}
