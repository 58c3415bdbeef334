package nn

import (
	"fmt"
	"strings"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/safetensors"
)

// StateDict returns params as safetensors tensors with PyTorch's names,
// shapes and dtypes (num_batches_tracked and relative_position_index are
// int64, as PyTorch keeps them), so
// that torch's load_state_dict takes the file as it is.
func StateDict(dev kernels.Device, params []*Param) []safetensors.Tensor {
	out := make([]safetensors.Tensor, 0, len(params))
	for _, p := range params {
		v := make([]float32, p.Value.Len())
		dev.Download(v, p.Value.Data)
		if isCounter(p) {
			ints := make([]int64, len(v))
			for i, x := range v {
				ints[i] = int64(x)
			}
			out = append(out, safetensors.Int64(p.Name, p.Value.Shape, ints))
			continue
		}
		out = append(out, safetensors.Float32(p.Name, p.Value.Shape, v))
	}
	return out
}

// isCounter reports whether PyTorch keeps p as int64: BatchNorm's
// num_batches_tracked and Swin's relative_position_index.
func isCounter(p *Param) bool {
	return p.Kind == KindBuffer && (strings.HasSuffix(p.Name, "num_batches_tracked") || strings.HasSuffix(p.Name, "relative_position_index"))
}

// SaveParams writes params to path as safetensors, atomically.
func SaveParams(dev kernels.Device, path string, params []*Param) error {
	if err := safetensors.WriteFile(path, StateDict(dev, params), map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("nn: %w", err)
	}
	return nil
}

// LoadParams reads a state_dict file into params. Every parameter must be
// in the file with its exact shape, and the file must hold nothing else;
// on any mismatch nothing is loaded and the error names the file and the
// tensor.
func LoadParams(dev kernels.Device, path string, params []*Param) error {
	f, err := safetensors.ReadFile(path)
	if err != nil {
		return fmt.Errorf("nn: %w", err)
	}
	return SetStateDict(dev, f, params)
}

// SetStateDict loads the tensors of f into params, checking names and
// shapes first, so that a mismatch leaves params untouched.
func SetStateDict(dev kernels.Device, f *safetensors.File, params []*Param) error {
	want := map[string]bool{}
	vals := make([][]float32, len(params))
	for i, p := range params {
		want[p.Name] = true
		t, err := f.Tensor(p.Name)
		if err != nil {
			return fmt.Errorf("nn: %s: missing tensor %q", f.Path, p.Name)
		}
		shape := t.Shape
		if len(shape) == 0 && len(p.Value.Shape) == 0 {
			shape = nil
		}
		if !p.Value.SameShape(shape) && !(len(shape) == 0 && p.Value.Len() == 1) {
			return fmt.Errorf("nn: %s: tensor %q has shape %v, the model's is %v", f.Path, p.Name, t.Shape, p.Value.Shape)
		}
		if vals[i], err = t.Floats(); err != nil {
			return fmt.Errorf("nn: %s: %w", f.Path, err)
		}
	}
	for _, name := range f.Names() {
		if !want[name] {
			return fmt.Errorf("nn: %s: unexpected tensor %q (not in the model)", f.Path, name)
		}
	}
	for i, p := range params {
		dev.Upload(p.Value.Data, vals[i])
	}
	return nil
}
