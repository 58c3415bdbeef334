// Command macdist is the data-parallel MAC trainer's command line: it
// parses flags and calls into the packages that do the work (train,
// cluster, collective, data); no training logic lives here.
//
//	macdist train --model lenet5 --data fashion-mnist          # one process
//	macdist train --model resnet20 --data cifar10:DIR --precision bf16  # AVX512-BF16 or AMX
//	macdist launch --standalone --nproc-per-node 4 -- --model resnet20 --data cifar10:DIR
//	macdist launch --nnodes 2:4 --join HOST:PORT --cluster-key K -- <train flags>
//	macdist status --join HOST:PORT
//	macdist eval --checkpoint RUN --data fashion-mnist        # its newest complete checkpoint
//	macdist export --checkpoint RUN/checkpoints/step-000003910 --out model.safetensors
//	macdist bench --model resnet50 --optimizer mac               # step time, bytes all-reduced
//	macdist bench collective --ranks 2,3,4 --lanes 1,2           # the TCP ring's busbw
//	macdist shard --data imagefolder:IMAGENET --out SHARDS --max-side 512  # for --data shards:SHARDS
//	macdist plot --out curves.png MAC=runs/mac SGD=runs/sgd
//	macdist doctor                                                # OpenBLAS, CUDA, NCCL found
//
// `macdist help` lists the subcommands and `macdist SUBCOMMAND -h` their
// flags. Train flags are shared by train, launch (after --) and node, the
// worker process launch starts for each local rank; node reads its place
// in the run from the environment launch sets (cluster.WorkerFromEnv).
//
// For tests and operators, $MACDIST_HOLD_FILE names a file holding a step
// number N: `train` and launch's workers take steps up to N and wait
// before the next, until the file holds a larger number or is removed
// (train.StepHold; a stopping launch still ends a waiting worker). With
// the variable unset nothing is looked at; set, one stat of the file
// before each step. The multi-process tests hold their runs this way, so
// that each of their phases happens at a known step on any machine.
//
// Exit status: 0 on success, 2 for a usage error (a bad flag, a flag
// combination that cannot work), 1 for anything else, with the error on
// standard error. Progress and logs go to standard error; machine-readable
// results (per-epoch metrics, bench and eval lines) to standard output as
// JSON lines.
package main
