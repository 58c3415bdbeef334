// Package train holds the training loop and what surrounds it: steps,
// evaluation, atomic checkpoints (model.safetensors with PyTorch's
// state_dict names, optimizer.safetensors, state.json, and a MANIFEST of
// checksums written last), export, metrics, the JSONL log and progress
// output. `macdist bench` keeps its timing loop in internal/benchmark, since
// it needs no optimizer or data.
package train
