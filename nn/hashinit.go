package nn

import (
	"math"
	"strings"

	"github.com/macdist/macdist/kernels"
)

// HashUniform returns n numbers in [0, 1) that depend only on name, seed and
// the index: the top 24 bits of splitmix64 over fnv1a64(name)^seed plus
// (i+1) times the golden ratio. testdata/gen/common.py computes the same
// numbers, so models built in Go and in PyTorch can start from identical
// weights without storing them in fixtures.
func HashUniform(name string, seed uint64, n int) []float64 {
	h := uint64(0xCBF29CE484222325)
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= 0x100000001B3
	}
	base := h ^ seed
	out := make([]float64, n)
	for i := range out {
		z := base + uint64(i+1)*0x9E3779B97F4A7C15
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
		z = (z ^ (z >> 27)) * 0x94D049BB133111EB
		z ^= z >> 31
		out[i] = float64(z>>40) / float64(1<<24)
	}
	return out
}

// HashInit overwrites every parameter and buffer with macdist's deterministic
// hash initialisation (the rule of testdata/gen/common.py's hash_init):
// weights and biases uniform in ±1/√fan_in, norm scales in 1±0.2, norm
// shifts and running means in ±0.2, running variances in [0.5, 1.5),
// embeddings in ±0.02. It exists for tests and fixtures; training uses each
// layer's PyTorch-default initialisation.
func HashInit(dev kernels.Device, params []*Param, seed uint64) {
	fanIn := map[string]int{}
	for _, p := range params {
		if p.Kind == KindWeight {
			s := p.Value.Shape
			f := 1
			for _, d := range s[1:] {
				f *= d
			}
			fanIn[strings.TrimSuffix(p.Name, "weight")] = f
		}
	}
	for _, p := range params {
		n := p.Value.Len()
		if isCounter(p) {
			continue // integer buffers: a counter, a fixed index
		}
		u := HashUniform(p.Name, seed, n)
		v := make([]float32, n)
		leaf := p.Name[strings.LastIndex(p.Name, ".")+1:]
		for i, x := range u {
			var y float64
			switch {
			case leaf == "running_var":
				y = 0.5 + x
			case leaf == "running_mean":
				y = 0.2 * (2*x - 1)
			case p.Kind == KindNorm && leaf == "weight":
				y = 1 + 0.2*(2*x-1)
			case p.Kind == KindNorm:
				y = 0.2 * (2*x - 1)
			case p.Kind == KindWeight || p.Kind == KindBias:
				f := fanIn[strings.TrimSuffix(p.Name, leaf)]
				if f == 0 {
					panic("nn: HashInit: no weight for bias " + p.Name)
				}
				y = (2*x - 1) / math.Sqrt(float64(f))
			default:
				y = 0.02 * (2*x - 1)
			}
			v[i] = float32(y)
		}
		dev.Upload(p.Value.Data, v)
	}
}
