package data

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
)

// byteImages is implemented by datasets whose samples are byte images
// written through per-channel normalisation tables: their values map back
// to the bytes exactly.
type byteImages interface {
	byteTables() []lut
}

func (d *bytesDataset) byteTables() []lut { return d.luts }
func (d *ImageFolder) byteTables() []lut  { return d.luts }

// Augmented adds timm's training transforms after a dataset's own crop and
// flip, in timm's order: RandAugment or TrivialAugmentWide on the bytes,
// then normalisation, then RandomErasing on the normalised image. Samples
// drawn without a generator (evaluation) pass unchanged.
type Augmented struct {
	Dataset
	r *recipe
}

// recipe is those transforms on their own, so that a shard stream applies
// the very code Augmented does to a sample it has cropped and flipped.
type recipe struct {
	auto  *AutoAugment // nil: none
	erase RandomErasing
	luts  []lut
	pool  sync.Pool // *augWork
}

type augWork struct {
	img []uint8
	s   augScratch
}

// NewAugmented wraps ds. auto needs a dataset of byte images (IDX, CIFAR,
// ImageFolder); erasing works on any.
func NewAugmented(ds Dataset, auto *AutoAugment, erase RandomErasing) (*Augmented, error) {
	var luts []lut
	if auto != nil {
		b, ok := ds.(byteImages)
		if !ok {
			return nil, errors.New("data: RandAugment and TrivialAugment take byte images (IDX, CIFAR, ImageFolder), not this dataset's")
		}
		luts = b.byteTables()
	}
	r, err := newRecipe(auto, erase, luts)
	if err != nil {
		return nil, err
	}
	return &Augmented{Dataset: ds, r: r}, nil
}

func newRecipe(auto *AutoAugment, erase RandomErasing, luts []lut) (*recipe, error) {
	if erase.P < 0 || erase.P > 1 {
		return nil, fmt.Errorf("data: random erasing probability %v outside [0, 1]", erase.P)
	}
	return &recipe{auto: auto, erase: erase, luts: luts}, nil
}

// Get decodes sample i through the wrapped dataset and then augments it.
func (a *Augmented) Get(i int, dst []float32, rng *rand.Rand) (int, error) {
	y, err := a.Dataset.Get(i, dst, rng)
	if err != nil || rng == nil {
		return y, err
	}
	c, h, w := a.Shape()
	a.r.apply(dst, c, h, w, rng)
	return y, nil
}

// apply transforms the normalised c×h×w image dst, drawing from rng after
// the draws of the crop and flip that made it.
func (r *recipe) apply(dst []float32, c, h, w int, rng *rand.Rand) {
	if r.auto != nil {
		wk, _ := r.pool.Get().(*augWork)
		if wk == nil {
			wk = new(augWork)
		}
		wk.img = growU8(wk.img, c*h*w)
		plane := h * w
		for ch := range c {
			unLUT(wk.img[ch*plane:(ch+1)*plane], dst[ch*plane:(ch+1)*plane], &r.luts[ch])
		}
		r.auto.Apply(wk.img, c, h, w, rng, &wk.s)
		for ch := range c {
			t := &r.luts[ch]
			out := dst[ch*plane : (ch+1)*plane]
			for j, p := range wk.img[ch*plane : (ch+1)*plane] {
				out[j] = t[p]
			}
		}
		r.pool.Put(wk)
	}
	r.erase.Apply(dst, c, h, w, rng)
}

// unLUT maps normalised values back to the bytes t gives them from. t is
// affine in the byte (p/255 − mean)/std, so the byte is estimated in one
// step and then moved to the nearest entry, which is the exact one when v
// came from t.
func unLUT(dst []uint8, src []float32, t *lut) {
	lo, scale := t[0], 255/(t[255]-t[0])
	for j, v := range src {
		k := int(math.Round(float64((v - lo) * scale)))
		k = min(max(k, 0), 255)
		for k < 255 && abs32(t[k+1]-v) < abs32(t[k]-v) {
			k++
		}
		for k > 0 && abs32(t[k-1]-v) < abs32(t[k]-v) {
			k--
		}
		dst[j] = uint8(k)
	}
}

func abs32(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}
