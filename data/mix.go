package data

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Mixup mixes a batch with its own reverse, as timm's Mixup does in its
// default "batch" mode: sample i with sample N−1−i, one λ for the batch.
// Mixup blends whole images, x ← λ·x + (1−λ)·flip(x); CutMix pastes a box
// of the reversed batch, of area about (1−λ)·H·W, and λ is then corrected
// to the box's exact share. The targets are the same mix of the
// label-smoothed one-hots of both labels (timm's mixup_target).
type Mixup struct {
	// MixupAlpha and CutmixAlpha are the α of Beta(α, α) (0: off).
	MixupAlpha, CutmixAlpha float64
	// Prob is the chance that a batch is mixed at all; SwitchProb the
	// chance of CutMix rather than mixup when both are on.
	Prob, SwitchProb float64
	// Smoothing is the label smoothing folded into the targets.
	Smoothing float64
	Classes   int
}

// MixDraw is one batch's random choices. Lam 1 leaves the batch as it is.
type MixDraw struct {
	Lam    float64
	Cutmix bool
	// The CutMix box: rows [Y0, Y1) and columns [X0, X1).
	Y0, Y1, X0, X1 int
}

// Enabled reports whether m mixes anything.
func (m Mixup) Enabled() bool { return m.Prob > 0 && (m.MixupAlpha > 0 || m.CutmixAlpha > 0) }

// Draw makes a batch's choices for images of h × w pixels in timm's order:
// whether to mix, which of the two, λ, then the box's centre.
func (m Mixup) Draw(rng *rand.Rand, h, w int) MixDraw {
	d := MixDraw{Lam: 1}
	if !m.Enabled() || rng.Float64() >= m.Prob {
		return d
	}
	switch {
	case m.MixupAlpha > 0 && m.CutmixAlpha > 0:
		d.Cutmix = rng.Float64() < m.SwitchProb
		if d.Cutmix {
			d.Lam = Beta(rng, m.CutmixAlpha, m.CutmixAlpha)
		} else {
			d.Lam = Beta(rng, m.MixupAlpha, m.MixupAlpha)
		}
	case m.MixupAlpha > 0:
		d.Lam = Beta(rng, m.MixupAlpha, m.MixupAlpha)
	default:
		d.Cutmix = true
		d.Lam = Beta(rng, m.CutmixAlpha, m.CutmixAlpha)
	}
	if d.Cutmix {
		d.Y0, d.Y1, d.X0, d.X1 = CutmixBox(d.Lam, h, w, rng.IntN(h), rng.IntN(w))
		d.Lam = 1 - float64((d.Y1-d.Y0)*(d.X1-d.X0))/float64(h*w)
	}
	return d
}

// CutmixBox is timm's rand_bbox for the centre (cy, cx): a box of
// ⌊h·√(1−λ)⌋ × ⌊w·√(1−λ)⌋ pixels around it, clipped to the image.
func CutmixBox(lam float64, h, w, cy, cx int) (y0, y1, x0, x1 int) {
	r := math.Sqrt(1 - lam)
	ch, cw := int(float64(h)*r), int(float64(w)*r)
	clip := func(v, hi int) int { return min(max(v, 0), hi) }
	return clip(cy-ch/2, h), clip(cy+ch/2, h), clip(cx-cw/2, w), clip(cx+cw/2, w)
}

// Apply mixes x, n images of c × h × w, in place as d says; scratch holds at
// least one image (mixup writes both images of a pair at once).
func (d MixDraw) Apply(x []float32, n, c, h, w int, scratch []float32) {
	if d.Lam == 1 && !d.Cutmix {
		return
	}
	size := c * h * w
	if len(x) != n*size || len(scratch) < size {
		panic(fmt.Sprintf("data: MixDraw.Apply: %d values for %d images of %d, scratch %d", len(x), n, size, len(scratch)))
	}
	for i := range n / 2 {
		a, b := x[i*size:(i+1)*size], x[(n-1-i)*size:(n-i)*size]
		if d.Cutmix {
			// The pair swaps its boxes.
			for ch := range c {
				for y := d.Y0; y < d.Y1; y++ {
					o := ch*h*w + y*w
					ra, rb := a[o+d.X0:o+d.X1], b[o+d.X0:o+d.X1]
					for j := range ra {
						ra[j], rb[j] = rb[j], ra[j]
					}
				}
			}
			continue
		}
		lam, rest := float32(d.Lam), float32(1-d.Lam)
		s := scratch[:size]
		copy(s, a)
		for j := range a {
			a[j] = a[j]*lam + b[j]*rest
			b[j] = b[j]*lam + s[j]*rest
		}
	}
	// An odd batch's middle image is mixed with itself: it stays.
}

// Targets writes the soft targets of labels y (one row of Classes values
// per label) for the draw d into dst.
func (m Mixup) Targets(dst []float32, y []int32, d MixDraw) {
	k, n := m.Classes, len(y)
	if len(dst) != n*k {
		panic(fmt.Sprintf("data: Mixup.Targets: %d values for %d labels of %d classes", len(dst), n, k))
	}
	off := m.Smoothing / float64(k)
	on := 1 - m.Smoothing + off
	for i := range n {
		row := dst[i*k : (i+1)*k]
		for j := range row {
			row[j] = float32(off)
		}
		row[y[i]] += float32((on - off) * d.Lam)
		row[y[n-1-i]] += float32((on - off) * (1 - d.Lam))
	}
}

// Beta draws from Beta(a, b) as X/(X+Y) with X ~ Gamma(a), Y ~ Gamma(b).
func Beta(rng *rand.Rand, a, b float64) float64 {
	x, y := gamma(rng, a), gamma(rng, b)
	if x+y == 0 {
		// Both underflowed (tiny α): the limit puts the mass at 0 and 1.
		if rng.Float64() < a/(a+b) {
			return 1
		}
		return 0
	}
	return x / (x + y)
}

// gamma draws from Gamma(a, 1) by Marsaglia and Tsang's method; a < 1
// boosts to a+1 and scales by U^(1/a).
func gamma(rng *rand.Rand, a float64) float64 {
	if a < 1 {
		u := rng.Float64()
		return gamma(rng, a+1) * math.Pow(u, 1/a)
	}
	d := a - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := rng.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := rng.Float64()
		if u < 1-0.0331*x*x*x*x || math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}

// SeedMix reseeds pcg for the mixing of one rank's batch: a function of the
// seed, the epoch, the step within it and the rank only, so that a resumed
// run mixes as an uninterrupted one.
func SeedMix(pcg *rand.PCG, seed uint64, epoch, step, rank int) {
	k := epochKey(tagMix, seed, epoch)
	pcg.Seed(mix64(k+uint64(step)*golden), mix64(k^(uint64(rank)+1)*golden))
}

const tagMix uint64 = 0x4d49585550303031 // "MIXUP001"
