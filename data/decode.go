package data

import (
	"fmt"
	"image"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"time"
)

// JPEG decoding. libjpeg-turbo (the library PIL decodes with) is opened at
// run time through its TurboJPEG API, as OpenBLAS is; without it, Go's
// image/jpeg decodes, about three times slower, after one warning.
// MACDIST_JPEG=go chooses Go's decoder deliberately, MACDIST_JPEG=turbo
// makes a missing libjpeg-turbo an error.
//
// libjpeg-turbo can also decode at a reduced DCT scale (1/8, 1/4, 3/8, …),
// doing a fraction of the work: ImageFolder decodes at the smallest scale at
// which the crop it will cut still has at least the output's resolution, as
// PIL's Image.draft does, and resamples from there.
//
// How far the pixels are from torchvision + PIL's (TestJPEGMatchesTorchvision,
// on JPEGs in testdata/fixtures/jpeg with the boxes torchvision drew, in
// levels of 255 before normalisation, max / mean): libjpeg-turbo at full
// size 1 / 0.003 (PIL decodes with the same library; what remains is our
// 13-bit resampling weights against PIL's 22-bit ones, resample.go), at
// the DCT scale 6 / 0.5 (the reduced IDCT averages the pixels of a block
// where PIL's filter weighs full-size pixels with a triangle: a slightly
// softer image), Go's decoder
// 4 / 0.2 (its IDCT and chroma upsampling differ from libjpeg's). The
// random draws are the same in every case: they are made on the full-size
// geometry read from the header, before decoding.

// scaleFactor is a DCT scale, num/denom.
type scaleFactor struct{ num, denom int }

// scaled is the side libjpeg-turbo gives an n-pixel side at this scale
// (TJSCALED: rounded up).
func (f scaleFactor) scaled(n int) int { return (n*f.num + f.denom - 1) / f.denom }

// covers reports whether n source pixels at this scale give at least want.
func (f scaleFactor) covers(n, want int) bool { return n*f.num >= want*f.denom }

func (f scaleFactor) float() float64 { return float64(f.num) / float64(f.denom) }

var unitScale = scaleFactor{1, 1}

type jpegBackend uint8

const (
	jpegGo jpegBackend = iota
	jpegTurbo
)

var (
	turboOnce    sync.Once
	turboErr     error
	turboFactors []scaleFactor // reductions only, smallest first

	jpegWarnOnce sync.Once
)

// loadTurboJPEG opens libturbojpeg.so.0 once per process.
func loadTurboJPEG() error {
	turboOnce.Do(func() {
		if turboErr = dlopenTurboJPEG(); turboErr != nil {
			return
		}
		for _, f := range turboScalingFactors() {
			if f.num > 0 && f.denom > 0 && f.num <= f.denom {
				turboFactors = append(turboFactors, f)
			}
		}
		slices.SortFunc(turboFactors, func(a, b scaleFactor) int { return a.num*b.denom - b.num*a.denom })
		if len(turboFactors) == 0 || turboFactors[len(turboFactors)-1] != unitScale {
			turboFactors = append(turboFactors, unitScale)
		}
	})
	return turboErr
}

// chooseJPEG picks a decoder given MACDIST_JPEG and a way to load
// libjpeg-turbo, and says what to warn about, if anything.
func chooseJPEG(env string, load func() error) (jpegBackend, string, error) {
	switch env {
	case "go":
		return jpegGo, "", nil
	case "turbo":
		if err := load(); err != nil {
			return jpegGo, "", fmt.Errorf("data: MACDIST_JPEG=turbo, but %v; install Debian's libturbojpeg0, or unset MACDIST_JPEG to decode with Go", err)
		}
		return jpegTurbo, "", nil
	}
	var note string
	if env != "" {
		note = fmt.Sprintf("macdist: ignoring MACDIST_JPEG=%q (want turbo or go); ", env)
	}
	if err := load(); err != nil {
		return jpegGo, note + fmt.Sprintf("macdist: %v; decoding JPEGs with Go's image/jpeg (about 3x slower). Install Debian's libturbojpeg0 to fix.", err), nil
	}
	return jpegTurbo, note, nil
}

// defaultJPEG is the decoder an ImageFolder opened now uses; it warns at
// most once per process.
func defaultJPEG() (jpegBackend, error) {
	b, warning, err := chooseJPEG(os.Getenv("MACDIST_JPEG"), loadTurboJPEG)
	if warning != "" {
		jpegWarnOnce.Do(func() { fmt.Fprintln(os.Stderr, warning) })
	}
	return b, err
}

