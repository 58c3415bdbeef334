// Package train will hold the training loop: steps, evaluation, atomic
// checkpoints (model.safetensors with PyTorch's state_dict names,
// optimizer.safetensors, state.json and a MANIFEST written last), Prometheus
// metrics, the JSONL log and progress output; `macdist train` and
// `macdist eval` will call it.
//
// Not written yet: it arrives with the data and training-loop work, after
// mac/ and data/. The timing loop of `macdist bench` lives in
// internal/benchmark meanwhile, since it needs no optimizer.
package train
