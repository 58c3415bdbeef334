// Package cuda is a kernels.Device on an NVIDIA GPU: the CUDA driver API
// for memory, streams and our own kernels, cuBLAS for GEMM, and cuDNN, when
// it is installed, for convolutions.
//
// # Libraries found at run time
//
// Nothing of CUDA is needed to build this package: libcuda.so.1 (from the
// NVIDIA driver) and libcublas.so.{13,12,11} (from a CUDA toolkit or
// NVIDIA's pip wheels, which PyTorch brings) are found and opened by
// internal/dynlib, and bound by a small cgo shim, dl.go, whose function
// pointers are declared from the public C signatures (the _v2 names where
// cuda.h maps the API to them). The shim links only -ldl. So one macdist binary runs on CPU-only
// machines and on GPU nodes, is built anywhere with Go and a C compiler,
// and a machine without a GPU gets an error from New that names what is
// missing and how to provide it, never a crash. Probe reports what was
// found where, the versions and the GPUs, for `macdist doctor`.
//
// The libraries are looked for, in order: in the folders of
// MACDIST_CUDA_LIBS (colon-separated), by the dynamic loader's own search
// (LD_LIBRARY_PATH, ld.so.cache), then for cuBLAS in /usr/local/cuda*/lib64
// and in the nvidia/*/lib folders of Python site-packages (system Pythons,
// /usr/local, virtual environments under /opt, VIRTUAL_ENV and ~/.local),
// and for the driver in the usual system folders and /usr/local/nvidia.
// No Python is run. A cuBLAS newer than the driver's CUDA version is
// skipped (it would load and then fail), and the libcublasLt beside the
// chosen libcublas is loaded first, since libcublas needs it and its
// folder may not be on the loader's path.
//
// We do not use gorgonia.org/cu: its package initialisation exits the
// process on a machine without a GPU driver, it links CUDA at build time
// (so the binary needs CUDA to build and to start), and it does not build
// against CUDA 13's headers.
//
// # Our kernels
//
// Everything but GEMM runs kernels written in CUDA C under src/*.cu,
// compiled by `make -f kernels/cuda/Makefile.ptx ptx` (nvcc, any version
// from 11.8) to PTX for compute_70, committed under ptx/ and embedded.
// New loads them with cuModuleLoadDataEx: the driver JIT-compiles the PTX
// for the GPU at hand (newer architectures included) and caches the result
// in ~/.nv/ComputeCache. MACDIST_CUDA_PTX_DIR names a folder of .ptx
// files to load instead, for kernels rebuilt on a machine without Go. The
// kernels take their parameters through
// CU_LAUNCH_PARAM_BUFFER_POINTER, packed by a launcher that checks each
// call against the kernel's signature (kernelSigs, which a test checks
// against the PTX), so a launch allocates nothing and passes cgo no Go
// memory.
//
// The kernels follow kernels/cpu's arithmetic where it matters for
// parity: sums (reductions, Dot, the norms' statistics, softmax
// denominators, cross-entropy) are accumulated in float64; GELU is
// computed in float64; batch norm finds the mean first and the variance
// from the deviations; ties in max pooling and arg-max keep the first
// maximum and a NaN wins; the dropout mask uses the same counter-based
// generator (kernels.DropoutUniform), so masks are identical on both
// devices. Reductions are deterministic: each splits its sums into a
// number of partial sums fixed by the shape, adds them in a fixed order,
// and never uses atomics; Col2im and the pooling backward passes gather
// rather than scatter, in the order kernels/cpu adds, so they round as it
// does.
//
// # cuDNN
//
// libcudnn.so.9, then .8, is looked for where cuBLAS is (its wheel's
// folder is nvidia/cudnn/lib), with the sub-libraries beside it
// (libcudnn_graph, _ops, _cnn, … which libcudnn opens by soname) loaded
// first when that folder is not on the loader's path. It is optional:
// without it, or where cudnnCreate fails, New still succeeds, one warning
// per process says convolutions use im2col + cuBLAS, and ConvForward,
// ConvBackwardData and ConvBackwardFilter report false so that the caller
// takes that way. With it, each distinct convolution (geometry, batch,
// filters, groups) gets its descriptors, the algorithm of each direction
// from cuDNN's heuristics (cudnnGet*Algorithm_v7: the first that
// succeeds, a deterministic one preferred so that replicas given the same
// data agree bit for bit) and its workspace size once, kept until Close;
// the workspace is the Device's scratch space, from the caching
// allocator. Float32 convolutions use CUDNN_FMA_MATH (no TF32) unless
// Options.AllowTF32. The C API is declared by hand as dl.go's is (cuDNN 8
// and 9 share it for these calls); cuDNN uses the calling thread's
// context, so each call runs on a locked OS thread with the context made
// current there.
//
// GEMM uses cuBLAS: a row-major C = op(A)·op(B) is the column-major
// Cᵀ = op(B)ᵀ·op(A)ᵀ, so the operands and m, n swap. TF32 is off
// (CUBLAS_DEFAULT_MATH) unless Options.AllowTF32, so that float32 results
// match the CPU device and PyTorch's defaults. GemmStrided whose C
// matrices overlap (a stride of 0 accumulates) runs one GEMM after another
// as kernels/cpu does; otherwise one strided-batched call.
//
// # Streams, synchronisation and memory
//
// A Device uses its GPU's primary context (shared with the CUDA runtime,
// cuBLAS, NCCL and PyTorch in the same process) and one stream of its own,
// created non-blocking. Every method queues its work on that stream in
// call order and returns; Upload, Download, Dot and CrossEntropy wait for
// it, since they hand back host data. The first error of any call is kept
// and returned by Sync (a faulted CUDA context stays unusable, so errors
// are sticky). The context is made current on the calling thread at every
// call, because Go moves goroutines between threads.
//
// Memory comes from a caching allocator: requests are rounded up to size
// classes (four per power of two), and Free puts the block on its class's
// free list, from which the next Alloc of that class takes it; only
// EmptyCache, Close, or an allocation that runs out of memory give blocks
// back to the driver (cuMemFree synchronises the whole device). Reusing a
// block at once is safe because every use of it is ordered on the one
// stream: work queued before the Free finishes before work queued after
// the next Alloc. Work on another stream (NCCL's, say) must be ordered
// with Stream by its user before a buffer it touches is freed. Alloc
// zeroes the block with an asynchronous memset. Views share their root's
// block; freeing a view does nothing, and using any buffer after its
// root's Free panics.
//
// # Testing without a GPU
//
// The tests of the library search, the error without a driver, the
// embedded PTX (every launched kernel present, parameter lists as
// declared) and the allocator run anywhere. The conformance suite
// (kernels/kernelstest) runs when New(0) succeeds and is skipped with its
// error otherwise. emu/run.sh runs it against an emulated GPU: a stand-in
// libcuda.so.1 that executes the same src/*.cu compiled for the host, one
// fiber per GPU thread, a stand-in cuBLAS, and a stand-in cuDNN
// (emu/fakecudnn.cc: convolutions as loops, strict about descriptors,
// workspaces, the thread's context and allocation bounds, and able to
// fail any call on request); run.sh runs the convolution tests once
// without it (the fallback) and everything once with it. It checks
// everything but the PTX JIT, the real cuBLAS and cuDNN, and the hardware. scripts/gpu-check.sh runs
// the tests on a real GPU.
package cuda
