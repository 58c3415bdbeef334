// Package safetensors reads and writes the safetensors format: an 8-byte
// little-endian header length, a JSON header naming each tensor's dtype, shape
// and byte range, then the raw little-endian data.
//
// macdist uses it for everything that holds tensors: the PyTorch reference
// fixtures under testdata/, checkpoints, and weights exported for PyTorch. The
// format was chosen because PyTorch's own tools (the safetensors package, or
// a few lines of torch) load it without running code from the file, and
// because it can be checked before it is trusted: Parse validates every
// offset, size and dtype and names the tensor at fault, so a truncated or
// corrupt file is an error, never a panic or a silently short tensor.
//
// WriteFile is atomic (temporary file, fsync, rename, directory fsync): a
// crash leaves the old file or the new one, never half of one.
package safetensors
