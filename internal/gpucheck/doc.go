// Package gpucheck holds the checks of the CUDA device that need a GPU:
// scripts/gpu-check.sh runs its test binary on a lent GPU machine, and
// everywhere else its tests skip, saying why. Build the binary here and
// carry it:
//
//	go test -c -o internal/gpucheck/gpucheck.test ./internal/gpucheck
//
// The tests, selected with -test.run:
//
//   - TestParity: 20 training steps of lenet5 (1×28×28, Fashion-MNIST's
//     shape) and resnet20 (3×32×32) on synthetic data, with SGD and with
//     MAC (first-layer covariance included), on the GPU and on the CPU from
//     the same weights (nn.HashInit): every parameter agrees to 1e-3
//     relative (max |gpu − cpu| / max |cpu|).
//   - TestMACShare: MAC's optimizer step as a share of the training step
//     on the GPU (the target is at most 3%), beside SGD's.
//   - TestNCCL: gradients and MAC's statistics averaged through a 1-rank
//     NCCL communicator by collective.Bucketer, unchanged.
//   - TestThroughput: training steps (forward, cross-entropy, backward,
//     SGD step) of resnet50 and vit-tiny at 224 px, batch 128, fp32,
//     printed as JSON lines that bench/torch_gpu.py compares with PyTorch,
//     and where the time goes, per kernels.Device method (Profiler).
//
// Environment: GPUCHECK_DEVICE (default cuda:0; "cpu" runs the throughput
// and share tests on the CPU, to try them without a GPU),
// GPUCHECK_BENCH_MODELS (resnet50,vit-tiny), GPUCHECK_BATCH (128),
// GPUCHECK_STEPS (5), GPUCHECK_WARMUP (2), GPUCHECK_BENCH_SECONDS (timed
// seconds per model at most, 30), GPUCHECK_PARITY_MODELS (lenet5,resnet20),
// GPUCHECK_PARITY_STEPS (20), GPUCHECK_SHARE_MODELS (resnet20,resnet50),
// GPUCHECK_JSON (a file the JSON lines are appended to).
package gpucheck
