// Package kernels defines Device, the compute backend a model replica runs
// on, and the few plain types its methods share.
//
// A Device knows flat float32 buffers and the geometry it is told, nothing
// about tensors, layers or autograd. Keeping it that small is what lets one
// set of layers (package nn) run on the host and on an accelerator: a
// backend implements some forty kernels, each with a precise contract, and
// package kernelstest holds any implementation to that contract with the
// same tests.
//
// # Conventions
//
// Matrices are row-major with explicit leading dimensions, as in CBLAS's
// row-major interface, so that a sub-matrix or a strided batch is described
// by numbers rather than by new buffers. Methods overwrite their destination
// unless they say they accumulate; the backward kernels of layers with
// parameters accumulate parameter gradients, as PyTorch's autograd does, so
// that a caller zeroes them once per step. A "beta" argument follows BLAS:
// with beta == 0 the destination is not read, so uninitialised memory (or
// NaNs in it) cannot leak into the result.
//
// The numerical contracts follow PyTorch wherever a layer has a PyTorch
// counterpart (label smoothing, running-variance correction, pooling ties
// and padding, the two GELUs), because the project's fixtures come from it.
// Randomness is counter-based (see DropoutUniform) so that every backend
// draws the same numbers, whatever order its threads run in.
//
// # Layouts
//
// Every method of Device takes NCHW activations. A Device may keep them in
// a layout of its own between the layers that know it (Layouter: the cpu
// Device with oneDNN keeps nChw16c or nhwc, its convolutions' own), so that no
// reorder runs around each convolution; the layers that do not know it
// convert at their edge, and what crosses a model's edges stays NCHW.
// ReLUFuser lets the same layers fold a ReLU into the pass before it.
//
// # Errors
//
// Misuse, such as a buffer shorter than the shape it is given, is a
// programmer error and panics at the call, naming the method and the sizes.
// Nothing else is reported per call: a kernel that fails on an asynchronous
// device surfaces from Sync, because nothing inside a training step could
// recover from it anyway.
package kernels
