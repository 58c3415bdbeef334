package data

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// The operations of torchvision's RandAugment and TrivialAugmentWide
// (torchvision 0.14, transforms/autoaugment.py, on uint8 tensors): each
// works on a CHW byte image in place, with torchvision's arithmetic
// (float32 blends truncated to bytes, nearest-neighbour affine maps over
// torch's sampling grid, zeros outside the image).

// AugOp names an operation.
type AugOp int

// The operations, in torchvision's order of its augmentation spaces.
const (
	OpIdentity AugOp = iota
	OpShearX
	OpShearY
	OpTranslateX
	OpTranslateY
	OpRotate
	OpBrightness
	OpColor
	OpContrast
	OpSharpness
	OpPosterize
	OpSolarize
	OpAutoContrast
	OpEqualize
	numAugOps
)

var augOpNames = [...]string{"Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness",
	"Color", "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize"}

func (o AugOp) String() string { return augOpNames[o] }

// augScratch holds one image's worth of working memory.
type augScratch struct {
	a, b []uint8
	f    []float32
}

func growU8(b []uint8, n int) []uint8 {
	if cap(b) < n {
		return make([]uint8, n)
	}
	return b[:n]
}

// ApplyAugOp applies op with torchvision's magnitude (already signed) to
// img, c × h × w bytes, in place.
func ApplyAugOp(img []uint8, c, h, w int, op AugOp, magnitude float64) {
	var s augScratch
	applyAugOp(img, c, h, w, op, magnitude, &s)
}

func applyAugOp(img []uint8, c, h, w int, op AugOp, mag float64, s *augScratch) {
	switch op {
	case OpIdentity:
	case OpShearX:
		affine(img, c, h, w, inverseAffine(-float64(w)/2, -float64(h)/2, 0, 0, 0, math.Atan(mag)*180/math.Pi, 0), s)
	case OpShearY:
		affine(img, c, h, w, inverseAffine(-float64(w)/2, -float64(h)/2, 0, 0, 0, 0, math.Atan(mag)*180/math.Pi), s)
	case OpTranslateX:
		affine(img, c, h, w, inverseAffine(0, 0, 0, float64(int(mag)), 0, 0, 0), s)
	case OpTranslateY:
		affine(img, c, h, w, inverseAffine(0, 0, 0, 0, float64(int(mag)), 0, 0), s)
	case OpRotate:
		// torchvision's rotate passes −angle to the affine matrix.
		affine(img, c, h, w, inverseAffine(0, 0, -mag, 0, 0, 0, 0), s)
	case OpBrightness:
		blendConst(img, 1+mag, 0)
	case OpColor:
		if c == 3 {
			s.a = growU8(s.a, h*w)
			grayscale(s.a, img, h*w)
			for ch := range 3 {
				blend(img[ch*h*w:(ch+1)*h*w], s.a, 1+mag)
			}
		}
	case OpContrast:
		var mean float32
		if c == 3 {
			s.a = growU8(s.a, h*w)
			grayscale(s.a, img, h*w)
			mean = meanU8(s.a)
		} else {
			mean = meanU8(img)
		}
		blendConst(img, 1+mag, mean)
	case OpSharpness:
		sharpness(img, c, h, w, 1+mag, s)
	case OpPosterize:
		mask := uint8(0xff << (8 - int(mag)))
		for i, v := range img {
			img[i] = v & mask
		}
	case OpSolarize:
		for i, v := range img {
			if float64(v) >= mag {
				img[i] = 255 - v
			}
		}
	case OpAutoContrast:
		autocontrast(img, c, h*w)
	case OpEqualize:
		for ch := range c {
			equalize(img[ch*h*w : (ch+1)*h*w])
		}
	default:
		panic(fmt.Sprintf("data: augmentation op %d", op))
	}
}

