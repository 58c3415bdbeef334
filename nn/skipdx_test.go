package nn_test

import (
	"fmt"
	"testing"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/nn"
)

// TestSkipFirstInputGrad checks that a network whose first layer skips dx
// returns nil from Backward and leaves every parameter gradient as it was
// with dx, on every convolution path, for a first Conv2d, Linear and
// PatchEmbed; and that a layer left alone still gives dx.
func TestSkipFirstInputGrad(t *testing.T) {
	devs := cnnPaths()
	devs["launchbound"] = launchBound{im2colDevice()}
	type net struct {
		name  string
		build func(dev kernels.Device) nn.Module
		in    []int
	}
	nets := []net{
		{"conv3x3", func(dev kernels.Device) nn.Module {
			rng := cnnRNG(3)
			return nn.NewSequential(
				nn.NewConv2d(dev, "c1", nn.Conv2dConfig{In: 3, Out: 16, Kernel: 3, Padding: 1}, rng),
				nn.NewReLU(dev),
				nn.NewConv2d(dev, "c2", nn.Conv2dConfig{In: 16, Out: 16, Kernel: 3, Padding: 1, Bias: true}, rng))
		}, []int{2, 3, 8, 8}},
		{"conv1x1", func(dev kernels.Device) nn.Module {
			return nn.NewSequential(nn.NewConv2d(dev, "c1", nn.Conv2dConfig{In: 4, Out: 8, Kernel: 1, Bias: true}, cnnRNG(4)))
		}, []int{2, 4, 5, 5}},
		{"linear", func(dev kernels.Device) nn.Module {
			return nn.NewSequential(nn.NewLinear(dev, "fc", 6, 5, true, cnnRNG(5)), nn.NewReLU(dev))
		}, []int{3, 6}},
		{"patchembed", func(dev kernels.Device) nn.Module {
			return nn.NewSequential(nn.NewPatchEmbed(dev, "pe", 3, 8, 4, cnnRNG(6)))
		}, []int{2, 3, 8, 8}},
	}
	for path, dev := range devs {
		for _, nt := range nets {
			t.Run(fmt.Sprintf("%s/%s", path, nt.name), func(t *testing.T) {
				rng := cnnRNG(9)
				x := cnnUpload(dev, cnnRandn(rng, nn.Numel(nt.in)), nt.in)
				grads := func(skip bool) [][]float32 {
					m := nt.build(dev)
					if skip && !nn.SkipFirstInputGrad(m) {
						t.Fatal("SkipFirstInputGrad found no layer to skip")
					}
					y := m.Forward(x)
					dy := cnnUpload(dev, cnnRandn(cnnRNG(10), y.Len()), y.Shape)
					dx := m.Backward(dy)
					if skip != (dx == nil) {
						t.Fatalf("skip %v: Backward returned %v", skip, dx)
					}
					var out [][]float32
					for _, p := range m.Params() {
						if p.Grad != nil {
							g := make([]float32, p.Grad.Len())
							dev.Download(g, p.Grad.Data)
							out = append(out, g)
						}
					}
					return out
				}
				want, got := grads(false), grads(true)
				for i := range want {
					for j := range want[i] {
						if want[i][j] != got[i][j] {
							t.Fatalf("param %d [%d]: %g with dx skipped, %g without", i, j, got[i][j], want[i][j])
						}
					}
				}
			})
		}
	}
}
