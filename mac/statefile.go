package mac

import (
	"fmt"
	"sort"

	"github.com/macdist/macdist/safetensors"
)

// SaveState writes an optimizer's state to path as safetensors, the small
// metadata in the header, atomically.
func SaveState(path string, o Optimizer) error {
	s, err := o.State()
	if err != nil {
		return err
	}
	names := make([]string, 0, len(s.Tensors))
	for k := range s.Tensors {
		names = append(names, k)
	}
	sort.Strings(names)
	ts := make([]safetensors.Tensor, len(names))
	for i, k := range names {
		ts[i] = safetensors.Float32(k, []int{len(s.Tensors[k])}, s.Tensors[k])
	}
	if err := safetensors.WriteFile(path, ts, s.Meta); err != nil {
		return fmt.Errorf("mac: saving optimizer state: %w", err)
	}
	return nil
}

// LoadState reads what SaveState wrote into o, which must have been built
// for the same model and method.
func LoadState(path string, o Optimizer) error {
	f, err := safetensors.ReadFile(path)
	if err != nil {
		return fmt.Errorf("mac: loading optimizer state: %w", err)
	}
	s := &State{Tensors: map[string][]float32{}, Meta: f.Metadata}
	if s.Meta == nil {
		s.Meta = map[string]string{}
	}
	for _, name := range f.Names() {
		v, err := f.Float32s(name, nil)
		if err != nil {
			return fmt.Errorf("mac: loading optimizer state: %w", err)
		}
		s.Tensors[name] = v
	}
	if err := o.SetState(s); err != nil {
		return fmt.Errorf("mac: %s: %w", path, err)
	}
	return nil
}