// inverseAffine is torchvision's _get_inverse_affine_matrix for a centre
// (cx, cy) relative to the image's, an angle and shears in degrees, a
// translation and scale 1.
func inverseAffine(cx, cy, angle, tx, ty, shearX, shearY float64) [6]float64 {
	rot := angle * math.Pi / 180
	sx, sy := shearX*math.Pi/180, shearY*math.Pi/180
	a := math.Cos(rot-sy) / math.Cos(sy)
	b := -math.Cos(rot-sy)*math.Tan(sx)/math.Cos(sy) - math.Sin(rot)
	c := math.Sin(rot-sy) / math.Cos(sy)
	d := -math.Sin(rot-sy)*math.Tan(sx)/math.Cos(sy) + math.Cos(rot)
	m := [6]float64{d, -b, 0, -c, a, 0}
	m[2] += m[0]*(-cx-tx) + m[1]*(-cy-ty)
	m[5] += m[3]*(-cx-tx) + m[4]*(-cy-ty)
	m[2] += cx
	m[5] += cy
	return m
}

// affine resamples img through the inverse map m as torchvision's tensor
// affine does: the output pixel (x, y) at x+0.5−w/2, y+0.5−h/2 from the
// centre, mapped by m, normalised by w/2 and h/2, unnormalised as
// grid_sample does (align_corners=False) and rounded half to even; zero
// outside. The arithmetic is float32, as torch's.
func affine(img []uint8, c, h, w int, m [6]float64, s *augScratch) {
	n := c * h * w
	s.b = growU8(s.b, n)
	copy(s.b, img)
	hw, hh := float32(0.5*float64(w)), float32(0.5*float64(h))
	r00, r10, r20 := float32(m[0])/hw, float32(m[1])/hw, float32(m[2])/hw
	r01, r11, r21 := float32(m[3])/hh, float32(m[4])/hh, float32(m[5])/hh
	fw, fh := float32(w), float32(h)
	for y := range h {
		by := float32(-float64(h)*0.5+0.5) + float32(y)
		for x := range w {
			bx := float32(-float64(w)*0.5+0.5) + float32(x)
			gx, gy := gridDot(bx, by, r00, r10, r20), gridDot(bx, by, r01, r11, r21)
			ix := ((gx+1)*fw - 1) / 2
			iy := ((gy+1)*fh - 1) / 2
			sx, sy := int(math.RoundToEven(float64(ix))), int(math.RoundToEven(float64(iy)))
			inside := sx >= 0 && sx < w && sy >= 0 && sy < h
			for ch := range c {
				var v uint8
				if inside {
					v = s.b[ch*h*w+sy*w+sx]
				}
				img[ch*h*w+y*w+x] = v
			}
		}
	}
}

// gridDot is (x, y, 1)·(r0, r1, r2) as torch's float32 bmm forms it on
// the CPU: x·r0 rounded, then y·r1 fused into it, then r2 added. (A float32
// product is exact in float64, so the fused step rounds once there and
// once to float32.)
func gridDot(x, y, r0, r1, r2 float32) float32 {
	acc := x * r0
	acc = float32(math.FMA(float64(y), float64(r1), float64(acc)))
	return acc + r2
}

// toU8 is torch's float-to-uint8 conversion after a clamp to [0, 255]:
// truncation.
func toU8(v float32) uint8 {
	if v <= 0 || v != v {
		return 0
	}
	if v >= 255 {
		return 255
	}
	return uint8(v)
}

// blendConst is torchvision's _blend(img, constant, ratio):
// ratio·img + (1−ratio)·other, clamped and truncated.
// torch multiplies a float32 tensor by a Python float as float32: both
// weights are rounded from float64.
func blendConst(img []uint8, ratio float64, other float32) {
	r1, o := float32(ratio), float32(1-ratio)*other
	for i, v := range img {
		img[i] = toU8(r1*float32(v) + o)
	}
}

// blend is _blend with a second image.
func blend(img, other []uint8, ratio float64) {
	r1, r2 := float32(ratio), float32(1-ratio)
	for i, v := range img {
		img[i] = toU8(r1*float32(v) + r2*float32(other[i]))
	}
}

