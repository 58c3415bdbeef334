package train

import (
	"fmt"
	"slices"
	"strings"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/safetensors"
)

// maxListed bounds the differences an error spells out.
const maxListed = 25

// StateDictDiff compares a state_dict file with the model's parameters and
// lists every difference: tensors the model has and the file lacks,
// tensors the file has and the model lacks, and shape mismatches. Empty
// means the file fits.
func StateDictDiff(f *safetensors.File, params []*nn.Param) []string {
	var diffs []string
	inModel := map[string]bool{}
	for _, p := range params {
		inModel[p.Name] = true
		t, err := f.Tensor(p.Name)
		if err != nil {
			diffs = append(diffs, fmt.Sprintf("missing from the file: %s %v", p.Name, p.Value.Shape))
			continue
		}
		if !sameNumel(t.Shape, p.Value.Shape) {
			diffs = append(diffs, fmt.Sprintf("shape of %s: file %v, model %v", p.Name, t.Shape, p.Value.Shape))
		}
	}
	for _, name := range f.Names() {
		if !inModel[name] {
			t, _ := f.Tensor(name)
			diffs = append(diffs, fmt.Sprintf("not in the model: %s %v", name, t.Shape))
		}
	}
	return diffs
}

// sameNumel compares shapes as nn.SetStateDict does: a 0-d tensor and a
// one-element one (num_batches_tracked) are the same.
func sameNumel(file, model []int) bool {
	if slices.Equal(file, model) {
		return true
	}
	n := 1
	for _, d := range model {
		n *= d
	}
	return len(file) == 0 && n == 1
}

// LoadInit loads the state_dict at path into params, or refuses with the
// full list of differences and changes nothing.
func LoadInit(dev kernels.Device, path string, params []*nn.Param) error {
	f, err := safetensors.ReadFile(path)
	if err != nil {
		return fmt.Errorf("train: --init: %w", err)
	}
	if diffs := StateDictDiff(f, params); len(diffs) > 0 {
		shown := diffs
		more := ""
		if len(shown) > maxListed {
			shown = shown[:maxListed]
			more = fmt.Sprintf("\n  … and %d more", len(diffs)-maxListed)
		}
		return fmt.Errorf("train: --init %s does not fit the model (%d difference(s)):\n  %s%s",
			path, len(diffs), strings.Join(shown, "\n  "), more)
	}
	if err := nn.SetStateDict(dev, f, params); err != nil {
		return fmt.Errorf("train: --init: %w", err)
	}
	return nil
}
