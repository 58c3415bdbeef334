package data

import "testing"

// TestSamplerNumReal checks NumReal against the padded list itself: across
// ranks, the first NumReal indices of every rank cover each sample exactly
// once, and the rest are padding.
func TestSamplerNumReal(t *testing.T) {
	for _, n := range []int{1, 2, 5, 7, 10, 11, 100, 101} {
		for _, world := range []int{1, 2, 3, 4, 7, 16} {
			for _, dropLast := range []bool{false, true} {
				if dropLast && n < world {
					continue
				}
				seen := make([]int, n)
				nreal, padded := 0, 0
				for r := range world {
					s := Sampler{Len: n, Rank: r, World: world, Shuffle: true, Seed: 3, DropLast: dropLast}
					idx := s.Indices(2, nil)
					k := s.NumReal()
					if k < 0 || k > len(idx) {
						t.Fatalf("n %d world %d rank %d drop %v: NumReal %d of %d", n, world, r, dropLast, k, len(idx))
					}
					for _, i := range idx[:k] {
						seen[i]++
					}
					nreal += k
					padded += len(idx) - k
				}
				want := n
				if dropLast {
					want = n / world * world
				}
				if nreal != want || nreal+padded != (Sampler{Len: n, World: world, DropLast: dropLast}).TotalSize() {
					t.Errorf("n %d world %d drop %v: %d nreal + %d padding, want %d nreal", n, world, dropLast, nreal, padded, want)
				}
				for i, c := range seen {
					if c > 1 || (!dropLast && c != 1) {
						t.Errorf("n %d world %d drop %v: sample %d counted %d times", n, world, dropLast, i, c)
					}
				}
			}
		}
	}
}
