// Package kernelstest is a conformance suite for implementations of
// kernels.Device.
//
// Run checks every method of a Device against reference loops written here
// in float64. It reaches the device only through the kernels.Device
// interface, uploading inputs, running one method and downloading the
// result, so that every backend, host or accelerator, answers to the same
// tests: kernels/cpu runs it in `make test`, kernels/cuda on a GPU (and on
// the emulated driver of `make test-cuda-emu`).
//
// A result may differ from the reference by a bound that scales with the
// magnitudes of the terms summed into it (1e-4 of their sum for a GEMM or
// a reduction), not by a fixed tolerance: another summation order passes,
// a wrong index or a missing term does not.
package kernelstest
