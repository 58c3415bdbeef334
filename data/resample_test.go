package data

import (
	"math"
	"math/rand/v2"
	"testing"
)

// pilAxis is a reference for one axis of PIL's bilinear resize of the
// region [x0, x0+span) of an in-sample axis to full samples: per output,
// the first source index and the weights in PIL's fixed point (22
// fractional bits, one int32 per channel), written plainly and
// independently of axisCoeffs.
func pilAxis(in int, x0, span float64, full int) (start []int, w [][]int64) {
	scale := span / float64(full)
	support := math.Max(scale, 1)
	first, last := max(int(math.Floor(x0)), 0), min(int(math.Ceil(x0+span)), in)
	for o := range full {
		c := x0 + (float64(o)+0.5)*scale
		lo, hi := max(int(c-support+0.5), first), min(int(c+support+0.5), last)
		var fw []float64
		var sum float64
		for x := lo; x < hi; x++ {
			v := math.Max(1-math.Abs((float64(x)-c+0.5)/support), 0)
			fw = append(fw, v)
			sum += v
		}
		q := make([]int64, len(fw))
		for j := range fw {
			q[j] = int64(math.Floor(0.5 + fw[j]/sum*(1<<22)))
		}
		start, w = append(start, lo), append(w, q)
	}
	return start, w
}

// pilResize is the reference resize of one channel: horizontal pass, a
// byte, vertical pass, a byte, as PIL rounds.
func pilResize(src []uint8, w, h int, bx, by, bw, bh float64, fw, fh int) []uint8 {
	xs, xw := pilAxis(w, bx, bw, fw)
	ys, yw := pilAxis(h, by, bh, fh)
	clip := func(v int64) uint8 { return uint8(min(max(v>>22, 0), 255)) }
	tmp := make([]uint8, h*fw)
	for y := range h {
		for o := range fw {
			acc := int64(1 << 21)
			for j, k := range xw[o] {
				acc += int64(src[y*w+xs[o]+j]) * k
			}
			tmp[y*fw+o] = clip(acc)
		}
	}
	out := make([]uint8, fh*fw)
	for o := range fh {
		for x := range fw {
			acc := int64(1 << 21)
			for j, k := range yw[o] {
				acc += int64(tmp[(ys[o]+j)*fw+x]) * k
			}
			out[o*fw+x] = clip(acc)
		}
	}
	return out
}

// TestResampleMatchesPILFixedPoint compares the packed 13-bit resampling
// with PIL's 22-bit arithmetic on random images, regions and sizes (down
// by up to 5×, up by up to 2×, fractional boxes as the DCT-scaled decode
// makes): the coarser weights may move a byte by one level where the exact
// sum lies near a rounding boundary, and must do so rarely.
func TestResampleMatchesPILFixedPoint(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	id := make([]lut, 3)
	for c := range id {
		for p := range 256 {
			id[c][p] = float32(p)
		}
	}
	var s resampler
	var differ, total int
	for trial := range 60 {
		w, h := 8+r.IntN(300), 8+r.IntN(300)
		fw, fh := 4+r.IntN(120), 4+r.IntN(120)
		if trial%3 == 0 {
			fw, fh = max(w/5, 1)+r.IntN(2*w), max(h/5, 1)+r.IntN(2*h)
		}
		bw, bh := 1+r.Float64()*float64(w-1), 1+r.Float64()*float64(h-1)
		bx, by := r.Float64()*(float64(w)-bw), r.Float64()*(float64(h)-bh)
		if trial%2 == 0 { // whole pixels, as the full-size decode gives
			bx, by, bw, bh = math.Floor(bx), math.Floor(by), math.Ceil(bw), math.Ceil(bh)
		}
		src := make([]uint8, 3*w*h)
		smooth := r.IntN(2) == 0 // photographs are smooth; noise is the hard case
		for i := range src {
			if smooth {
				x, y := (i/3)%w, (i/3)/w
				src[i] = uint8(128 + 100*math.Sin(float64(x)/7+float64(i%3))*math.Cos(float64(y)/11))
			} else {
				src[i] = uint8(r.Uint32())
			}
		}
		dst := make([]float32, 3*fw*fh)
		s.resampleBox(dst, src, w, h, bx, by, bw, bh, fw, fh, 0, 0, fw, fh, false, id)
		for c := range 3 {
			ch := make([]uint8, w*h)
			for i := range ch {
				ch[i] = src[3*i+c]
			}
			want := pilResize(ch, w, h, bx, by, bw, bh, fw, fh)
			for i, v := range want {
				got := dst[c*fw*fh+i]
				if d := math.Abs(float64(got) - float64(v)); d > 1 {
					t.Fatalf("trial %d (%d×%d box %.2f,%.2f %.2f×%.2f → %d×%d) channel %d pixel %d: %v, PIL %d", trial, w, h, bx, by, bw, bh, fw, fh, c, i, got, v)
				} else if d > 0 {
					differ++
				}
				total++
			}
		}
	}
	if frac := float64(differ) / float64(total); frac > 0.01 {
		t.Errorf("%d of %d bytes (%.2f%%) a level from PIL's, want under 1%%", differ, total, 100*frac)
	} else {
		t.Logf("%d of %d bytes (%.3f%%) a level from PIL's", differ, total, 100*frac)
	}
}
