package data

import (
	"image"
	"math"
	"math/rand/v2"
	"testing"
)

func TestCropPadFlip(t *testing.T) {
	// One 3×3 channel holding 1..9; identity table so outputs are bytes.
	src := []uint8{
		1, 2, 3,
		4, 5, 6,
		7, 8, 9,
	}
	id := make([]lut, 1)
	for p := range 256 {
		id[0][p] = float32(p)
	}
	for _, tc := range []struct {
		name   string
		dy, dx int
		flip   bool
		want   []float32
	}{
		{"identity", 0, 0, false, []float32{1, 2, 3, 4, 5, 6, 7, 8, 9}},
		// RandomCrop(3, padding=1) with top=0, left=2: shifted up-left into the pad.
		{"crop top-left pad", -1, 1, false, []float32{0, 0, 0, 2, 3, 0, 5, 6, 0}},
		{"crop bottom-right pad", 1, -1, false, []float32{0, 4, 5, 0, 7, 8, 0, 0, 0}},
		{"flip", 0, 0, true, []float32{3, 2, 1, 6, 5, 4, 9, 8, 7}},
		// Flip applies to the crop: crop = [[0,0,0],[2,3,0],[5,6,0]], mirrored.
		{"crop then flip", -1, 1, true, []float32{0, 0, 0, 0, 3, 2, 0, 6, 5}},
		{"all pad", 3, 0, false, []float32{0, 0, 0, 0, 0, 0, 0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := make([]float32, 9)
			cropPadFlip(dst, src, 1, 3, 3, tc.dy, tc.dx, tc.flip, id)
			for i := range dst {
				if dst[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", dst, tc.want)
				}
			}
		})
	}
}

func TestNormalizeLUT(t *testing.T) {
	luts, err := makeLUTs(CIFAR10Stats, 3)
	if err != nil {
		t.Fatal(err)
	}
	// torchvision: ToTensor gives 255/255 = 1 and 128/255; Normalize subtracts then divides (float32).
	for _, tc := range []struct {
		ch   int
		p    uint8
		want float64
	}{
		{0, 255, (1 - 0.4914) / 0.2470},
		{1, 0, -0.4822 / 0.2435},
		{2, 128, (128.0/255 - 0.4465) / 0.2616},
	} {
		if got := luts[tc.ch][tc.p]; math.Abs(float64(got)-tc.want) > 1e-6 {
			t.Errorf("channel %d byte %d: %g, want %g", tc.ch, tc.p, got, tc.want)
		}
	}
	if _, err := makeLUTs(Stats{Mean: []float32{0.5}, Std: []float32{0}}, 1); err == nil {
		t.Error("std 0 accepted")
	}
	if _, err := makeLUTs(MNISTStats, 3); err == nil {
		t.Error("1-channel stats accepted for 3 channels")
	}
	if l, _ := makeLUTs(identityStats, 2); l[1][51] != 0.2 {
		t.Errorf("identity: 51 → %g, want 0.2", l[1][51])
	}
}

func TestRandomCropParams(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	seen := map[[2]int]bool{}
	for range 2000 {
		top, left := randomCropParams(rng, 4)
		if top < 0 || top > 8 || left < 0 || left > 8 {
			t.Fatalf("offset (%d, %d) outside [0, 8]", top, left)
		}
		seen[[2]int{top, left}] = true
	}
	if len(seen) != 81 {
		t.Errorf("%d of 81 crop positions drawn", len(seen))
	}
}

func TestRandomResizedCropRect(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		r := randomResizedCropRect(rng, 500, 375)
		if !r.In(image.Rect(0, 0, 500, 375)) || r.Empty() {
			t.Fatalf("crop %v outside 500×375", r)
		}
		area := float64(r.Dx()*r.Dy()) / (500 * 375)
		ratio := float64(r.Dx()) / float64(r.Dy())
		// Rounding to whole pixels can stretch the bounds slightly.
		if area < 0.079 || area > 1 || ratio < 0.74 || ratio > 1.35 {
			t.Fatalf("crop %v: area fraction %.3f, ratio %.3f", r, area, ratio)
		}
	}
	for _, tc := range []struct {
		w, h int
		want image.Rectangle
	}{
		{100, 10, image.Rect(43, 0, 56, 10)}, // too wide: h=10, w=round(13.33)=13, j=(100−13)/2
		{10, 100, image.Rect(0, 43, 10, 56)}, // too tall: w=10, h=round(13.33)=13, i=(100−13)/2
		{40, 35, image.Rect(0, 0, 40, 35)},   // ratio inside the range: the whole image
		{10, 12, image.Rect(0, 0, 10, 12)},
		{9, 16, image.Rect(0, 2, 9, 14)}, // w=9, h=round(12)=12, i=(16−12)/2=2
		{16, 9, image.Rect(2, 0, 14, 9)}, // h=9, w=round(12)=12, j=2
		{3, 3, image.Rect(0, 0, 3, 3)},
		{7, 2, image.Rect(2, 0, 5, 2)},        // w=round(2.67)=3, j=(7−3)/2=2
		{2, 7, image.Rect(0, 2, 2, 5)},        // h=round(2.67)=3, i=2
		{5, 2, image.Rect(1, 0, 4, 2)},        // w=round(2.67)=3, j=1
		{1000, 1, image.Rect(499, 0, 500, 1)}, // w=round(1.33)=1
	} {
		if got := rrcFallback(tc.w, tc.h, 3.0/4, 4.0/3); got != tc.want {
			t.Errorf("fallback %d×%d = %v, want %v", tc.w, tc.h, got, tc.want)
		}
	}
}

