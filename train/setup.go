package train

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/macdist/macdist/backend"
	"github.com/macdist/macdist/data"
	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/models"
)

// NewDevice opens the device named by spec: "cpu", "cuda" or "cuda:N".
// The returned function releases it.
func NewDevice(spec string) (kernels.Device, func(), error) {
	d, err := backend.Open(spec)
	if err != nil {
		return nil, nil, fmt.Errorf("train: --device %s: %w", spec, err)
	}
	return d, func() { backend.Close(d) }, nil
}

// SetPrecision puts dev in the precision named as --precision names it
// ("fp32", "bf16"; "" is fp32), or says why dev cannot compute in it.
func SetPrecision(dev kernels.Device, name string) error {
	p, err := kernels.ParsePrecision(name)
	if err != nil {
		return fmt.Errorf("train: --precision: %w", err)
	}
	if err := kernels.SetPrecision(dev, p); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	return nil
}

// DataSpec names a dataset and how to read it, in Config's terms.
type DataSpec struct {
	Spec, DatasetsDir  string
	Augment, Normalize string // data.ParseAugment's and data.ParseStats's names
	Seed               uint64
	// Subset and TestSubset, when positive, keep only that many samples.
	Subset, TestSubset int
	// AutoAugment (data.ParseAutoAugment) and RandomErase add timm's
	// transforms to the training set's.
	AutoAugment string
	RandomErase float64
}

// OpenData opens the training and evaluation sets s names. A dataset that
// is not where it was looked for gets an error saying where that was and
// what provides it.
func OpenData(s DataSpec) (tr, te data.Dataset, err error) {
	spec, datasetsDir := s.Spec, s.DatasetsDir
	aug, err := data.ParseAugment(s.Augment)
	if err != nil {
		return nil, nil, fmt.Errorf("train: --augment: %w", err)
	}
	stats, none, err := data.ParseStats(s.Normalize)
	if err != nil {
		return nil, nil, fmt.Errorf("train: --normalize: %w", err)
	}
	if err := datasetMissing(spec, datasetsDir); err != nil {
		return nil, nil, err
	}
	o := data.Options{Augment: aug, Seed: s.Seed, DatasetsDir: datasetsDir, NoNormalize: none}
	if stats != nil {
		o.Mean, o.Std = stats.Mean, stats.Std
	}
	tr, te, err = data.Open(spec, o)
	if err != nil {
		if hint := dataHint(spec); hint != "" && errors.Is(err, data.ErrMissing) {
			return nil, nil, fmt.Errorf("%w\n%s", err, hint)
		}
		return nil, nil, err
	}
	_, stream := tr.(*data.ShardSet)
	if stream && (s.Subset > 0 || s.TestSubset > 0) {
		return nil, nil, fmt.Errorf("train: --subset does not apply to %s: shards are streamed whole (write a smaller shard set instead)", spec)
	}
	if auto, err := data.ParseAutoAugment(s.AutoAugment); err != nil {
		return nil, nil, fmt.Errorf("train: --auto-augment: %w", err)
	} else if auto != nil || s.RandomErase > 0 {
		if set, ok := tr.(*data.ShardSet); ok {
			tr, err = set.WithRecipe(auto, data.RandomErasing{P: s.RandomErase})
		} else {
			tr, err = data.NewAugmented(tr, auto, data.RandomErasing{P: s.RandomErase})
		}
		if err != nil {
			return nil, nil, fmt.Errorf("train: --auto-augment %s on %s: %s", s.AutoAugment, spec, strings.TrimPrefix(err.Error(), "data: "))
		}
	}
	if s.Subset > 0 && s.Subset < tr.Len() {
		tr = &prefix{tr, s.Subset}
	}
	if s.TestSubset > 0 && s.TestSubset < te.Len() {
		te = &prefix{te, s.TestSubset}
	}
	return tr, te, nil
}

// datasetMissing reports a dataset path that does not exist, before
// data.Open says something less helpful about it.
func datasetMissing(spec, datasetsDir string) error {
	kind, arg, hasArg := strings.Cut(spec, ":")
	path := arg
	switch kind {
	case "fashion-mnist", "mnist":
		if !hasArg {
			root := datasetsDir
			if root == "" {
				root = data.DefaultDatasetsDir
			}
			path = filepath.Join(root, kind)
		}
	case "cifar10", "cifar100", "imagefolder":
		if !hasArg || arg == "" {
			return nil // data.Open explains the form
		}
	default:
		return nil
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("train: dataset %q: %s does not exist\n%s", spec, path, dataHint(spec))
	}
	return nil
}

