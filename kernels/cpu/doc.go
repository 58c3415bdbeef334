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
// # Threads
//
// OpenBLAS runs each large Gemm on its own thread pool, which the package
// keeps at GOMAXPROCS threads, checking before each call because the Go
// runtime may change GOMAXPROCS while the process runs. A GemmStrided batch
// of small matrices, which OpenBLAS would run one thread at a time anyway,
// is instead spread over goroutines, one matrix per call.
//
// The other kernels split their outer loop (rows, channels, image planes,
// ranges of elements) over up to GOMAXPROCS goroutines when the work is large
// enough to repay the hand-off. The goroutines are a small pool started
// once and shared by all Devices, and the per-call state lives in the
// Device, so that a training step in steady state allocates nothing.
// Reductions are split into fixed blocks rather than one per goroutine, and
// long sums (dot products, normalisation statistics, the loss) are
// accumulated in float64, so these kernels' results do not depend on
// GOMAXPROCS.
//
// Separate Devices, one per model replica, run concurrently and share the
// pool. One Device may also be called from several goroutines; the kernels
// that keep their per-call state in it then take turns.
package cpu
