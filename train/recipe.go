package train

import (
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/macdist/macdist/data"
	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/nn"
)

// The parts of timm's ImageNet recipe that live in the step: gradient
// accumulation, mixup and CutMix with soft targets, gradient clipping and
// the weights' moving average (ema.go).

// accum is the number of micro-batches a rank's batch is split into.
func (c Config) accum() int { return max(1, c.GradAccumSteps) }

// accumSteps is GradAccumSteps as Settings records it: 0 when off.
func (c Config) accumSteps() int {
	if c.GradAccumSteps <= 1 {
		return 0
	}
	return c.GradAccumSteps
}

// repeats is RepeatedAug as the loader and Settings take it: 0 when off.
func (c Config) repeats() int {
	if c.RepeatedAug <= 1 {
		return 0
	}
	return c.RepeatedAug
}

// mixing reports whether batches are mixed (and the loss takes soft targets).
func (c Config) mixing() bool { return c.MixupProb > 0 && (c.Mixup > 0 || c.Cutmix > 0) }

// layerDecay is timm's param_groups_layer_decay for a ViT's parameter
// names: layer 0 holds cls_token, pos_embed and patch_embed, layer i+1
// block i, and layer L+1 (L blocks) the rest (the final norm, the head),
// whose learning rate is scaled by decay^(L+1−layer).
func layerDecay(model nn.Module, decay float64) (func(*nn.Param) float64, error) {
	depth := 0
	for _, p := range model.Params() {
		if i, ok := blockIndex(p.Name); ok {
			depth = max(depth, i+1)
		}
	}
	if depth == 0 {
		return nil, errors.New("train: --layer-decay needs a model of blocks (a ViT: blocks.0, blocks.1, …)")
	}
	return func(p *nn.Param) float64 {
		layer := depth + 1
		if i, ok := blockIndex(p.Name); ok {
			layer = i + 1
		} else if strings.HasPrefix(p.Name, "cls_token") || strings.HasPrefix(p.Name, "pos_embed") || strings.HasPrefix(p.Name, "patch_embed") {
			layer = 0
		}
		return math.Pow(decay, float64(depth+1-layer))
	}, nil
}

// blockIndex reads i from a name "blocks.i.…".
func blockIndex(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, "blocks.")
	if !ok {
		return 0, false
	}
	num, _, _ := strings.Cut(rest, ".")
	i, err := strconv.Atoi(num)
	return i, err == nil
}

// recipe holds the step's extra state, allocated once.
type recipe struct {
	micro    data.Batch     // a view of one micro-batch of the step's batch
	statsAcc kernels.Buffer // the weighted sum of earlier micro-batches' statistics

	mix      data.Mixup
	mixPCG   *rand.PCG
	mixRand  *rand.Rand
	mixPix   []float32 // one image, for Apply
	targets  []float32 // the step's soft targets, rows × classes
	softLoss *nn.SoftTargetCrossEntropy
	padSoft  *nn.SoftTargetCrossEntropy // the real samples of a padded batch, see headLoss

	clip *clipper
	ema  *modelEMA
}

// setupRecipe prepares what the configuration turns on.
func (t *trainer) setupRecipe() error {
	cfg := t.cfg
	if cfg.mixing() {
		c, h, w := t.trainSet.Shape()
		t.rc.mix = data.Mixup{MixupAlpha: cfg.Mixup, CutmixAlpha: cfg.Cutmix, Prob: cfg.MixupProb,
			SwitchProb: cfg.MixupSwitchProb, Smoothing: cfg.LabelSmoothing, Classes: t.trainSet.Classes()}
		t.rc.mixPCG = new(rand.PCG)
		t.rc.mixRand = rand.New(t.rc.mixPCG)
		t.rc.mixPix = make([]float32, c*h*w)
		t.rc.targets = make([]float32, cfg.Batch*t.trainSet.Classes())
		t.rc.softLoss = nn.NewSoftTargetCrossEntropy(t.dev)
	}
	if cfg.ClipGrad > 0 {
		t.rc.clip = newClipper(t.dev, t.grads)
	}
	if cfg.ModelEMA {
		t.rc.ema = newModelEMA(t.dev, t.params, cfg.ModelEMADecay)
	}
	return nil
}

// mixBatch mixes b in place and fills the soft targets, when mixing is on.
func (t *trainer) mixBatch(b *data.Batch) {
	if t.rc.softLoss == nil {
		return
	}
	data.SeedMix(t.rc.mixPCG, t.cfg.Seed, t.st.Epoch, t.st.EpochStep, t.cfg.Rank)
	d := t.rc.mix.Draw(t.rc.mixRand, b.H, b.W)
	d.Apply(b.X, b.N, b.C, b.H, b.W, t.rc.mixPix)
	t.rc.mix.Targets(t.rc.targets[:b.N*t.rc.mix.Classes], b.Y, d)
}

