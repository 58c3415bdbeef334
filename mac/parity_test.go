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
}

// parityRun replays a fixture's training run in Go and returns the model
// and the fixture's final parameters.
func parityRun(t *testing.T, name string, newOpt func(dev kernels.Device, m *models.Model, hp hparams) mac.Optimizer) {
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
	dev := cpu.New()
	m, err := models.New(dev, meta["model"], cfg)
	if err != nil {
		t.Fatal(err)
	}
	nn.HashInit(dev, m.Params(), seed)
	shape := m.InputShape(8)
	n := nn.Numel(shape)
	xs := make([][]float32, steps)
	ys := make([][]int32, steps)
	for k := range steps {
		u := nn.HashUniform("x."+strconv.Itoa(k), seed, n)
		xs[k] = make([]float32, n)
		for i, v := range u {
			xs[k][i] = float32(v*2 - 1)
		}
		for _, v := range nn.HashUniform("y."+strconv.Itoa(k), seed, 8) {
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
	for _, p := range m.Params() {
		if !p.Trainable() {
			continue
		}
		want, _ := fixture.Floats(t, f, "final."+p.Name)
		fixture.Close(t, name+" "+p.Name, get(dev, p.Value.Data), want, 1e-4)
	}
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

var _ = math.Abs

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
