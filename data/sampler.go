package data

import (
	"fmt"
	"math/rand/v2"
)

// Sampler is PyTorch's DistributedSampler: which dataset indices rank Rank
// of World visits in an epoch, in what order.
//
// The epoch's list is a permutation of 0..Len−1 drawn from (Seed, epoch)
// when Shuffle, else 0..Len−1 in order. Unless DropLast, it is padded by
// repeating its head (as often as needed) to TotalSize, a multiple of World;
// with DropLast its tail is cut to TotalSize instead. Rank r takes the
// entries r, r+World, r+2·World, … of that list. The permutation is not
// torch.randperm's (a different generator); everything else matches.
type Sampler struct {
	Len, Rank, World int
	Shuffle          bool
	Seed             uint64
	DropLast         bool
	// Repeats, above 1, is repeated augmentation (rasampler.go).
	Repeats int
}

func (s Sampler) check() error {
	if s.Len <= 0 {
		return fmt.Errorf("data: sampler over %d samples", s.Len)
	}
	if s.World <= 0 || s.Rank < 0 || s.Rank >= s.World {
		return fmt.Errorf("data: sampler rank %d of world size %d", s.Rank, s.World)
	}
	if s.DropLast && s.Len < s.World {
		return fmt.Errorf("data: sampler with DropLast: %d samples leave nothing for %d ranks", s.Len, s.World)
	}
	return s.checkRepeats()
}

// NumSamples is how many indices each rank gets per epoch.
func (s Sampler) NumSamples() int {
	if s.Repeats > 1 {
		return s.raSelected()
	}
	if s.DropLast && s.Len%s.World != 0 {
		return s.Len / s.World // ceil((Len−World)/World)
	}
	return (s.Len + s.World - 1) / s.World
}

// TotalSize is NumSamples·World, the padded (or cut) list's length.
func (s Sampler) TotalSize() int { return s.NumSamples() * s.World }

// NumReal is how many of the rank's NumSamples indices are not padding:
// the first NumReal entries of Indices are samples met once in the epoch
// across ranks, the rest repeat the head of the list to even out the
// ranks' shares. Padding comes last because rank r takes list positions
// r, r+World, …, and only positions from Len on are padding. Summed over
// ranks, NumReal is Len (the tail cut by DropLast is no one's): counting
// only these samples, an evaluation sharded over any world size sees each
// sample exactly once.
func (s Sampler) NumReal() int {
	// Positions r+k·World < Len: ⌈(Len−r)/World⌉, which is 0 for a rank
	// beyond Len and never below NumSamples with DropLast.
	return min(s.NumSamples(), (s.Len-s.Rank+s.World-1)/s.World)
}

// Indices returns rank Rank's indices for epoch, in order. It works in buf
// when buf has room for max(Len, TotalSize) entries, so that a caller that
// keeps buf allocates nothing per epoch.
func (s Sampler) Indices(epoch int, buf []int) []int {
	if err := s.check(); err != nil {
		panic(err)
	}
	total := s.TotalSize()
	if s.Repeats > 1 {
		total = s.raTotal()
	}
	list := grow(buf, max(s.Len, total))
	for i := range s.Len {
		list[i] = i
	}
	if s.Shuffle {
		// Fisher–Yates from a generator keyed by (seed, epoch) alone.
		r := rand.New(rand.NewPCG(epochKey(tagShuffle, s.Seed, epoch), tagShuffle))
		for i := s.Len - 1; i > 0; i-- {
			j := r.IntN(i + 1)
			list[i], list[j] = list[j], list[i]
		}
	}
	if s.Repeats > 1 {
		return s.repeatedIndices(list)
	}
	for k := s.Len; k < total; k++ {
		list[k] = list[k%s.Len]
	}
	// Compact rank's stride in place: the k-th kept entry comes from
	// position Rank+k·World ≥ k, which has not been overwritten yet.
	n := s.NumSamples()
	for k := range n {
		list[k] = list[s.Rank+k*s.World]
	}
	return list[:n]
}
