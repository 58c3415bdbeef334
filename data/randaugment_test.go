package data

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/macdist/macdist/internal/fixture"
	"github.com/macdist/macdist/safetensors"
)

func fixtureBytes(t *testing.T, f *safetensors.File, name string) []uint8 {
	t.Helper()
	v := fixture.Labels(t, f, name)
	out := make([]uint8, len(v))
	for i, x := range v {
		out[i] = uint8(x)
	}
	return out
}

// TestAugOpsMatchTorchvision applies every operation of RandAugment and
// TrivialAugmentWide to the images torchvision 0.14 transformed with the
// same magnitudes (testdata/gen/gen_recipe.py), RGB and grey: every byte
// must agree. The affine ops hit exact half-pixel ties (a shear of 0.6 puts
// every fifth column on one), which only torch's own float32 grid
// arithmetic rounds the same way.
func TestAugOpsMatchTorchvision(t *testing.T) {
	f := fixture.Load(t, "recipe")
	const h, w = 20, 24
	for _, c := range []int{3, 1} {
		img := fixtureBytes(t, f, fmt.Sprintf("aug%d.img", c))
		for op := OpIdentity; op < numAugOps; op++ {
			for s := range 5 {
				key := fmt.Sprintf("aug%d.%s.%d", c, op, s)
				want := fixtureBytes(t, f, key)
				mag, _ := fixture.Floats(t, f, key+".mag")
				got := append([]uint8(nil), img...)
				ApplyAugOp(got, c, h, w, op, float64(mag[0]))
				bad := 0
				for i := range got {
					if got[i] != want[i] {
						bad++
					}
				}
				if bad > 0 {
					t.Errorf("%s (magnitude %g): %d of %d bytes differ from torchvision's", key, mag[0], bad, len(got))
				}
			}
		}
	}
}

// TestAugMagnitudesMatchTorchvision compares the magnitude of every op at
// every bin with torchvision's augmentation spaces.
func TestAugMagnitudesMatchTorchvision(t *testing.T) {
	f := fixture.Load(t, "recipe")
	for _, space := range []string{"ra", "ta"} {
		for op := OpIdentity; op < numAugOps; op++ {
			want, _ := fixture.Floats(t, f, fmt.Sprintf("space.%s.%s", space, op))
			ws, _ := fixture.Floats(t, f, fmt.Sprintf("space.%s.%s.signed", space, op))
			for bin := range 31 {
				m, signed := magnitude(op, float64(bin), 31, 20, 24, space == "ta")
				if math.Abs(m-float64(want[bin])) > 1e-4*max(1, math.Abs(m)) || signed != (ws[0] == 1) {
					t.Errorf("%s %s bin %d: %v (signed %v), torchvision's %v (%v)", space, op, bin, m, signed, want[bin], ws[0] == 1)
				}
			}
		}
	}
}

