// Package collective will hold the Communicator (AllReduce, Broadcast,
// Barrier, Abort) in three forms, in-process for tests, a TCP ring for CPUs
// and NCCL for GPUs, and the bucketer that packs gradients and MAC's ā
// vectors into buckets all-reduced in the same order on every rank while
// backward is still running (shared/DESIGN.md, "Parallel training").
//
// Not written yet: it arrives with the data-parallel work, which also wires
// it into train/. Until then the package holds no code.
package collective
