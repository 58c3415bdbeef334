package train

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/macdist/macdist/data"
	"github.com/macdist/macdist/mac"
)

// Config is everything a training run is told. DefaultConfig holds MAC's
// defaults; OptimizerDefaults gives another method's.
type Config struct {
	// Model is a name of models.Names(); its input shape and class count are
	// taken from the dataset.
	Model string
	// Depth and Patch, when positive, override the model's depth (layers
	// or blocks) and a ViT's patch size.
	Depth, Patch int
	// Data is a data.Open spec ("fashion-mnist", "cifar10:DIR", …).
	Data string
	// DatasetsDir is where bare dataset names are looked for; empty means
	// /usr/share/datasets.
	DatasetsDir string
	// Augment is the training set's augmentation: "default", "none" or
	// "crop-flip" (data.ParseAugment).
	Augment string
	// Normalize names the normalisation statistics: "" or "default" for the
	// dataset's own, "none", or a dataset's name such as "cifar10"
	// (data.ParseStats).
	Normalize string
	// Subset and TestSubset, when positive, keep only the first that many
	// training and evaluation samples: for quick runs and tests.
	Subset, TestSubset int
	// SkipBad replaces unreadable samples (a corrupt image in an
	// ImageFolder) by the next readable one and reports each, instead of
	// failing the run.
	SkipBad bool
	// Device is "cpu", "cuda" or "cuda:N".
	Device string
	// Precision is "fp32" (the default, also "") or "bf16": mixed
	// precision as torch.autocast has it, on a device that offers it
	// (kernels.MixedPrecision). It is not a Setting: weights, gradients
	// and checkpoints are float32 either way, so a run resumes in the
	// other precision.
	Precision string

	// Optimizer is "mac", "sgd", "adamw", "kfac", "eva" or "foof".
	Optimizer     string
	LR            float64
	Momentum      float64
	Nesterov      bool
	WeightDecay   float64
	DecoupledWD   bool
	Damping       float64
	StatDecay     float64
	TCov, TInv    int
	FirstLayerCov bool
	AttentionV    bool
	// KLClip is κ of KFAC, Eva and FOOF (0: off); Beta1, Beta2 and Eps are
	// AdamW's.
	KLClip, Beta1, Beta2, Eps float64
	// LabelSmoothing of the cross-entropy loss, in [0, 1).
	LabelSmoothing float64
	// DropPath is the stochastic depth rate of a ViT's, DeiT's or Swin's
	// last block (timm's drop_path_rate), in [0, 1).
	DropPath float64

	// The ImageNet recipe's parts (timm's names). NoDecayBNBias spares
	// biases, normalisation parameters and embeddings weight decay.
	NoDecayBNBias bool
	// ClipGrad, when positive, scales the rank-averaged gradients so that
	// their global L2 norm is at most ClipGrad (torch's clip_grad_norm_).
	ClipGrad float64
	// GradAccumSteps, when above 1, splits each rank's batch into that many
	// micro-batches whose gradients and MAC statistics are averaged before
	// one optimizer step: the step of the whole batch in less memory.
	GradAccumSteps int
	// ModelEMA keeps an exponential moving average of the weights, decay
	// ModelEMADecay per step (timm's ModelEmaV2), evaluated every epoch and
	// checkpointed beside the model.
	ModelEMA      bool
	ModelEMADecay float64
	// Mixup and Cutmix are the α of their Beta distributions (0: off);
	// MixupProb is the chance that a batch is mixed at all and
	// MixupSwitchProb the chance that CutMix is used when both are on.
	Mixup, Cutmix, MixupProb, MixupSwitchProb float64
	// AutoAugment is "", "rand-m9-mstd0.5" (RandAugment) or
	// "trivialaugment" (data.ParseAutoAugment); RandomErase the chance of
	// torchvision's RandomErasing per training sample.
	AutoAugment string
	RandomErase float64
	// RepeatedAug, above 1, is DeiT's repeated augmentation: each sample
	// RepeatedAug times per epoch, on different ranks, with epochs of
	// ⌊⌊N/256⌋·256/World⌋ samples per rank (data.Sampler.Repeats). On a
	// shard stream the copies stay on their rank: the shuffle buffer emits
	// each sample RepeatedAug times (data.StreamLoader).
	RepeatedAug int
	// LayerDecay, in (0, 1], scales a ViT's learning rates by depth as
	// timm's param_groups_layer_decay does: LayerDecay^(L+1−i) for block
	// i (from 1), ^(L+1) for the patch and position embeddings and 1 for
	// the final norm and head; it implies NoDecayBNBias, as there. 0: off.
	LayerDecay float64

	// Epochs fixes the length of the learning-rate schedule; MaxSteps, when
	// positive, stops earlier (or later: it may extend a resumed run) without
	// changing the schedule.
	Epochs, MaxSteps int
	// Batch is the per-rank batch size.
	Batch int
	// Schedule is "constant", "cosine" or "multistep"; Warmup is a linear
	// warmup in front of it, in epochs (fractions allowed).
	Schedule string
	Warmup   float64
	// Seed determines the initial weights, the data order and augmentation.
	Seed    uint64
	Shuffle bool
	// Init, when set, is a safetensors state_dict to start from.
	Init string

	// RunDir receives checkpoints, metrics.jsonl, curves.png and final/.
	RunDir string
	// Resume continues from the newest complete checkpoint in RunDir.
	Resume bool
	// Overwrite lets a run start from scratch in a RunDir that holds an
	// earlier one (records in metrics.jsonl, final weights, or checkpoints,
	// usable or not), deleting its checkpoints, final weights, metrics.jsonl
	// and curves.png first; without it such a start is refused and nothing
	// is changed. With Resume it lets the run resume from a checkpoint
	// older than the epochs metrics.jsonl records (newer ones damaged), and
	// start over when no checkpoint is usable.
	Overwrite bool
	// CheckpointEvery, when positive, writes a checkpoint every that many
	// steps, besides the one at each epoch's end; Keep bounds how many
	// complete ones stay (0 keeps all).
	CheckpointEvery, Keep int
	// MetricsAddr, when set, serves Prometheus metrics on /metrics there.
	MetricsAddr string
	// Workers decode samples concurrently; 0 means GOMAXPROCS.
	Workers int
	// ShuffleBuffer is the shuffle buffer of a shards:DIR training stream
	// (samples); 0 means 1000, negative none. It shapes the batches: keep
	// it across a resume.
	ShuffleBuffer int

	// Rank and World place this process in a data-parallel run (World 0
	// means 1); Reducer averages across ranks (nil means Local). Only rank 0
	// writes files (but see KeepReplicas) and serves metrics.
	Rank, World int
	Reducer     Reducer
	// ReplicateCheckpoints, the same on every rank, makes rank 0 send each
	// checkpoint of an epoch's end or of CheckpointEvery to every rank
	// (through a Reducer that is a Broadcaster); those with KeepReplicas
	// write their copy into their own RunDir, unless rank 0 has written it
	// there (a shared directory). A run whose nodes share no file system
	// then resumes from the newest copy when the node of rank 0 is lost,
	// instead of from scratch.
	ReplicateCheckpoints, KeepReplicas bool

	// Progress receives the progress bar or lines and the run's messages
	// (nil: discarded). ProgressMode is "auto" (a bar when Progress is a
	// terminal, lines otherwise), "bar", "lines" or "none". LogEvery is the
	// step interval of plain lines (0: a tenth of an epoch, and at least
	// every 30 s).
	Progress     io.Writer
	ProgressMode string
	LogEvery     int
	// Logger receives warnings (a skipped checkpoint, a skipped step); nil
	// writes them as text to Progress.
	Logger *slog.Logger
	// OnStep, when set, is called after every training step with the
	// number of steps taken (a launch worker reports it to its agent, for
	// `macdist status`). It must return quickly.
	OnStep func(step int)
	// BeforeStep, when set, is called before every training step with the
	// number of the step about to run; it may block, and an error from it
	// ends the run (cancelled ctx: as an interruption). It is the hook of
	// StepHold, for tests and operators that pause a run at a known step.
	BeforeStep func(ctx context.Context, step int) error

	// now is the clock and openData the datasets, replaced in tests.
	now      func() time.Time
	openData func() (train, test data.Dataset, err error)
}

