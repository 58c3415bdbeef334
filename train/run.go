package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/macdist/macdist/data"
	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/mac"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/models"
)

// Interrupted is Run's error when its context was cancelled (Ctrl-C,
// SIGTERM): the step in flight was finished and, on rank 0, a checkpoint
// written, from which `--resume` continues exactly.
type Interrupted struct {
	RunDir     string
	Checkpoint string // "" when training had not started
	Step       int
	Cause      error
}

func (e *Interrupted) Error() string {
	if e.Checkpoint == "" {
		return fmt.Sprintf("interrupted before the first step (%v); no checkpoint was written", e.Cause)
	}
	return fmt.Sprintf("interrupted (%v) after step %d; checkpoint %s written", e.Cause, e.Step, e.Checkpoint)
}

func (e *Interrupted) Unwrap() error { return e.Cause }

// Paths inside a run directory.
const (
	CheckpointsDir = "checkpoints"
	FinalDir       = "final"
	CurvesFile     = "curves.png"
	ConfigFile     = "config.json"
)

type trainer struct {
	cfg    Config
	out    io.Writer
	log    *progress
	lead   bool // rank 0: writes files, serves metrics
	ckRoot string

	dev       kernels.Device
	closeDev  func()
	model     *models.Model
	params    []*nn.Param
	grads     []kernels.Buffer
	gradIndex map[*nn.Param]int // trainable parameter → its index in grads
	readyHook func(nn.Module)   // t.gradsReady, made once: a method value allocates
	early     [1]kernels.Buffer // the optimizer's EarlyStats, passed without a new slice
	bufParams []*nn.Param
	shadow    []kernels.Buffer // copies of the buffers, restored on a skipped step
	opt       mac.Optimizer
	sched     mac.Schedule
	lossFn    *nn.CrossEntropyLoss
	evalLoss  *nn.CrossEntropyLoss
	inputs    map[int]*nn.Tensor // by batch size

	padLoss *nn.CrossEntropyLoss // lossFn's twin for the samples of a batch that are not padding
	numReal int                  // of this rank's samples per epoch, those that are not padding

	trainSet, testSet   data.Dataset
	bad                 []*skipBad // with SkipBad: the train and test sets
	loader, testLoader  data.Batches
	nb, total, maxSteps int

	settings Settings
	st       RunState
	lastCkpt string
	lastKey  [3]int // step, epoch and epoch step of lastCkpt
	metrics  *metrics

	lastLoss, lastAcc, lastLR float64

	rc recipe // the ImageNet recipe's parts (recipe.go)

	// hookStep, for tests, runs after every step.
	hookStep func(t *trainer)
}

// Run trains as cfg says, writing the per-epoch JSON lines to out and
// everything else under cfg.RunDir (rank 0). It returns an *Interrupted
// when ctx is cancelled, after saving a checkpoint.
func Run(ctx context.Context, cfg Config, out io.Writer) error {
	t, err := newTrainer(cfg, out)
	if err != nil {
		return err
	}
	defer t.close()
	return t.run(ctx)
}

