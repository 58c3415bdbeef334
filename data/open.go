package data

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// Augment is a training augmentation policy.
type Augment int

const (
	// AugmentDefault is each dataset's usual recipe: nothing for MNIST and
	// Fashion-MNIST, RandomCrop(32, padding=4) + RandomHorizontalFlip for
	// CIFAR, RandomResizedCrop + RandomHorizontalFlip for ImageFolder,
	// nothing for synthetic data.
	AugmentDefault Augment = iota
	// AugmentNone decodes training samples as evaluation samples.
	AugmentNone
	// AugmentCropFlip is CIFAR's recipe on any image dataset:
	// RandomCrop(size, padding=4) + RandomHorizontalFlip, after the
	// evaluation transform (for ImageFolder, Resize + CenterCrop). It is how
	// CIFAR-10 shipped as JPEGs in an ImageFolder tree is trained.
	AugmentCropFlip
)

var augmentNames = []string{AugmentDefault: "default", AugmentNone: "none", AugmentCropFlip: "crop-flip"}

// ParseAugment reads a policy name: "default" (or ""), "none" or
// "crop-flip".
func ParseAugment(s string) (Augment, error) {
	if s == "" {
		return AugmentDefault, nil
	}
	for a, name := range augmentNames {
		if s == name {
			return Augment(a), nil
		}
	}
	return 0, fmt.Errorf("data: unknown augmentation %q (want default, none or crop-flip)", s)
}

func (a Augment) String() string { return augmentNames[a] }

// ParseStats reads a normalisation name into Options' terms: "" or
// "default" gives nil stats (the dataset's own), "none" sets none (pixels
// as p/255), and a dataset's name ("fashion-mnist", "mnist", "cifar10",
// "cifar100", "imagenet") gives its statistics, for data that does not
// carry its own, such as CIFAR-10 unpacked into an ImageFolder tree.
func ParseStats(s string) (stats *Stats, none bool, err error) {
	switch s {
	case "", "default":
		return nil, false, nil
	case "none":
		return nil, true, nil
	}
	named := map[string]Stats{
		"fashion-mnist": FashionMNISTStats, "mnist": MNISTStats,
		"cifar10": CIFAR10Stats, "cifar100": CIFAR100Stats, "imagenet": ImageNetStats,
	}
	if st, ok := named[s]; ok {
		return &st, false, nil
	}
	return nil, false, fmt.Errorf("data: unknown normalisation %q (want default, none, fashion-mnist, mnist, cifar10, cifar100 or imagenet)", s)
}

// Options adjust Open. The zero value gives each dataset's standard recipe.
type Options struct {
	// Augment is the training set's augmentation. The evaluation set never
	// augments.
	Augment Augment
	// Seed determines synthetic data (shuffling and augmentation are seeded
	// by the Loader).
	Seed uint64
	// ImageSize is the side of ImageFolder samples; 0 takes the shorter side
	// of the first training image when it is at most 64, else 224.
	ImageSize int
	// ResizeSize is the shorter side ImageFolder evaluation images are
	// resized to before the center crop; 0 gives ImageSize·256/224 for
	// ImageSize ≥ 128 and ImageSize below.
	ResizeSize int
	// Mean and Std override the per-channel normalisation.
	Mean, Std []float32
	// NoNormalize leaves pixels as p/255 in [0, 1].
	NoNormalize bool
	// DatasetsDir is where bare names ("fashion-mnist") are looked for;
	// empty means /usr/share/datasets, where Debian's dataset-* packages
	// install them.
	DatasetsDir string
}

// DefaultDatasetsDir is where Debian's dataset-fashion-mnist installs.
const DefaultDatasetsDir = "/usr/share/datasets"

// Specs lists the forms Open accepts.
const Specs = `fashion-mnist              (Debian's dataset-fashion-mnist, in /usr/share/datasets/fashion-mnist)
  fashion-mnist:DIR          (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-…)
  mnist | mnist:DIR          (same file names)
  cifar10:DIR                (data_batch_1..5.bin, test_batch.bin)
  cifar100:DIR               (train.bin, test.bin; fine labels)
  imagefolder:PATH           (PATH/train/CLASS/*.jpg|png and PATH/val/ or PATH/test/; PATH may be a .tar or .tar.gz)
  shards:DIR                 (tar shards and index.json written by macdist shard; streamed)
  synthetic:CxHxW:K:N[:NT]   (e.g. synthetic:3x32x32:10:50000; NT test samples, default N/5)`

