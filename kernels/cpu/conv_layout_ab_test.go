package cpu

import (
	"os"
	"slices"
	"testing"
	"time"

	"github.com/macdist/macdist/kernels"
)

// abConv is one convolution of a model, count times.
type abConv struct {
	c, hw, out, k, stride, pad, count int
}

// abModels are the convolutions of resnet20 (CIFAR, batch 128) and of
// resnet50 (224 px, batch 16), as nn/models builds them.
var abModels = map[string]struct {
	batch int
	convs []abConv
}{
	"resnet20": {128, []abConv{
		{3, 32, 16, 3, 1, 1, 1},
		{16, 32, 16, 3, 1, 1, 6},
		{16, 32, 32, 3, 2, 1, 1}, {16, 32, 32, 1, 2, 0, 1}, {32, 16, 32, 3, 1, 1, 5},
		{32, 16, 64, 3, 2, 1, 1}, {32, 16, 64, 1, 2, 0, 1}, {64, 8, 64, 3, 1, 1, 5},
	}},
	"resnet50": {16, []abConv{
		{3, 224, 64, 7, 2, 3, 1},
		{64, 56, 64, 1, 1, 0, 1}, {64, 56, 64, 3, 1, 1, 3}, {64, 56, 256, 1, 1, 0, 4}, {256, 56, 64, 1, 1, 0, 2},
		{256, 56, 128, 1, 1, 0, 1}, {128, 56, 128, 3, 2, 1, 1}, {256, 56, 512, 1, 2, 0, 1},
		{128, 28, 512, 1, 1, 0, 4}, {512, 28, 128, 1, 1, 0, 3}, {128, 28, 128, 3, 1, 1, 3},
		{512, 28, 256, 1, 1, 0, 1}, {256, 28, 256, 3, 2, 1, 1}, {512, 28, 1024, 1, 2, 0, 1},
		{256, 14, 1024, 1, 1, 0, 6}, {1024, 14, 256, 1, 1, 0, 5}, {256, 14, 256, 3, 1, 1, 5},
		{1024, 14, 512, 1, 1, 0, 1}, {512, 14, 512, 3, 2, 1, 1}, {1024, 14, 2048, 1, 2, 0, 1},
		{512, 7, 2048, 1, 1, 0, 3}, {2048, 7, 512, 1, 1, 0, 2}, {512, 7, 512, 3, 1, 1, 2},
	}},
}

// TestConvLayoutAB times the forward, backward-data and backward-weights
// passes of every convolution of a model through oneDNN with activations
// in nChw16c and in nhwc (and NCHW, reordered at the ports), alternating
// in one process so that a neighbour's load falls on all alike. Only the
// convolutions: the element-wise layers cost the same bytes in either
// blocked layout. It runs only when asked, as
//
//	MACDIST_CONV_AB=resnet20 go test ./kernels/cpu -run ConvLayoutAB -v
//
// and asserts nothing about speed.
func TestConvLayoutAB(t *testing.T) {
	name := os.Getenv("MACDIST_CONV_AB")
	model, ok := abModels[name]
	if !ok {
		t.Skip("MACDIST_CONV_AB=resnet20|resnet50 is not set")
	}
	if err := loadOneDNN(); err != nil {
		t.Skip(err)
	}
	layouts := []kernels.Layout{kernels.Blocked16, kernels.NHWC, kernels.NCHW}
	type conv struct {
		cv                 *dnnConv
		x, w, y, dx, dw, b []float32
	}
	arena := newDNNArena()
	nthr := 2
	var sets [][]conv
	for _, l := range layouts {
		var set []conv
		for _, s := range model.convs {
			oh := (s.hw+2*s.pad-s.k)/s.stride + 1
			q := [16]int64{int64(model.batch), int64(s.c), int64(s.hw), int64(s.hw), int64(s.out), 1,
				int64(s.k), int64(s.k), int64(s.stride), int64(s.stride), int64(s.pad), int64(s.pad), 1, 1, int64(oh), int64(oh)}
			xl := l
			if s.c < 16 { // the model's input, NCHW, as the Device feeds a first layer
				xl = kernels.NCHW
			}
			cv, err := newDNNConv(arena, q, false, nthr, xl, l, kernels.FP32, [3]ConvAlgorithm{})
			if err != nil {
				t.Fatalf("%v %+v: %v", l, s, err)
			}
			t.Logf("%s %+v: %s", l, s, cv.impl())
			nx, ny := model.batch*s.c*s.hw*s.hw, model.batch*s.out*oh*oh
			set = append(set, conv{cv: cv, x: fill(nx), w: fill(s.out * s.c * s.k * s.k), y: make([]float32, ny),
				dx: make([]float32, nx), dw: make([]float32, s.out*s.c*s.k*s.k)})
		}
		sets = append(sets, set)
	}
	times := make([][3][]time.Duration, len(layouts))
	const rounds = 5
	for r := -1; r < rounds; r++ {
		for i, set := range sets {
			var pass [3]time.Duration
			for j, c := range set {
				n := model.convs[j].count
				t0 := time.Now()
				for range n {
					c.cv.forward(c.x, c.w, nil, c.y, nthr)
				}
				t1 := time.Now()
				for range n {
					c.cv.backward(c.x, c.y, c.w, c.dx, c.dw, nil, nthr)
				}
				pass[0] += t1.Sub(t0)
				pass[1] += time.Since(t1)
			}
			if r >= 0 {
				for p := range 2 {
					times[i][p] = append(times[i][p], pass[p])
				}
			}
		}
	}
	for i, l := range layouts {
		med := func(d []time.Duration) time.Duration {
			slices.Sort(d)
			return d[len(d)/2].Round(time.Millisecond)
		}
		f, b := med(times[i][0]), med(times[i][1])
		t.Logf("%s %s: forward %v, backward (data + weights) %v, sum %v (medians of %d)", name, l, f, b, f+b, rounds)
	}
}

