package data

import (
	"math/rand/v2"
	"testing"
)

// TestUnLUTRoundTrip: every byte comes back from its normalised value,
// under the usual statistics and under none.
func TestUnLUTRoundTrip(t *testing.T) {
	for _, s := range []Stats{CIFAR10Stats, ImageNetStats, identityStats, FashionMNISTStats} {
		luts, err := makeLUTs(s, max(len(s.Mean), 1))
		if err != nil {
			t.Fatal(err)
		}
		for ch := range luts {
			src := make([]float32, 256)
			for p := range src {
				src[p] = luts[ch][p]
			}
			got := make([]uint8, 256)
			unLUT(got, src, &luts[ch])
			for p, b := range got {
				if int(b) != p {
					t.Fatalf("%v channel %d: byte %d came back as %d", s, ch, p, b)
				}
			}
		}
	}
}

// TestAugmentedGet replays a sample's draws by hand: the dataset's own
// crop and flip, the policy on its bytes, normalisation, then erasing.
func TestAugmentedGet(t *testing.T) {
	const n, c, h, w = 4, 3, 12, 10
	rng := rand.New(rand.NewPCG(9, 9))
	d := &bytesDataset{name: "test", pix: make([]uint8, n*c*h*w), labels: []uint8{0, 1, 2, 1}, n: n, c: c, h: h, w: w, classes: 3}
	for i := range d.pix {
		d.pix[i] = uint8(rng.IntN(256))
	}
	if err := d.setStats(CIFAR10Stats); err != nil {
		t.Fatal(err)
	}
	d.setAugment(2, true)
	auto, _ := ParseAutoAugment("rand-m9-mstd0.5")
	a, err := NewAugmented(d, auto, RandomErasing{P: 0.7})
	if err != nil {
		t.Fatal(err)
	}
	changed := 0
	for i := range n {
		for e := range 20 {
			got := make([]float32, c*h*w)
			if _, err := a.Get(i, got, AugmentRand(1, e, i)); err != nil {
				t.Fatal(err)
			}
			r := AugmentRand(1, e, i)
			want := make([]float32, c*h*w)
			d.Get(i, want, r)
			img := make([]uint8, c*h*w)
			for ch := range c {
				unLUT(img[ch*h*w:(ch+1)*h*w], want[ch*h*w:(ch+1)*h*w], &d.luts[ch])
			}
			plain := append([]float32(nil), want...)
			var s augScratch
			auto.Apply(img, c, h, w, r, &s)
			for j, p := range img {
				want[j] = d.luts[j/(h*w)][p]
			}
			RandomErasing{P: 0.7}.Apply(want, c, h, w, r)
			for j := range got {
				if got[j] != want[j] {
					t.Fatalf("sample %d, epoch %d: value %d is %v, want %v", i, e, j, got[j], want[j])
				}
			}
			for j := range got {
				if got[j] != plain[j] {
					changed++
					break
				}
			}
		}
		// Without a generator (evaluation), nothing is added.
		got, want := make([]float32, c*h*w), make([]float32, c*h*w)
		a.Get(i, got, nil)
		d.Get(i, want, nil)
		for j := range got {
			if got[j] != want[j] {
				t.Fatalf("evaluation sample %d augmented", i)
			}
		}
	}
	if changed < n*20/2 {
		t.Errorf("only %d of %d samples were changed by the policy and erasing", changed, n*20)
	}
	if _, err := NewAugmented(&Memory{}, auto, RandomErasing{}); err == nil {
		t.Error("auto-augment accepted a dataset of floats")
	}
	if _, err := NewAugmented(&Memory{}, nil, RandomErasing{P: 0.25}); err != nil {
		t.Errorf("erasing alone on floats: %v", err)
	}
}

// BenchmarkAutoAugment times RandAugment (two ops, mstd 0.5) and random
// erasing on one 3×224×224 sample, inversion and normalisation included.
func BenchmarkAutoAugment(b *testing.B) {
	const c, h, w = 3, 224, 224
	d := &bytesDataset{name: "bench", pix: make([]uint8, c*h*w), labels: []uint8{0}, n: 1, c: c, h: h, w: w, classes: 1}
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range d.pix {
		d.pix[i] = uint8(rng.IntN(256))
	}
	if err := d.setStats(ImageNetStats); err != nil {
		b.Fatal(err)
	}
	auto, _ := ParseAutoAugment("rand-m9-mstd0.5")
	a, err := NewAugmented(d, auto, RandomErasing{P: 0.25})
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]float32, c*h*w)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		a.Get(0, dst, AugmentRand(1, i, 0))
	}
}
