package nn_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/macdist/macdist/internal/fixture"
	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/nntest"
)

// launchBound is the CPU device claiming to be kernels.LaunchBound, so that
// the layers' GPU paths (Conv2d's batched dW) run, and are checked, here.
type launchBound struct{ *cpu.Device }

func (launchBound) LaunchBound() bool { return true }

// im2colDevice is a cpu Device on the im2col path whether or not oneDNN
// is installed; cnnDevice takes oneDNN's where it is.
var im2colDevice = sync.OnceValue(func() *cpu.Device {
	d, err := cpu.NewWithDNN("none")
	if err != nil {
		panic(err)
	}
	return d
})

// cnnPaths are the two ways a cpu Device convolves, for the tests that
// must pass on both.
func cnnPaths() map[string]kernels.Device {
	return map[string]kernels.Device{"default": cnnDevice(), "im2col": im2colDevice()}
}

func TestConv2dParity(t *testing.T) {
	f := fixture.Load(t, "layers_cnn_conv")
	cases, metas := cnnCases(t, f)
	// Every case runs with the whole batch unfolded at once, one image at
	// a time, and two at a time (leaving a partial last chunk for odd
	// batches), so that the chunk offsets and the tap's accumulation over
	// chunks are checked too; on the CPU as it is (with oneDNN where it
	// is installed), on the im2col path, and as a launch-bound device (on
	// the im2col path, which it changes).
	devs := cnnPaths()
	devs["launchbound"] = launchBound{im2colDevice()}
	for devName, dev := range devs {
		for _, perChunk := range []int{0, 1, 2} {
			for _, c := range cases {
				t.Run(fmt.Sprintf("%s/chunk%d/%s", devName, perChunk, c), func(t *testing.T) {
					var cfg nn.Conv2dConfig
					if err := json.Unmarshal(metas[c].Cfg, &cfg); err != nil {
						t.Fatal(err)
					}
					_, ys := fixture.Floats(t, f, c+"/y")
					ws := nn.Workspace(dev)
					defer ws.SetLimit(0)
					ws.SetLimit(perChunk * cfg.In * cfg.Kernel * cfg.Kernel * ys[2] * ys[3])
					conv := nn.NewConv2d(dev, "layer", cfg, cnnRNG(1))
					cnnParityOn(t, dev, f, c, metas[c], conv, 1e-4)
				})
			}
		}
	}
}

func TestConv2dGradCheck(t *testing.T) {
	for path, dev := range cnnPaths() {
		t.Run(path, func(t *testing.T) { conv2dGradCheck(t, dev) })
	}
}

func conv2dGradCheck(t *testing.T, dev kernels.Device) {
	for _, tc := range []struct {
		name  string
		shape []int
		cfg   nn.Conv2dConfig
	}{
		{"3x3_pad_bias", []int{2, 3, 5, 6}, nn.Conv2dConfig{In: 3, Out: 4, Kernel: 3, Padding: 1, Bias: true}},
		{"stride2_dilation2", []int{2, 2, 9, 7}, nn.Conv2dConfig{In: 2, Out: 3, Kernel: 3, Stride: 2, Padding: 2, Dilation: 2}},
		{"groups3", []int{2, 6, 5, 5}, nn.Conv2dConfig{In: 6, Out: 9, Kernel: 3, Padding: 1, Groups: 3, Bias: true}},
		{"depthwise", []int{2, 4, 6, 6}, nn.Conv2dConfig{In: 4, Out: 4, Kernel: 3, Stride: 2, Padding: 1, Groups: 4}},
		{"1x1_direct", []int{3, 4, 3, 5}, nn.Conv2dConfig{In: 4, Out: 6, Kernel: 1, Bias: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := cnnRNG(5)
			conv := nn.NewConv2d(dev, "conv", tc.cfg, rng)
			// Linear in x and in W: a large step only shrinks rounding.
			nntest.GradCheck{Eps: 5e-2, Tol: 1e-2, Seed: 6}.Run(t, dev, conv, cnnRandn(rng, nn.Numel(tc.shape)), tc.shape)
		})
	}
}

func TestConv2dConfigDefaults(t *testing.T) {
	c := nn.NewConv2d(cnnDevice(), "c", nn.Conv2dConfig{In: 2, Out: 4, Kernel: 3}, cnnRNG(1))
	got := c.Config()
	if got.Stride != 1 || got.Dilation != 1 || got.Groups != 1 {
		t.Errorf("zero Stride, Dilation, Groups not read as 1: %+v", got)
	}
	if w := c.Weight().Value.Shape; !c.Weight().Value.SameShape([]int{4, 2, 3, 3}) {
		t.Errorf("weight shape %v", w)
	}
	if c.Bias() != nil || c.TapDim() != 18 {
		t.Errorf("bias %v, TapDim %d (want nil, 18)", c.Bias(), c.TapDim())
	}
	g := nn.NewConv2d(cnnDevice(), "g", nn.Conv2dConfig{In: 4, Out: 4, Kernel: 3, Groups: 2, Bias: true}, cnnRNG(1))
	if g.TapDim() != 4*9+1 || !g.Weight().Value.SameShape([]int{4, 2, 3, 3}) {
		t.Errorf("groups 2: TapDim %d (want %d), weight %v", g.TapDim(), 4*9+1, g.Weight().Value.Shape)
	}
}