func newTrainer(cfg Config, out io.Writer) (*trainer, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if out == nil {
		out = io.Discard
	}
	t := &trainer{
		cfg: cfg, out: out, lead: cfg.Rank == 0, lastKey: [3]int{-1, -1, -1},
		ckRoot:   filepath.Join(cfg.RunDir, CheckpointsDir),
		settings: cfg.settings(),
		inputs:   map[int]*nn.Tensor{},
		closeDev: func() {},
	}
	t.log = newProgress(cfg.Progress, cfg.ProgressMode, cfg.LogEvery, cfg.now)
	if !t.lead {
		t.log.mode = "none"
	}
	ok := false
	defer func() {
		if !ok {
			t.close()
		}
	}()
	// Through locals: on failure NewDevice returns a nil close, which must
	// not replace the no-op that t.close calls.
	dev, closeDev, err := NewDevice(cfg.Device)
	if err != nil {
		return nil, err
	}
	t.dev, t.closeDev = dev, closeDev
	if err := SetPrecision(dev, cfg.Precision); err != nil {
		return nil, err
	}
	if cfg.openData != nil {
		t.trainSet, t.testSet, err = cfg.openData()
	} else {
		t.trainSet, t.testSet, err = OpenData(DataSpec{
			Spec: cfg.Data, DatasetsDir: cfg.DatasetsDir, Augment: cfg.Augment, Normalize: cfg.Normalize,
			Seed: cfg.Seed, Subset: cfg.Subset, TestSubset: cfg.TestSubset,
			AutoAugment: cfg.AutoAugment, RandomErase: cfg.RandomErase, // recipe
		})
	}
	if err != nil {
		return nil, err
	}
	if _, stream := t.trainSet.(*data.ShardSet); cfg.SkipBad && !stream { // a stream skips bad samples itself
		t.bad = []*skipBad{{Dataset: t.trainSet, log: cfg.Logger}, {Dataset: t.testSet, log: cfg.Logger}}
		t.trainSet, t.testSet = t.bad[0], t.bad[1]
	}
	if t.model, err = BuildModel(t.dev, cfg.Model, t.trainSet, ModelOptions{Depth: cfg.Depth, Patch: cfg.Patch, Seed: cfg.Seed, DropPath: cfg.DropPath}); err != nil {
		return nil, err
	}
	t.params = t.model.Params()
	t.gradIndex = map[*nn.Param]int{}
	for _, p := range t.params {
		if p.Grad != nil {
			t.gradIndex[p] = len(t.grads)
			t.grads = append(t.grads, p.Grad.Data)
		}
		if p.Kind == nn.KindBuffer {
			t.bufParams = append(t.bufParams, p)
			t.shadow = append(t.shadow, t.dev.Alloc(p.Value.Len()))
		}
	}
	if t.opt, err = newOptimizer(t.dev, t.model, cfg); err != nil {
		return nil, err
	}
	t.lossFn = nn.NewCrossEntropyLoss(t.dev, float32(cfg.LabelSmoothing))
	t.evalLoss = nn.NewCrossEntropyLoss(t.dev, 0)
	t.padLoss = nn.NewCrossEntropyLoss(t.dev, float32(cfg.LabelSmoothing))
	if err := t.setupRecipe(); err != nil {
		return nil, err
	}

	stream := data.StreamConfig{SkipBad: cfg.SkipBad, ShuffleBuffer: cfg.ShuffleBuffer}
	if t.loader, err = data.NewBatches(t.trainSet, data.LoaderConfig{
		BatchSize: cfg.Batch, Rank: cfg.Rank, World: cfg.World, Shuffle: cfg.Shuffle, Seed: cfg.Seed, Workers: cfg.Workers,
		Repeats: cfg.repeats(), // recipe: --repeated-aug
	}, stream); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	if t.testLoader, err = data.NewBatches(t.testSet, data.LoaderConfig{
		BatchSize: cfg.Batch, Rank: cfg.Rank, World: cfg.World, NoAugment: true, Workers: cfg.Workers,
	}, stream); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	t.nb = t.loader.Len()
	t.numReal = t.loader.NumReal()
	t.total = cfg.Epochs * t.nb
	t.maxSteps = t.total
	if cfg.MaxSteps > 0 {
		t.maxSteps = cfg.MaxSteps
	}
	warm := int(math.Round(cfg.Warmup * float64(t.nb)))
	if t.sched, err = mac.NewSchedule(cfg.Schedule, cfg.LR, 0, t.total, warm); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	t.st = RunState{Seed: cfg.Seed, ConfigHash: t.settings.Hash(), Model: cfg.Model, Optimizer: cfg.Optimizer, Settings: &t.settings}
	ok = true
	return t, nil
}

func (t *trainer) close() {
	if t.metrics != nil {
		t.metrics.close()
	}
	if t.loader != nil {
		t.loader.Close()
	}
	if t.testLoader != nil {
		t.testLoader.Close()
	}
	t.closeDev()
}

