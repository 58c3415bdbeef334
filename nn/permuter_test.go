package nn_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/nn"
)

// noPermuter hides the cpu Device's CopyStrided, so that the layers take
// the paths they take on a device without kernels.Permuter.
type noPermuter struct{ kernels.Device }

// TestLayersWithoutPermuter checks that Conv2d's two ways of computing dx
// (the transposed convolution, and col2im where the device cannot reverse
// a kernel or the configuration does not allow it) and PatchEmbed's two
// transposes agree.
func TestLayersWithoutPermuter(t *testing.T) {
	base := im2colDevice() // oneDNN would take the convolutions both paths compare
	devs := []kernels.Device{base, noPermuter{base}}
	if _, ok := devs[1].(kernels.Permuter); ok {
		t.Fatal("noPermuter is a kernels.Permuter")
	}
	for _, tc := range []struct {
		name  string
		shape []int
		cfg   nn.Conv2dConfig
	}{
		// Transposed on the cpu Device (Out·H·W ≤ 1.5·In·OutH·OutW).
		{"3x3_same", []int{3, 4, 6, 5}, nn.Conv2dConfig{In: 4, Out: 6, Kernel: 3, Padding: 1, Bias: true}},
		{"5x5_valid", []int{2, 6, 9, 8}, nn.Conv2dConfig{In: 6, Out: 2, Kernel: 5}},
		{"dilation2", []int{2, 3, 9, 7}, nn.Conv2dConfig{In: 3, Out: 2, Kernel: 3, Padding: 1, Dilation: 2}},
		{"groups3", []int{2, 6, 5, 5}, nn.Conv2dConfig{In: 6, Out: 9, Kernel: 3, Padding: 1, Groups: 3}},
		// col2im on every device: padding beyond the dilated kernel, a
		// widening layer, a stride.
		{"wide_padding", []int{2, 2, 4, 4}, nn.Conv2dConfig{In: 2, Out: 3, Kernel: 3, Padding: 3}},
		{"widening", []int{2, 1, 8, 8}, nn.Conv2dConfig{In: 1, Out: 6, Kernel: 5, Padding: 2}},
		{"stride2", []int{2, 3, 7, 7}, nn.Conv2dConfig{In: 3, Out: 4, Kernel: 3, Stride: 2, Padding: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := cnnRNG(11)
			xv := cnnRandn(rng, nn.Numel(tc.shape))
			var outs [2][][]float32
			for k, dev := range devs {
				conv := nn.NewConv2d(dev, "conv", tc.cfg, cnnRNG(12))
				x := cnnUpload(dev, xv, tc.shape)
				y := conv.Forward(x)
				dy := cnnUpload(dev, cnnRandn(cnnRNG(13), nn.Numel(y.Shape)), y.Shape)
				nn.ZeroGrad(dev, conv.Params())
				dx := conv.Backward(dy)
				for _, b := range []kernels.Buffer{y.Data, dx.Data, conv.Weight().Grad.Data} {
					v := make([]float32, b.Len())
					dev.Download(v, b)
					outs[k] = append(outs[k], v)
				}
			}
			for i, what := range []string{"y", "dx", "dW"} {
				closeTo(t, what, outs[0][i], outs[1][i], 1e-5)
			}
		})
	}

	for _, s := range [][3]int{{5, 3, 4}, {2, 7, 3}, {2, 3, 9}} {
		t.Run(fmt.Sprintf("PatchEmbed_transpose_%v", s), func(t *testing.T) {
			// Through the layer: [B, C, H, W] patches of 1 pixel are a
			// plain transpose of the projection's output.
			var outs [2][]float32
			for k, dev := range devs {
				pe := nn.NewPatchEmbed(dev, "pe", s[1], s[2], 1, cnnRNG(3))
				x := cnnUpload(dev, cnnRandn(cnnRNG(4), s[0]*s[1]*2*2), []int{s[0], s[1], 2, 2})
				y := pe.Forward(x)
				dx := pe.Backward(cnnUpload(dev, cnnRandn(cnnRNG(5), nn.Numel(y.Shape)), y.Shape))
				v, w := make([]float32, y.Data.Len()), make([]float32, dx.Data.Len())
				dev.Download(v, y.Data)
				dev.Download(w, dx.Data)
				outs[k] = append(v, w...)
			}
			closeTo(t, "PatchEmbed y and dx", outs[0], outs[1], 0)
		})
	}
}

// closeTo fails unless got and want agree within tol relative to want's
// largest magnitude.
func closeTo(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d elements, want %d", what, len(got), len(want))
	}
	var scale float64
	for _, v := range want {
		scale = max(scale, math.Abs(float64(v)))
	}
	for i := range want {
		if d := math.Abs(float64(got[i]) - float64(want[i])); !(d <= tol*scale) {
			t.Fatalf("%s[%d] = %v, other path %v (tolerance %g of %g)", what, i, got[i], want[i], tol, scale)
		}
	}
}
