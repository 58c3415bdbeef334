package mac_test

import (
	"encoding/json"
	"errors"
	"math"
	"path/filepath"
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

// baselineHparams are the keyword arguments of a baseline case in
// gen_optim.py; a missing "lr" means the generator's default.
type baselineHparams struct {
	LR        *float64 `json:"lr"`
	Momentum  float64  `json:"momentum"`
	StatDecay float64  `json:"stat_decay"`
	Damping   float64  `json:"damping"`
	WD        float64  `json:"wd"`
	Decoupled bool     `json:"decoupled"`
	TCov      int      `json:"tcov"`
	TInv      int      `json:"tinv"`
	KLClip    float64  `json:"kl_clip"`
	Beta1     float64  `json:"beta1"`
	Beta2     float64  `json:"beta2"`
	Eps       float64  `json:"eps"`
}

// options maps a case's hyperparameters onto mac.Options, so that the
// replays go through the factory the command line uses.
func (hp baselineHparams) options(t *testing.T, method string) mac.Options {
	o, err := mac.DefaultOptions(method)
	if err != nil {
		t.Fatal(err)
	}
	o.WeightDecay = hp.WD
	switch method {
	case "adamw":
		o.Beta1, o.Beta2, o.Eps = hp.Beta1, hp.Beta2, hp.Eps
	default:
		o.Momentum, o.DecoupledWD = hp.Momentum, hp.Decoupled
		o.StatDecay, o.Damping, o.TCov, o.TInv, o.KLClip = hp.StatDecay, hp.Damping, hp.TCov, hp.TInv, hp.KLClip
	}
	return o
}

// TestBaselineParity replays 12 steps of torch.optim.AdamW and of the
// reference KFAC, Eva and FOOF (testdata/gen/ref_optim.py, written from
// shared/MAC.md) on lenet5 and a two-block ViT, TCov 2 and TInv 5, through
// mac.New. Every step's loss and the final parameters must agree to 1e-4
// relative, and so must the parameters' total change over the run (final
// minus initial), which a wrong update moves far more than the parameters.
// The lenet5 fixtures keep every 7th element of fc1 and fc2.
func TestBaselineParity(t *testing.T) {
	for _, name := range []string{
		"optim_adamw_vit", "optim_adamw_lenet5",
		"optim_kfac_lenet5", "optim_kfac_vit_decoupled",
		"optim_eva_lenet5", "optim_eva_vit",
		"optim_foof_lenet5", "optim_foof_vit_klclip",
	} {
		t.Run(strings.TrimPrefix(name, "optim_"), func(t *testing.T) { baselineReplay(t, name) })
	}
}

func baselineReplay(t *testing.T, name string) {
	f := fixture.Load(t, name)
	meta := f.Metadata
	var cfg models.Config
	if err := json.Unmarshal([]byte(meta["config"]), &cfg); err != nil {
		t.Fatal(err)
	}
	var hp baselineHparams
	if err := json.Unmarshal([]byte(meta["hparams"]), &hp); err != nil {
		t.Fatal(err)
	}
	steps, _ := strconv.Atoi(meta["steps"])
	lr, _ := strconv.ParseFloat(meta["lr"], 64)
	if hp.LR != nil && *hp.LR != lr {
		t.Fatalf("hparams lr %v, metadata lr %v", *hp.LR, lr)
	}
	seed, _ := strconv.ParseUint(meta["seed"], 10, 64)
	var losses []float64
	if err := json.Unmarshal([]byte(meta["losses"]), &losses); err != nil {
		t.Fatal(err)
	}
	dev := cpu.New()
	m, err := models.New(dev, meta["model"], cfg)
	if err != nil {
		t.Fatal(err)
	}
	nn.HashInit(dev, m.Params(), seed)
	initial := snapshot(dev, m.Params())
	o, err := mac.New(meta["optimizer"], dev, m, hp.options(t, meta["optimizer"]))
	if err != nil {
		t.Fatal(err)
	}
	shape := m.InputShape(8)
	n := nn.Numel(shape)
	loss := nn.NewCrossEntropyLoss(dev, 0)
	sched := mac.Cosine{Base: lr, Steps: steps}
	got := make([]float32, steps)
	want := make([]float32, steps)
	for k := range steps {
		x := make([]float32, n)
		for i, v := range nn.HashUniform("x."+strconv.Itoa(k), seed, n) {
			x[i] = float32(v*2 - 1)
		}
		var y []int32
		for _, v := range nn.HashUniform("y."+strconv.Itoa(k), seed, 8) {
			y = append(y, int32(v*float64(cfg.Classes)))
		}
		got[k] = float32(step(t, dev, m, loss, o, x, shape, y, sched.LR(k)))
		want[k] = float32(losses[k])
	}
	fixture.Close(t, name+" losses", got, want, 1e-4)
	final := snapshot(dev, m.Params())
	for _, p := range m.Params() {
		if !p.Trainable() {
			continue
		}
		g, g0 := final[p.Name], initial[p.Name]
		key := "final." + p.Name
		if _, err := f.Tensor(key); err != nil {
			key = "final_every7." + p.Name
			g, g0 = every(g, 7), every(g0, 7)
		}
		w, _ := fixture.Floats(t, f, key)
		if meta["optimizer"] == "adamw" && strings.HasSuffix(p.Name, ".attn.qkv.bias") {
			// The key bias's gradient is zero but for rounding (softmax
			// ignores a shift of a query's scores), and AdamW divides
			// each gradient by its own magnitude: those elements are
			// rounding noise, different in every implementation.
			g, g0, w = dropKeyThird(g), dropKeyThird(g0), dropKeyThird(w)
		}
		fixture.Close(t, name+" "+p.Name, g, w, 1e-4)
		dg, dw := make([]float32, len(w)), make([]float32, len(w))
		for i := range w {
			dg[i], dw[i] = g[i]-g0[i], w[i]-g0[i]
		}
		fixture.Close(t, name+" change of "+p.Name, dg, dw, 1e-3)
	}
}

// dropKeyThird removes the middle third, the key rows, of a qkv vector.
func dropKeyThird(v []float32) []float32 {
	n := len(v) / 3
	return append(append([]float32{}, v[:n]...), v[2*n:]...)
}

func every(v []float32, k int) []float32 {
	var out []float32
	for i := 0; i < len(v); i += k {
		out = append(out, v[i])
	}
	return out
}

func newBaseline(t *testing.T, dev kernels.Device, method string, m nn.Module, edit func(*mac.Options)) mac.Optimizer {
	t.Helper()
	o, err := mac.DefaultOptions(method)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(&o)
	}
	opt, err := mac.New(method, dev, m, o)
	if err != nil {
		t.Fatal(err)
	}
	return opt
}