func (t *trainer) run(ctx context.Context) error {
	cfg := t.cfg
	if t.lead {
		if err := os.MkdirAll(cfg.RunDir, 0o755); err != nil {
			return fmt.Errorf("train: run directory: %w", err)
		}
	}
	if cfg.MetricsAddr != "" {
		// Every rank serves its own series (the launcher gives each a port).
		t.metrics = newMetrics(map[string]string{"model": cfg.Model, "optimizer": cfg.Optimizer, "data": cfg.Data}, cfg.Rank, cfg.Reducer)
		if err := t.metrics.serve(cfg.MetricsAddr); err != nil {
			return err
		}
		t.log.printf("metrics: http://%s/metrics", t.metrics.addr())
	}
	ranks := ""
	if cfg.World > 1 {
		ranks = fmt.Sprintf(" × %d ranks", cfg.World)
	}
	t.log.printf("training %s (%d parameters) on %s with %s: %d epochs of %d steps, batch %d%s, %s, %s; run directory %s",
		cfg.Model, t.model.NumParams(), cfg.Data, cfg.Optimizer, cfg.Epochs, t.nb, cfg.Batch, ranks, t.dev.Name(),
		kernels.DescribePrecision(t.dev), cfg.RunDir)
	if err := t.start(ctx); err != nil {
		return err
	}

	runStart := cfg.now()
	startStep := t.st.Step
	var seen int64
	for t.st.Epoch < cfg.Epochs && t.st.Step < t.maxSteps {
		e := t.st.Epoch
		// A resumed epoch's first batches were trained on before: start
		// after them (the order is a function of seed and epoch; a shard
		// stream restores its position from the checkpoint, or else reads
		// them again to refill its shuffle buffer, without decoding them).
		restored := false
		if s, ok := t.loader.(*data.StreamLoader); ok && t.st.Stream != nil && t.lead {
			err := s.StartFrom(context.Background(), e, t.st.EpochStep, t.st.Stream)
			switch {
			case err == nil:
				restored = true
			case errors.Is(err, data.ErrStreamWorldChanged):
				// An elastic re-formation: the shards are dealt to the
				// new ranks, which each skip their share of the batches
				// already trained on.
				t.cfg.Logger.Warn("the world changed since the checkpoint: the epoch's shards are dealt anew to the ranks", "err", err)
			default:
				return fmt.Errorf("train: resuming the shard stream from the checkpoint: %w", err)
			}
		}
		if !restored {
			if err := t.loader.StartAt(context.Background(), e, t.st.EpochStep); err != nil {
				return fmt.Errorf("train: %w", err)
			}
		}
		t.st.Stream = nil
		if t.metrics != nil {
			t.metrics.epoch.Set(float64(e + 1))
		}
		for t.st.EpochStep < t.nb && t.st.Step < t.maxSteps {
			if ctx.Err() != nil {
				return t.interrupted(context.Cause(ctx))
			}
			if cfg.BeforeStep != nil {
				if err := cfg.BeforeStep(ctx, t.st.Step+1); err != nil {
					if ctx.Err() != nil {
						return t.interrupted(context.Cause(ctx))
					}
					return fmt.Errorf("train: before step %d: %w", t.st.Step+1, err)
				}
			}
			n, err := t.step()
			if err != nil {
				return err
			}
			seen += int64(n)
			if t.hookStep != nil {
				t.hookStep(t)
			}
			t.progress(runStart, startStep, seen)
			if cfg.CheckpointEvery > 0 && t.st.Step%cfg.CheckpointEvery == 0 && t.st.EpochStep < t.nb {
				if err := t.checkpoint(true); err != nil {
					return err
				}
			}
		}
		if t.st.EpochStep < t.nb {
			// --max-steps ended the run inside the epoch.
			break
		}
		if err := t.endEpoch(ctx); err != nil {
			return err
		}
	}
	if t.st.EpochStep > 0 && t.st.Epoch < cfg.Epochs {
		// The checkpoint first, as at an epoch's end.
		if err := t.checkpoint(true); err != nil {
			return err
		}
		if err := t.partialRecord(ctx); err != nil {
			return err
		}
	}
	return t.finish()
}

// start resumes from the newest checkpoint, or starts fresh: --init, then
// MAC's first-layer covariance. It never starts fresh over an earlier run
// unless told to (startOver).
func (t *trainer) start(ctx context.Context) error {
	cfg := t.cfg
	var err error
	if cfg.Resume {
		// find picks the checkpoint to resume from, on this rank's disk.
		find := func() findResult {
			dir, st, err := LatestCheckpoint(t.ckRoot, func(dir string, err error) {
				t.log.clear()
				cfg.Logger.Warn("skipping a checkpoint that is incomplete or corrupt", "dir", dir, "err", err)
			})
			if err != nil || dir == "" {
				return findResult{err: err}
			}
			if st.ConfigHash != t.settings.Hash() {
				msg := fmt.Sprintf("train: cannot resume from %s: it was written with other settings", dir)
				if st.Settings != nil {
					for _, d := range st.Settings.Diff(t.settings) {
						msg += "\n  " + d
					}
				}
				return findResult{err: errors.New(msg + "\nrun with the checkpoint's settings, or choose a new --run-dir")}
			}
			return findResult{dir: dir, step: st.Step}
		}
		var dir string
		b, together := cfg.Reducer.(Broadcaster)
		together = together && cfg.World > 1
		if together {
			// Every rank looks in its own run directory; the one
			// holding the newest checkpoint sends it to the others.
			mine := find()
			if mine.err != nil && !t.lead {
				cfg.Logger.Warn("no checkpoint to offer from this rank's run directory", "err", mine.err)
			}
			src, err := resumeSource(cfg.Reducer, cfg.Rank, cfg.World, mine)
			if err != nil {
				return err
			}
			var cleanup func()
			dir, cleanup, err = shareCheckpoint(b, cfg.Rank, src, mine)
			defer cleanup()
			if err != nil {
				return err
			}
			if src > 0 {
				t.log.printf("resuming from rank %d's copy of the newest checkpoint", src)
			}
		} else if mine := find(); mine.err != nil {
			return mine.err
		} else {
			dir = mine.dir
		}
		if dir != "" {
			st, err := LoadCheckpoint(dir, t.dev, t.params, t.ckptOpt())
			if err != nil {
				return err
			}
			if st.ConfigHash != t.settings.Hash() {
				return fmt.Errorf("train: the checkpoint sent to rank %d was written with other settings than its own", cfg.Rank)
			}
			// Where the checkpoint lives in the run directory (ranks
			// that received it hold a temporary copy).
			dir = filepath.Join(t.ckRoot, CheckpointName(st.Step))
			t.st = st
			t.st.Settings = &t.settings
			t.lastCkpt, t.lastKey = dir, t.key()
			t.advanceDropout(st.Step * cfg.accum()) // recipe: one forward per micro-batch
			var behind error
			if t.lead && !cfg.Overwrite {
				behind = checkNotBehind(cfg.RunDir, dir, st)
			}
			if err := t.agree(together, behind, "resume"); err != nil {
				return err
			}
			t.log.printf("resuming from %s: step %d, epoch %d, batch %d of %d", dir, st.Step, st.Epoch+1, st.EpochStep, t.nb)
			if t.lead {
				if err := rewriteMetrics(cfg.RunDir, t.st.History); err != nil {
					return err
				}
			}
			return t.writeConfig()
		}
		// No rank holds a usable checkpoint: every rank gets here.
		if err := t.startOver(true, together); err != nil {
			return err
		}
		t.log.printf("no complete checkpoint in %s: starting from scratch", t.ckRoot)
	} else if err := t.startOver(false, false); err != nil {
		return err
	}
	loadInit := func() error {
		if cfg.Init == "" {
			return nil
		}
		if err := LoadInit(t.dev, cfg.Init, t.params); err != nil {
			return err
		}
		t.log.printf("initial weights from %s", cfg.Init)
		return nil
	}
	if b, ok := cfg.Reducer.(Broadcaster); ok && cfg.World > 1 {
		// Rank 0's weights, whatever the others' --init or seed would give.
		err = shareParams(b, t.lead, t.dev, t.params, loadInit)
	} else {
		err = loadInit()
	}
	if err != nil {
		return err
	}
	if t.rc.ema != nil {
		t.rc.ema.reset() // recipe: the average starts from the shared weights
	}
	if t.lead {
		// A previous run's log in the same directory would mix with this one.
		if err := rewriteMetrics(cfg.RunDir, nil); err != nil {
			return err
		}
	}
	if err := t.firstLayerCovariance(ctx); err != nil {
		return err
	}
	return t.writeConfig()
}