func fill(n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(i%13)/13 - 0.5
	}
	return s
}

// TestConvAlgorithmAB times each convolution of a model in nChw16c by
// oneDNN's direct kernels and by its own choice (ConvAuto: Winograd where
// it takes it), pass by pass, the two alternating shape after shape in one
// process. It is what convPassAlgorithms rests on, runs
// only when asked, as
//
//	MACDIST_CONV_ALGO_AB=resnet20 go test ./kernels/cpu -run ConvAlgorithmAB -v
//
// and asserts nothing about speed.
func TestConvAlgorithmAB(t *testing.T) {
	name := os.Getenv("MACDIST_CONV_ALGO_AB")
	model, ok := abModels[name]
	if !ok {
		t.Skip("MACDIST_CONV_ALGO_AB=resnet20|resnet50 is not set")
	}
	if err := loadOneDNN(); err != nil {
		t.Skip(err)
	}
	algs := []ConvAlgorithm{ConvDirect, ConvAuto}
	type conv struct {
		cv              *dnnConv
		x, w, y, dx, dw []float32
	}
	arena := newDNNArena()
	nthr := 2
	convs := make([][2]conv, len(model.convs))
	for j, s := range model.convs {
		oh := (s.hw+2*s.pad-s.k)/s.stride + 1
		q := [16]int64{int64(model.batch), int64(s.c), int64(s.hw), int64(s.hw), int64(s.out), 1,
			int64(s.k), int64(s.k), int64(s.stride), int64(s.stride), int64(s.pad), int64(s.pad), 1, 1, int64(oh), int64(oh)}
		xl := kernels.Blocked16
		if s.c < 16 {
			xl = kernels.NCHW
		}
		nx, ny := model.batch*s.c*s.hw*s.hw, model.batch*s.out*oh*oh
		for a, alg := range algs {
			cv, err := newDNNConv(arena, q, false, nthr, xl, kernels.Blocked16, kernels.FP32, [3]ConvAlgorithm{alg, alg, alg})
			if err != nil {
				t.Fatalf("%v %+v: %v", alg, s, err)
			}
			t.Logf("%v %+v: %s", alg, s, cv.impl())
			convs[j][a] = conv{cv: cv, x: fill(nx), w: fill(s.out * s.c * s.k * s.k), y: make([]float32, ny),
				dx: make([]float32, nx), dw: make([]float32, s.out*s.c*s.k*s.k)}
		}
	}
	const rounds = 7
	// times[shape][alg][pass]: forward, backward-weights, backward-data.
	times := make([][2][3][]time.Duration, len(model.convs))
	for r := -1; r < rounds; r++ {
		for j := range convs {
			for k := range algs {
				a := (k + r + j + 2) % 2 // alternate which goes first
				c := convs[j][a]
				t0 := time.Now()
				c.cv.forward(c.x, c.w, nil, c.y, nthr)
				t1 := time.Now()
				c.cv.backward(c.x, c.y, c.w, nil, c.dw, nil, nthr)
				t2 := time.Now()
				c.cv.backward(c.x, c.y, c.w, c.dx, c.dw, nil, nthr)
				t3 := time.Now()
				if r >= 0 {
					p := &times[j][a]
					p[0] = append(p[0], t1.Sub(t0))
					p[1] = append(p[1], t2.Sub(t1))
					p[2] = append(p[2], t3.Sub(t2)-t2.Sub(t1))
				}
			}
		}
	}
	med := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2].Microseconds()) / 1000
	}
	var tot [2][3]float64
	for j, s := range model.convs {
		var m [2][3]float64
		for a := range algs {
			for p := range 3 {
				m[a][p] = med(times[j][a][p]) * float64(s.count)
				tot[a][p] += m[a][p]
			}
		}
		t.Logf("%+v ×%d ms direct/auto: fwd %.2f/%.2f, bwd-weights %.2f/%.2f, bwd-data %.2f/%.2f", s, s.count,
			m[0][0], m[1][0], m[0][1], m[1][1], m[0][2], m[1][2])
	}
	t.Logf("%s totals ms direct/auto: fwd %.1f/%.1f, bwd-weights %.1f/%.1f, bwd-data %.1f/%.1f", name,
		tot[0][0], tot[1][0], tot[0][1], tot[1][1], tot[0][2], tot[1][2])
}
