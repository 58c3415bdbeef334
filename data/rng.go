package data

import "math/rand/v2"

// golden is 2^64/φ, the increment of splitmix64.
const golden = 0x9e3779b97f4a7c15

// mix64 is splitmix64's finaliser: a bijective avalanche of 64 bits. Every
// seed in the package goes through it so that nearby inputs (epoch 3 and 4,
// samples 17 and 18) give unrelated streams.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Domain tags keep the streams drawn from one user seed apart: the shuffle of
// epoch e and the augmentation of sample e must not be the same numbers.
const (
	tagShuffle uint64 = 0x53485546464c4531 // "SHUFFLE1"
	tagAugment uint64 = 0x4155474d454e5431 // "AUGMENT1"
	tagSynth   uint64 = 0x53594e5448455431 // "SYNTHET1"
)

// epochKey condenses (tag, seed, epoch) into one word.
func epochKey(tag, seed uint64, epoch int) uint64 {
	return mix64(mix64(seed^tag) + uint64(epoch)*golden)
}

// seedSample reseeds pcg for the augmentation of dataset index i in the epoch
// whose key is ek. It depends on nothing else (not the worker, not the
// position in the batch, not the rank), which is what makes augmentation
// independent of scheduling.
func seedSample(pcg *rand.PCG, ek uint64, i int) {
	pcg.Seed(ek, mix64(ek^(uint64(i)+1)*golden))
}

// AugmentRand returns the generator the Loader hands to Dataset.Get for
// dataset index i in the given epoch, so that a caller outside the Loader
// (an evaluation script, a test) can reproduce exactly what it decoded.
func AugmentRand(seed uint64, epoch, i int) *rand.Rand {
	pcg := new(rand.PCG)
	seedSample(pcg, epochKey(tagAugment, seed, epoch), i)
	return rand.New(pcg)
}