// startOver checks that starting from scratch loses nothing: this rank's
// run directory must hold no earlier run, unless Config.Overwrite, which
// then clears it. resuming says a resume found no usable checkpoint;
// together, that every rank decides as one, before any clears its
// directory: they all refuse, or none does, the rank whose directory holds
// a run giving the details.
func (t *trainer) startOver(resuming, together bool) error {
	p, err := findPriorRun(t.cfg.RunDir)
	refuse := err
	if err == nil && !p.empty() && !t.cfg.Overwrite {
		if resuming {
			refuse = errNoUsableCheckpoint(t.cfg.RunDir, p)
		} else {
			refuse = errPriorRun(t.cfg.RunDir, p)
		}
	}
	if err := t.agree(together, refuse, "start from scratch"); err != nil {
		return err
	}
	if !p.empty() {
		if err := clearRun(t.cfg.RunDir, t.lead); err != nil {
			return err
		}
		t.log.printf("--overwrite: deleted the earlier run in %s (%s)", t.cfg.RunDir, p)
	}
	return nil
}

// agree returns refuse, or, when together and another rank refuses, an
// error naming it: every rank calls it at the same point, so that all of
// them stop, or none does.
func (t *trainer) agree(together bool, refuse error, what string) error {
	if !together {
		return refuse
	}
	votes := make([]float64, t.cfg.World)
	if refuse != nil {
		votes[t.cfg.Rank] = 1
	}
	if err := t.cfg.Reducer.AllReduceSum64(votes); err != nil {
		return fmt.Errorf("train: asking the ranks whether to %s: %w", what, err)
	}
	for r, v := range votes {
		if v > 0 && refuse == nil {
			return fmt.Errorf("train: not going to %s: rank %d refuses to (its error says why); nothing was changed", what, r)
		}
	}
	return refuse
}

// runConfig is config.json as writeConfig writes it.
type runConfig struct {
	Settings
	Device          string `json:"device"`
	Precision       string `json:"precision"`
	MaxSteps        int    `json:"max_steps"`
	Init            string `json:"init,omitempty"`
	CheckpointEvery int    `json:"checkpoint_every"`
	Keep            int    `json:"keep"`
	Workers         int    `json:"workers"`
	TestSubset      int    `json:"test_subset"`
	ConfigHash      string `json:"config_hash"`
}

// writeConfig records the run's configuration for people and for eval.
func (t *trainer) writeConfig() error {
	if !t.lead {
		return nil
	}
	c := t.cfg
	js, err := json.MarshalIndent(runConfig{t.settings, c.Device, kernels.PrecisionOf(t.dev).String(), c.MaxSteps, c.Init, c.CheckpointEvery, c.Keep, c.Workers, c.TestSubset, t.settings.Hash()}, "", "  ")
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	return writeFileAtomic(filepath.Join(c.RunDir, ConfigFile), append(js, '\n'))
}

