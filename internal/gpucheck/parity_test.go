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

// chaosFactor bounds the GPU's drift where training itself is chaotic: a
// CIFAR ResNet with BatchNorm on a few repeated synthetic batches turns a
// 1e-7 difference after one step into 0.1–0.2 after twenty, between two CPU
// BLAS libraries as much as between CPU and GPU (measured). There the GPU
// must stay within chaosFactor times the spread of the two CPU runs, and
// agree to firstStepTol after the first step, where nothing has amplified
// rounding yet.
const (
	chaosFactor  = 3
	firstStepTol = 1e-4
)

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
					final  [3]map[string][]float32
					first  [3]map[string][]float32
					losses [3][]float64
					start  map[string][]float32
				)
				gonum, err := cpu.NewWithBLAS("gonum")
				if err != nil {
					t.Fatal(err)
				}
				for i, dev := range []kernels.Device{host, gpu, gonum} {
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
						if s == 0 {
							first[i] = tr.params()
						}
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
				if worst <= parityTol && lossErr <= parityTol {
					return
				}
				// Beyond the plain bound: acceptable only if training is
				// chaotic here, which the two CPU runs show.
				spread, firstErr := 0.0, 0.0
				for k, want := range final[0] {
					spread = max(spread, relErr(final[2][k], want))
					firstErr = max(firstErr, relErr(first[1][k], first[0][k]))
				}
				t.Logf("beyond %g: CPU OpenBLAS vs CPU gonum differ by %.3g after %d steps; GPU vs CPU by %.3g after the first step",
					parityTol, spread, steps, firstErr)
				emit(t, map[string]any{"check": "parity_chaos", "model": name, "optimizer": method, "cpu_spread": spread,
					"gpu_first_step_err": firstErr, "gpu_err": worst})
				if !(firstErr <= firstStepTol) {
					t.Errorf("after one step the GPU differs by %.3g relative, above %g", firstErr, firstStepTol)
				}
				if !(worst <= chaosFactor*spread+parityTol) {
					t.Errorf("parameter %s differs by %.3g relative, above %d× the CPU runs' own spread %.3g (+%g)", worstName, worst, chaosFactor, spread, parityTol)
				}
			})
		}
	}
}
