package data

import (
	"fmt"
	"image"
	"math"
	"math/rand/v2"
)

// Stats are per-channel normalisation constants: a pixel p in [0, 255] of
// channel c becomes (p/255 − Mean[c]) / Std[c], as torchvision's ToTensor
// followed by Normalize.
type Stats struct {
	Mean, Std []float32
}

// The usual constants, as torchvision recipes quote them.
var (
	FashionMNISTStats = Stats{Mean: []float32{0.2860}, Std: []float32{0.3530}}
	MNISTStats        = Stats{Mean: []float32{0.1307}, Std: []float32{0.3081}}
	CIFAR10Stats      = Stats{Mean: []float32{0.4914, 0.4822, 0.4465}, Std: []float32{0.2470, 0.2435, 0.2616}}
	CIFAR100Stats     = Stats{Mean: []float32{0.5071, 0.4865, 0.4409}, Std: []float32{0.2673, 0.2564, 0.2762}}
	ImageNetStats     = Stats{Mean: []float32{0.485, 0.456, 0.406}, Std: []float32{0.229, 0.224, 0.225}}
	// identityStats leaves p/255 in [0, 1] (Options.NoNormalize).
	identityStats = Stats{}
)

// lut is the normalised value of each byte for one channel.
type lut [256]float32

// makeLUTs tabulates Stats for c channels. The arithmetic is float32 in the
// order torchvision uses (img.float().div(255), then sub_(mean).div_(std)),
// so the values equal PyTorch's bit for bit. Empty Stats give p/255.
func makeLUTs(s Stats, c int) ([]lut, error) {
	if len(s.Mean) == 0 && len(s.Std) == 0 {
		s = Stats{Mean: make([]float32, c), Std: make([]float32, c)}
		for i := range s.Std {
			s.Std[i] = 1
		}
	}
	if len(s.Mean) != c || len(s.Std) != c {
		return nil, fmt.Errorf("data: normalisation has %d means and %d stds for %d channels", len(s.Mean), len(s.Std), c)
	}
	out := make([]lut, c)
	for ch := range out {
		if !(s.Std[ch] > 0) {
			return nil, fmt.Errorf("data: normalisation std[%d] = %g, want > 0", ch, s.Std[ch])
		}
		for p := range 256 {
			v := float32(p) / 255
			out[ch][p] = (v - s.Mean[ch]) / s.Std[ch]
		}
	}
	return out, nil
}

// cropPadFlip writes the c×h×w crop of the CHW byte image src whose top-left
// corner is at (dy, dx) in src coordinates (negative or past the edge where
// the crop reaches into the zero padding), mirrored left-right when flip,
// normalised through luts. Padding is the byte 0 before normalisation, as
// torchvision's RandomCrop(padding=p) pads the PIL image with black before
// ToTensor/Normalize see it.
func cropPadFlip(dst []float32, src []uint8, c, h, w, dy, dx int, flip bool, luts []lut) {
	for ch := range c {
		t := &luts[ch]
		plane := src[ch*h*w : (ch+1)*h*w]
		out := dst[ch*h*w : (ch+1)*h*w]
		if dy == 0 && dx == 0 && !flip {
			for i, p := range plane {
				out[i] = t[p]
			}
			continue
		}
		shiftPlane(out, plane, h, w, dy, dx, flip, t[0], t)
	}
}

// shiftFlip is cropPadFlip on an image already normalised: dst(y, x) =
// src(y+dy, x'+dx) with x' = w−1−x when flipping, and the normalised value
// of a 0 pixel (torchvision pads the PIL image with black) outside src.
func shiftFlip(dst, src []float32, c, h, w, dy, dx int, flip bool, luts []lut) {
	for ch := range c {
		shiftPlane(dst[ch*h*w:(ch+1)*h*w], src[ch*h*w:(ch+1)*h*w], h, w, dy, dx, flip, luts[ch][0], nil)
	}
}

