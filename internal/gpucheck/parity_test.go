package gpucheck

import (
	"math"
	"testing"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/nn/models"
)

// parityTol is the bound on the parameters after 20 steps. The
// devices add in different orders (cuBLAS's blocking, our kernels' partial
// sums), so they differ in the last bits from the first step on, and
// training amplifies that a little.
const parityTol = 1e-3

// TestParity trains the same model from the same weights on the same
// batches on the GPU and on the CPU, with SGD and with MAC, and compares
// every parameter (BatchNorm's running statistics included) and the loss of
// every step.
func TestParity(t *testing.T) {
	gpu := openGPU(t, false)
	host := cpu.New()
	steps := envInt(t, "GPUCHECK_PARITY_STEPS", 20)
	for _, name := range envList("GPUCHECK_PARITY_MODELS", "lenet5,resnet20") {
		for _, method := range []string{"sgd", "mac"} {
			t.Run(name+"/"+method, func(t *testing.T) {
				def, err := models.Default(name)
				if err != nil {
					t.Fatal(err)
				}
				bs := 16
				if name == "lenet5" {
					bs = 32
				}
				bs = envInt(t, "GPUCHECK_PARITY_BATCH", bs)
				data := synthetic(11, 4, []int{bs, def.InChannels, def.ImageSize, def.ImageSize}, def.Classes)
				const lr = 0.01
				var (
					final  [2]map[string][]float32
					losses [2][]float64
					start  map[string][]float32
				)
				for i, dev := range []kernels.Device{host, gpu} {
					tr, err := newTrainer(dev, name, models.Config{Seed: 5}, bs, method, 42, data)
					if err != nil {
						t.Fatal(err)
					}
					if i == 0 {
						start = tr.params()
					}
					for s := range steps {
						l, _, err := tr.step(data[s%len(data)], lr, false)
						if err != nil {
							t.Fatalf("%s, step %d: %v", dev.Name(), s, err)
						}
						losses[i] = append(losses[i], l)
					}
					if err := dev.Sync(); err != nil {
						t.Fatalf("%s: %v", dev.Name(), err)
					}
					final[i] = tr.params()
				}

				// Training must have moved the weights, or equal weights
				// would prove nothing.
				moved := 0.0
				for k, v := range final[0] {
					moved = max(moved, relErr(v, start[k]))
				}
				if moved < 1e-3 {
					t.Errorf("%d steps moved the CPU's parameters by %.2g relative at most: nothing was trained", steps, moved)
				}
				worst, worstName := 0.0, ""
				for k, want := range final[0] {
					got, ok := final[1][k]
					if !ok || len(got) != len(want) {
						t.Fatalf("parameter %s missing or resized on the GPU", k)
					}
					if e := relErr(got, want); e > worst || math.IsInf(e, 0) {
						worst, worstName = e, k
					}
				}
				lossErr := 0.0
				for s := range losses[0] {
					lossErr = max(lossErr, math.Abs(losses[1][s]-losses[0][s])/math.Abs(losses[0][s]))
				}
				t.Logf("%d steps, batch %d: parameters moved %.3g; GPU vs CPU: worst parameter %s at %.3g relative, losses within %.3g (first %.6f/%.6f, last %.6f/%.6f)",
					steps, bs, moved, worstName, worst, lossErr, losses[1][0], losses[0][0], losses[1][steps-1], losses[0][steps-1])
				emit(t, map[string]any{"check": "parity", "model": name, "optimizer": method, "steps": steps, "batch": bs,
					"max_rel_err": worst, "worst_param": worstName, "loss_rel_err": lossErr, "tol": parityTol})
				if !(worst <= parityTol) {
					t.Errorf("parameter %s differs by %.3g relative (max|gpu−cpu|/max|cpu|), above %g", worstName, worst, parityTol)
				}
				if !(lossErr <= parityTol) {
					t.Errorf("losses differ by %.3g relative, above %g", lossErr, parityTol)
				}
			})
		}
	}
}