// JPEGDecoder describes the JPEG decoder ImageFolder would use, for
// `macdist doctor`: libjpeg-turbo, or Go's decoder and why.
func JPEGDecoder() string {
	b, _, err := chooseJPEG(os.Getenv("MACDIST_JPEG"), loadTurboJPEG)
	switch {
	case err != nil:
		return "none: " + err.Error()
	case b == jpegTurbo:
		return "libjpeg-turbo (" + turboJPEGLib + ", TurboJPEG API, DCT-domain scaling)"
	case os.Getenv("MACDIST_JPEG") == "go":
		return "Go image/jpeg, as MACDIST_JPEG=go asks"
	}
	return fmt.Sprintf("Go image/jpeg (about 3x slower): %v\n  fix: apt-get install libturbojpeg0 (Debian, Ubuntu)", loadTurboJPEG())
}

// pickScale returns the smallest of the reductions fs (smallest first,
// ending in 1/1) at which a w×h region still has at least minW×minH pixels.
func pickScale(fs []scaleFactor, w, h, minW, minH int) scaleFactor {
	for _, f := range fs {
		if f.covers(w, minW) && f.covers(h, minH) {
			return f
		}
	}
	return unitScale
}

// maxDecodedPixels bounds the decode buffer (600 MB of RGB): a header may
// claim anything up to 65535², and bad input must not exhaust memory.
const maxDecodedPixels = 200 << 20

// isJPEG reports whether b starts with a JPEG SOI marker.
func isJPEG(b []byte) bool { return len(b) >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff }

// turbo reads the header of the JPEG enc with this worker's decompressor
// (made on first use). rgbOK is false for the colour spaces libjpeg-turbo
// does not turn into RGB (CMYK, YCCK), which Go's decoder handles.
func (s *resampler) turbo(enc []byte) (w, h int, rgbOK bool, err error) {
	if s.tj == nil {
		tj, err := newTurboDecoder()
		if err != nil {
			return 0, 0, false, err
		}
		s.tj = tj
	}
	return s.tj.header(enc)
}

// cropPlan is what a sample's random draws decide, on the full-size image:
// the region box is resized to fullW×fullH, of which the size×size window
// at (offX, offY) is kept, mirrored when flip.
type cropPlan struct {
	box          image.Rectangle
	fullW, fullH int
	offX, offY   int
	flip         bool
}

// plan makes the draws of RandomResizedCrop + RandomHorizontalFlip (with rng
// and the default augmentation) or lays out Resize + CenterCrop, for a w×h
// image. cropFlip says that RandomCrop(padding=4) + flip follow, drawn after
// the image is resampled.
func (d *ImageFolder) plan(w, h int, rng *rand.Rand) (p cropPlan, cropFlip bool) {
	if rng != nil && d.augment == AugmentDefault {
		p.box = randomResizedCropRect(rng, w, h)
		p.flip = flipCoin(rng)
		p.fullW, p.fullH = d.size, d.size
		return p, false
	}
	p.box = image.Rect(0, 0, w, h)
	p.fullW, p.fullH = resizeShorter(w, h, d.resize)
	p.offX, p.offY = centerCropOffset(p.fullW, d.size), centerCropOffset(p.fullH, d.size)
	return p, rng != nil && d.augment == AugmentCropFlip
}

// renderGo resamples the decoded image as p says into dst.
func (d *ImageFolder) renderGo(s *resampler, img image.Image, p cropPlan, dst []float32) {
	rgb := s.toRGB(img, p.box.Add(img.Bounds().Min))
	s.resample(dst, rgb, p.box.Dx(), p.box.Dy(), p.fullW, p.fullH, p.offX, p.offY, d.size, d.size, p.flip, d.luts)
}

// renderTurbo decodes the w×h JPEG enc at the smallest DCT scale that
// leaves p's region at least at its resized resolution, then crops,
// resizes, flips and normalises in one pass into dst.
func (d *ImageFolder) renderTurbo(s *resampler, enc []byte, w, h int, p cropPlan, dst []float32, t *time.Time) error {
	f := pickScale(d.scales, p.box.Dx(), p.box.Dy(), p.fullW, p.fullH)
	sw, sh := f.scaled(w), f.scaled(h)
	if sw*sh > maxDecodedPixels {
		return fmt.Errorf("image is %d×%d, over the %d-pixel limit at scale %d/%d", w, h, maxDecodedPixels, f.num, f.denom)
	}
	s.rgb = grow(s.rgb, sw*sh*3)
	if err := s.tj.decode(enc, s.rgb, sw, sh); err != nil {
		return err
	}
	d.clock.lap(t, d.clock.decodeStage())
	// Scaled pixel u covers full-size pixels [u/f, (u+1)/f): the region
	// maps to scaled coordinates by f exactly; the last pixel of a side
	// that f does not divide is only partly inside the image.
	fs := f.float()
	s.resampleBox(dst, s.rgb, sw, sh,
		float64(p.box.Min.X)*fs, float64(p.box.Min.Y)*fs, float64(p.box.Dx())*fs, float64(p.box.Dy())*fs,
		p.fullW, p.fullH, p.offX, p.offY, d.size, d.size, p.flip, d.luts)
	return nil
}
