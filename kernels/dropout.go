package kernels

// DropoutUniform is the uniform number in [0, 1) that element i of a dropout
// mask with the given seed draws; DropoutMask keeps the element when it is at
// least p. It is defined here, once, so that every Device draws the same mask:
// it is the top 24 bits, over 2²⁴ (exact in float32), of output i (from 0)
// of the splitmix64 generator seeded with seed, which is the splitmix64
// finaliser applied to seed + (i+1)·0x9E3779B97F4A7C15. Being a function of
// (seed, i) alone, it needs no generator state, and any device computes
// element i wherever it likes.
func DropoutUniform(seed uint64, i int) float32 {
	z := seed + (uint64(i)+1)*0x9E3779B97F4A7C15
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	z ^= z >> 31
	return float32(z>>40) * (1.0 / (1 << 24))
}
