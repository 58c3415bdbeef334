// Package train is the training loop of macdist: it builds the model, the
// optimizer and the data loaders a Config names, trains, evaluates after
// every epoch, and writes what a person or a program watching the run
// needs — checkpoints, a JSON line per epoch, curves, Prometheus metrics,
// progress. `macdist train` parses flags into a Config and calls Run;
// `macdist eval` and `macdist export` call Evaluate and Export.
//
// # One step
//
//	batch ← loader.Next()                      (data-wait time)
//	opt.BeginStep(); forward; loss
//	Reducer.AllReduceMean(opt.EarlyStats())    (MAC's mean attention t̄, ViTs only)
//	backward
//	Reducer.AllReduceMean(gradients...)
//	Reducer.AllReduceMean(opt.Stats())         (MAC's ā vectors, KFAC's factors)
//	opt.Step(schedule.LR(step))
//
// The Reducer is the seam for data parallelism: Local does nothing; a
// collective's implementation averages across ranks, so that every replica
// applies the same update. Config.Rank and Config.World shard the data as
// PyTorch's DistributedSampler does; only rank 0 writes files and serves
// metrics. Before the first step of a fresh MAC run, a no-grad pass over the
// training shard (normalised, never augmented) gives the first layer its
// input covariance; the sums are all-reduced with AllReduceSum64.
//
// # Skipped steps
//
// A step whose loss, gradients or statistics are not finite is skipped by
// the optimizer's own rule (mac.Optimizer.Step), and changes nothing:
// BatchNorm's running statistics, which the forward pass updated with the
// bad batch, are copied back from a snapshot taken before it. A non-finite
// loss on one rank poisons its gradients before the all-reduce, so that
// every rank skips the same step. Skips are counted in the epoch record
// and in macdist_nan_skipped_steps_total; after mac's MaxNonFinite in a row
// the run stops with an error naming the last checkpoint, which cannot hold
// a NaN since no skipped step reached the parameters.
//
// # Checkpoints and exact resumption
//
// A checkpoint is a directory RUN_DIR/checkpoints/step-NNNNNNNNN with
// model.safetensors (PyTorch's state_dict names, num_batches_tracked as
// int64), optimizer.safetensors, state.json and a MANIFEST of sizes and
// SHA-256 sums; every file goes through a temporary name, fsync and rename,
// and the MANIFEST comes last, so a directory without a valid MANIFEST — a
// writer killed half-way, a truncated or edited file — is not a checkpoint:
// LatestCheckpoint passes over it with a warning and takes the one before.
// Checkpoints are written every CheckpointEvery steps, at each epoch's end,
// at --max-steps and on interruption; the newest Keep complete ones stay.
//
// A run directory holds one run: a fresh start where an earlier run left
// records, final weights or checkpoints, or a resume with no usable
// checkpoint or one behind metrics.jsonl's records, is refused with each
// checkpoint and why, and nothing is changed; Config.Overwrite starts over.
//
// Resuming continues the same computation, bit for bit on the same device:
// the data order is a function of (seed, epoch), so the resumed epoch's
// first batches are drawn and passed over; the optimizer's state (momentum,
// statistics and their counters, MAC's first-layer inverse) is restored;
// dropout seeds advance by the steps taken; the running sums of the
// interrupted epoch and the history of finished epochs travel in state.json,
// so metrics.jsonl and curves.png are rebuilt as an uninterrupted run writes
// them. The settings that decide the trajectory are hashed into every
// checkpoint (Settings): a resume with different ones is refused with the
// list of differences. The world size may change if the global batch does
// not (see Settings). With several ranks and a Reducer that is also a
// Broadcaster, every rank looks in its own run directory and the one
// holding the newest complete checkpoint (rank 0 unless it lost its disk)
// sends the files to the others, which verify them against the MANIFEST as
// they would their own. With ReplicateCheckpoints rank 0 also sends every
// checkpoint it writes, and the ranks with KeepReplicas (`macdist launch`:
// the first worker of every other node) keep a copy in their own run
// directory, so that losing the node of rank 0, and its disk, loses no
// more than a checkpoint interval even where nodes share no file system.
// A fresh start takes rank 0's weights (its --init file, or its seeded
// initialisation), so every replica starts identical whatever the other
// nodes hold.
//
// Config.BeforeStep is called before every step and may hold it;
// StepHold holds a run before the step a file names, so that a test or an
// operator can act while the run waits at a known step.
//
// An interruption (the context cancelled: Ctrl-C or SIGTERM in the command)
// finishes the step in flight, or the evaluation, writes a checkpoint and
// returns an *Interrupted; the command prints how to resume.
//
// # Outputs
//
// Per epoch, an EpochRecord goes to Run's writer and to RUN_DIR/metrics.jsonl
// as one JSON line, and RUN_DIR/curves.png is redrawn (PlotCurves, with
// gonum/plot). A run stopped by --max-steps inside an epoch evaluates and
// writes a record marked partial, which a resumed run replaces. The final
// weights go to RUN_DIR/final/model.safetensors, and the configuration to
// RUN_DIR/config.json. Progress goes to Config.Progress: a bar redrawn in
// place on a terminal, plain lines otherwise. docs/metrics.md lists the
// Prometheus series served on Config.MetricsAddr.
//
// # The ImageNet recipe
//
// timm's recipe parts (recipe.go, ema.go) hook into the step: the rank's
// batch is mixed (mixup, CutMix) with soft targets for
// nn.SoftTargetCrossEntropy, split into GradAccumSteps micro-batches whose
// gradients add up (each loss gradient scaled by its share of the batch)
// and whose MAC statistics are averaged the same way, all-reduced once,
// clipped to ClipGrad by their global norm (the same on every rank, after
// the all-reduce), stepped with per-layer learning rates (LayerDecay), and
// folded into the weights' moving average (ModelEMA), which every epoch
// evaluates as test_loss_ema and test_acc_ema and every checkpoint
// carries in its optimizer file. RandAugment, TrivialAugmentWide, random
// erasing and repeated augmentation are the data package's.
//
// # Why the design differs from DESIGN.md's sketch
//
// DESIGN.md overlaps the all-reduce with the backward pass in buckets. The
// loop here reduces after backward, through a Reducer that takes every
// gradient at once: the collective can bucket and overlap behind that call
// without changing this package, and a single process pays nothing for it.
package train