// advanceDropout puts every dropout layer's seed where step training
// forwards would have left it, so that a resumed run draws the same masks.
func (t *trainer) advanceDropout(steps int) {
	nn.Walk(t.model, func(m nn.Module) {
		switch d := m.(type) {
		case *nn.Dropout:
			d.Seed += uint64(steps)
		case *nn.DropPath:
			d.Seed += uint64(steps)
		}
	})
}

// firstLayerCovariance gives MAC's first layer its input covariance, from a
// pass over this rank's shard of the training set (normalised, not
// augmented), summed over ranks.
func (t *trainer) firstLayerCovariance(ctx context.Context) error {
	m, ok := t.opt.(*mac.MAC)
	if !ok {
		return nil
	}
	layer := m.FirstLayer()
	if layer == nil {
		return nil
	}
	c, h, w := t.trainSet.Shape()
	switch l := layer.(type) {
	case *nn.Conv2d:
		if l.Config().In != c {
			return fmt.Errorf("train: first-layer covariance: %s takes %d channels, the images have %d; the first layer must see the images (or pass --first-layer-cov=false)", l.Weight().Name, l.Config().In, c)
		}
	case *nn.Linear:
		if din := layer.TapDim() - btoi(layer.Bias() != nil); din != c*h*w {
			return fmt.Errorf("train: first-layer covariance: %s takes %d inputs, the images have %d values; the first layer must see the images (or pass --first-layer-cov=false)", l.Weight().Name, din, c*h*w)
		}
	}
	acc, err := mac.NewCovarianceAccumulator(t.dev, layer)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	ld, err := data.NewBatches(t.trainSet, data.LoaderConfig{
		BatchSize: t.cfg.Batch, Rank: t.cfg.Rank, World: t.cfg.World, NoAugment: true, Workers: t.cfg.Workers,
		DropLast: t.cfg.World > 1, // every sample once across ranks
	}, data.StreamConfig{SkipBad: t.cfg.SkipBad})
	if err != nil {
		return fmt.Errorf("train: first-layer covariance: %w", err)
	}
	defer ld.Close()
	t0 := t.cfg.now()
	if err := ld.Start(ctx, 0); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	for {
		b, err := ld.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return &Interrupted{RunDir: t.cfg.RunDir, Cause: context.Cause(ctx)}
			}
			return fmt.Errorf("train: first-layer covariance: %w", err)
		}
		acc.Add(t.upload(b))
	}
	sum, rows := acc.Sum()
	all := append(append([]float64(nil), sum...), rows)
	if err := t.cfg.Reducer.AllReduceSum64(all); err != nil {
		return fmt.Errorf("train: first-layer covariance: %w", err)
	}
	if err := m.SetFirstLayerCovariance(all[:len(sum)], all[len(sum)]); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	t.log.printf("first-layer covariance of %s: %.0f rows in %.1fs", layer.Weight().Name, all[len(sum)], t.cfg.now().Sub(t0).Seconds())
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// upload copies a batch into the device tensor kept for its size.
func (t *trainer) upload(b *data.Batch) *nn.Tensor {
	x, ok := t.inputs[b.N]
	if !ok {
		x = nn.NewTensor(t.dev, b.N, b.C, b.H, b.W)
		t.inputs[b.N] = x
	}
	t.dev.Upload(x.Data, b.X)
	return x
}

