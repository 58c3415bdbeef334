// Package collective holds the Communicator (AllReduce, Broadcast, Barrier,
// Abort): in-process for tests, a TCP ring for CPUs, NCCL for GPUs; and the
// Bucketer, which packs gradients and MAC's ā vectors into buckets that are
// all-reduced in the same order on every rank while backward is still
// running (shared/DESIGN.md, "Parallel training").
package collective
