package data

import (
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestOpenSpecErrors(t *testing.T) {
	for _, spec := range []string{
		"", "imagenet", "cifar10", "cifar10:", "imagefolder", "synthetic", "synthetic:3x32:10:5",
		"synthetic:3x32x32:10", "synthetic:3x32x32:0:5", "synthetic:3x32x32:10:5:1:1", "synthetic:axbxc:1:1",
	} {
		_, _, err := Open(spec, Options{})
		if err == nil {
			t.Errorf("Open(%q) accepted", spec)
			continue
		}
		for _, form := range []string{"fashion-mnist:DIR", "cifar10:DIR", "cifar100:DIR", "imagefolder:PATH", "synthetic:CxHxW:K:N"} {
			if !strings.Contains(err.Error(), form) {
				t.Errorf("Open(%q) error does not list %s: %v", spec, form, err)
			}
		}
	}
	if _, err := ParseAugment("random"); err == nil {
		t.Error("ParseAugment accepted random")
	}
	for _, s := range []string{"", "default", "none", "crop-flip"} {
		a, err := ParseAugment(s)
		if err != nil || (s != "" && a.String() != s) {
			t.Errorf("ParseAugment(%q) = %v, %v", s, a, err)
		}
	}
	for _, tc := range []struct {
		name string
		mean float32 // first channel; 0: nil stats
		none bool
		bad  bool
	}{
		{name: ""}, {name: "default"}, {name: "none", none: true},
		{name: "cifar10", mean: 0.4914}, {name: "imagenet", mean: 0.485}, {name: "fashion-mnist", mean: 0.2860},
		{name: "cifar", bad: true},
	} {
		st, none, err := ParseStats(tc.name)
		switch {
		case tc.bad:
			if err == nil || !strings.Contains(err.Error(), "cifar10") {
				t.Errorf("ParseStats(%q): %v, want an error listing the names", tc.name, err)
			}
		case err != nil || none != tc.none || (st == nil) != (tc.mean == 0) || (st != nil && st.Mean[0] != tc.mean):
			t.Errorf("ParseStats(%q) = %v, %v, %v", tc.name, st, none, err)
		}
	}
}

func TestSynthetic(t *testing.T) {
	tr, te, err := Open("synthetic:2x3x4:5:400:300", Options{Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if c, h, w := tr.Shape(); tr.Len() != 400 || te.Len() != 300 || tr.Classes() != 5 || c != 2 || h != 3 || w != 4 {
		t.Fatalf("synthetic: %d/%d samples, %d classes, %d×%d×%d", tr.Len(), te.Len(), tr.Classes(), c, h, w)
	}
	if _, te2, _ := Open("synthetic:2x3x4:5:400", Options{}); te2.Len() != 80 {
		t.Errorf("default test size %d, want 80", te2.Len())
	}
	get := func(d Dataset, i int) ([]float32, int) {
		x := make([]float32, 24)
		y, err := d.Get(i, x, nil)
		if err != nil {
			t.Fatal(err)
		}
		return x, y
	}
	tr2, _, _ := Open("synthetic:2x3x4:5:400:300", Options{Seed: 7})
	tr3, _, _ := Open("synthetic:2x3x4:5:400:300", Options{Seed: 8})
	a, ya := get(tr, 17)
	b, yb := get(tr2, 17)
	c, _ := get(tr3, 17)
	if !slices.Equal(a, b) || ya != yb {
		t.Error("same seed, different sample")
	}
	if slices.Equal(a, c) {
		t.Error("seeds 7 and 8 give the same sample")
	}
	if d, _ := get(te, 17); slices.Equal(a, d) {
		t.Error("train and test sample 17 are the same")
	}
	// The signal is learnable: class means estimated on train classify the
	// test split far above chance (1/5).
	means := make([][]float64, 5)
	counts := make([]int, 5)
	for k := range means {
		means[k] = make([]float64, 24)
	}
	for i := range tr.Len() {
		x, y := get(tr, i)
		counts[y]++
		for p, v := range x {
			means[y][p] += float64(v)
		}
	}
	for k := range means {
		if counts[k] < 40 {
			t.Fatalf("class %d has %d of 400 samples", k, counts[k])
		}
		for p := range means[k] {
			means[k][p] /= float64(counts[k])
		}
	}
	correct := 0
	for i := range te.Len() {
		x, y := get(te, i)
		best, bestD := -1, math.Inf(1)
		for k := range means {
			var d float64
			for p, v := range x {
				d += (float64(v) - means[k][p]) * (float64(v) - means[k][p])
			}
			if d < bestD {
				best, bestD = k, d
			}
		}
		if best == y {
			correct++
		}
	}
	if acc := float64(correct) / float64(te.Len()); acc < 0.9 {
		t.Errorf("nearest class mean: %.2f accuracy on the test split, want ≥ 0.9", acc)
	}
}

// norm32 is ToTensor+Normalize in float32, as PyTorch computes it.
func norm32(p uint8, mean, std float32) float32 { return (float32(p)/255 - mean) / std }

// TestAugmentPolicy: CIFAR trains with crop+flip by default, MNIST-style
// sets without; evaluation sets and AugmentNone never augment.
func TestAugmentPolicy(t *testing.T) {
	cdir := t.TempDir()
	l10 := func(i int) []byte { return []byte{byte(i % 10)} }
	for _, n := range []string{"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"} {
		writeFile(t, filepath.Join(cdir, n), cifarRecords(4, l10))
	}
	mdir := mnistDir(t, 20, 5, 5, false, false)
	for _, tc := range []struct {
		spec       string
		augment    Augment
		trainAug   bool
		normalised float32 // sample 0's first value: pixel 0 with the set's constants
	}{
		{"cifar10:" + cdir, AugmentDefault, true, norm32(0, 0.4914, 0.2470)},
		{"cifar10:" + cdir, AugmentNone, false, norm32(0, 0.4914, 0.2470)},
		{"mnist:" + mdir, AugmentDefault, false, norm32(0, 0.1307, 0.3081)},
		{"fashion-mnist:" + mdir, AugmentDefault, false, norm32(0, 0.2860, 0.3530)},
	} {
		tr, te, err := Open(tc.spec, Options{Augment: tc.augment})
		if err != nil {
			t.Fatal(err)
		}
		c, h, w := tr.Shape()
		plain, aug := make([]float32, c*h*w), make([]float32, c*h*w)
		tr.Get(0, plain, nil)
		if plain[0] != tc.normalised {
			t.Errorf("%s: first value %g, want %g", tc.spec, plain[0], tc.normalised)
		}
		te.Get(0, plain, nil)
		if plain[0] != tc.normalised {
			t.Errorf("%s: test set's first value %g, want %g", tc.spec, plain[0], tc.normalised)
		}
		changed := 0
		for i := range 3 {
			for ep := range 4 {
				tr.Get(i, plain, nil)
				tr.Get(i, aug, AugmentRand(3, ep, i))
				if !slices.Equal(plain, aug) {
					changed++
				}
				te.Get(i, plain, nil)
				te.Get(i, aug, AugmentRand(3, ep, i))
				if !slices.Equal(plain, aug) {
					t.Fatalf("%s: the test set augmented", tc.spec)
				}
			}
		}
		if (changed > 6) != tc.trainAug {
			t.Errorf("%s augment %v: %d of 12 training draws changed the sample", tc.spec, tc.augment, changed)
		}
		if !tc.trainAug {
			continue
		}
		// The CIFAR recipe exactly: RandomCrop(32, padding=4), then the flip,
		// drawn in that order from the sample's generator.
		bd := tr.(*bytesDataset)
		want := make([]float32, c*h*w)
		flips := 0
		for ep := range 20 {
			r := AugmentRand(3, ep, 1)
			top, left := randomCropParams(r, 4)
			flip := flipCoin(r)
			if flip {
				flips++
			}
			cropPadFlip(want, bd.pix[c*h*w:2*c*h*w], c, h, w, top-4, left-4, flip, bd.luts)
			tr.Get(1, aug, AugmentRand(3, ep, 1))
			if !slices.Equal(aug, want) {
				t.Fatalf("%s epoch %d: sample 1 is not crop (%d, %d) flip %v", tc.spec, ep, top, left, flip)
			}
		}
		if flips == 0 || flips == 20 {
			t.Errorf("%d of 20 draws flipped", flips)
		}
	}
}
