package data

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/macdist/macdist/internal/fixture"
)

// TestRASamplerMatchesDeiT compares every rank's indices, and each entry's
// copy number, with DeiT's RASampler (transcribed in
// testdata/gen/gen_recipe.py) over the same permutation.
func TestRASamplerMatchesDeiT(t *testing.T) {
	f := fixture.Load(t, "recipe")
	for _, c := range [][3]int{{600, 2, 3}, {700, 3, 3}, {1000, 4, 2}, {513, 1, 3}, {300, 8, 4}} {
		n, world, k := c[0], c[1], c[2]
		for r := range world {
			key := fmt.Sprintf("ra.%d.%d.%d.%d", n, world, k, r)
			want := fixture.Labels(t, f, key)
			copies := fixture.Labels(t, f, key+".copy")
			s := Sampler{Len: n, Rank: r, World: world, Repeats: k}
			got := s.Indices(0, nil)
			if len(got) != len(want) || s.NumSamples() != len(want) {
				t.Fatalf("%s: %d indices (NumSamples %d), DeiT's %d", key, len(got), s.NumSamples(), len(want))
			}
			for j, v := range got {
				if v%n != int(want[j]) || v/n != int(copies[j]) {
					t.Fatalf("%s: entry %d is index %d copy %d, DeiT's %d copy %d", key, j, v%n, v/n, want[j], copies[j])
				}
			}
		}
	}
}

// TestRASamplerShuffled: with shuffling, the ranks together hold each
// index's copies on different ranks (world ≥ repeats), each copy once.
func TestRASamplerShuffled(t *testing.T) {
	const n, world, k = 1024, 4, 3
	seen := map[int]int{} // key → rank
	for r := range world {
		for _, key := range (Sampler{Len: n, Rank: r, World: world, Repeats: k, Shuffle: true, Seed: 3}).Indices(2, nil) {
			if _, dup := seen[key]; dup {
				t.Fatalf("key %d twice", key)
			}
			seen[key] = r
		}
	}
	for key, r := range seen {
		for c := range k {
			if other, ok := seen[key%n+c*n]; ok && c != key/n && other == r {
				t.Fatalf("index %d: copies %d and %d both on rank %d", key%n, key/n, c, r)
			}
		}
	}
	if _, err := NewLoader(drawSet{255}, LoaderConfig{BatchSize: 4, Repeats: 3}); err == nil {
		t.Error("repeated augmentation over too few samples was accepted")
	}
}

// drawSet is a dataset whose every sample is the first number its
// generator draws: the augmentation a sample got.
type drawSet struct{ n int }

func (d drawSet) Len() int             { return d.n }
func (d drawSet) Shape() (c, h, w int) { return 1, 1, 1 }
func (d drawSet) Classes() int         { return 1 }
func (d drawSet) Get(i int, dst []float32, rng *rand.Rand) (int, error) {
	dst[0] = float32(rng.Float64())
	return 0, nil
}

// TestRepeatedCopiesDrawApart: the copies of a sample, on their ranks,
// are augmented by different draws; copy 0 draws what a loader without
// repetition draws for that sample.
func TestRepeatedCopiesDrawApart(t *testing.T) {
	const n, world, k = 512, 3, 3
	draws := map[int][]float32{}
	for r := range world {
		l, err := NewLoader(drawSet{n}, LoaderConfig{BatchSize: 32, Rank: r, World: world, Repeats: k, Shuffle: true, Seed: 1, Workers: 2})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Start(context.Background(), 0); err != nil {
			t.Fatal(err)
		}
		for {
			b, err := l.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			for j, i := range b.Index {
				if i < 0 || i >= n {
					t.Fatalf("batch index %d", i)
				}
				draws[i] = append(draws[i], b.X[j])
			}
		}
		l.Close()
	}
	plain := AugmentRand(1, 0, 0).Float64()
	repeated := 0
	for i, d := range draws {
		for a := range d {
			for b := a + 1; b < len(d); b++ {
				if d[a] == d[b] {
					t.Fatalf("sample %d: two copies drew %v", i, d[a])
				}
			}
		}
		if len(d) > 1 {
			repeated++
		}
	}
	if repeated < n/4 {
		t.Errorf("only %d samples were seen more than once", repeated)
	}
	if d, ok := draws[0]; ok {
		found := false
		for _, v := range d {
			found = found || v == float32(plain)
		}
		if !found {
			t.Errorf("no copy of sample 0 drew what it draws without repetition")
		}
	}
}