// step trains on the next batch and returns its size.
func (t *trainer) step() (int, error) {
	t0 := t.cfg.now()
	b, err := t.loader.Next()
	if err != nil {
		if err == io.EOF {
			err = errors.New("the loader ended the epoch early")
		}
		return 0, fmt.Errorf("train: epoch %d, batch %d: %w", t.st.Epoch+1, t.st.EpochStep, err)
	}
	t1 := t.cfg.now()
	t.mixBatch(b) // recipe: mixup and CutMix
	for i, p := range t.bufParams {
		t.dev.Copy(t.shadow[i], p.Value.Data)
	}
	nn.ZeroGrad(t.dev, t.params)
	t.opt.BeginStep()
	// recipe: --grad-accum-steps splits the batch into k micro-batches,
	// each weighted by its share w of the batch; k is 1 without it.
	overlap, _ := t.cfg.Reducer.(OverlapReducer)
	k := t.microBatches(b)
	var loss, w float64
	var correct int
	// The epoch's numbers count each sample once: the samples the sampler
	// repeats to even out the ranks' shares train (as in PyTorch) but do
	// not count. They are the tail of this rank's last batch.
	nreal := min(b.N, max(0, t.numReal-b.Step*t.cfg.Batch))
	var realLoss float64
	var realCorrect int
	for m := range k {
		mb, lo := t.microBatch(b, m, k)
		w = float64(mb.N) / float64(b.N)
		logits := t.model.Forward(t.upload(mb))
		l, c := t.lossForward(logits, mb, lo)
		loss += l * w
		correct += c
		if n := min(mb.N, max(0, nreal-lo)); n == mb.N {
			realLoss += l * float64(n)
			realCorrect += c
		} else {
			hl, hc := t.headLoss(logits, mb, lo, n)
			realLoss += hl * float64(n)
			realCorrect += hc
		}
		if es, ok := t.opt.(mac.EarlyStatser); ok {
			// Before backward, so that no bucket is in flight: one small
			// collective on the steps that collect (MAC's mean attention).
			if t.early[0] = es.EarlyStats(); t.early[0] != nil {
				if err := t.cfg.Reducer.AllReduceMean(t.early[:]...); err != nil {
					return 0, fmt.Errorf("train: all-reduce of early statistics at step %d: %w", t.st.Step, err)
				}
			}
		}
		if overlap != nil && m == k-1 {
			if err := overlap.StartStep(t.dev, t.grads); err != nil {
				return 0, fmt.Errorf("train: all-reduce at step %d: %w", t.st.Step, err)
			}
			if t.readyHook == nil {
				t.readyHook = t.gradsReady
			}
			t.model.SetBackwardHook(t.readyHook)
		}
		t.model.Backward(t.lossBackward(w))
		t.model.SetBackwardHook(nil)
		if m < k-1 {
			t.accumulateStats(m, w)
		}
	}
	if k < t.cfg.accum() {
		t.advanceDropout(t.cfg.accum() - k) // every step moves dropout's seeds alike
	}
	stats := t.stepStats(k, w)
	finite := !math.IsNaN(loss) && !math.IsInf(loss, 0)
	if !finite && len(t.grads) > 0 {
		// The optimizer decides skips from the gradients, which the
		// all-reduce makes the same on every rank; a bad loss on this
		// rank poisons them so that every rank skips together. The first
		// gradient rides in the last bucket, which leaves only when the
		// step finishes, so this is in time even with overlap.
		t.dev.Fill(t.grads[0], float32(math.NaN()))
	}
	if overlap != nil {
		if err := overlap.FinishStep(stats); err != nil {
			return 0, fmt.Errorf("train: all-reduce of gradients and statistics at step %d: %w", t.st.Step, err)
		}
	} else if sr, ok := t.cfg.Reducer.(StepReducer); ok {
		if err := sr.ReduceStep(t.dev, t.grads, stats); err != nil {
			return 0, fmt.Errorf("train: all-reduce of gradients and statistics at step %d: %w", t.st.Step, err)
		}
	} else {
		if err := t.cfg.Reducer.AllReduceMean(t.grads...); err != nil {
			return 0, fmt.Errorf("train: all-reduce of gradients at step %d: %w", t.st.Step, err)
		}
		if stats != nil {
			if err := t.cfg.Reducer.AllReduceMean(stats); err != nil {
				return 0, fmt.Errorf("train: all-reduce of statistics at step %d: %w", t.st.Step, err)
			}
		}
	}
	if t.rc.clip != nil {
		t.rc.clip.clip(t.cfg.ClipGrad) // recipe: the same averaged gradients, the same norm on every rank
	}
	lr := t.sched.LR(t.st.Step)
	skippedBefore := t.opt.Skipped()
	t2 := t.cfg.now()
	stepErr := t.opt.Step(lr)
	t3 := t.cfg.now()
	skipped := t.opt.Skipped() > skippedBefore
	if skipped {
		// A skipped step changes nothing, BatchNorm's running statistics
		// included: they saw the bad batch in the forward pass.
		for i, p := range t.bufParams {
			t.dev.Copy(p.Value.Data, t.shadow[i])
		}
		t.st.Running.NaNSkips++
	}
	if stepErr != nil {
		return 0, fmt.Errorf("train: step %d (epoch %d): %w; the last checkpoint is %s — lower --lr or check the data",
			t.st.Step, t.st.Epoch+1, stepErr, orNone(t.lastCkpt))
	}
	if t.rc.ema != nil {
		t.rc.ema.update() // recipe: timm updates the average after every step
	}
	if err := t.dev.Sync(); err != nil {
		return 0, fmt.Errorf("train: step %d: %w", t.st.Step, err)
	}
	t4 := t.cfg.now()
	r := &t.st.Running
	if finite {
		r.LossSum += realLoss
		r.Correct += int64(realCorrect)
		r.Samples += int64(nreal)
	}
	r.Seen += int64(b.N)
	r.Seconds += t4.Sub(t0).Seconds()
	t.st.Step++
	t.st.EpochStep++
	if t.cfg.OnStep != nil {
		t.cfg.OnStep(t.st.Step)
	}
	if m := t.metrics; m != nil {
		m.dataWait.Observe(t1.Sub(t0).Seconds())
		m.stepTime.Observe(t4.Sub(t1).Seconds())
		m.optTime.Observe(t3.Sub(t2).Seconds())
		if finite {
			m.loss.Set(loss)
		}
		m.acc.Set(float64(correct) / float64(b.N))
		m.lr.Set(lr)
		m.step.Set(float64(t.st.Step))
		m.samples.Add(float64(b.N))
		m.steps.Inc()
		if skipped {
			m.nanSkips.Inc()
		}
	}
	t.lastLoss, t.lastAcc, t.lastLR = loss, float64(correct)/float64(b.N), lr
	return b.N, nil
}