// DefaultConfig returns MAC's defaults (shared/MAC.md), so that
// `macdist train --model lenet5 --data fashion-mnist` trains with nothing
// else given.
func DefaultConfig() Config {
	c := Config{
		Model:        "lenet5",
		Data:         "fashion-mnist",
		Augment:      "default",
		Device:       "cpu",
		Epochs:       10,
		Batch:        128,
		Schedule:     "cosine",
		Shuffle:      true,
		Keep:         3,
		ProgressMode: "auto",
		// timm's defaults; each applies only when its feature is on.
		ModelEMADecay:   0.9998,
		MixupProb:       1,
		MixupSwitchProb: 0.5,
	}
	o, _ := mac.DefaultOptions("mac")
	c.setHyper("mac", o)
	return c
}

// Optimizers lists the methods Run trains with.
var Optimizers = mac.Methods

// HyperFields maps the flags of `macdist train` that set a method's
// hyperparameters to their Config fields; a command line fills the ones
// the user did not give from OptimizerDefaults of the chosen method.
var HyperFields = map[string]string{
	"lr": "LR", "momentum": "Momentum", "nesterov": "Nesterov", "weight-decay": "WeightDecay",
	"decoupled-wd": "DecoupledWD", "damping": "Damping", "stat-decay": "StatDecay",
	"tcov": "TCov", "tinv": "TInv", "first-layer-cov": "FirstLayerCov", "attention-v": "AttentionV",
	"kl-clip": "KLClip", "beta1": "Beta1", "beta2": "Beta2", "eps": "Eps",
}