var baselines = []string{"adamw", "kfac", "eva", "foof"}

func TestBaselineInvalidConfig(t *testing.T) {
	dev := cpu.New()
	m := mlp(dev, 1)
	cases := []struct {
		methods []string
		field   string
		edit    func(*mac.Options)
	}{
		{[]string{"kfac", "eva", "foof"}, "damping", func(o *mac.Options) { o.Damping = 0 }},
		{[]string{"kfac", "eva", "foof"}, "damping", func(o *mac.Options) { o.Damping = math.Inf(1) }},
		{[]string{"kfac", "eva", "foof"}, "stat_decay", func(o *mac.Options) { o.StatDecay = 1 }},
		{[]string{"kfac", "eva", "foof"}, "tcov", func(o *mac.Options) { o.TCov = 0 }},
		{[]string{"kfac", "foof"}, "tinv", func(o *mac.Options) { o.TInv = 0 }},
		{[]string{"kfac", "eva", "foof"}, "kl_clip", func(o *mac.Options) { o.KLClip = -1 }},
		{[]string{"kfac", "eva", "foof"}, "momentum", func(o *mac.Options) { o.Momentum = 1.5 }},
		{baselines, "weight_decay", func(o *mac.Options) { o.WeightDecay = -1 }},
		{[]string{"adamw"}, "beta1", func(o *mac.Options) { o.Beta1 = 1 }},
		{[]string{"adamw"}, "beta2", func(o *mac.Options) { o.Beta2 = -0.1 }},
		{[]string{"adamw"}, "eps", func(o *mac.Options) { o.Eps = math.NaN() }},
		{[]string{"adamw"}, "decoupled_wd", func(o *mac.Options) { o.DecoupledWD = false }},
	}
	for _, c := range cases {
		for _, method := range c.methods {
			o, _ := mac.DefaultOptions(method)
			c.edit(&o)
			_, err := mac.New(method, dev, m, o)
			if err == nil || !strings.Contains(err.Error(), c.field) || !strings.Contains(err.Error(), method) {
				t.Errorf("%s %s: error %v does not name the method and the field", method, c.field, err)
			}
		}
	}
	if _, err := mac.NewAdamW(dev, m, mac.AdamWConfig{Common: mac.Common{Momentum: 0.9, DecoupledWD: true}, Beta1: 0.9, Beta2: 0.999}); err == nil || !strings.Contains(err.Error(), "momentum") {
		t.Errorf("adamw with momentum: error %v", err)
	}
	if _, err := mac.New("lbfgs", dev, m, mac.Options{}); err == nil || !strings.Contains(err.Error(), "kfac") {
		t.Errorf("unknown method: error %v does not list the methods", err)
	}
	if _, err := mac.DefaultOptions("lbfgs"); err == nil {
		t.Error("DefaultOptions of an unknown method: no error")
	}
}

