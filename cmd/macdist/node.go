package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/macdist/macdist/cluster"
	"github.com/macdist/macdist/collective"
	"github.com/macdist/macdist/train"
)

// runNode is a worker process of `macdist launch`: it reads its place in
// the generation from the environment, connects the ring and trains.
func runNode(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("node", stderr)
	ringTimeout := fs.Duration("ring-timeout", collective.DefaultTimeout, "bound on every wait of the ring on a peer")
	ringLanes := fs.Int("ring-lanes", 1, "see macdist launch")
	scaleLR := fs.Bool("scale-lr", false, "see macdist launch")
	copies := fs.Bool("checkpoint-copies", true, "see macdist launch")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	w, err := cluster.WorkerFromEnv()
	if err != nil {
		return usageErrorf("%v: this subcommand is started by `macdist launch`", err)
	}
	defer w.Close()

	tfs := newFlagSet("node", stderr)
	cfg := train.DefaultConfig()
	trainFlags(tfs, &cfg)
	if err := parse(tfs, fs.Args()); err != nil {
		return err
	}
	if err := applyMethodDefaults(tfs, &cfg); err != nil {
		return err
	}
	// One process per GPU: local rank r of a node takes its GPU r.
	if cfg.Device == "cuda" {
		cfg.Device = fmt.Sprintf("cuda:%d", w.LocalRank)
	}
	if err := placeRank(&cfg, w.Rank, w.World, *scaleLR); err != nil {
		return usageErrorf("%v", err)
	}
	// Generation 1 is the run's start: it resumes only when asked; every
	// later one continues from the last complete checkpoint.
	cfg.Resume = cfg.Resume || w.Generation > 1
	// Rank 0's node is node 0. The first worker of every other node keeps
	// copies of its checkpoints, for when that node is lost.
	cfg.ReplicateCheckpoints = *copies && w.Nodes > 1
	cfg.KeepReplicas = cfg.ReplicateCheckpoints && w.LocalRank == 0 && w.NodeRank != 0
	if cfg.MetricsAddr != "" {
		if cfg.MetricsAddr, err = offsetPort(cfg.MetricsAddr, w.LocalRank); err != nil {
			return usageErrorf("--metrics-addr: %v", err)
		}
	}
	// Logs and progress come from rank 0 only; the others report warnings
	// (and their error, through main).
	cfg.Progress = stderr
	if cfg.ProgressMode == "auto" && os.Getenv(cluster.EnvProgressTerminal) == "1" {
		cfg.ProgressMode = "bar"
	}
	if w.Rank != 0 {
		cfg.Progress, cfg.ProgressMode = io.Discard, "none"
		cfg.Logger = train.NewLogger(stderr)
	}

	// A stopping agent sends SIGTERM: the worker ends at once (the next
	// generation restarts from the last checkpoint), aborting its ring so
	// that its peers fail fast instead of waiting out their timeout.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(sig)
	cluster.WatchParent(ctx, func() { cancel(errors.New("the launch agent is gone")) })

	ring, err := w.Ring(ctx, collective.RingConfig{Timeout: *ringTimeout, Lanes: *ringLanes})
	if err != nil {
		return err
	}
	defer ring.Close()
	go func() {
		select {
		case s := <-sig:
			ring.Abort(fmt.Errorf("signal %v", s))
			cancel(fmt.Errorf("signal %v", s))
		case <-ctx.Done():
			ring.Abort(context.Cause(ctx))
		}
	}()
	// The agent shows the step in `macdist status`: tell it at most
	// twice a second, and always the first step.
	var lastReport time.Time
	cfg.OnStep = func(step int) {
		if now := time.Now(); step == 1 || now.Sub(lastReport) >= 500*time.Millisecond {
			lastReport = now
			w.ReportStep(step)
		}
	}
	holdFromEnv(&cfg, stderr, fmt.Sprintf("rank %d", w.Rank))
	reducer := collective.NewStepReducer(ctx, ring, collective.BucketConfig{})
	// Only TestDataParallelEquivalence sets this, to show that replicas
	// drift apart without the statistics all-reduce.
	reducer.SkipStats = os.Getenv("MACDIST_TEST_NO_STATS_ALLREDUCE") == "1"
	defer reducer.Close()
	cfg.Reducer = reducer
	err = train.Run(ctx, cfg, stdout)
	if err != nil {
		ring.Abort(err)
	}
	return err
}

// holdEnv names the environment variable of a step hold: when it is set,
// the run holds before every step after the number its file holds
// (train.StepHold). It is for tests and operators; unset, it costs nothing.
const holdEnv = "MACDIST_HOLD_FILE"

// holdFromEnv sets cfg.BeforeStep to the hold $MACDIST_HOLD_FILE names,
// which reports to w when it begins to hold.
func holdFromEnv(cfg *train.Config, w io.Writer, who string) {
	path := os.Getenv(holdEnv)
	if path == "" {
		return
	}
	h := &train.StepHold{Path: path, Held: func(step, limit int) {
		fmt.Fprintf(w, "macdist: %s holds before step %d (%s holds %d)\n", who, step, holdEnv, limit)
	}}
	cfg.BeforeStep = h.Wait
}

// placeRank gives cfg its rank and world and the per-rank batch: the
// global batch split evenly (as PyTorch's DistributedSampler splits a
// batch), or, with scaleLR, the batch per rank as given and the learning
// rate multiplied by the world size (the linear scaling rule).
func placeRank(cfg *train.Config, rank, world int, scaleLR bool) error {
	cfg.Rank, cfg.World = rank, world
	if scaleLR {
		cfg.LR *= float64(world)
		return nil
	}
	if cfg.Batch%world != 0 {
		return fmt.Errorf("--batch %d (the global batch) is not divisible by the world size %d; choose a multiple, or --scale-lr to keep the batch per rank", cfg.Batch, world)
	}
	cfg.Batch /= world
	return nil
}

// offsetPort adds off to addr's port: every local rank serves its own
// metrics.
func offsetPort(addr string, off int) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return "", err
	}
	if p == 0 {
		return addr, nil
	}
	return net.JoinHostPort(host, strconv.Itoa(p+off)), nil
}

// The training loop averages gradients and statistics in one bucketed pass
// only through this interface: keep the two in step.
var _ train.OverlapReducer = (*collective.StepReducer)(nil)
