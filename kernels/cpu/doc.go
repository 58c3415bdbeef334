// Package cpu implements kernels.Device on host memory.
//
// A buffer is a Go []float32; Data exposes it to host-only code and tests,
// and Device.Wrap goes the other way. Every method runs to completion before
// it returns, so Sync never has anything to report.
//
// # BLAS
//
// Gemm, which is nearly all of a training step's arithmetic, goes to
// OpenBLAS when it can and to gonum's pure-Go BLAS otherwise. OpenBLAS is
// opened at run time with dlopen rather than linked: the package then builds
// on a machine with no BLAS headers or development libraries (only a C
// compiler and libdl), a binary built with OpenBLAS present still starts
// without it, and the choice between the two is made per process, or per
// Device with NewWithBLAS, not per build. The handful of entry points used
// are declared in this package from their documented C signatures.
//
// The gonum fallback keeps everything working, tests included, where
// OpenBLAS is missing, at a tenth of the speed or less; New says so once per
// process on standard error. MACDIST_BLAS=gonum selects it deliberately (to
// rule the BLAS out when chasing a numerical difference, say) and
// MACDIST_BLAS=openblas makes its absence fatal.
//
// # Convolutions
//
// The Device is a kernels.Convolver: where oneDNN (libdnnl.so.2, Debian's
// libdnnl2) can be opened, Conv2d's forward, backward-data and
// backward-weights passes go to its primitives instead of im2col and Gemm.
// Like OpenBLAS, it is opened at run time with dlopen, its few C entry
// points declared in this package (onednn.go) against the 2.x ABI, so
// nothing is needed to build. New warns once and keeps to im2col where it
// is missing; MACDIST_DNN=none forces im2col and MACDIST_DNN=onednn makes
// its absence fatal; Open and NewWithDNN choose per Device.
//
// Tensors stay NCHW between layers. Each shape's primitives are made once
// (for the thread count of the moment) and cached in the Device, with
// oneDNN free to choose the layouts inside them (format "any"): the
// inputs are reordered into those layouts and the outputs back, in an
// arena of C memory per Device that every shape shares and that grows
// only when a new shape needs more, as does the scratchpad (user mode).
// The backward passes share the reorder of dy, and the weight gradients
// accumulate through a reorder with a sum post-op. A steady-state step
// allocates nothing. With a fixed thread count every pass gives the same
// bits on every run (oneDNN's reductions split the work the same way).
//
// # Mixed precision
//
// The Device is a kernels.MixedPrecision. In BF16 (SetPrecision), its
// convolutions are made with bf16 x, w and dy, the ports' reorders
// rounding the caller's float32, and float32 y, dx, dw and db; MatMul
// goes to oneDNN's matmul primitive on bf16 copies of its operands
// (onednn_bf16.go), with a float32 result. Both are cached per shape and
// precision. BF16 needs a CPU whose oneDNN ISA has bf16 dot products
// (avx512_core_bf16, avx512_core_amx); MACDIST_BF16=emulate accepts
// oneDNN's emulation elsewhere, for tests.
//
// Debian's oneDNN uses OpenMP (libgomp). Its team size is set to
// GOMAXPROCS on every call (omp_set_num_threads acts per OS thread, and a
// goroutine's thread changes), so oneDNN uses the threads the Device's
// own goroutines do.
//
// # Threads
//
// OpenBLAS runs on the calling thread only (openblas_set_num_threads(1) at
// load): its own pool, spinning and yielding between calls, fought the
// package's goroutines for the cores. A Gemm large enough to share is cut
// into blocks of rows or columns of C, one per goroutine, and a
// GemmStrided batch is spread over goroutines a matrix (or a block of one)
// at a time (see gemmParts).
//
// The other kernels split their outer loop (rows, channels, image planes,
// ranges of elements) over up to GOMAXPROCS goroutines when the work is large
// enough to repay the hand-off. The goroutines are a small pool started
// once and shared by all Devices, and the per-call state lives in the
// Device, so that a training step in steady state allocates nothing. The
// caller runs the first range itself; it and idle workers poll for a few
// tens of microseconds before sleeping, since a step calls kernels back to
// back and waking a sleeping thread costs about that much per call.
// Reductions are split into fixed blocks rather than one per goroutine, and
// long sums (dot products, normalisation statistics, the loss) are
// accumulated in float64, so these kernels' results do not depend on
// GOMAXPROCS.
//
// # SIMD
//
// The element-wise and row kernels that take a visible share of a step
// (GELU and ReLU and their gradients, batch and layer normalisation,
// softmax, im2col and col2im, bias sums, 2×2 max pooling) have AVX2
// versions written in C (simd_cgo.go), used when the binary is built with
// cgo and the CPU has AVX2 and FMA. Each performs the same float32
// operations in the same order as its Go version, and its float64 sums run
// in the same eight lanes, so both give the same bits, which the tests
// check; the Go versions remain for other builds and CPUs. GELU uses a
// float32 exp and an erfc fitted for it rather than float64 math.Erf.
//
// Separate Devices, one per model replica, run concurrently and share the
// pool. One Device may also be called from several goroutines; the kernels
// that keep their per-call state in it then take turns.
package cpu