// TestDefaultOptions checks the factory's defaults against shared/MAC.md
// and that every method builds from them.
func TestDefaultOptions(t *testing.T) {
	dev := cpu.New()
	for _, c := range []struct {
		method                 string
		damping, decay, klClip float64
		tcov, tinv             int
		momentum, weightDecay  float64
		firstLayer, attentionV bool
		beta1, beta2, eps      float64
	}{
		{"mac", 1, 0.95, 0, 5, 50, 0.9, 5e-4, true, true, 0, 0, 0},
		{"sgd", 0, 0, 0, 0, 0, 0.9, 5e-4, false, false, 0, 0, 0},
		{"adamw", 0, 0, 0, 0, 0, 0, 0.01, false, false, 0.9, 0.999, 1e-8},
		{"kfac", 0.03, 0.95, 1e-3, 5, 50, 0.9, 5e-4, false, false, 0, 0, 0},
		{"eva", 0.03, 0.95, 1e-3, 5, 0, 0.9, 5e-4, false, false, 0, 0, 0},
		{"foof", 1, 0.95, 0, 5, 50, 0.9, 5e-4, false, false, 0, 0, 0},
	} {
		o, err := mac.DefaultOptions(c.method)
		if err != nil {
			t.Fatal(err)
		}
		if o.Damping != c.damping || o.StatDecay != c.decay || o.KLClip != c.klClip || o.TCov != c.tcov || o.TInv != c.tinv ||
			o.Momentum != c.momentum || o.WeightDecay != c.weightDecay || o.FirstLayerCov != c.firstLayer ||
			o.AttentionV != c.attentionV || o.Beta1 != c.beta1 || o.Beta2 != c.beta2 || o.Eps != c.eps {
			t.Errorf("%s: defaults %+v", c.method, o)
		}
		opt, err := mac.New(c.method, dev, mlp(dev, 1), o)
		if err != nil {
			t.Fatalf("%s: %v", c.method, err)
		}
		if opt.Name() != c.method {
			t.Errorf("New(%q) built %q", c.method, opt.Name())
		}
	}
}

