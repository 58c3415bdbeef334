package models_test

import (
	"math"
	"strings"
	"testing"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/nn/models"
)

// TestConvAutoModels trains a step of ResNet-20 and of a small WRN, at a
// batch of 16 (where oneDNN takes Winograd: ONEDNN_VERBOSE=1 shows
// jit_wino_4x3 for their 3×3 stride-1 convolutions on avx512_core_vnni),
// with oneDNN's choice of algorithm (cpu.ConvAuto, nChw16c) and with its
// direct kernels in NCHW.
//
// Winograd rounds differently (TestConvAutoMatchesDirect: within 4e-6 of
// the largest output), and so do oneDNN's other direct kernels (nhwc's
// brgconv, within about 3e-7). The forward pass keeps such differences
// (logits and MAC's taps to 1e-5 of their scale); in the backward pass a
// ReLU whose input rounding moved across 0 passes or stops a whole
// gradient element, so the gradients are compared in relative L2, against
// what the nhwc kernels alone already move them by: Winograd's may be a
// few times that spread (its rounding is several times larger), never a
// wrong product.
func TestConvAutoModels(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  models.Config
	}{
		{"resnet20", models.Config{Seed: 5}},
		{"wrn28-10", models.Config{Seed: 5, Depth: 10, Width: 2, ImageSize: 16, DropRate: 0.3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const batch = 16
			auto := layoutDevice(t, kernels.Blocked16)
			if err := auto.SetConvAlgorithm(cpu.ConvAuto); err != nil {
				t.Fatal(err)
			}
			want := layoutRun(t, layoutDevice(t, kernels.NCHW), tc.name, tc.cfg, batch)
			other := layoutRun(t, layoutDevice(t, kernels.NHWC), tc.name, tc.cfg, batch)
			got := layoutRun(t, auto, tc.name, tc.cfg, batch)
			var worst, spread float64
			for k, w := range want {
				if !strings.Contains(k, "grad") && !strings.HasSuffix(k, "dx") {
					scale, diff := 0.0, 0.0
					for i := range w {
						scale = math.Max(scale, math.Abs(float64(w[i])))
						diff = math.Max(diff, math.Abs(float64(w[i]-got[k][i])))
					}
					if diff > 1e-5*math.Max(scale, 1e-3) {
						t.Errorf("%s: max |Δ| %.3g on a scale of %.3g", k, diff, scale)
					}
					continue
				}
				worst = math.Max(worst, relL2(got[k], w))
				spread = math.Max(spread, relL2(other[k], w))
			}
			t.Logf("gradients: relative L2 to direct NCHW at most %.3g with Winograd, %.3g with nhwc's direct kernels", worst, spread)
			if worst > math.Max(10*spread, 1e-5) {
				t.Errorf("gradients: relative L2 %.3g with Winograd, more than 10 times nhwc's %.3g", worst, spread)
			}
		})
	}
}