// shiftPlane writes out(y, x) = v(plane(y+dy, x'+dx)), x' = w−1−x when
// flipping, and pad where that falls outside plane. v looks bytes up in t
// and takes floats as they are (t nil).
func shiftPlane[T uint8 | float32](out []float32, plane []T, h, w, dy, dx int, flip bool, pad float32, t *lut) {
	for y := range h {
		row := out[y*w : (y+1)*w]
		sy := y + dy
		if sy < 0 || sy >= h {
			for x := range row {
				row[x] = pad
			}
			continue
		}
		srow := plane[sy*w : (sy+1)*w]
		for x := range row {
			sx := x
			if flip {
				sx = w - 1 - x
			}
			sx += dx
			switch {
			case sx < 0 || sx >= w:
				row[x] = pad
			case t != nil:
				row[x] = t[uint8(srow[sx])]
			default:
				row[x] = float32(srow[sx])
			}
		}
	}
}

// randomCropParams draws the top-left corner of a RandomCrop(size,
// padding=pad) in padded coordinates, top first, as torchvision's get_params.
func randomCropParams(rng *rand.Rand, pad int) (top, left int) {
	top = rng.IntN(2*pad + 1)
	left = rng.IntN(2*pad + 1)
	return top, left
}

// flipCoin is RandomHorizontalFlip(p=0.5)'s draw.
func flipCoin(rng *rand.Rand) bool { return rng.Float64() < 0.5 }

// roundHalfEven is Python's round(), which torchvision's parameter
// computations use.
func roundHalfEven(x float64) int { return int(math.RoundToEven(x)) }

// uniformSource is the part of *rand.Rand that RandomResizedCrop draws
// from; tests replay torchvision's draws through it.
type uniformSource interface {
	Float64() float64
	IntN(n int) int
}

// randomResizedCropRect is torchvision's RandomResizedCrop.get_params with
// scale (0.08, 1) and ratio (3/4, 4/3): ten tries at a box of random area and
// log-uniform aspect ratio, then the central crop clamped to the ratio range.
func randomResizedCropRect(rng uniformSource, width, height int) image.Rectangle {
	const (
		scaleLo, scaleHi = 0.08, 1.0
		ratioLo, ratioHi = 3.0 / 4.0, 4.0 / 3.0
	)
	area := float64(width * height)
	logLo, logHi := math.Log(ratioLo), math.Log(ratioHi)
	for range 10 {
		target := area * (scaleLo + (scaleHi-scaleLo)*rng.Float64())
		aspect := math.Exp(logLo + (logHi-logLo)*rng.Float64())
		w := roundHalfEven(math.Sqrt(target * aspect))
		h := roundHalfEven(math.Sqrt(target / aspect))
		if 0 < w && w <= width && 0 < h && h <= height {
			i := rng.IntN(height - h + 1)
			j := rng.IntN(width - w + 1)
			return image.Rect(j, i, j+w, i+h)
		}
	}
	return rrcFallback(width, height, ratioLo, ratioHi)
}

// rrcFallback is RandomResizedCrop's answer when ten tries fail: the whole
// image, cut to the nearest allowed aspect ratio, centred.
func rrcFallback(width, height int, ratioLo, ratioHi float64) image.Rectangle {
	inRatio := float64(width) / float64(height)
	w, h := width, height
	switch {
	case inRatio < ratioLo:
		h = roundHalfEven(float64(w) / ratioLo)
	case inRatio > ratioHi:
		w = roundHalfEven(float64(h) * ratioHi)
	}
	i := (height - h) / 2
	j := (width - w) / 2
	return image.Rect(j, i, j+w, i+h)
}

// resizeShorter is the size torchvision's Resize(size) gives a width×height
// image: the shorter side becomes size, the longer one int(size·long/short).
func resizeShorter(width, height, size int) (w, h int) {
	if width <= height {
		return size, int(float64(size) * float64(height) / float64(width))
	}
	return int(float64(size) * float64(width) / float64(height)), size
}

// centerCropOffset is CenterCrop's corner along one axis:
// int(round((in − out) / 2.0)).
func centerCropOffset(in, out int) int {
	return roundHalfEven(float64(in-out) / 2)
}
