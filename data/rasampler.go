package data

import "fmt"

// Repeated augmentation (Hoffer et al.; DeiT's RASampler): each epoch's
// permutation has every index repeated Repeats times in a row before the
// list is padded and strided over the ranks, so that the copies of a
// sample land on different ranks, each augmented by its own draws; each
// rank then keeps only its first ⌊⌊Len/256⌋·256/World⌋ entries, so that an
// epoch has as many samples as without repetition.
//
// An entry of the repeated list is a key r·Len + i for copy r of index i:
// the Loader seeds the copy's augmentation with the key and decodes index
// key mod Len. Copy 0's key is the index itself, so that Repeats 1 draws
// what a Sampler without repetition draws.

// raSelected is RASampler's num_selected_samples.
func (s Sampler) raSelected() int { return s.Len / 256 * 256 / s.World }

func (s Sampler) checkRepeats() error {
	if s.Repeats > 1 && s.raSelected() == 0 {
		return fmt.Errorf("data: repeated augmentation keeps ⌊%d/256⌋·256/%d = 0 samples per rank: it needs at least 256·%d samples", s.Len, s.World, s.World)
	}
	return nil
}

// repeatedIndices is Indices with Repeats > 1: list holds the epoch's
// permutation in its first Len entries and has room for TotalSize.
func (s Sampler) repeatedIndices(list []int) []int {
	k := s.Repeats
	// Interleave the repeats from the back, so that nothing is overwritten
	// before it is read: entry p of the repeated list is copy p mod k of
	// list[p/k].
	for p := s.Len*k - 1; p >= 0; p-- {
		list[p] = (p%k)*s.Len + list[p/k]
	}
	total := s.raTotal()
	for p := s.Len * k; p < total; p++ {
		list[p] = list[p-s.Len*k]
	}
	n := s.raSelected()
	for j := range n {
		list[j] = list[s.Rank+j*s.World]
	}
	return list[:n]
}

// raTotal is RASampler's total_size: ⌈Len·Repeats/World⌉·World.
func (s Sampler) raTotal() int { return (s.Len*s.Repeats + s.World - 1) / s.World * s.World }