// Open parses spec and opens the training and evaluation sets it names.
func Open(spec string, o Options) (train, test Dataset, err error) {
	kind, arg, hasArg := strings.Cut(spec, ":")
	bad := func(format string, args ...any) error {
		return fmt.Errorf("data: dataset %q: %s; valid forms:\n  %s", spec, fmt.Sprintf(format, args...), Specs)
	}
	root := o.DatasetsDir
	if root == "" {
		root = DefaultDatasetsDir
	}
	if hasArg && arg == "" {
		return nil, nil, bad("empty path after %q", kind+":")
	}
	switch kind {
	case "fashion-mnist", "mnist":
		dir := arg
		if !hasArg {
			dir = filepath.Join(root, kind)
		}
		stats := FashionMNISTStats
		if kind == "mnist" {
			stats = MNISTStats
		}
		tr, err := openIDXSplit(kind, dir, "train", 10)
		if err != nil {
			return nil, nil, err
		}
		te, err := openIDXSplit(kind, dir, "t10k", 10)
		if err != nil {
			return nil, nil, err
		}
		return finishBytes(tr, te, stats, o, 0, false)
	case "cifar10", "cifar100":
		if !hasArg {
			return nil, nil, bad("%s needs a directory", kind)
		}
		open, stats := openCIFAR10, CIFAR10Stats
		if kind == "cifar100" {
			open, stats = openCIFAR100, CIFAR100Stats
		}
		tr, te, err := open(arg)
		if err != nil {
			return nil, nil, err
		}
		return finishBytes(tr, te, stats, o, 4, true)
	case "imagefolder":
		if !hasArg {
			return nil, nil, bad("imagefolder needs a path")
		}
		tr, te, err := openImageFolder(arg, o)
		if err != nil {
			return nil, nil, err
		}
		return tr, te, nil
	case "shards":
		if !hasArg {
			return nil, nil, bad("shards needs a directory")
		}
		tr, te, err := OpenShards(arg, o)
		if err != nil {
			return nil, nil, err
		}
		return tr, te, nil
	case "synthetic":
		f := strings.Split(arg, ":")
		if !hasArg || len(f) < 3 || len(f) > 4 {
			return nil, nil, bad("synthetic takes CxHxW:CLASSES:N[:NTEST]")
		}
		dims := strings.Split(f[0], "x")
		if len(dims) != 3 {
			return nil, nil, bad("shape %q is not CxHxW", f[0])
		}
		var v [6]int
		for i, s := range append(dims, f[1:]...) {
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 {
				return nil, nil, bad("%q is not a positive integer", s)
			}
			v[i] = n
		}
		if len(f) == 3 {
			v[5] = max(1, v[4]/5)
		}
		tr, err := NewSynthetic(v[0], v[1], v[2], v[3], v[4], o.Seed, 0)
		if err != nil {
			return nil, nil, err
		}
		te, err := NewSynthetic(v[0], v[1], v[2], v[3], v[5], o.Seed, 1)
		if err != nil {
			return nil, nil, err
		}
		return tr, te, nil
	}
	return nil, nil, bad("unknown dataset %q", kind)
}

// finishBytes sets normalisation and augmentation on an in-memory pair.
func finishBytes(tr, te *bytesDataset, stats Stats, o Options, pad int, flip bool) (Dataset, Dataset, error) {
	if o.Mean != nil || o.Std != nil {
		stats = Stats{Mean: o.Mean, Std: o.Std}
	} else if o.NoNormalize {
		stats = identityStats
	}
	for _, d := range []*bytesDataset{tr, te} {
		if err := d.setStats(stats); err != nil {
			return nil, nil, err
		}
	}
	switch o.Augment {
	case AugmentDefault:
		tr.setAugment(pad, flip)
	case AugmentCropFlip:
		tr.setAugment(4, true)
	}
	return tr, te, nil
}