// grayscale is rgb_to_grayscale on bytes: (0.2989·r + 0.587·g + 0.114·b)
// in float32, truncated.
func grayscale(dst, img []uint8, plane int) {
	r, g, b := img[:plane], img[plane:2*plane], img[2*plane:3*plane]
	for i := range dst {
		dst[i] = toU8(float32(0.2989)*float32(r[i]) + float32(0.587)*float32(g[i]) + float32(0.114)*float32(b[i]))
	}
}

func meanU8(v []uint8) float32 {
	var s int64
	for _, x := range v {
		s += int64(x)
	}
	return float32(float64(s) / float64(len(v)))
}

// sharpness blends with the image smoothed by torchvision's 3×3 kernel
// (1 around 5, over 13) inside a one-pixel border that keeps its values.
func sharpness(img []uint8, c, h, w int, ratio float64, s *augScratch) {
	if h <= 2 || w <= 2 {
		return
	}
	s.a = growU8(s.a, c*h*w)
	copy(s.a, img)
	k := float32(1) / 13
	kc := float32(5) / 13
	for ch := range c {
		p := img[ch*h*w : (ch+1)*h*w]
		q := s.a[ch*h*w : (ch+1)*h*w]
		for y := 1; y < h-1; y++ {
			for x := 1; x < w-1; x++ {
				var sum float32
				for dy := -1; dy <= 1; dy++ {
					for dx := -1; dx <= 1; dx++ {
						wt := k
						if dy == 0 && dx == 0 {
							wt = kc
						}
						sum += wt * float32(p[(y+dy)*w+x+dx])
					}
				}
				q[y*w+x] = toU8(float32(math.RoundToEven(float64(sum))))
			}
		}
	}
	blend(img, s.a, ratio)
}

// autocontrast stretches each channel to [0, 255].
func autocontrast(img []uint8, c, plane int) {
	for ch := range c {
		p := img[ch*plane : (ch+1)*plane]
		lo, hi := uint8(255), uint8(0)
		for _, v := range p {
			lo, hi = min(lo, v), max(hi, v)
		}
		if lo == hi {
			continue
		}
		mn := float32(lo)
		scale := float32(255) / (float32(hi) - mn)
		for i, v := range p {
			p[i] = toU8((float32(v) - mn) * scale)
		}
	}
}

// equalize is torchvision's _scale_channel: a histogram-equalising table
// from the cumulative counts, in integers.
func equalize(p []uint8) {
	var hist [256]int
	for _, v := range p {
		hist[v]++
	}
	last, total := -1, 0
	for v := 255; v >= 0; v-- {
		if hist[v] != 0 {
			last = v
			break
		}
	}
	for v := range 256 {
		if hist[v] != 0 && v != last {
			total += hist[v]
		}
	}
	step := total / 255
	if step == 0 {
		return
	}
	var lut [256]uint8
	cum := 0
	for v := range 256 {
		// lut is shifted by one: entry v holds the value of cumsum up to v−1.
		lut[v] = uint8(min((cum+step/2)/step, 255))
		cum += hist[v]
	}
	for i, v := range p {
		p[i] = lut[v]
	}
}

// AutoAugment is a policy of torchvision's RandAugment or
// TrivialAugmentWide, named as timm names them.
type AutoAugment struct {
	// Trivial selects TrivialAugmentWide; otherwise RandAugment with N ops
	// at magnitude bin M of Bins, perturbed by N(0, MStd) per op (timm's
	// mstd; 0 is torchvision's fixed magnitude).
	Trivial bool
	N, M    int
	MStd    float64
	Bins    int
}

