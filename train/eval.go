package train

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/macdist/macdist/data"
	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/safetensors"
)

// EvalResult is a model's mean loss and accuracy over an evaluation set.
type EvalResult struct {
	Loss     float64 `json:"loss"`
	Accuracy float64 `json:"accuracy"`
	Samples  int     `json:"samples"`
}

// evaluate runs model in evaluation mode over every batch of loader (epoch
// 0: evaluation loaders do not shuffle) and sums over ranks. Only the
// samples the sampler does not pad with count (data.Sampler.NumReal), so
// that every sample counts once whatever the world size; the padding is
// not even computed. The model is back in training mode afterwards.
func evaluate(ctx context.Context, dev kernels.Device, model nn.Module, loader data.Batches, loss *nn.CrossEntropyLoss,
	red Reducer, upload func(*data.Batch) *nn.Tensor) (EvalResult, error) {
	model.SetTraining(false)
	defer model.SetTraining(true)
	if err := loader.Start(ctx, 0); err != nil {
		return EvalResult{}, fmt.Errorf("train: evaluation: %w", err)
	}
	var sum, correct, n float64
	left := loader.NumReal() // samples still to count on this rank
	var cut data.Batch
	for {
		b, err := loader.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return EvalResult{}, fmt.Errorf("train: evaluation: %w", err)
		}
		if left <= 0 {
			continue
		}
		if b.N > left {
			// The padding is the tail of the rank's last batches; in
			// evaluation mode a sample's output does not depend on the
			// others in its batch, so the rest is simply left out.
			cut = *b
			cut.N, cut.X, cut.Y, cut.Index = left, b.X[:left*b.C*b.H*b.W], b.Y[:left], b.Index[:left]
			b = &cut
		}
		left -= b.N
		l, c := loss.Forward(model.Forward(upload(b)), b.Y)
		sum += l * float64(b.N)
		correct += float64(c)
		n += float64(b.N)
	}
	v := []float64{sum, correct, n}
	if err := red.AllReduceSum64(v); err != nil {
		return EvalResult{}, fmt.Errorf("train: evaluation: %w", err)
	}
	if v[2] == 0 {
		return EvalResult{}, errors.New("train: evaluation: no samples")
	}
	return EvalResult{Loss: v[0] / v[2], Accuracy: v[1] / v[2], Samples: int(v[2])}, nil
}

// ResolveCheckpoint accepts a checkpoint directory, a directory of
// checkpoints, or a run directory, and returns the checkpoint it means (the
// newest complete one for the latter two) with its state. Incomplete or
// corrupt checkpoints passed over are reported to skipped (may be nil).
func ResolveCheckpoint(path string, skipped func(dir string, err error)) (string, RunState, error) {
	if _, err := os.Stat(filepath.Join(path, manifestFile)); err == nil {
		st, err := VerifyCheckpoint(path)
		return path, st, err
	}
	if fi, err := os.Stat(path); err != nil {
		return "", RunState{}, fmt.Errorf("train: checkpoint: %w", err)
	} else if !fi.IsDir() {
		return "", RunState{}, fmt.Errorf("train: checkpoint %s is not a directory", path)
	}
	for _, root := range []string{path, filepath.Join(path, CheckpointsDir)} {
		dir, st, err := LatestCheckpoint(root, skipped)
		if err != nil {
			return "", RunState{}, err
		}
		if dir != "" {
			return dir, st, nil
		}
	}
	return "", RunState{}, fmt.Errorf("train: no complete checkpoint in %s (a checkpoint directory holds a MANIFEST; a run directory holds %s/)", path, CheckpointsDir)
}

// EvalConfig configures Evaluate.
type EvalConfig struct {
	// Checkpoint is a checkpoint, checkpoints or run directory.
	Checkpoint string
	// Data defaults to the dataset the checkpoint was trained on.
	Data        string
	DatasetsDir string
	// Train evaluates the training set (without augmentation) instead of
	// the evaluation set.
	Train   bool
	Batch   int // 0: 256
	Subset  int // first samples only, when positive
	Workers int
	Device  string
	// Precision is Config.Precision's.
	Precision string
	// Skipped hears of incomplete or corrupt checkpoints passed over.
	Skipped func(dir string, err error)
}

