package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/macdist/macdist/nn/models"
	"github.com/macdist/macdist/train"
)

// trainFlags binds every `macdist train` flag to a train.Config.
func trainFlags(fs *flag.FlagSet, c *train.Config) {
	fs.StringVar(&c.Model, "model", c.Model, "model: "+strings.Join(models.Names(), ", "))
	fs.IntVar(&c.Depth, "depth", 0, "layers or blocks, where the model has the option (0: its default)")
	fs.IntVar(&c.Patch, "patch", 0, "ViT patch size in pixels (0: the model's default)")
	fs.StringVar(&c.Data, "data", c.Data, "dataset: fashion-mnist | fashion-mnist:DIR | mnist:DIR | cifar10:DIR | cifar100:DIR | imagefolder:PATH | synthetic:CxHxW:K:N")
	fs.StringVar(&c.DatasetsDir, "datasets-dir", "", "where bare dataset names are looked for (default /usr/share/datasets)")
	fs.StringVar(&c.Augment, "augment", c.Augment, "training augmentation: default (none for MNIST-like sets, crop+flip for CIFAR, random-resized-crop+flip for ImageFolder), none, or crop-flip (CIFAR's RandomCrop pad 4 + flip on any set, e.g. CIFAR-10 as JPEGs)")
	fs.StringVar(&c.Normalize, "normalize", "", "normalisation statistics: empty or default (the dataset's own; ImageNet's for ImageFolder), none, or a dataset's: fashion-mnist, mnist, cifar10, cifar100, imagenet")
	fs.IntVar(&c.Subset, "subset", 0, "train on the first N training samples only (0: all)")
	fs.IntVar(&c.TestSubset, "test-subset", 0, "evaluate on the first N evaluation samples only (0: all)")
	fs.BoolVar(&c.SkipBad, "skip-bad", false, "replace unreadable samples (corrupt images) by the next readable one and report each, instead of stopping")
	fs.StringVar(&c.Device, "device", c.Device, "cpu, cuda or cuda:N")
	precisionVar(fs, &c.Precision)

	fs.StringVar(&c.Optimizer, "optimizer", c.Optimizer, "mac, sgd, adamw, kfac, eva or foof; hyperparameters not given take that method's defaults")
	fs.Float64Var(&c.LR, "lr", c.LR, "peak learning rate")
	fs.Float64Var(&c.Momentum, "momentum", c.Momentum, "heavy-ball momentum")
	fs.BoolVar(&c.Nesterov, "nesterov", c.Nesterov, "Nesterov momentum")
	fs.Float64Var(&c.WeightDecay, "weight-decay", c.WeightDecay, "weight decay")
	fs.BoolVar(&c.DecoupledWD, "decoupled-wd", c.DecoupledWD, "decay the weights directly (p ← (1−lr·wd)·p) instead of adding wd·p to the gradient")
	fs.Float64Var(&c.Damping, "damping", c.Damping, "λ of the curvature methods")
	fs.Float64Var(&c.StatDecay, "stat-decay", c.StatDecay, "β of the statistics' moving average")
	fs.IntVar(&c.TCov, "tcov", c.TCov, "collect statistics every N steps")
	fs.IntVar(&c.TInv, "tinv", c.TInv, "refresh the preconditioner every N steps")
	fs.BoolVar(&c.FirstLayerCov, "first-layer-cov", c.FirstLayerCov, "MAC: precondition the first layer with its full input covariance, computed before training")
	fs.BoolVar(&c.AttentionV, "attention-v", c.AttentionV, "MAC: the attention rule for the value rows of qkv projections")
	adamw, _ := train.OptimizerDefaults("adamw")
	kfac, _ := train.OptimizerDefaults("kfac")
	fs.Float64Var(&c.KLClip, "kl-clip", c.KLClip, fmt.Sprintf("KFAC, Eva, FOOF: κ of the KL clip, 0 for none (their default %g)", kfac.KLClip))
	fs.Float64Var(&c.Beta1, "beta1", c.Beta1, fmt.Sprintf("AdamW: β1 (its default %g)", adamw.Beta1))
	fs.Float64Var(&c.Beta2, "beta2", c.Beta2, fmt.Sprintf("AdamW: β2 (its default %g)", adamw.Beta2))
	fs.Float64Var(&c.Eps, "eps", c.Eps, fmt.Sprintf("AdamW: ε (its default %g)", adamw.Eps))
	fs.Float64Var(&c.LabelSmoothing, "label-smoothing", c.LabelSmoothing, "label smoothing of the loss, in [0, 1)")
	fs.Float64Var(&c.DropPath, "drop-path", 0, "stochastic depth of ViT, DeiT and Swin models: the last block's drop rate (timm's --drop-path), earlier blocks' rising linearly from 0")
	fs.BoolVar(&c.NoDecayBNBias, "no-decay-bn-bias", c.NoDecayBNBias, "no weight decay on biases, normalisation parameters and embeddings (timm's filter_bias_and_bn)")
	fs.Float64Var(&c.ClipGrad, "clip-grad", 0, "scale the averaged gradients to this global L2 norm when above it (0: no clipping)")
	fs.IntVar(&c.GradAccumSteps, "grad-accum-steps", 0, "split each rank's batch into N micro-batches whose gradients and MAC statistics are averaged into one step (0 or 1: none)")
	fs.BoolVar(&c.ModelEMA, "model-ema", false, "keep an exponential moving average of the weights, evaluated (test_acc_ema) and checkpointed beside the model")
	fs.Float64Var(&c.ModelEMADecay, "model-ema-decay", c.ModelEMADecay, "decay per step of --model-ema")
	fs.Float64Var(&c.Mixup, "mixup", 0, "mixup α: mix each batch with its reverse, λ ~ Beta(α, α), soft targets (0: off)")
	fs.Float64Var(&c.Cutmix, "cutmix", 0, "CutMix α: paste a box of the reversed batch, area 1−λ with λ ~ Beta(α, α) (0: off)")
	fs.Float64Var(&c.MixupProb, "mixup-prob", c.MixupProb, "chance that a batch is mixed when --mixup or --cutmix is on")
	fs.Float64Var(&c.MixupSwitchProb, "mixup-switch-prob", c.MixupSwitchProb, "chance of CutMix rather than mixup when both are on")
	fs.StringVar(&c.AutoAugment, "auto-augment", "", "rand-mM-nN-mstdS: torchvision's RandAugment ops and magnitude bins (M of 31, default 9; N ops, default 2) with timm's magnitude noise; or trivialaugment (TrivialAugmentWide); empty: none")
	fs.Float64Var(&c.LayerDecay, "layer-decay", 0, "ViTs: scale block i's learning rate by D^(depth+1−i), the embeddings' by D^(depth+1), as timm's layer decay (implies --no-decay-bn-bias; 0: off)")
	fs.IntVar(&c.RepeatedAug, "repeated-aug", 0, "repeated augmentation (DeiT's RASampler): each sample K times per epoch on different ranks, epochs of ⌊N/256⌋·256 samples; on shards, K times on its own rank from the shuffle buffer, epochs as long as without (0 or 1: off)")
	fs.Float64Var(&c.RandomErase, "random-erase", 0, "chance of torchvision's RandomErasing (2–33% of the image set to the mean) per training sample")

	fs.IntVar(&c.Epochs, "epochs", c.Epochs, "epochs; the learning-rate schedule spans them")
	fs.IntVar(&c.MaxSteps, "max-steps", 0, "stop after this many steps in all, without changing the schedule (0: run every epoch)")
	fs.IntVar(&c.Batch, "batch", c.Batch, "batch size of a step: the global batch, split evenly across the ranks of a launched run (see launch --scale-lr)")
	fs.StringVar(&c.Schedule, "lr-schedule", c.Schedule, "constant, cosine or multistep (×0.1 at 50% and 75%)")
	fs.Float64Var(&c.Warmup, "warmup", 0, "linear warmup, in epochs (fractions allowed)")
	fs.Uint64Var(&c.Seed, "seed", 0, "seed of the initial weights, the data order and augmentation")
	fs.BoolVar(&c.Shuffle, "shuffle", c.Shuffle, "shuffle the training set every epoch")
	fs.StringVar(&c.Init, "init", "", "start from this safetensors state_dict (PyTorch names) instead of the seeded initialisation")

	fs.StringVar(&c.RunDir, "run-dir", "", "directory for checkpoints, metrics.jsonl, curves.png and final/ (default runs/MODEL-OPTIMIZER-TIME)")
	fs.BoolVar(&c.Resume, "resume", false, "continue from the newest complete checkpoint in --run-dir")
	fs.BoolVar(&c.Overwrite, "overwrite", false, "start from scratch in a --run-dir that holds an earlier run, deleting its checkpoints/, final/, metrics.jsonl and curves.png (without it such a start is refused); with --resume, also resume from a checkpoint older than metrics.jsonl's records")
	fs.IntVar(&c.CheckpointEvery, "checkpoint-every", 0, "also checkpoint every N steps (0: only at the end of each epoch)")
	fs.IntVar(&c.Keep, "keep", c.Keep, "complete checkpoints to keep (0: all)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", "", "serve Prometheus metrics on /metrics at this address, such as 127.0.0.1:9464 (default off)")
	fs.IntVar(&c.Workers, "workers", 0, "data decoding goroutines (0: one per CPU)")
	fs.IntVar(&c.ShuffleBuffer, "shuffle-buffer", 0, "samples in the shuffle buffer of a shards:DIR stream (0: 1000, negative: none)")
	fs.StringVar(&c.ProgressMode, "progress", "auto", "auto (a bar on a terminal, lines otherwise), bar, lines or none")
	fs.IntVar(&c.LogEvery, "log-every", 0, "steps between progress lines when not on a terminal (0: a tenth of an epoch)")
}

