package data

import (
	"fmt"
	"math/rand/v2"
)

// Synthetic is a generated classification set: each class k has a fixed
// random pattern μ_k of unit-variance values, and sample i of class y is
// μ_y + ε_i with ε_i unit-variance noise. The classes are separable (the
// signal adds up over C·H·W values) but not trivially per pixel, so a model
// trained on it must actually learn, and a test can tell a working trainer
// from a broken one. Everything is a hash of (seed, split, index, pixel):
// samples are computed on demand in O(C·H·W), nothing is stored.
type Synthetic struct {
	c, h, w, classes, n int
	seed                uint64
	split               uint64 // keeps train and test samples distinct
}

// NewSynthetic returns the split (0 train, 1 test) of the synthetic set
// with the given shape, class count, size and seed.
func NewSynthetic(c, h, w, classes, n int, seed uint64, split int) (*Synthetic, error) {
	if c <= 0 || h <= 0 || w <= 0 || classes <= 0 || n <= 0 {
		return nil, fmt.Errorf("data: synthetic %dx%dx%d, %d classes, %d samples: all must be positive", c, h, w, classes, n)
	}
	return &Synthetic{c: c, h: h, w: w, classes: classes, n: n, seed: seed, split: uint64(split)}, nil
}

func (s *Synthetic) Len() int             { return s.n }
func (s *Synthetic) Shape() (c, h, w int) { return s.c, s.h, s.w }
func (s *Synthetic) Classes() int         { return s.classes }
func (s *Synthetic) String() string {
	return fmt.Sprintf("synthetic %dx%dx%d, %d classes, %d samples (split %d, seed %d)", s.c, s.h, s.w, s.classes, s.n, s.split, s.seed)
}

// unit maps a hash to a uniform value in [−√3, √3): variance 1.
func unit(u uint64) float32 {
	const sqrt3 = 1.7320508
	return (float32(u>>40)*(2.0/(1<<24)) - 1) * sqrt3
}

// Label returns the class of sample i without generating it.
func (s *Synthetic) Label(i int) int {
	return int(mix64(mix64(s.seed^tagSynth)^(s.split<<56)^uint64(i)) % uint64(s.classes))
}

func (s *Synthetic) Get(i int, dst []float32, _ *rand.Rand) (int, error) {
	checkGet("synthetic", i, s.n, dst, s.c*s.h*s.w)
	y := s.Label(i)
	base := mix64(s.seed ^ tagSynth)
	pat := mix64(base ^ 0x5041545445524e00 ^ uint64(y))                  // μ_y's stream
	noise := mix64(base ^ (s.split+1)<<56 ^ mix64(uint64(i)+0x4e4f4953)) // ε_i's stream
	for p := range dst {
		k := uint64(p+1) * golden
		dst[p] = unit(mix64(pat+k)) + unit(mix64(noise+k))
	}
	return y, nil
}