// ParseAutoAugment reads "rand-m9-n2-mstd0.5" (timm's RandAugment config
// string over torchvision's operations and magnitude bins: m is the bin of
// 31, default 9, n the number of ops, default 2) or "trivialaugment" (also
// "ta_wide"). "" means none (nil).
func ParseAutoAugment(s string) (*AutoAugment, error) {
	switch s {
	case "", "none":
		return nil, nil
	case "trivialaugment", "ta_wide", "ta-wide", "trivialaugmentwide":
		return &AutoAugment{Trivial: true, Bins: 31}, nil
	}
	parts := strings.Split(s, "-")
	if parts[0] != "rand" {
		return nil, fmt.Errorf("data: auto-augment %q: want rand-m9-mstd0.5 (RandAugment) or trivialaugment", s)
	}
	a := &AutoAugment{N: 2, M: 9, Bins: 31}
	for _, p := range parts[1:] {
		var err error
		switch {
		case strings.HasPrefix(p, "mstd"):
			a.MStd, err = strconv.ParseFloat(p[4:], 64)
			if err == nil && (a.MStd < 0 || math.IsInf(a.MStd, 0) || math.IsNaN(a.MStd)) {
				err = fmt.Errorf("negative or not finite")
			}
		case strings.HasPrefix(p, "m"):
			a.M, err = strconv.Atoi(p[1:])
			if err == nil && (a.M < 0 || a.M >= a.Bins) {
				err = fmt.Errorf("outside [0, %d]", a.Bins-1)
			}
		case strings.HasPrefix(p, "n"):
			a.N, err = strconv.Atoi(p[1:])
			if err == nil && a.N < 0 {
				err = fmt.Errorf("negative")
			}
		default:
			err = fmt.Errorf("unknown part")
		}
		if err != nil {
			return nil, fmt.Errorf("data: auto-augment %q: %q: %v", s, p, err)
		}
	}
	return a, nil
}

// magnitude is op's magnitude at bin (fractional bins interpolate
// linearly) for an image of h × w, from torchvision's augmentation spaces:
// RandAugment's, or TrivialAugmentWide's when wide. signed says whether a
// coin flips its sign.
func magnitude(op AugOp, bin float64, bins, h, w int, wide bool) (m float64, signed bool) {
	lin := func(hi float64) float64 { return hi * bin / float64(bins-1) }
	switch op {
	case OpShearX, OpShearY:
		if wide {
			return lin(0.99), true
		}
		return lin(0.3), true
	case OpTranslateX:
		if wide {
			return lin(32), true
		}
		return lin(150.0 / 331.0 * float64(w)), true
	case OpTranslateY:
		if wide {
			return lin(32), true
		}
		return lin(150.0 / 331.0 * float64(h)), true
	case OpRotate:
		if wide {
			return lin(135), true
		}
		return lin(30), true
	case OpBrightness, OpColor, OpContrast, OpSharpness:
		if wide {
			return lin(0.99), true
		}
		return lin(0.9), true
	case OpPosterize:
		// 8 − round(bin / ((bins−1)/4)), /6 for the wide space, at the
		// nearest whole bin.
		div := 4.0
		if wide {
			div = 6
		}
		return 8 - math.RoundToEven(math.Round(bin)/(float64(bins-1)/div)), false
	case OpSolarize:
		return 255 - lin(255), false
	}
	return 0, false
}

// Apply draws and applies the policy's operations to img.
func (a *AutoAugment) Apply(img []uint8, c, h, w int, rng *rand.Rand, s *augScratch) {
	n := a.N
	if a.Trivial {
		n = 1
	}
	for range n {
		op, _, m := a.draw(rng, h, w)
		applyAugOp(img, c, h, w, op, m, s)
	}
}

// draw picks one operation as torchvision does, then its magnitude bin and
// the signed magnitude.
func (a *AutoAugment) draw(rng *rand.Rand, h, w int) (op AugOp, bin, m float64) {
	op = AugOp(rng.IntN(int(numAugOps)))
	if a.Trivial {
		bin = float64(rng.IntN(a.Bins))
	} else {
		bin = float64(a.M)
		if a.MStd > 0 {
			bin = min(max(bin+rng.NormFloat64()*a.MStd, 0), float64(a.Bins-1))
		}
	}
	m, signed := magnitude(op, bin, a.Bins, h, w, a.Trivial)
	if signed && rng.IntN(2) == 1 {
		m = -m
	}
	return op, bin, m
}