// withDefaults fills what the zero value leaves open.
func (c Config) withDefaults() Config {
	if c.World == 0 {
		c.World = 1
	}
	if c.Reducer == nil {
		c.Reducer = Local{}
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.ProgressMode == "" {
		c.ProgressMode = "auto"
	}
	if c.Device == "" {
		c.Device = "cpu"
	}
	if c.Augment == "" {
		c.Augment = "default"
	}
	if c.Logger == nil {
		c.Logger = NewLogger(c.Progress)
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

// Validate checks what Run can check before touching a file; each message
// names the flag.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error { return fmt.Errorf("train: "+format, args...) }
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case c.Model == "":
		return bad("--model is required")
	case c.Precision != "" && c.Precision != "fp32" && c.Precision != "bf16":
		return bad("--precision %q: want fp32 or bf16", c.Precision)
	case c.Data == "":
		return bad("--data is required")
	case c.Batch <= 0:
		return bad("--batch %d must be positive", c.Batch)
	case c.Epochs <= 0:
		return bad("--epochs %d must be positive", c.Epochs)
	case c.MaxSteps < 0:
		return bad("--max-steps %d is negative", c.MaxSteps)
	case !finite(c.LR) || c.LR < 0:
		return bad("--lr %v must be a finite number ≥ 0", c.LR)
	case !finite(c.Warmup) || c.Warmup < 0 || c.Warmup > float64(c.Epochs):
		return bad("--warmup %v must be within [0, --epochs %d]", c.Warmup, c.Epochs)
	case !(c.LabelSmoothing >= 0 && c.LabelSmoothing < 1):
		return bad("--label-smoothing %v outside [0, 1)", c.LabelSmoothing)
	case !(c.DropPath >= 0 && c.DropPath < 1):
		return bad("--drop-path %v outside [0, 1)", c.DropPath)
	case !finite(c.ClipGrad) || c.ClipGrad < 0:
		return bad("--clip-grad %v must be a finite number ≥ 0", c.ClipGrad)
	case c.GradAccumSteps < 0:
		return bad("--grad-accum-steps %d is negative", c.GradAccumSteps)
	case c.GradAccumSteps > c.Batch:
		return bad("--grad-accum-steps %d is more than the batch of %d per rank", c.GradAccumSteps, c.Batch)
	case !(c.ModelEMADecay >= 0 && c.ModelEMADecay < 1):
		return bad("--model-ema-decay %v outside [0, 1)", c.ModelEMADecay)
	case !finite(c.Mixup) || c.Mixup < 0 || !finite(c.Cutmix) || c.Cutmix < 0:
		return bad("--mixup %v and --cutmix %v must be finite numbers ≥ 0", c.Mixup, c.Cutmix)
	case !(c.MixupProb >= 0 && c.MixupProb <= 1) || !(c.MixupSwitchProb >= 0 && c.MixupSwitchProb <= 1):
		return bad("--mixup-prob %v and --mixup-switch-prob %v must be within [0, 1]", c.MixupProb, c.MixupSwitchProb)
	case !(c.LayerDecay >= 0 && c.LayerDecay <= 1):
		return bad("--layer-decay %v outside [0, 1]", c.LayerDecay)
	case c.RepeatedAug < 0:
		return bad("--repeated-aug %d is negative", c.RepeatedAug)
	case !(c.RandomErase >= 0 && c.RandomErase <= 1):
		return bad("--random-erase %v outside [0, 1]", c.RandomErase)
	case c.CheckpointEvery < 0:
		return bad("--checkpoint-every %d is negative", c.CheckpointEvery)
	case c.Keep < 0:
		return bad("--keep %d is negative", c.Keep)
	case c.Workers < 0:
		return bad("--workers %d is negative", c.Workers)
	case c.Depth < 0 || c.Patch < 0:
		return bad("--depth and --patch must not be negative")
	case c.Subset < 0 || c.TestSubset < 0:
		return bad("--subset and --test-subset must not be negative")
	case c.World < 0 || c.Rank < 0 || c.Rank >= max(c.World, 1):
		return bad("rank %d of world size %d", c.Rank, c.World)
	case c.RunDir == "":
		return bad("--run-dir is required")
	}
	switch c.ProgressMode {
	case "", "auto", "bar", "lines", "none":
	default:
		return bad("progress mode %q (want auto, bar, lines or none)", c.ProgressMode)
	}
	switch c.Schedule {
	case "constant", "cosine", "multistep":
	default:
		return bad("--lr-schedule %q (want constant, cosine or multistep)", c.Schedule)
	}
	if !contains(Optimizers, c.Optimizer) {
		return bad("unknown --optimizer %q (want %s)", c.Optimizer, strings.Join(Optimizers, ", "))
	}
	if err := c.macOptions().Validate(c.Optimizer); err != nil {
		var oe *mac.OptionError
		if errors.As(err, &oe) {
			// Name the flag, not the option: the user typed the flag.
			return bad("--%s %v %s (--optimizer %s)", strings.ReplaceAll(oe.Option, "_", "-"), oe.Value, oe.Problem, c.Optimizer)
		}
		return bad("%v", strings.TrimPrefix(err.Error(), "mac: "))
	}
	if _, err := data.ParseAugment(c.Augment); err != nil {
		return bad("--augment: %v", strings.TrimPrefix(err.Error(), "data: "))
	}
	if _, err := data.ParseAutoAugment(c.AutoAugment); err != nil {
		return bad("--auto-augment: %v", strings.TrimPrefix(err.Error(), "data: "))
	}
	if _, _, err := data.ParseStats(c.Normalize); err != nil {
		return bad("--normalize: %v", strings.TrimPrefix(err.Error(), "data: "))
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Settings are the parts of a Config that decide the trajectory of a run:
// a resumed run must have the same, or it would not continue the same
// computation. MaxSteps, checkpointing, workers, the device and the
// outputs may change between a run and its resumption, and so may the
// number of ranks as long as the global batch (Batch·World) stays: step s
// of W ranks with batch B holds the samples of step s of one process with
// batch W·B (the data package's sharding), so an elastic run that loses or
// gains a rank continues from the same position in the same epoch order.
type Settings struct {
	Model          string  `json:"model"`
	Depth          int     `json:"depth"`
	Patch          int     `json:"patch"`
	Data           string  `json:"data"`
	Augment        string  `json:"augment"`
	Normalize      string  `json:"normalize,omitempty"`
	Subset         int     `json:"subset"`
	Optimizer      string  `json:"optimizer"`
	LR             float64 `json:"lr"`
	Momentum       float64 `json:"momentum"`
	Nesterov       bool    `json:"nesterov"`
	WeightDecay    float64 `json:"weight_decay"`
	DecoupledWD    bool    `json:"decoupled_wd"`
	Damping        float64 `json:"damping"`
	StatDecay      float64 `json:"stat_decay"`
	TCov           int     `json:"tcov"`
	TInv           int     `json:"tinv"`
	FirstLayerCov  bool    `json:"first_layer_cov"`
	AttentionV     bool    `json:"attention_v"`
	KLClip         float64 `json:"kl_clip"`
	Beta1          float64 `json:"beta1"`
	Beta2          float64 `json:"beta2"`
	Eps            float64 `json:"eps"`
	LabelSmoothing float64 `json:"label_smoothing"`
	Epochs         int     `json:"epochs"`
	GlobalBatch    int     `json:"global_batch"`
	Schedule       string  `json:"lr_schedule"`
	Warmup         float64 `json:"warmup"`
	Seed           uint64  `json:"seed"`
	Shuffle        bool    `json:"shuffle"`
	// The recipe's settings are left out when off, so that checkpoints
	// written before they existed keep their hash.
	NoDecayBNBias   bool    `json:"no_decay_bn_bias,omitempty"`
	ClipGrad        float64 `json:"clip_grad,omitempty"`
	GradAccumSteps  int     `json:"grad_accum_steps,omitempty"`
	ModelEMA        bool    `json:"model_ema,omitempty"`
	ModelEMADecay   float64 `json:"model_ema_decay,omitempty"`
	Mixup           float64 `json:"mixup,omitempty"`
	Cutmix          float64 `json:"cutmix,omitempty"`
	MixupProb       float64 `json:"mixup_prob,omitempty"`
	MixupSwitchProb float64 `json:"mixup_switch_prob,omitempty"`
	AutoAugment     string  `json:"auto_augment,omitempty"`
	RandomErase     float64 `json:"random_erase,omitempty"`
	RepeatedAug     int     `json:"repeated_aug,omitempty"`
	LayerDecay      float64 `json:"layer_decay,omitempty"`
	DropPath        float64 `json:"drop_path,omitempty"`
}

func (c Config) settings() Settings {
	s := Settings{
		Model: c.Model, Depth: c.Depth, Patch: c.Patch, Data: c.Data, Augment: c.Augment, Normalize: c.Normalize, Subset: c.Subset, Optimizer: c.Optimizer,
		LR: c.LR, Momentum: c.Momentum, Nesterov: c.Nesterov, WeightDecay: c.WeightDecay, DecoupledWD: c.DecoupledWD,
		Damping: c.Damping, StatDecay: c.StatDecay, TCov: c.TCov, TInv: c.TInv,
		FirstLayerCov: c.FirstLayerCov, AttentionV: c.AttentionV,
		KLClip: c.KLClip, Beta1: c.Beta1, Beta2: c.Beta2, Eps: c.Eps, LabelSmoothing: c.LabelSmoothing,
		Epochs: c.Epochs, GlobalBatch: c.Batch * max(c.World, 1), Schedule: c.Schedule, Warmup: c.Warmup,
		Seed: c.Seed, Shuffle: c.Shuffle,
		NoDecayBNBias: c.NoDecayBNBias, ClipGrad: c.ClipGrad, GradAccumSteps: c.accumSteps(),
		AutoAugment: c.AutoAugment, RandomErase: c.RandomErase, RepeatedAug: c.repeats(),
		LayerDecay: c.LayerDecay, DropPath: c.DropPath,
	}
	if c.ModelEMA {
		s.ModelEMA, s.ModelEMADecay = true, c.ModelEMADecay
	}
	if c.mixing() {
		s.Mixup, s.Cutmix, s.MixupProb, s.MixupSwitchProb = c.Mixup, c.Cutmix, c.MixupProb, c.MixupSwitchProb
	}
	return s
}

// Hash is a short digest of s, recorded in every checkpoint.
func (s Settings) Hash() string {
	js, _ := json.Marshal(s)
	h := sha256.Sum256(js)
	return hex.EncodeToString(h[:8])
}

// Diff lists, sorted, the settings that differ between s and o as
// "name: s's value → o's value".
func (s Settings) Diff(o Settings) []string {
	var out []string
	a, b := reflect.ValueOf(s), reflect.ValueOf(o)
	t := a.Type()
	for i := range t.NumField() {
		x, y := a.Field(i).Interface(), b.Field(i).Interface()
		if x != y {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
			out = append(out, fmt.Sprintf("%s: %v → %v", name, x, y))
		}
	}
	sort.Strings(out)
	return out
}