// TestAutoAugmentDraws: each policy picks its ops uniformly and flips the
// sign of signed ones half the time; TrivialAugmentWide's bin is uniform
// over 31 and RandAugment's mstd spreads bin 9 as N(9, 0.5²).
func TestAutoAugmentDraws(t *testing.T) {
	const n = 60000
	rng := rand.New(rand.NewPCG(5, 6))
	share := func(what string, k, trials int, p float64) {
		t.Helper()
		if math.Abs(float64(k)/float64(trials)-p) > 5*math.Sqrt(p*(1-p)/float64(trials)) {
			t.Errorf("%s: %d of %d, want a share of %.4f", what, k, trials, p)
		}
	}
	for _, spec := range []string{"rand-m9-mstd0.5", "trivialaugment"} {
		a, err := ParseAutoAugment(spec)
		if err != nil {
			t.Fatal(err)
		}
		var ops [numAugOps]int
		var bins [31]int
		var neg, signed int
		var s1, s2 float64
		for range n {
			op, bin, m := a.draw(rng, 20, 24)
			ops[op]++
			if a.Trivial {
				bins[int(bin)]++
			}
			s1 += bin
			s2 += bin * bin
			if _, sg := magnitude(op, bin, 31, 20, 24, a.Trivial); sg && m != 0 {
				signed++
				if m < 0 {
					neg++
				}
			}
		}
		for op, k := range ops {
			share(spec+" "+AugOp(op).String(), k, n, 1/float64(numAugOps))
		}
		share(spec+" negative signs", neg, signed, 0.5)
		if a.Trivial {
			for b, k := range bins {
				share(fmt.Sprintf("%s bin %d", spec, b), k, n, 1.0/31)
			}
		} else if mean, sd := s1/n, math.Sqrt(s2/n-(s1/n)*(s1/n)); math.Abs(mean-9) > 0.01 || math.Abs(sd-0.5) > 0.01 {
			t.Errorf("%s: bins drawn with mean %.4f and sd %.4f, want 9 and 0.5", spec, mean, sd)
		}
	}
	a, err := ParseAutoAugment("rand-m9-mstd0.5")
	if err != nil || a.N != 2 || a.M != 9 || a.MStd != 0.5 || a.Trivial {
		t.Fatalf("rand-m9-mstd0.5: %+v, %v", a, err)
	}
	for _, bad := range []string{"rand-m31", "rand-x2", "auto", "rand-mstd-1", "rand-n-2"} {
		if _, err := ParseAutoAugment(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	// The policies run end to end on small images of either kind.
	var s augScratch
	img := make([]uint8, 3*4*4)
	for _, spec := range []string{"rand-m9-mstd0.5", "rand-n3-m15", "trivialaugment"} {
		p, _ := ParseAutoAugment(spec)
		for range 200 {
			p.Apply(img, 3, 4, 4, rng, &s)
			p.Apply(img[:16], 1, 4, 4, rng, &s)
		}
	}
}

// TestRandomErasingBoxes compares the distribution of EraseBox's boxes
// with torchvision's get_params over 40 000 draws each: the means of top,
// left, height, width and of erasing at all, within five standard errors.
func TestRandomErasingBoxes(t *testing.T) {
	f := fixture.Load(t, "recipe")
	wantMean, _ := fixture.Floats(t, f, "erase.mean")
	wantVar, _ := fixture.Floats(t, f, "erase.var")
	nt, _ := fixture.Floats(t, f, "erase.n")
	const n = 40000
	rng := rand.New(rand.NewPCG(7, 8))
	var sum [5]float64
	for range n {
		top, left, eh, ew, ok := EraseBox(rng, 32, 40)
		if ok && (top < 0 || left < 0 || top+eh > 32 || left+ew > 40 || eh <= 0 || ew <= 0) {
			t.Fatalf("box %d %d %d %d outside 32×40", top, left, eh, ew)
		}
		sum[0] += float64(top)
		sum[1] += float64(left)
		sum[2] += float64(eh)
		sum[3] += float64(ew)
		if ok {
			sum[4]++
		}
	}
	for i, name := range []string{"top", "left", "height", "width", "erased"} {
		mean := sum[i] / n
		se := math.Sqrt(float64(wantVar[i])/n + float64(wantVar[i])/float64(nt[0]))
		if math.Abs(mean-float64(wantMean[i])) > 5*se+1e-9 {
			t.Errorf("%s: mean %.4f, torchvision's %.4f (±%.4f)", name, mean, wantMean[i], se)
		}
	}
	img := make([]float32, 2*5*6)
	for i := range img {
		img[i] = 1
	}
	Erase(img, 2, 5, 6, 1, 2, 3, 2, 0)
	zeros := 0
	for i, v := range img {
		ch, y, x := i/30, i%30/6, i%6
		in := y >= 1 && y < 4 && x >= 2 && x < 4
		if (v == 0) != in {
			t.Fatalf("channel %d (%d, %d) = %v", ch, y, x, v)
		}
		if v == 0 {
			zeros++
		}
	}
	if zeros != 2*3*2 {
		t.Errorf("%d erased values, want 12", zeros)
	}
}