// TestBaselineNonFiniteSkips checks that a NaN gradient, or a NaN in the
// statistics, leaves parameters and optimizer state untouched.
func TestBaselineNonFiniteSkips(t *testing.T) {
	for _, method := range baselines {
		t.Run(method, func(t *testing.T) {
			dev := cpu.New()
			m := mlp(dev, 4)
			o := newBaseline(t, dev, method, m, func(o *mac.Options) { o.TCov, o.TInv, o.MaxNonFinite = 1, 1, 3 })
			loss := nn.NewCrossEntropyLoss(dev, 0)
			x, y := batch(0, 4, 6, 3)
			step(t, dev, m, loss, o, x, []int{4, 6}, y, 0.1)
			before := snapshot(dev, m.Params())
			stBefore, _ := o.State()
			for i := range 3 {
				forwardBackward(dev, m, loss, o, x, []int{4, 6}, y)
				o.Stats()
				g := m.Params()[2].Grad // fc2.weight
				v := get(dev, g.Data)
				v[3] = float32(math.NaN())
				dev.Upload(g.Data, v)
				err := o.Step(0.1)
				if (i < 2) != (err == nil) || (i == 2 && !errors.Is(err, mac.ErrNonFinite)) {
					t.Fatalf("skip %d: error %v", i, err)
				}
			}
			sameParams(t, "skipped steps", before, snapshot(dev, m.Params()))
			stAfter, _ := o.State()
			for k, v := range stBefore.Tensors {
				if relErr(stAfter.Tensors[k], v) != 0 {
					t.Fatalf("state %s changed by a skipped step", k)
				}
			}
			if o.Skipped() != 3 || o.Steps() != 1 {
				t.Errorf("skipped %d, steps %d; want 3 and 1", o.Skipped(), o.Steps())
			}
			forwardBackward(dev, m, loss, o, x, []int{4, 6}, y)
			if s := o.Stats(); s != nil {
				v := get(dev, s)
				v[len(v)-1] = float32(math.Inf(-1))
				dev.Upload(s, v)
				if err := o.Step(0.1); !errors.Is(err, mac.ErrNonFinite) || o.Skipped() != 4 {
					t.Errorf("Inf statistic: err %v, skipped %d", err, o.Skipped())
				}
				sameParams(t, "a step with an Inf statistic", before, snapshot(dev, m.Params()))
			}
		})
	}
}

func sameParams(t *testing.T, what string, want, got map[string][]float32) {
	t.Helper()
	for k, v := range want {
		for i := range v {
			if v[i] != got[k][i] {
				t.Fatalf("%s changed %s", what, k)
			}
		}
	}
}

// TestBaselineResume runs 10 steps straight, and 5 steps, a save to a
// file, a load into a fresh model and optimizer and 5 more: the two runs
// must end bit for bit equal.
func TestBaselineResume(t *testing.T) {
	for _, method := range baselines {
		t.Run(method, func(t *testing.T) {
			edit := func(o *mac.Options) { o.TCov, o.TInv, o.WeightDecay = 2, 3, 1e-3 }
			run := func(from, to int, m nn.Module, o mac.Optimizer, dev kernels.Device) {
				loss := nn.NewCrossEntropyLoss(dev, 0)
				sched := mac.Cosine{Base: 0.05, Steps: 10}
				for k := from; k < to; k++ {
					x, y := batch(k, 8, 6, 3)
					step(t, dev, m, loss, o, x, []int{8, 6}, y, sched.LR(k))
				}
			}
			dev := cpu.New()
			straight := mlp(dev, 9)
			run(0, 10, straight, newBaseline(t, dev, method, straight, edit), dev)

			dir := t.TempDir()
			first := mlp(dev, 9)
			o1 := newBaseline(t, dev, method, first, edit)
			run(0, 5, first, o1, dev)
			if err := nn.SaveParams(dev, filepath.Join(dir, "model.safetensors"), first.Params()); err != nil {
				t.Fatal(err)
			}
			if err := mac.SaveState(filepath.Join(dir, "opt.safetensors"), o1); err != nil {
				t.Fatal(err)
			}
			dev2 := cpu.New()
			second := mlp(dev2, 123) // other weights, overwritten by the load
			o2 := newBaseline(t, dev2, method, second, edit)
			if err := nn.LoadParams(dev2, filepath.Join(dir, "model.safetensors"), second.Params()); err != nil {
				t.Fatal(err)
			}
			if err := mac.LoadState(filepath.Join(dir, "opt.safetensors"), o2); err != nil {
				t.Fatal(err)
			}
			run(5, 10, second, o2, dev2)
			want, got := snapshot(dev, straight.Params()), snapshot(dev2, second.Params())
			for k := range want {
				if e := relErr(got[k], want[k]); e != 0 {
					t.Errorf("%s: resumed run differs from the straight one by %.3g", k, e)
				}
			}
			other := newBaseline(t, dev2, "sgd", mlp(dev2, 1), nil)
			if err := mac.LoadState(filepath.Join(dir, "opt.safetensors"), other); err == nil {
				t.Error("a state of another method was accepted")
			}
		})
	}
}