func TestResizeGeometry(t *testing.T) {
	for _, tc := range []struct{ w, h, size, ww, wh int }{
		{500, 375, 256, 341, 256}, // int(256·500/375) = int(341.33)
		{375, 500, 256, 256, 341},
		{64, 64, 64, 64, 64},
		{33, 32, 32, 33, 32},
	} {
		if w, h := resizeShorter(tc.w, tc.h, tc.size); w != tc.ww || h != tc.wh {
			t.Errorf("Resize(%d) of %d×%d = %d×%d, want %d×%d", tc.size, tc.w, tc.h, w, h, tc.ww, tc.wh)
		}
	}
	for _, tc := range []struct{ in, out, want int }{
		{341, 224, 58}, // round(58.5) = 58, half to even as Python
		{256, 224, 16},
		{343, 224, 60}, // round(59.5) = 60
		{32, 32, 0},
	} {
		if got := centerCropOffset(tc.in, tc.out); got != tc.want {
			t.Errorf("CenterCrop(%d) of %d: offset %d, want %d", tc.out, tc.in, got, tc.want)
		}
	}
}

// TestResample checks the PIL-style bilinear filter against outputs of
// PIL 9.4's Image.resize(…, BILINEAR) on the same grey images (PIL works in
// 8-bit fixed point, so ±1 is allowed).
func TestResample(t *testing.T) {
	grey := func(v ...uint8) []uint8 {
		out := make([]uint8, 0, 3*len(v))
		for _, p := range v {
			out = append(out, p, p, p)
		}
		return out
	}
	ramp := make([]uint8, 35)
	for i := range ramp {
		ramp[i] = uint8(i * 7)
	}
	id := make([]lut, 3)
	for c := range id {
		for p := range 256 {
			id[c][p] = float32(p)
		}
	}
	for _, tc := range []struct {
		name         string
		src          []uint8
		w, h, ow, oh int
		offX, offY   int
		fullW, fullH int
		flip         bool
		want         []float32
	}{
		{"down 2× row", grey(0, 100, 200, 250), 4, 1, 2, 1, 0, 0, 2, 1, false, []float32{71, 207}},
		{"up 3×3 to 5×4", grey(0, 100, 200, 50, 150, 250, 10, 20, 30), 3, 3, 5, 4, 0, 0, 5, 4, false,
			[]float32{0, 40, 100, 160, 200, 31, 71, 131, 191, 231, 35, 62, 101, 141, 168, 10, 14, 20, 26, 30}},
		{"down 7×5 to 3×2", grey(ramp...), 7, 5, 3, 2, 0, 0, 3, 2, false, []float32{55, 70, 85, 153, 168, 183}},
		{"window of the 5×4", grey(0, 100, 200, 50, 150, 250, 10, 20, 30), 3, 3, 2, 2, 2, 1, 5, 4, false,
			[]float32{131, 191, 101, 141}},
		{"flip", grey(0, 100, 200, 250), 4, 1, 2, 1, 0, 0, 2, 1, true, []float32{207, 71}},
		{"identity", grey(9, 8, 7, 6, 5, 4), 3, 2, 3, 2, 0, 0, 3, 2, false, []float32{9, 8, 7, 6, 5, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s resampler
			dst := make([]float32, 3*tc.ow*tc.oh)
			s.resample(dst, tc.src, tc.w, tc.h, tc.fullW, tc.fullH, tc.offX, tc.offY, tc.ow, tc.oh, tc.flip, id)
			for c := range 3 {
				for i, want := range tc.want {
					if got := dst[c*tc.ow*tc.oh+i]; math.Abs(float64(got-want)) > 1 {
						t.Fatalf("channel %d: got %v, want %v", c, dst[c*tc.ow*tc.oh:(c+1)*tc.ow*tc.oh], tc.want)
					}
				}
			}
		})
	}
}

// TestAugmentDeterministic: the same (seed, epoch, index) gives the same
// crop and flip; other epochs and indices give others.
func TestAugmentDeterministic(t *testing.T) {
	draw := func(seed uint64, epoch, i int) [3]int {
		r := AugmentRand(seed, epoch, i)
		top, left := randomCropParams(r, 4)
		f := 0
		if flipCoin(r) {
			f = 1
		}
		return [3]int{top, left, f}
	}
	first, again := draw(7, 2, 100), draw(7, 2, 100)
	if first != again {
		t.Fatal("same key, different draws")
	}
	diff := 0
	for i := range 50 {
		if draw(7, 2, i) != draw(7, 3, i) {
			diff++
		}
		if draw(7, 2, i) != draw(8, 2, i) {
			diff++
		}
	}
	if diff < 80 {
		t.Errorf("only %d of 100 draws changed with epoch or seed", diff)
	}
}