// Evaluate loads a checkpoint into the model it was trained with and
// returns its loss and accuracy on a dataset, and the checkpoint used.
func Evaluate(ctx context.Context, c EvalConfig) (EvalResult, string, error) {
	dir, st, err := ResolveCheckpoint(c.Checkpoint, c.Skipped)
	if err != nil {
		return EvalResult{}, "", err
	}
	set := Settings{Model: st.Model, Augment: "none"}
	if st.Settings != nil {
		set = *st.Settings
	}
	spec := c.Data
	if spec == "" {
		spec = set.Data
	}
	if spec == "" {
		return EvalResult{}, dir, fmt.Errorf("train: %s does not record its dataset: pass --data", dir)
	}
	dev, closeDev, err := NewDevice(c.Device)
	if err != nil {
		return EvalResult{}, dir, err
	}
	defer closeDev()
	if err := SetPrecision(dev, c.Precision); err != nil {
		return EvalResult{}, dir, err
	}
	trainSet, testSet, err := OpenData(DataSpec{
		Spec: spec, DatasetsDir: c.DatasetsDir, Augment: "none", Normalize: set.Normalize,
		Seed: set.Seed, Subset: c.Subset, TestSubset: c.Subset,
	})
	if err != nil {
		return EvalResult{}, dir, err
	}
	ds := testSet
	if c.Train {
		ds = trainSet
	}
	model, err := BuildModel(dev, set.Model, trainSet, ModelOptions{Depth: set.Depth, Patch: set.Patch, Seed: set.Seed, DropPath: set.DropPath})
	if err != nil {
		return EvalResult{}, dir, err
	}
	if _, err := LoadCheckpoint(dir, dev, model.Params(), nil); err != nil {
		return EvalResult{}, dir, fmt.Errorf("%w (is --data the dataset it was trained on, %q?)", err, set.Data)
	}
	batch := c.Batch
	if batch <= 0 {
		batch = 256
	}
	ld, err := data.NewBatches(ds, data.LoaderConfig{BatchSize: batch, NoAugment: true, Workers: c.Workers}, data.StreamConfig{})
	if err != nil {
		return EvalResult{}, dir, fmt.Errorf("train: %w", err)
	}
	defer ld.Close()
	inputs := map[int]*nn.Tensor{}
	upload := func(b *data.Batch) *nn.Tensor {
		x, ok := inputs[b.N]
		if !ok {
			x = nn.NewTensor(dev, b.N, b.C, b.H, b.W)
			inputs[b.N] = x
		}
		dev.Upload(x.Data, b.X)
		return x
	}
	res, err := evaluate(ctx, dev, model, ld, nn.NewCrossEntropyLoss(dev, 0), Local{}, upload)
	return res, dir, err
}

// ExportResult describes an exported state_dict.
type ExportResult struct {
	Checkpoint string `json:"checkpoint"`
	Out        string `json:"out"`
	Tensors    int    `json:"tensors"`
	Bytes      int64  `json:"bytes"`
}

// Export writes the weights of a checkpoint (see ResolveCheckpoint) to out
// as a safetensors state_dict that torch's load_state_dict takes: PyTorch's
// names and shapes, float32, num_batches_tracked as int64. The checkpoint's
// checksums are verified first; out is written atomically.
func Export(checkpoint, out string, skipped func(dir string, err error)) (ExportResult, error) {
	dir, _, err := ResolveCheckpoint(checkpoint, skipped)
	if err != nil {
		return ExportResult{}, err
	}
	src := filepath.Join(dir, modelFile)
	f, err := safetensors.ReadFile(src)
	if err != nil {
		return ExportResult{}, fmt.Errorf("train: export: %w", err)
	}
	raw, err := os.ReadFile(src)
	if err != nil {
		return ExportResult{}, fmt.Errorf("train: export: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return ExportResult{}, fmt.Errorf("train: export: %w", err)
	}
	if err := writeFileAtomic(out, raw); err != nil {
		return ExportResult{}, err
	}
	return ExportResult{Checkpoint: dir, Out: out, Tensors: len(f.Names()), Bytes: int64(len(raw))}, nil
}