// convNet is lenet5 on 12 px images: two convolutions (one padded), three
// Linear layers, no batch norm, so that data parallelism is exact.
func convNet(t *testing.T, dev kernels.Device) *models.Model {
	m, err := models.New(dev, "lenet5", models.Config{InChannels: 2, ImageSize: 12, Classes: 3, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestBaselineDistributedSeam checks that two ranks that average their
// gradients and their Stats vectors take exactly the step one process takes
// on the whole batch: for KFAC and FOOF, whose factors are means over rows
// (and, for G, of per-sample gradients), on a convolutional net. For Eva it
// checks the documented exception: the averaged ḡ is twice the whole
// batch's (it scales with 1/B), while ā agrees.
func TestBaselineDistributedSeam(t *testing.T) {
	for _, method := range []string{"kfac", "foof", "eva"} {
		t.Run(method, func(t *testing.T) {
			dev := cpu.New()
			edit := func(o *mac.Options) { o.TCov, o.TInv, o.WeightDecay, o.KLClip = 1, 2, 1e-3, 1e-3 }
			full := convNet(t, dev)
			ranks := []*models.Model{convNet(t, dev), convNet(t, dev)}
			oFull := newBaseline(t, dev, method, full, edit)
			oRank := []mac.Optimizer{newBaseline(t, dev, method, ranks[0], edit), newBaseline(t, dev, method, ranks[1], edit)}
			lossFull := nn.NewCrossEntropyLoss(dev, 0)
			losses := []*nn.CrossEntropyLoss{nn.NewCrossEntropyLoss(dev, 0), nn.NewCrossEntropyLoss(dev, 0)}
			shape := full.InputShape(8)
			half := full.InputShape(4)
			per := nn.Numel(half)
			for k := range 4 {
				x, y := batch(k, 8, per/4, 3)
				forwardBackward(dev, full, lossFull, oFull, x, shape, y)
				sFull := get(dev, oFull.Stats())
				var stats []kernels.Buffer
				for r := range 2 {
					forwardBackward(dev, ranks[r], losses[r], oRank[r], x[r*per:(r+1)*per], half, y[r*4:(r+1)*4])
					stats = append(stats, oRank[r].Stats())
				}
				allReduceMean(dev, stats[0], stats[1])
				averageGrads(dev, ranks[0].Params(), ranks[1].Params())
				if method == "eva" {
					checkEvaStats(t, dev, ranks[0], get(dev, stats[0]), sFull)
					return
				}
				if e := relErr(get(dev, stats[0]), sFull); e > 1e-5 {
					t.Fatalf("step %d: averaged statistics differ from the full batch's by %.3g", k, e)
				}
				if err := oFull.Step(0.05); err != nil {
					t.Fatal(err)
				}
				for r := range 2 {
					if err := oRank[r].Step(0.05); err != nil {
						t.Fatal(err)
					}
				}
			}
			want := snapshot(dev, full.Params())
			for r := range 2 {
				got := snapshot(dev, ranks[r].Params())
				for k, w := range want {
					if e := relErr(got[k], w); e > 1e-5 {
						t.Errorf("rank %d %s: relative difference %.3g from the full-batch step", r, k, e)
					}
				}
			}
		})
	}
}

// checkEvaStats compares the averaged Eva statistics of two ranks with the
// full batch's: ā equal, ḡ twice.
func checkEvaStats(t *testing.T, dev kernels.Device, m *models.Model, avg, full []float32) {
	t.Helper()
	off := 0
	for _, l := range m.Tapped() {
		d, out := l.TapDim(), l.(nn.KFACTapped).OutDim()
		if e := relErr(avg[off:off+d], full[off:off+d]); e > 1e-5 {
			t.Errorf("%s: averaged ā differs from the full batch's by %.3g", l.Weight().Name, e)
		}
		off += d
		twice := make([]float32, out)
		for i, v := range full[off : off+out] {
			twice[i] = 2 * v
		}
		if e := relErr(avg[off:off+out], twice); e > 1e-5 {
			t.Errorf("%s: averaged ḡ is not twice the full batch's (%.3g)", l.Weight().Name, e)
		}
		off += out
	}
}