// microBatches is how many micro-batches b is split into: GradAccumSteps,
// or fewer for a last batch smaller than that.
func (t *trainer) microBatches(b *data.Batch) int { return min(t.cfg.accum(), b.N) }

// microBatch returns micro-batch m of k of b, a view that stays valid until
// the next call, and the index of its first sample in b. The sizes differ
// by at most one, the larger first.
func (t *trainer) microBatch(b *data.Batch, m, k int) (*data.Batch, int) {
	if k == 1 {
		return b, 0
	}
	q, r := b.N/k, b.N%k
	lo := m*q + min(m, r)
	n := q + btoi(m < r)
	size := b.C * b.H * b.W
	mb := &t.rc.micro
	*mb = *b
	mb.X, mb.Y, mb.N = b.X[lo*size:(lo+n)*size], b.Y[lo:lo+n], n
	if b.Index != nil {
		mb.Index = b.Index[lo : lo+n]
	}
	return mb, lo
}

// lossForward is the training loss of mb, the samples of the step's batch
// from lo on: against the soft targets when mixing, the labels otherwise.
func (t *trainer) lossForward(logits *nn.Tensor, mb *data.Batch, lo int) (float64, int) {
	if t.rc.softLoss == nil {
		return t.lossFn.Forward(logits, mb.Y)
	}
	k := t.rc.mix.Classes
	return t.rc.softLoss.Forward(logits, t.rc.targets[lo*k:(lo+mb.N)*k])
}

// lossBackward is dL/dlogits of the last lossForward, scaled by the
// micro-batch's share w of the batch.
func (t *trainer) lossBackward(w float64) *nn.Tensor {
	var dl *nn.Tensor
	if t.rc.softLoss != nil {
		dl = t.rc.softLoss.Backward()
	} else {
		dl = t.lossFn.Backward()
	}
	if w != 1 {
		t.dev.Scale(dl.Data, float32(w))
	}
	return dl
}

// accumulateStats adds micro-batch m's statistics, weighted by w, to the
// step's sum; the last micro-batch's are added by finishStats.
func (t *trainer) accumulateStats(m int, w float64) {
	s := t.opt.Stats()
	if s == nil {
		return
	}
	if t.rc.statsAcc == nil {
		t.rc.statsAcc = t.dev.Alloc(s.Len())
	}
	if m == 0 {
		t.dev.Fill(t.rc.statsAcc, 0)
	}
	t.dev.Axpby(t.rc.statsAcc, float32(w), s, 1)
}

// stepStats returns the optimizer's statistics of the whole step: with k
// micro-batches, their mean weighted by size, the last one's weight w.
func (t *trainer) stepStats(k int, w float64) kernels.Buffer {
	s := t.opt.Stats()
	if s != nil && k > 1 {
		// s ← acc + w·s, in the optimizer's own vector, which Step reads.
		t.dev.Axpby(s, 1, t.rc.statsAcc, float32(w))
	}
	return s
}

// clipper scales gradients to a global L2 norm, as torch's
// clip_grad_norm_ does: ‖g‖ over every gradient at once, and each scaled by
// max/(‖g‖+1e-6) when that is below 1. The squared norms are summed on the
// device into one slot per gradient and fetched with one Download: one
// synchronisation per step, not one per tensor.
type clipper struct {
	dev   kernels.Device
	grads []kernels.Buffer
	sq    []kernels.Buffer // per gradient, a view of one scratch of the largest's size
	sums  kernels.Buffer   // one squared norm per gradient
	slots []kernels.Buffer // views of sums
	host  []float32
}

func newClipper(dev kernels.Device, grads []kernels.Buffer) *clipper {
	c := &clipper{dev: dev, grads: grads, host: make([]float32, len(grads))}
	n := 0
	for _, g := range grads {
		n = max(n, g.Len())
	}
	scratch := dev.Alloc(max(n, 1))
	c.sums = dev.Alloc(max(len(grads), 1))
	for i, g := range grads {
		c.sq = append(c.sq, dev.View(scratch, 0, g.Len()))
		c.slots = append(c.slots, dev.View(c.sums, i, 1))
	}
	return c
}

// norm returns the global L2 norm of the gradients.
func (c *clipper) norm() float64 {
	for i, g := range c.grads {
		c.dev.Mul(c.sq[i], g, g)
		c.dev.ReduceSumMid(c.slots[i], c.sq[i], 1, 1, g.Len(), 1, 0)
	}
	c.dev.Download(c.host, c.sums)
	var total float64
	for _, v := range c.host {
		total += float64(v)
	}
	return math.Sqrt(total)
}

// clip scales the gradients to norm at most maxNorm and returns their norm
// before. A non-finite norm leaves them as they are, for the optimizer to
// skip the step.
func (c *clipper) clip(maxNorm float64) float64 {
	total := c.norm()
	coef := maxNorm / (total + 1e-6)
	if coef < 1 {
		for _, g := range c.grads {
			c.dev.Scale(g, float32(coef))
		}
	}
	return total
}