// headLoss is the loss and correct count of the first n rows of logits of
// micro-batch mb (which starts at row lo of the step's batch): the samples
// that are not padding (n may be 0). Its own loss functions keep the
// training loss's state for backward.
func (t *trainer) headLoss(logits *nn.Tensor, mb *data.Batch, lo, n int) (float64, int) {
	if n == 0 {
		return 0, 0
	}
	cols := logits.Shape[len(logits.Shape)-1]
	// Once an epoch at most, on ranks with padding: a new view is cheap.
	head := &nn.Tensor{Shape: []int{n, cols}, Data: t.dev.View(logits.Data, 0, n*cols)}
	if t.rc.softLoss != nil {
		if t.rc.padSoft == nil {
			t.rc.padSoft = nn.NewSoftTargetCrossEntropy(t.dev)
		}
		k := t.rc.mix.Classes
		return t.rc.padSoft.Forward(head, t.rc.targets[lo*k:(lo+n)*k])
	}
	return t.padLoss.Forward(head, mb.Y[:n])
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func (t *trainer) progress(runStart time.Time, startStep int, seen int64) {
	done := t.st.Step - startStep
	spent := t.cfg.now().Sub(runStart).Seconds()
	var sps float64
	if done > 0 {
		sps = spent / float64(done)
	}
	r := t.st.Running
	loss, acc := t.lastLoss, t.lastAcc
	if r.Samples > 0 {
		loss, acc = r.LossSum/float64(r.Samples), float64(r.Correct)/float64(r.Samples)
	}
	t.log.update(status{
		epoch: t.st.Epoch + 1, epochs: t.cfg.Epochs, estep: t.st.EpochStep, nb: t.nb,
		step: t.st.Step, total: t.maxSteps, loss: loss, acc: acc, lr: t.lastLR,
		seen: seen, remainingSteps: t.maxSteps - t.st.Step, secondsPerStep: sps,
	})
}

// endEpoch evaluates, records the epoch and checkpoints it.
func (t *trainer) endEpoch(ctx context.Context) error {
	rec, err := t.record(ctx)
	if err != nil {
		return err
	}
	t.st.History = append(t.st.History, rec)
	t.st.Epoch++
	t.st.EpochStep = 0
	t.st.Running = EpochSums{}
	// The checkpoint first: a record in metrics.jsonl then always has a
	// checkpoint behind it, so that a run stopped in between resumes
	// (start refuses a directory with records and no checkpoint).
	if err := t.checkpoint(true); err != nil {
		return err
	}
	return t.emit(rec)
}

// partialRecord reports an epoch that --max-steps cut short; it stays out
// of the history.
func (t *trainer) partialRecord(ctx context.Context) error {
	rec, err := t.record(ctx)
	if err != nil {
		return err
	}
	rec.Partial = true
	return t.emit(rec)
}

// record evaluates the model and sums up the epoch so far.
func (t *trainer) record(ctx context.Context) (EpochRecord, error) {
	r := t.st.Running
	sums := []float64{r.LossSum, float64(r.Correct), float64(r.Samples), float64(r.Seen)}
	if err := t.cfg.Reducer.AllReduceSum64(sums); err != nil {
		return EpochRecord{}, fmt.Errorf("train: epoch %d: %w", t.st.Epoch+1, err)
	}
	t0 := t.cfg.now()
	ev, err := evaluate(ctx, t.dev, t.model, t.testLoader, t.evalLoss, t.cfg.Reducer, t.upload)
	if err != nil {
		if ctx.Err() != nil {
			return EpochRecord{}, t.interrupted(context.Cause(ctx))
		}
		return EpochRecord{}, err
	}
	rec := EpochRecord{
		Epoch: t.st.Epoch + 1, Step: t.st.Step,
		TrainLoss: finiteOr0(sums[0] / sums[2]), TrainAcc: finiteOr0(sums[1] / sums[2]),
		TestLoss: finiteOr0(ev.Loss), TestAcc: ev.Accuracy,
		LR: t.lastLR, EpochTime: r.Seconds, EvalTime: t.cfg.now().Sub(t0).Seconds(),
		NaNSkips: r.NaNSkips,
	}
	if r.Seconds > 0 {
		rec.ImgPerS = sums[3] / r.Seconds
	}
	if m := t.metrics; m != nil {
		m.testLoss.Set(ev.Loss)
		m.testAcc.Set(ev.Accuracy)
	}
	if err := t.evaluateEMA(ctx, &rec); err != nil { // recipe: --model-ema
		if ctx.Err() != nil {
			return EpochRecord{}, t.interrupted(context.Cause(ctx))
		}
		return EpochRecord{}, err
	}
	return rec, nil
}

// emit writes an epoch's record: stdout, metrics.jsonl, curves.png.
func (t *trainer) emit(rec EpochRecord) error {
	if !t.lead {
		return nil
	}
	t.log.clear()
	if _, err := t.out.Write(rec.line()); err != nil {
		return fmt.Errorf("train: writing the epoch record: %w", err)
	}
	if err := appendMetrics(t.cfg.RunDir, rec); err != nil {
		return err
	}
	recs := t.st.History
	if rec.Partial {
		recs = append(recs[:len(recs):len(recs)], rec)
	}
	png, err := PlotCurves(fmt.Sprintf("%s, %s, %s", t.cfg.Model, t.cfg.Data, t.cfg.Optimizer), Series{Records: recs})
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(t.cfg.RunDir, CurvesFile), png)
}

