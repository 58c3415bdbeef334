// Package nccl is a collective.Communicator over NVIDIA's NCCL: the
// all-reduce of gradient buckets and MAC's statistics between GPU replicas,
// on the GPU, on each replica's stream.
//
// # The library, found at run time
//
// libnccl.so.2 is found and opened by internal/dynlib, as kernels/cuda's
// driver and cuBLAS are, and bound by a small cgo shim (dl.go) whose
// function pointers are declared from nccl.h's public signatures: nothing of NCCL or CUDA is
// needed to build, a machine without NCCL gets an error naming the library
// and how to install it, and Probe reports what was found for `macdist
// doctor`. It is looked for where kernels/cuda looks for cuBLAS: the
// folders of MACDIST_CUDA_LIBS, the loader's own search, /usr/local/cuda*
// /lib64, the nvidia/*/lib folders of Python site-packages (pip's
// nvidia-nccl-cu12 and the CUDA 13 wheels that PyTorch brings), and the
// system's library folders. The wheels' libnccl.so.2 links the CUDA runtime
// statically and finds the driver itself, so nothing else needs loading.
// The CUDA driver's event calls come from the libcuda.so.1 that kernels/cuda
// loaded.
//
// ncclCommInitRankConfig takes an ncclConfig_t that later NCCL releases
// extend at the end. The shim passes the layout of NCCL 2.14, the first
// with the call (size, magic, version, blocking), with version 2.14.0:
// NCCL copies as many bytes as the size says over its defaults and
// ignores fields newer than the version, so one binary works with every
// NCCL from 2.14 on, which New requires.
//
// # Non-blocking, with a timeout
//
// The communicator is non-blocking (blocking = 0): set-up and collectives
// return at once, possibly with ncclInProgress, and the caller polls
// ncclCommGetAsyncError. So nothing waits inside NCCL: New polls the
// set-up, and each collective is queued on the Device's stream, followed
// by a CUDA event, and the call polls the event (done) and NCCL's state (a
// peer's failure) until the collective is complete. It gives up when its
// context ends, when the communicator's timeout passes (a rank missing,
// stalled, or issuing different collectives: NCCL cannot tell, and would
// wait for ever), or when Abort is called from another goroutine: then
// ncclCommAbort stops NCCL's kernels and threads, and the communicator
// stays broken, as collective's contract wants. The first hundred polls
// yield the thread, then the wait sleeps from 20 µs doubling to 1 ms.
//
// Waiting on an event rather than the stream means a collective's call
// returns when it is done, not when the backward work queued after it by
// the trainer is. collective.Bucketer calls AllReduce from its own
// goroutine while the trainer goes on queuing backward kernels; both queue
// on the one stream, so each bucket's reduction runs after the copy into
// its flat buffer (queued before the bucket was handed over) and before
// anything queued after it, with no further synchronisation.
//
// NCCL's sums are identical on every rank but not added in the ring's
// order, and Avg is ncclAvg (each value scaled by 1/Size, then summed), so
// results may differ from collective.Ring's in the last bits. NCCL uses
// the CUDA runtime, whose current device is the thread's current context:
// every call runs on a locked OS thread with the Device's context made
// current.
//
// # Unique ids and ranks
//
// NewUniqueID is ncclGetUniqueId: 128 bytes that every rank passes to New.
// It also starts NCCL's bootstrap root in the calling process, so it
// belongs to a process that outlives the set-up, rank 0's or the
// rendezvous's, which hands the id out with the rest of the bootstrap.
// NCCL picks the network interface for it and for its own connections
// (NCCL_SOCKET_IFNAME overrides).
//
// NCCL before 2.30 refuses two ranks on one GPU; 2.30 and later accept it
// with NCCL_MULTI_RANK_GPU_ENABLE=1. The tests of two ranks in one process
// are skipped, saying so, where NCCL refuses.
//
// # Testing
//
// The search, the errors without the library and the argument checks run
// everywhere. The collectives need a GPU and NCCL (scripts/gpu-check.sh
// runs them on a lent GPU machine) or emu/run.sh, which runs them against
// kernels/cuda's emulated GPU and a stand-in libnccl.so.2 (emu/fakenccl.c)
// that checks the config's layout, the id passed by value, and answers
// ncclInProgress as a real non-blocking communicator may.
package nccl
