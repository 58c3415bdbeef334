// Package nn holds macdist's layers and models: tensors on a kernels.Device,
// modules with explicit Forward and Backward, and parameters named as in
// PyTorch's state_dict.
//
// # Tensors and modules
//
// A Tensor is a shape over a flat float32 kernels.Buffer, row-major and NCHW
// like a contiguous PyTorch tensor; it has no strides, so a reshape (Flatten)
// is a new Tensor over the same buffer and anything else is a kernel call.
// The Swin layers (SwinBlock, WindowAttention, PatchMerging) work on
// channels-last maps [B, H, W, C], as torchvision's Swin does after its
// Permute; ChannelsLast turns a convolution's NCHW output into one.
// A Module maps one Tensor to another; there is no autograd tape. Backward
// takes dL/dy for the output of the most recent Forward and returns dL/dx,
// so a network is a Sequential or a Container that calls its children's
// Backward in reverse order. Modules keep what their Backward needs (their
// input, their output, saved statistics) from Forward: only the most recent
// Forward can be differentiated, and its input must stay unchanged until the
// matching Backward.
//
// # Ownership of outputs
//
// A module owns the tensors it returns, its output and its input gradient,
// and overwrites them on its next call. It keeps them across calls as long
// as the shape stays, so a steady-state training step allocates nothing on
// the host or the device; a new batch size grows the buffers, or views a
// prefix of them when smaller, so that alternating between a training and an
// evaluation batch size does not reallocate each time. A caller that needs a
// result past the next call copies it. A module may also return a tensor it
// was given (Dropout in evaluation mode returns its input; Flatten shares
// its input's buffer): the owner is then the module that made it.
//
// Intermediate results that live only inside one call, such as Conv2d's
// unfolded images, come from Workspace, a growing scratch buffer shared by
// every layer of a device, so that twenty convolutions hold one column
// buffer between them rather than twenty. Conv2d unfolds a chunk of images
// at a time (bounded by the Workspace's Limit), and unfolds again in Backward instead
// of keeping the columns of the whole batch. A 1×1 convolution with stride 1
// and no padding skips the unfolding.
//
// # Gradients
//
// Backward accumulates into Param.Grad, as PyTorch's backward does: call
// ZeroGrad between steps. Accumulation is what lets a block send one tensor
// through two paths (a residual block's shortcut) or a caller split a batch
// into micro-batches. Buffers (BatchNorm2d's running statistics and batch
// count) are Params of KindBuffer with a nil Grad.
//
// # Taps
//
// MAC, macdist's optimizer, preconditions each Linear and Conv2d weight with
// ā, the mean of the rows of the layer's input (for a convolution, of its
// im2col patches, zero padding included), with a trailing 1 for the bias.
// Such layers implement Tapped: with the tap on, a training-mode Forward
// writes ā into a small device buffer of TapDim elements, which the trainer
// all-reduces across replicas with the gradients. Computing ā inside the
// layer while the input (or its columns) is at hand is what makes it cheap:
// one reduction, no copy of activations, no hook machinery. With the tap
// off, the layer does no extra work and holds no buffer. For a grouped
// convolution ā spans all input channels (group g's part is a contiguous
// slice); see Conv2d.SetTap.
//
// # Names
//
// Every constructor takes a name prefix, and parameters are named
// prefix + ".weight" and so on, exactly as PyTorch's state_dict names them
// (torchvision's for ResNet blocks, "layer1.0.downsample.0.weight"), and
// Params returns them in state_dict order. A checkpoint written from Params
// is then a state_dict that PyTorch loads, and the fixtures under
// testdata/fixtures, made with PyTorch, are compared name by name.
// Walk visits a model's modules in forward order, which is how the trainer
// finds the Tapped layers.
//
// Shape errors are programming errors: layers panic with a message naming
// the layer and both shapes, such as
// "nn: conv1: input [8 3 32 32], want [N 1 H W]".
package nn