// checkpoint saves the current state on rank 0, unless it is saved
// already. scheduled says every rank calls it at this step (an epoch's end,
// --checkpoint-every), not on an interruption of this rank alone: then,
// with ReplicateCheckpoints, rank 0 sends the checkpoint to every rank and
// those with KeepReplicas write their copy.
func (t *trainer) checkpoint(scheduled bool) error {
	if t.lastKey == t.key() {
		return nil
	}
	var dir string
	var err error
	if t.lead {
		t0 := t.cfg.now()
		st := t.st
		if s, ok := t.loader.(*data.StreamLoader); ok {
			if st.Stream, err = s.State(st.Epoch, st.EpochStep); err != nil {
				t.cfg.Logger.Warn("the checkpoint holds no shard-stream position; resuming will re-read the epoch's head", "err", err)
				st.Stream, err = nil, nil
			}
		}
		dir, err = SaveCheckpoint(t.ckRoot, t.dev, t.params, t.ckptOpt(), st, t.cfg.Keep)
		if err == nil {
			if m := t.metrics; m != nil {
				m.ckptTime.Observe(t.cfg.now().Sub(t0).Seconds())
				m.checkpoints.Inc()
			}
		}
	}
	b, ok := t.cfg.Reducer.(Broadcaster)
	if scheduled && ok && t.cfg.ReplicateCheckpoints && t.cfg.World > 1 {
		var copyDir string
		copyDir, err = replicateCheckpoint(b, t.lead, dir, err, t.ckRoot, t.cfg.KeepReplicas, t.cfg.Keep)
		if !t.lead && copyDir != "" {
			t.lastCkpt = copyDir
		}
	}
	if err != nil {
		return err
	}
	if t.lead {
		t.lastCkpt = dir
	}
	t.lastKey = t.key()
	return nil
}

// key identifies a position in training: two checkpoints with the same
// key hold the same state.
func (t *trainer) key() [3]int { return [3]int{t.st.Step, t.st.Epoch, t.st.EpochStep} }

// interrupted saves where the run stands and says so.
func (t *trainer) interrupted(cause error) error {
	t.log.clear()
	if err := t.checkpoint(false); err != nil {
		return fmt.Errorf("train: interrupted, and the checkpoint failed: %w", err)
	}
	return &Interrupted{RunDir: t.cfg.RunDir, Checkpoint: t.lastCkpt, Step: t.st.Step, Cause: cause}
}

// finish writes the final weights.
func (t *trainer) finish() error {
	if !t.lead {
		return nil
	}
	dir := filepath.Join(t.cfg.RunDir, FinalDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	path := filepath.Join(dir, modelFile)
	if err := nn.SaveParams(t.dev, path, t.params); err != nil {
		return fmt.Errorf("train: final model: %w", err)
	}
	if err := t.saveEMA(dir); err != nil {
		return err
	}
	t.log.printf("done: %d steps; final weights in %s", t.st.Step, path)
	if len(t.bad) > 0 && t.bad[0].Bad()+t.bad[1].Bad() > 0 {
		t.log.printf("--skip-bad: %d unreadable training and %d evaluation samples were replaced", t.bad[0].Bad(), t.bad[1].Bad())
	}
	if s, ok := t.loader.(*data.StreamLoader); ok && s.Skipped() > 0 {
		t.log.printf("--skip-bad: %d undecodable training samples were replaced", s.Skipped())
	}
	return nil
}

// gradsReady is the backward hook of a data-parallel step: the module's
// gradients are final, so their buckets may go out while backward goes on.
func (t *trainer) gradsReady(m nn.Module) {
	r := t.cfg.Reducer.(OverlapReducer)
	for _, p := range m.Params() {
		if i, ok := t.gradIndex[p]; ok {
			r.GradReady(i)
		}
	}
}