// applyMethodDefaults gives the hyperparameters the user did not set the
// chosen method's defaults (the flags' own defaults are MAC's).
func applyMethodDefaults(fs *flag.FlagSet, c *train.Config) error {
	if c.Optimizer == "mac" {
		return nil
	}
	d, err := train.OptimizerDefaults(c.Optimizer)
	if err != nil {
		return usageErrorf("--optimizer %q is not one of %s", c.Optimizer, strings.Join(train.Optimizers, ", "))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cv, dv := reflect.ValueOf(c).Elem(), reflect.ValueOf(d)
	for flagName, field := range train.HyperFields {
		if !set[flagName] {
			cv.FieldByName(field).Set(dv.FieldByName(field))
		}
	}
	return nil
}

func runTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("train", stderr)
	cfg := train.DefaultConfig()
	trainFlags(fs, &cfg)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := applyMethodDefaults(fs, &cfg); err != nil {
		return err
	}
	if _, err := models.Default(cfg.Model); err != nil {
		return usageErrorf("%v", err)
	}
	if cfg.RunDir == "" {
		if cfg.Resume {
			return usageErrorf("--resume needs --run-dir, the directory of the run to continue")
		}
		cfg.RunDir = filepath.Join("runs", fmt.Sprintf("%s-%s-%s", cfg.Model, cfg.Optimizer, time.Now().Format("20060102-150405")))
	}
	if err := cfg.Validate(); err != nil {
		return usageErrorf("%v", strings.TrimPrefix(err.Error(), "train: "))
	}
	cfg.Progress = stderr
	holdFromEnv(&cfg, stderr, "train")

	// SIGTERM (and Ctrl-C, which main also catches) finishes the step and
	// checkpoints; a second signal quits at once.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	done := make(chan struct{})
	defer close(done)
	var caught atomic.Value // the signal, for the message: main's handler may cancel first
	go func() {
		select {
		case s := <-sig:
			caught.Store(fmt.Errorf("signal: %v", s))
			fmt.Fprintf(stderr, "\nmacdist train: %v: finishing the step and writing a checkpoint (signal again to quit without one)\n", s)
			cancel(caught.Load().(error))
		case <-done:
			return
		}
		select {
		case s := <-sig:
			fmt.Fprintf(stderr, "macdist train: %v again: quitting without a checkpoint\n", s)
			os.Exit(1)
		case <-done:
		}
	}()

	err := train.Run(ctx, cfg, stdout)
	var intr *train.Interrupted
	if errors.As(err, &intr) {
		if c, ok := caught.Load().(error); ok && errors.Is(intr.Cause, context.Canceled) {
			intr.Cause = c
		}
		if intr.Checkpoint == "" {
			return fmt.Errorf("%v\nto start again: %s", intr, resumeCommand(args, cfg.RunDir, false))
		}
		return fmt.Errorf("%v\nto resume: %s", intr, resumeCommand(args, cfg.RunDir, true))
	}
	return err
}

// resumeCommand is the command line that continues this run: the same
// flags, --run-dir made explicit, and --resume.
func resumeCommand(args []string, runDir string, resume bool) string {
	out := []string{os.Args[0], "train"}
	hasDir := false
	for _, a := range args {
		name := strings.TrimLeft(a, "-")
		name, _, _ = strings.Cut(name, "=")
		if strings.HasPrefix(a, "-") && name == "resume" {
			continue
		}
		if strings.HasPrefix(a, "-") && name == "run-dir" {
			hasDir = true
		}
		out = append(out, a)
	}
	if !hasDir {
		out = append(out, "--run-dir", runDir)
	}
	if resume {
		out = append(out, "--resume")
	}
	for i, a := range out {
		out[i] = shellQuote(a)
	}
	return strings.Join(out, " ")
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
