package data

import (
	"errors"
	"fmt"
	"math/rand/v2"
)

// Dataset is a finite, indexable set of labelled samples of one shape.
//
// Get decodes sample i into dst, which holds exactly C·H·W float32 in CHW
// order and belongs to the caller, and returns its label in [0, Classes()).
// rng carries the sample's augmentation randomness; a nil rng means no
// augmentation, and a dataset opened for evaluation ignores it. Get must be
// safe for concurrent use by several goroutines, each with its own dst and
// rng, and must not keep dst. A wrong-length dst is a programmer error and
// panics; a sample that cannot be decoded is returned as a *SampleError.
type Dataset interface {
	Len() int
	Shape() (c, h, w int)
	Classes() int
	Get(i int, dst []float32, rng *rand.Rand) (label int, err error)
}

// SampleError reports a sample that could not be read or decoded: which
// dataset index, which file (an archive member is written ARCHIVE:MEMBER),
// and why.
type SampleError struct {
	Index int
	File  string
	Err   error
}

func (e *SampleError) Error() string {
	return fmt.Sprintf("data: sample %d (%s): %v", e.Index, e.File, e.Err)
}

func (e *SampleError) Unwrap() error { return e.Err }

// checkGet panics on calls that can only be programming errors.
func checkGet(name string, i, n int, dst []float32, chw int) {
	if i < 0 || i >= n {
		panic(fmt.Sprintf("data: %s: index %d out of range [0, %d)", name, i, n))
	}
	if len(dst) != chw {
		panic(fmt.Sprintf("data: %s: dst has %d floats, want %d", name, len(dst), chw))
	}
}

// bytesDataset holds n CHW byte images and their labels in memory (IDX and
// CIFAR). Samples are converted and augmented straight from the bytes into
// the caller's buffer, so Get allocates nothing.
type bytesDataset struct {
	name       string
	pix        []uint8 // n·c·h·w
	labels     []uint8
	n, c, h, w int
	classes    int
	luts       []lut
	pad        int  // RandomCrop padding when augmenting; 0: no crop
	flip       bool // RandomHorizontalFlip when augmenting
	augment    bool
}

func (d *bytesDataset) Len() int             { return d.n }
func (d *bytesDataset) Shape() (c, h, w int) { return d.c, d.h, d.w }
func (d *bytesDataset) Classes() int         { return d.classes }
func (d *bytesDataset) String() string       { return d.name }
func (d *bytesDataset) Label(i int) int      { return int(d.labels[i]) }

func (d *bytesDataset) setStats(s Stats) error {
	l, err := makeLUTs(s, d.c)
	d.luts = l
	return err
}

func (d *bytesDataset) setAugment(pad int, flip bool) {
	d.pad, d.flip, d.augment = pad, flip, pad > 0 || flip
}

func (d *bytesDataset) Get(i int, dst []float32, rng *rand.Rand) (int, error) {
	chw := d.c * d.h * d.w
	checkGet(d.name, i, d.n, dst, chw)
	dy, dx, flip := 0, 0, false
	if rng != nil && d.augment {
		if d.pad > 0 {
			top, left := randomCropParams(rng, d.pad)
			dy, dx = top-d.pad, left-d.pad
		}
		if d.flip {
			flip = flipCoin(rng)
		}
	}
	cropPadFlip(dst, d.pix[i*chw:(i+1)*chw], d.c, d.h, d.w, dy, dx, flip, d.luts)
	return int(d.labels[i]), nil
}

// Memory is a Dataset over float32 samples already in memory, for tests and
// for feeding a fixture through the same Loader as real data. It never
// augments.
type Memory struct {
	x          []float32
	y          []int32
	c, h, w, k int
}

// NewMemory wraps x (n samples of c·h·w floats, CHW) and y (n labels in
// [0, classes)). It keeps the slices, it does not copy them.
func NewMemory(x []float32, y []int32, c, h, w, classes int) (*Memory, error) {
	chw := c * h * w
	if c <= 0 || h <= 0 || w <= 0 || classes <= 0 {
		return nil, fmt.Errorf("data: memory dataset shape %dx%dx%d with %d classes", c, h, w, classes)
	}
	if len(x) != len(y)*chw {
		return nil, fmt.Errorf("data: memory dataset has %d floats for %d labels of %dx%dx%d", len(x), len(y), c, h, w)
	}
	for i, l := range y {
		if l < 0 || int(l) >= classes {
			return nil, fmt.Errorf("data: memory dataset label %d of sample %d outside [0, %d)", l, i, classes)
		}
	}
	return &Memory{x: x, y: y, c: c, h: h, w: w, k: classes}, nil
}

func (m *Memory) Len() int             { return len(m.y) }
func (m *Memory) Shape() (c, h, w int) { return m.c, m.h, m.w }
func (m *Memory) Classes() int         { return m.k }

func (m *Memory) Get(i int, dst []float32, _ *rand.Rand) (int, error) {
	chw := m.c * m.h * m.w
	checkGet("memory", i, len(m.y), dst, chw)
	copy(dst, m.x[i*chw:(i+1)*chw])
	return int(m.y[i]), nil
}

// ErrMissing is what errors about dataset files that are not there match
// (errors.Is): a caller can then say where to get them.
var ErrMissing = errors.New("dataset files missing")

type missingError struct{ msg string }

func (e missingError) Error() string        { return e.msg }
func (e missingError) Is(target error) bool { return target == ErrMissing }

func missingf(format string, args ...any) error {
	return missingError{fmt.Sprintf(format, args...)}
}
