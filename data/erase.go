package data

import (
	"math"
	"math/rand/v2"
)

// RandomErasing is torchvision's RandomErasing(p, scale=(0.02, 0.33),
// ratio=(0.3, 3.3), value=0) on a normalised image: with probability P, a
// rectangle of 2–33% of the image, of aspect ratio log-uniform in
// [0.3, 3.3], is set to 0 (the mean colour) in every channel.
type RandomErasing struct {
	P float64
}

// EraseBox is torchvision's RandomErasing.get_params: up to ten tries at a
// box that fits, from the draws of rng; ok false when none did.
func EraseBox(rng *rand.Rand, h, w int) (top, left, eh, ew int, ok bool) {
	area := float64(h * w)
	logLo, logHi := math.Log(0.3), math.Log(3.3)
	for range 10 {
		eraseArea := area * (0.02 + rng.Float64()*(0.33-0.02))
		aspect := math.Exp(logLo + rng.Float64()*(logHi-logLo))
		eh = int(math.RoundToEven(math.Sqrt(eraseArea * aspect)))
		ew = int(math.RoundToEven(math.Sqrt(eraseArea / aspect)))
		if !(eh < h && ew < w) {
			continue
		}
		top, left = rng.IntN(h-eh+1), rng.IntN(w-ew+1)
		return top, left, eh, ew, true
	}
	return 0, 0, h, w, false
}

// Erase fills the box of every channel of img (c × h × w) with v.
func Erase(img []float32, c, h, w, top, left, eh, ew int, v float32) {
	for ch := range c {
		for y := top; y < top+eh; y++ {
			row := img[ch*h*w+y*w+left : ch*h*w+y*w+left+ew]
			for i := range row {
				row[i] = v
			}
		}
	}
}

// Apply erases a box of img with probability P.
func (e RandomErasing) Apply(img []float32, c, h, w int, rng *rand.Rand) {
	if e.P <= 0 || rng.Float64() >= e.P {
		return
	}
	if top, left, eh, ew, ok := EraseBox(rng, h, w); ok {
		Erase(img, c, h, w, top, left, eh, ew, 0)
	}
}
