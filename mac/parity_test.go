package mac_test

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/macdist/macdist/internal/fixture"
	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/mac"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/models"
	"github.com/macdist/macdist/nn/nntest"
)

// hparams are the reference optimizer's keyword arguments (gen_optim.py).
type hparams struct {
	Momentum      float64 `json:"momentum"`
	StatDecay     float64 `json:"stat_decay"`
	Damping       float64 `json:"damping"`
	WD            float64 `json:"wd"`
	Decoupled     bool    `json:"decoupled"`
	TCov          int     `json:"tcov"`
	TInv          int     `json:"tinv"`
	FirstLayerCov bool    `json:"first_layer_cov"`
	AttentionV    bool    `json:"attention_v"`
	// Offset inputs: gen_optim.py's batches(offset=True).
	Offset bool `json:"offset"`
	// [suffix, scale]: parameters layer….suffix start at scale times
	// their hash initialisation (gen_optim.py's run_f64).
	BranchGamma []any `json:"branch_gamma"`
}

// parityRun replays a fixture's training run in Go on cpu.New() and
// compares the final parameters.
func parityRun(t *testing.T, name string, newOpt func(dev kernels.Device, m *models.Model, hp hparams) mac.Optimizer) {
	parityRunOn(t, cpu.New(), name, newOpt)
}

// baseTol bounds the relative error of a replay where float32 follows the
// reference's trajectory (as PyTorch's own float32 run does, to 1e-6 or so).
const baseTol = 1e-4

// spreadFactor: a fixture with a float64 reference records f32_spread, the
// largest error of PyTorch's float32 runs of the same trajectory (one
// plain, others with weights and input nudged by an ulp); where float32
// itself strays by more than baseTol/4 (a ReLU input rounded to the other
// side of zero: resnet50's PyTorch float32 run strays by 2.6e-5), the
// replay is held to this many times that spread, the rule of nn/models'
// parity test.
const spreadFactor = 4

func parityRunOn(t *testing.T, dev kernels.Device, name string, newOpt func(dev kernels.Device, m *models.Model, hp hparams) mac.Optimizer) {
	f := fixture.Load(t, name)
	meta := f.Metadata
	var cfg models.Config
	if err := json.Unmarshal([]byte(meta["config"]), &cfg); err != nil {
		t.Fatal(err)
	}
	var hp hparams
	if err := json.Unmarshal([]byte(meta["hparams"]), &hp); err != nil {
		t.Fatal(err)
	}
	steps, _ := strconv.Atoi(meta["steps"])
	lr, _ := strconv.ParseFloat(meta["lr"], 64)
	seed, _ := strconv.ParseUint(meta["seed"], 10, 64)
	batch := 8
	if b, ok := meta["batch"]; ok {
		batch, _ = strconv.Atoi(b)
	}
	m, err := models.New(dev, meta["model"], cfg)
	if err != nil {
		t.Fatal(err)
	}
	nn.HashInit(dev, m.Params(), seed)
	if len(hp.BranchGamma) == 2 {
		suffix, _ := hp.BranchGamma[0].(string)
		scale, _ := hp.BranchGamma[1].(float64)
		scaled := 0
		for _, p := range m.Params() {
			if strings.HasPrefix(p.Name, "layer") && strings.HasSuffix(p.Name, suffix) {
				v := get(dev, p.Value.Data)
				for i := range v {
					v[i] *= float32(scale)
				}
				dev.Upload(p.Value.Data, v)
				scaled++
			}
		}
		if scaled == 0 {
			t.Fatalf("branch_gamma %v scales no parameter", hp.BranchGamma)
		}
	}
	shape := m.InputShape(batch)
	n := nn.Numel(shape)
	xs := make([][]float32, steps)
	ys := make([][]int32, steps)
	for k := range steps {
		u := nn.HashUniform("x."+strconv.Itoa(k), seed, n)
		xs[k] = make([]float32, n)
		for i, v := range u {
			xs[k][i] = float32(v*2 - 1)
		}
		if hp.Offset {
			// In float64 and in the order of numpy's ((2u−1) + (2o−1)) / 2.
			plane := shape[2] * shape[3]
			for j, o := range nn.HashUniform("o."+strconv.Itoa(k), seed, batch*shape[1]) {
				for i := j * plane; i < (j+1)*plane; i++ {
					xs[k][i] = float32((u[i]*2 - 1 + (o*2 - 1)) / 2)
				}
			}
		}
		for _, v := range nn.HashUniform("y."+strconv.Itoa(k), seed, batch) {
			ys[k] = append(ys[k], int32(v*float64(cfg.Classes)))
		}
	}
	o := newOpt(dev, m, hp)
	if mo, ok := o.(*mac.MAC); ok && hp.FirstLayerCov {
		acc, err := mac.NewCovarianceAccumulator(dev, mo.FirstLayer())
		if err != nil {
			t.Fatal(err)
		}
		in := nn.NewTensor(dev, shape...)
		for k := range steps {
			dev.Upload(in.Data, xs[k])
			acc.Add(in)
		}
		if err := mo.SetFirstLayerCovariance(acc.Sum()); err != nil {
			t.Fatal(err)
		}
	}
	loss := nn.NewCrossEntropyLoss(dev, 0)
	sched := mac.Cosine{Base: lr, Steps: steps}
	for k := range steps {
		t.Log("loss", k, step(t, dev, m, loss, o, xs[k], shape, ys[k], sched.LR(k)))
	}
	if meta["reference"] != "float64" {
		for _, p := range m.Params() {
			if !p.Trainable() {
				continue
			}
			want, _ := fixture.Floats(t, f, "final."+p.Name)
			fixture.Close(t, name+" "+p.Name, get(dev, p.Value.Data), want, baseTol)
		}
		return
	}
	tol := baseTol
	spread, err := strconv.ParseFloat(meta["f32_spread"], 64)
	if err != nil {
		t.Fatalf("fixture f32_spread: %v", err)
	}
	if s := spreadFactor * spread; s > tol {
		t.Logf("PyTorch's float32 runs stray by %.2g from the float64 reference; tolerance %.2g", spread, s)
		tol = s
	}
	projSeed, _ := strconv.ParseUint(meta["proj_seed"], 10, 64)
	worst, checked := 0.0, 0
	for _, p := range m.Params() {
		if !p.Trainable() {
			continue
		}
		want, _ := fixture.Floats(t, f, "fsum."+p.Name)
		e := summaryErr(get(dev, p.Value.Data), want, nn.HashUniform(p.Name, projSeed, p.Value.Len()))
		if e > tol || math.IsNaN(e) {
			t.Errorf("%s %s: summary error %.3g > %.3g", name, p.Name, e, tol)
		}
		worst = math.Max(worst, e)
		checked++
	}
	if checked == 0 {
		t.Fatal("no trainable parameters checked")
	}
	t.Logf("%d tensors, worst error %.2g (PyTorch float32's %s, spread %s; the run moves parameters by %s)",
		checked, worst, meta["torch_f32_err"], meta["f32_spread"], meta["motion"])
}

