package data

import (
	"bytes"
	"errors"
	"image"
	"math/rand/v2"
)

// transformEncoded is ImageFolder.Get from a sample's encoded bytes instead
// of its index: decode, then the split's transform into dst. Shard streams
// use it; it mirrors Get step for step (merge the two when the decode path
// is refactored).
func (d *ImageFolder) transformEncoded(enc []byte, dst []float32, rng *rand.Rand) error {
	s, _ := d.pool.Get().(*resampler)
	if s == nil {
		s = new(resampler)
	}
	defer d.pool.Put(s)
	img, _, err := image.Decode(bytes.NewReader(enc))
	if err != nil {
		return err
	}
	b := img.Bounds()
	if b.Empty() {
		return errors.New("empty image")
	}
	if rng != nil && d.augment == AugmentDefault {
		r := randomResizedCropRect(rng, b.Dx(), b.Dy())
		flip := flipCoin(rng)
		rgb := s.toRGB(img, r.Add(b.Min))
		s.resample(dst, rgb, r.Dx(), r.Dy(), d.size, d.size, 0, 0, d.size, d.size, flip, d.luts)
		return nil
	}
	fw, fh := resizeShorter(b.Dx(), b.Dy(), d.resize)
	rgb := s.toRGB(img, b)
	out := dst
	crop := rng != nil && d.augment == AugmentCropFlip
	if crop {
		s.chw = grow(s.chw, len(dst))
		out = s.chw
	}
	s.resample(out, rgb, b.Dx(), b.Dy(), fw, fh,
		centerCropOffset(fw, d.size), centerCropOffset(fh, d.size), d.size, d.size, false, d.luts)
	if crop {
		top, left := randomCropParams(rng, 4)
		shiftFlip(dst, out, 3, d.size, d.size, top-4, left-4, flipCoin(rng), d.luts)
	}
	return nil
}