func TestConv2dNoAllocs(t *testing.T) {
	for path, dev := range cnnPaths() {
		t.Run(path, func(t *testing.T) { conv2dNoAllocs(t, dev) })
	}
}

func conv2dNoAllocs(t *testing.T, dev kernels.Device) {
	rng := cnnRNG(7)
	for _, tap := range []bool{false, true} {
		conv := nn.NewConv2d(dev, "conv", nn.Conv2dConfig{In: 4, Out: 8, Kernel: 3, Padding: 1, Groups: 2, Bias: true}, rng)
		conv.SetTap(tap)
		x := cnnUpload(dev, cnnRandn(rng, 4*4*8*8), []int{4, 4, 8, 8})
		dy := cnnUpload(dev, cnnRandn(rng, 4*8*8*8), []int{4, 8, 8, 8})
		step := func() { conv.Forward(x); conv.Backward(dy) }
		step()
		if a := testing.AllocsPerRun(20, step); a != 0 {
			t.Errorf("tap %v: steady-state Forward+Backward allocates %.0f times", tap, a)
		}
	}
}

func TestConv2dShapePanics(t *testing.T) {
	dev := cnnDevice()
	conv := nn.NewConv2d(dev, "conv1", nn.Conv2dConfig{In: 1, Out: 2, Kernel: 3}, cnnRNG(1))
	msg := cnnPanics(t, func() { conv.Forward(nn.NewTensor(dev, 8, 3, 32, 32)) })
	cnnWantMsg(t, msg, "nn: conv1:", "[8 3 32 32]", "[N 1 H W]")
	msg = cnnPanics(t, func() { conv.Forward(nn.NewTensor(dev, 8, 32, 32)) })
	cnnWantMsg(t, msg, "conv1", "[8 32 32]", "[N 1 H W]")
	msg = cnnPanics(t, func() { conv.Forward(nn.NewTensor(dev, 1, 1, 2, 5)) })
	cnnWantMsg(t, msg, "conv1", "[1 1 2 5]")
	s2 := nn.NewConv2d(dev, "s2", nn.Conv2dConfig{In: 1, Out: 1, Kernel: 3, Stride: 2}, cnnRNG(1))
	msg = cnnPanics(t, func() { s2.Forward(nn.NewTensor(dev, 1, 1, 2, 5)) })
	cnnWantMsg(t, msg, "s2", "[1 1 2 5]")
	conv.Forward(nn.NewTensor(dev, 2, 1, 5, 5))
	msg = cnnPanics(t, func() { conv.Backward(nn.NewTensor(dev, 2, 2, 5, 5)) })
	cnnWantMsg(t, msg, "conv1", "[2 2 5 5]", "[2 2 3 3]")
	msg = cnnPanics(t, func() { nn.NewConv2d(dev, "", nn.Conv2dConfig{In: 3, Out: 4, Kernel: 3, Groups: 2}, cnnRNG(1)) })
	cnnWantMsg(t, msg, "Conv2d", "Groups 2")
}

// BenchmarkConv2dForwardBackward times a ResNet-20 16→16 3×3 layer on a
// CIFAR batch of 128, with MAC's tap off (most steps) and on.
func BenchmarkConv2dForwardBackward(b *testing.B) {
	for _, path := range []string{"default", "im2col"} {
		dev := cnnPaths()[path]
		rng := cnnRNG(8)
		conv := nn.NewConv2d(dev, "conv", nn.Conv2dConfig{In: 16, Out: 16, Kernel: 3, Padding: 1}, rng)
		x := cnnUpload(dev, cnnRandn(rng, 128*16*32*32), []int{128, 16, 32, 32})
		dy := cnnUpload(dev, cnnRandn(rng, 128*16*32*32), []int{128, 16, 32, 32})
		for _, tap := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/tap=%v", path, tap), func(b *testing.B) {
				conv.SetTap(tap)
				conv.Forward(x)
				conv.Backward(dy)
				b.ReportAllocs()
				for b.Loop() {
					conv.Forward(x)
					conv.Backward(dy)
				}
				// Forward 2·N·Cout·HW·Cin·9 flops, backward twice that.
				b.ReportMetric(3*2*128*16*1024*16*9*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