// summaryErr compares a tensor with gen_optim.py's summary of it (sum, sum
// of absolute values, sum of squares, projection on the ±1 direction
// 2r−1): the sum against the sum of absolute values, the sum of squares
// relatively, the projection against the norm. Each is about the largest
// relative error of an element where the errors are spread, and a single
// element off by e·‖want‖ moves the projection by e.
func summaryErr(got, want []float32, r []float64) float64 {
	var sum, sq, proj float64
	for i, v := range got {
		x := float64(v)
		sum += x
		sq += x * x
		proj += x * (2*r[i] - 1)
	}
	sq0 := float64(want[2])
	return max(math.Abs(sum-float64(want[0]))/nonzero(float64(want[1])),
		math.Abs(sq-sq0)/nonzero(sq0),
		math.Abs(proj-float64(want[3]))/nonzero(math.Sqrt(sq0)))
}

// nonzero keeps a scale of zero from dividing: the error is then absolute.
func nonzero(x float64) float64 {
	if x == 0 {
		return 1
	}
	return x
}

func macFromHparams(dev kernels.Device, m *models.Model, hp hparams) mac.Optimizer {
	o, err := mac.NewMAC(dev, m, mac.Config{
		Common:    mac.Common{Momentum: hp.Momentum, WeightDecay: hp.WD, DecoupledWD: hp.Decoupled},
		StatDecay: hp.StatDecay, Damping: hp.Damping, TCov: hp.TCov, TInv: hp.TInv,
		FirstLayerCov: hp.FirstLayerCov, AttentionV: hp.AttentionV,
	})
	if err != nil {
		panic(err)
	}
	return o
}

// TestMACParity replays the PyTorch reference MAC (testdata/gen/ref_optim.py)
// and compares the final parameters (relative error ≤ 1e-4): 12 steps on
// lenet5 and a two-block ViT, 20 steps of the DeiT / Swin recipe on
// deit-small, deit-base and swin-tiny at small sizes, the Swin run with and
// without the window attention rule.
func TestMACParity(t *testing.T) {
	for _, name := range []string{"optim_mac_lenet5", "optim_mac_lenet5_nofirst", "optim_mac_vit", "optim_mac_vit_noattn_decoupled",
		"optim_mac_deit-small", "optim_mac_deit-base", "optim_mac_swin", "optim_mac_swin_noattn"} {
		t.Run(strings.TrimPrefix(name, "optim_"), func(t *testing.T) { parityRun(t, name, macFromHparams) })
	}
}

// TestMACParityResNet replays 20 steps of the ResNet-50 / ImageNet
// recipe's MAC on resnet20 and on torchvision's resnet34, 50, 101 and 152
// at 16 px, the first layer on its full covariance, against float64
// references (gen_optim.py's F64_CASES), on both ways the cpu Device
// convolves (oneDNN where installed, and im2col): every convolution's ā
// comes from its tap (nn/convtap.go), strided, padded and 1 × 1 alike,
// and conv1's from the first-layer covariance.
func TestMACParityResNet(t *testing.T) {
	paths := nntest.CPUPaths(t)
	for _, c := range []struct {
		name string
		big  bool
	}{{"resnet20", false}, {"resnet34", true}, {"resnet50", true}, {"resnet101", true}, {"resnet152", true}} {
		for _, p := range paths {
			t.Run(c.name+"/"+p.Name, func(t *testing.T) {
				if testing.Short() && c.big {
					t.Skip("large model; run without -short")
				}
				parityRunOn(t, p.Dev, "optim_mac_"+c.name, macFromHparams)
			})
		}
	}
}

// TestSGDParity replays torch.optim.SGD runs.
func TestSGDParity(t *testing.T) {
	for _, c := range []struct {
		name     string
		nesterov bool
	}{{"optim_sgd_lenet5", false}, {"optim_sgd_vit_nesterov", true}} {
		t.Run(strings.TrimPrefix(c.name, "optim_"), func(t *testing.T) {
			parityRun(t, c.name, func(dev kernels.Device, m *models.Model, hp hparams) mac.Optimizer {
				o, err := mac.NewSGD(dev, m, mac.Common{Momentum: hp.Momentum, WeightDecay: hp.WD, Nesterov: c.nesterov})
				if err != nil {
					t.Fatal(err)
				}
				return o
			})
		})
	}
}
