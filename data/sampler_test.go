package data

import (
	"slices"
	"testing"
)

// distributedSampler transliterates torch.utils.data.DistributedSampler's
// __iter__ given the epoch's base list (randperm or range).
func distributedSampler(base []int, rank, world int, dropLast bool) []int {
	n := len(base)
	var num int
	if dropLast && n%world != 0 {
		num = (n - world + world - 1) / world // math.ceil((len - R) / R)
	} else {
		num = (n + world - 1) / world
	}
	total := num * world
	idx := slices.Clone(base)
	if !dropLast {
		pad := total - len(idx)
		if pad <= len(idx) {
			idx = append(idx, idx[:pad]...)
		} else {
			var rep []int
			for range (pad + len(idx) - 1) / len(idx) {
				rep = append(rep, idx...)
			}
			idx = append(idx, rep[:pad]...)
		}
	} else {
		idx = idx[:total]
	}
	var out []int
	for i := rank; i < total; i += world {
		out = append(out, idx[i])
	}
	return out
}

func TestSamplerHandCases(t *testing.T) {
	for _, tc := range []struct {
		n, world int
		drop     bool
		want     [][]int
	}{
		{10, 3, false, [][]int{{0, 3, 6, 9}, {1, 4, 7, 0}, {2, 5, 8, 1}}},
		{10, 3, true, [][]int{{0, 3, 6}, {1, 4, 7}, {2, 5, 8}}},
		{2, 5, false, [][]int{{0}, {1}, {0}, {1}, {0}}},
		{9, 3, true, [][]int{{0, 3, 6}, {1, 4, 7}, {2, 5, 8}}},
		{5, 1, false, [][]int{{0, 1, 2, 3, 4}}},
	} {
		for r, want := range tc.want {
			s := Sampler{Len: tc.n, Rank: r, World: tc.world, DropLast: tc.drop}
			if got := s.Indices(0, nil); !slices.Equal(got, want) {
				t.Errorf("len %d world %d drop %v rank %d: %v, want %v", tc.n, tc.world, tc.drop, r, got, want)
			}
			if s.NumSamples() != len(want) {
				t.Errorf("NumSamples %d, want %d", s.NumSamples(), len(want))
			}
		}
	}
}

// TestSamplerMatchesPyTorch compares every rank against the transliteration
// over a grid of sizes, with the same base permutation.
func TestSamplerMatchesPyTorch(t *testing.T) {
	for _, n := range []int{1, 2, 5, 7, 16, 33} {
		for _, world := range []int{1, 2, 3, 4, 8, 40} {
			for _, drop := range []bool{false, true} {
				for _, shuffle := range []bool{false, true} {
					if drop && n < world {
						continue
					}
					base := Sampler{Len: n, World: 1, Shuffle: shuffle, Seed: 11}.Indices(3, nil)
					covered := map[int]bool{}
					for r := range world {
						s := Sampler{Len: n, Rank: r, World: world, Shuffle: shuffle, Seed: 11, DropLast: drop}
						buf := make([]int, 0, n+world) // exercise the in-place path
						got := s.Indices(3, buf)
						want := distributedSampler(base, r, world, drop)
						if !slices.Equal(got, want) {
							t.Fatalf("n %d world %d drop %v shuffle %v rank %d: %v, want %v", n, world, drop, shuffle, r, got, want)
						}
						for _, i := range got {
							covered[i] = true
						}
					}
					if !drop && len(covered) != n {
						t.Fatalf("n %d world %d: ranks cover %d samples", n, world, len(covered))
					}
				}
			}
		}
	}
}

func TestSamplerShuffle(t *testing.T) {
	s := Sampler{Len: 1000, World: 1, Shuffle: true, Seed: 5}
	a := s.Indices(0, nil)
	if !slices.Equal(a, s.Indices(0, nil)) {
		t.Fatal("same seed and epoch, different order")
	}
	sorted := slices.Sorted(slices.Values(a))
	for i, v := range sorted {
		if v != i {
			t.Fatalf("not a permutation: sorted[%d] = %d", i, v)
		}
	}
	if slices.Equal(a, s.Indices(1, nil)) {
		t.Error("epochs 0 and 1 have the same order")
	}
	s.Seed = 6
	if slices.Equal(a, s.Indices(0, nil)) {
		t.Error("seeds 5 and 6 have the same order")
	}
	fixed := 0
	for i, v := range a {
		if i == v {
			fixed++
		}
	}
	if fixed > 10 {
		t.Errorf("%d fixed points in a shuffle of 1000", fixed)
	}
}