// dataHint says how to get the dataset spec names.
func dataHint(spec string) string {
	kind, _, hasArg := strings.Cut(spec, ":")
	switch kind {
	case "fashion-mnist":
		h := "Fashion-MNIST: install Debian's package (sudo apt-get install dataset-fashion-mnist, or `make setup`), " +
			"which puts it in " + filepath.Join(data.DefaultDatasetsDir, "fashion-mnist") +
			", or pass --data fashion-mnist:DIR with DIR holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz"
		if hasArg {
			h += " (the same four files Debian installs)"
		}
		return h
	case "mnist":
		return "MNIST: download the four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into a directory and pass --data mnist:DIR"
	case "cifar10":
		return "CIFAR-10: download the binary version (https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz), unpack it and pass --data cifar10:DIR with DIR holding data_batch_1.bin … test_batch.bin; CIFAR-10 as JPEGs in an ImageFolder tree trains as CIFAR with --data imagefolder:PATH --augment crop-flip --normalize cifar10"
	case "cifar100":
		return "CIFAR-100: download the binary version (https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz), unpack it and pass --data cifar100:DIR with DIR holding train.bin and test.bin"
	case "imagefolder":
		return "ImageFolder: pass --data imagefolder:PATH with PATH/train/CLASS/*.jpg and PATH/val/ (or PATH/test/), or a .tar/.tar.gz of such a tree"
	}
	return ""
}

// prefix is the first n samples of a dataset.
type prefix struct {
	data.Dataset
	n int
}

func (p *prefix) Len() int { return p.n }

func (p *prefix) Get(i int, dst []float32, rng *rand.Rand) (int, error) {
	if i < 0 || i >= p.n {
		panic(fmt.Sprintf("train: subset: index %d out of range [0, %d)", i, p.n))
	}
	return p.Dataset.Get(i, dst, rng)
}

// ModelOptions are the model settings a Config adds to the dataset's shape.
type ModelOptions struct {
	Depth, Patch int
	Seed         uint64
	DropPath     float64 // stochastic depth of the attention models
}

// modelTuner is a Device that keeps activations in the layout, and
// convolves by the algorithm, measured fastest for a model, given its
// name (the cpu Device: see cpu.Device.TuneForModel). Both are the
// Device's business; the model is built as ever.
type modelTuner interface {
	TuneForModel(model string)
}

// BuildModel builds the named model for images shaped like ds's, with as
// many outputs as ds has classes, on dev in the activation layout and
// convolution algorithm dev chooses for it (modelTuner).
func BuildModel(dev kernels.Device, name string, ds data.Dataset, o ModelOptions) (*models.Model, error) {
	c, h, w := ds.Shape()
	if h != w {
		return nil, fmt.Errorf("train: the models take square images; the dataset's are %dx%d", h, w)
	}
	if o.DropPath > 0 && !strings.HasPrefix(name, "vit") && !strings.HasPrefix(name, "deit") && !strings.HasPrefix(name, "swin") {
		return nil, fmt.Errorf("train: --drop-path applies to the ViT, DeiT and Swin models, not %s", name)
	}
	if ml, ok := dev.(modelTuner); ok {
		ml.TuneForModel(name)
	}
	m, err := models.New(dev, name, models.Config{InChannels: c, ImageSize: h, Classes: ds.Classes(), Depth: o.Depth, Patch: o.Patch, Seed: o.Seed,
		DropPath: float32(o.DropPath)})
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	// The trainer never reads dL/d(images).
	nn.SkipFirstInputGrad(m)
	return m, nil
}

// skipBad stands in for a Dataset whose unreadable samples (a
// *data.SampleError: a corrupt image) are replaced by the next readable
// one, so that a few bad files in a large ImageFolder do not stop a run.
// The replacement depends only on the index, so every rank and every
// resumed run sees the same. Each bad sample is reported once.
type skipBad struct {
	data.Dataset
	log  *slog.Logger
	seen sync.Map // index → struct{}
	n    atomic.Int64
}

// maxBadRun bounds how far a replacement is looked for: more bad samples
// in a row than this is a broken dataset, not a few bad files.
const maxBadRun = 64

func (s *skipBad) Get(i int, dst []float32, rng *rand.Rand) (int, error) {
	n := s.Dataset.Len()
	var first error
	for k := range maxBadRun {
		j := (i + k) % n
		y, err := s.Dataset.Get(j, dst, rng)
		var se *data.SampleError
		if err == nil || !errors.As(err, &se) {
			return y, err
		}
		if first == nil {
			first = err
		}
		if _, dup := s.seen.LoadOrStore(j, struct{}{}); !dup {
			s.log.Warn("skipping an unreadable sample (--skip-bad)", "index", j, "file", se.File, "err", se.Err, "bad_so_far", s.n.Add(1))
		}
	}
	return 0, fmt.Errorf("train: --skip-bad: %d unreadable samples in a row from %d: %w", maxBadRun, i, first)
}

// Bad is the number of distinct unreadable samples met so far.
func (s *skipBad) Bad() int64 { return s.n.Load() }
