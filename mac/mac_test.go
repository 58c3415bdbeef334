package mac_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/mac"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/models"
)

// mlp is a small model without batch norm: fc1 (bias), relu, fc2 (no bias), relu, fc3 (bias).
func mlp(dev kernels.Device, seed uint64) *nn.Sequential {
	rng := rand.New(rand.NewPCG(seed, 1))
	return nn.NewSequential(
		nn.NewLinear(dev, "fc1", 6, 7, true, rng), nn.NewReLU(dev),
		nn.NewLinear(dev, "fc2", 7, 5, false, rng), nn.NewReLU(dev),
		nn.NewLinear(dev, "fc3", 5, 3, true, rng),
	)
}

// batch returns a deterministic batch for step k.
func batch(k, n, in, classes int) ([]float32, []int32) {
	rng := rand.New(rand.NewPCG(uint64(k), 99))
	x := make([]float32, n*in)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	y := make([]int32, n)
	for i := range y {
		y[i] = int32(rng.IntN(classes))
	}
	return x, y
}

func get(dev kernels.Device, b kernels.Buffer) []float32 {
	v := make([]float32, b.Len())
	dev.Download(v, b)
	return v
}

// step runs one training step on x, y: forward, loss, backward, optimizer.
func step(t *testing.T, dev kernels.Device, m nn.Module, loss *nn.CrossEntropyLoss, o mac.Optimizer, x []float32, shape []int, y []int32, lr float64) float64 {
	t.Helper()
	l := forwardBackward(dev, m, loss, o, x, shape, y)
	o.Stats()
	if err := o.Step(lr); err != nil {
		t.Fatal(err)
	}
	return l
}

func forwardBackward(dev kernels.Device, m nn.Module, loss *nn.CrossEntropyLoss, o mac.Optimizer, x []float32, shape []int, y []int32) float64 {
	nn.ZeroGrad(dev, m.Params())
	o.BeginStep()
	in := nn.NewTensor(dev, shape...)
	dev.Upload(in.Data, x)
	logits := m.Forward(in)
	l, _ := loss.Forward(logits, y)
	m.Backward(loss.Backward())
	return l
}

func snapshot(dev kernels.Device, ps []*nn.Param) map[string][]float32 {
	out := map[string][]float32{}
	for _, p := range ps {
		out[p.Name] = get(dev, p.Value.Data)
	}
	return out
}

// TestClosedForm checks MAC's rank-1 update against λ·Gw·(m̂m̂ᵀ + λI)⁻¹
// computed with an explicit float64 inverse.
func TestClosedForm(t *testing.T) {
	for _, damping := range []float64{1.0, 0.1, 3.0} {
		dev := cpu.New()
		m := mlp(dev, 1)
		cfg := mac.Config{StatDecay: 0.95, Damping: damping, TCov: 1, TInv: 1}
		o, err := mac.NewMAC(dev, m, cfg)
		if err != nil {
			t.Fatal(err)
		}
		loss := nn.NewCrossEntropyLoss(dev, 0)
		x, y := batch(0, 8, 6, 3)
		forwardBackward(dev, m, loss, o, x, []int{8, 6}, y)
		o.Stats()
		type layer struct {
			w, b *nn.Param
			abar []float32
			gw   *mat.Dense
		}
		var layers []layer
		for _, mod := range m.Children() {
			l, ok := mod.(*nn.Linear)
			if !ok {
				continue
			}
			ly := layer{w: l.Weight(), b: l.Bias(), abar: get(dev, l.Tap())}
			gw := get(dev, l.Weight().Grad.Data)
			out, in := l.Out(), l.In()
			d := l.TapDim()
			ly.gw = mat.NewDense(out, d, nil)
			for r := range out {
				for c := range in {
					ly.gw.Set(r, c, float64(gw[r*in+c]))
				}
			}
			if l.Bias() != nil {
				gb := get(dev, l.Bias().Grad.Data)
				for r := range out {
					ly.gw.Set(r, in, float64(gb[r]))
				}
			}
			layers = append(layers, ly)
		}
		before := snapshot(dev, m.Params())
		if err := o.Step(1); err != nil {
			t.Fatal(err)
		}
		after := snapshot(dev, m.Params())
		for _, ly := range layers {
			d := len(ly.abar)
			// After one update from zero, the bias-corrected EMA is ā itself.
			a := mat.NewDense(d, d, nil)
			for i := range d {
				for j := range d {
					v := float64(ly.abar[i]) * float64(ly.abar[j])
					if i == j {
						v += damping
					}
					a.Set(i, j, v)
				}
			}
			var inv, want mat.Dense
			if err := inv.Inverse(a); err != nil {
				t.Fatal(err)
			}
			want.Mul(ly.gw, &inv)
			want.Scale(damping, &want)
			out, _ := ly.gw.Dims()
			in := d
			if ly.b != nil {
				in--
			}
			var worst, scale float64
			for r := range out {
				for c := range d {
					var got float64
					if c < in {
						got = float64(before[ly.w.Name][r*in+c] - after[ly.w.Name][r*in+c])
					} else {
						got = float64(before[ly.b.Name][r] - after[ly.b.Name][r])
					}
					worst = math.Max(worst, math.Abs(got-want.At(r, c)))
					scale = math.Max(scale, math.Abs(want.At(r, c)))
				}
			}
			if worst/scale > 1e-6 {
				t.Errorf("λ=%v %s: update differs from the closed form by %.3g relative", damping, ly.w.Name, worst/scale)
			}
		}
	}
}

// TestFirstLayer checks the first-layer rule: the accumulated covariance
// against explicit rows, and V = Gw·(A0 + λI)⁻¹.
func TestFirstLayer(t *testing.T) {
	dev := cpu.New()
	m := mlp(dev, 2)
	cfg := mac.Config{StatDecay: 0.95, Damping: 0.5, TCov: 1, TInv: 1, FirstLayerCov: true}
	o, err := mac.NewMAC(dev, m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	first := o.FirstLayer()
	if first == nil || first.Weight().Name != "fc1.weight" {
		t.Fatalf("first layer = %v, want fc1", first)
	}
	acc, err := mac.NewCovarianceAccumulator(dev, first)
	if err != nil {
		t.Fatal(err)
	}
	const d = 7
	explicit := make([]float64, d*d)
	var rows float64
	for k := range 3 {
		x, _ := batch(100+k, 5, 6, 3)
		in := nn.NewTensor(dev, 5, 6)
		dev.Upload(in.Data, x)
		acc.Add(in)
		for r := range 5 {
			p := append(append([]float64{}, f64(x[r*6:r*6+6])...), 1)
			for i := range d {
				for j := range d {
					explicit[i*d+j] += p[i] * p[j]
				}
			}
			rows++
		}
	}
	sum, n := acc.Sum()
	if n != rows {
		t.Fatalf("rows = %v, want %v", n, rows)
	}
	for i := range explicit {
		if math.Abs(sum[i]-explicit[i]) > 1e-5*math.Max(1, math.Abs(explicit[i])) {
			t.Fatalf("covariance[%d] = %v, want %v", i, sum[i], explicit[i])
		}
	}
	if err := o.SetFirstLayerCovariance(sum, n); err != nil {
		t.Fatal(err)
	}
	x, y := batch(0, 8, 6, 3)
	forwardBackward(dev, m, nn.NewCrossEntropyLoss(dev, 0), o, x, []int{8, 6}, y)
	o.Stats()
	l := first.(*nn.Linear)
	gw := mat.NewDense(7, d, nil)
	g := get(dev, l.Weight().Grad.Data)
	gb := get(dev, l.Bias().Grad.Data)
	for r := range 7 {
		for c := range 6 {
			gw.Set(r, c, float64(g[r*6+c]))
		}
		gw.Set(r, 6, float64(gb[r]))
	}
	a := mat.NewDense(d, d, nil)
	for i := range d {
		for j := range d {
			v := explicit[i*d+j] / rows
			if i == j {
				v += 0.5
			}
			a.Set(i, j, v)
		}
	}
	var inv, want mat.Dense
	if err := inv.Inverse(a); err != nil {
		t.Fatal(err)
	}
	want.Mul(gw, &inv)
	w0, b0 := get(dev, l.Weight().Value.Data), get(dev, l.Bias().Value.Data)
	if err := o.Step(1); err != nil {
		t.Fatal(err)
	}
	w1, b1 := get(dev, l.Weight().Value.Data), get(dev, l.Bias().Value.Data)
	var worst, scale float64
	for r := range 7 {
		for c := range d {
			got := float64(b0[r] - b1[r])
			if c < 6 {
				got = float64(w0[r*6+c] - w1[r*6+c])
			}
			worst = math.Max(worst, math.Abs(got-want.At(r, c)))
			scale = math.Max(scale, math.Abs(want.At(r, c)))
		}
	}
	if worst/scale > 1e-5 {
		t.Errorf("first-layer update differs from Gw·(A0+λI)⁻¹ by %.3g relative", worst/scale)
	}
}

func f64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// TestStepsOnlyCollectEveryTCov checks that taps are on exactly on
// collecting steps and Stats is nil otherwise.
func TestStepsOnlyCollectEveryTCov(t *testing.T) {
	dev := cpu.New()
	m := mlp(dev, 3)
	o, err := mac.NewMAC(dev, m, mac.Config{StatDecay: 0.9, Damping: 1, TCov: 3, TInv: 4})
	if err != nil {
		t.Fatal(err)
	}
	loss := nn.NewCrossEntropyLoss(dev, 0)
	for k := range 7 {
		x, y := batch(k, 4, 6, 3)
		forwardBackward(dev, m, loss, o, x, []int{4, 6}, y)
		s := o.Stats()
		if (s != nil) != (k%3 == 0) {
			t.Errorf("step %d: Stats() nil = %v", k, s == nil)
		}
		if err := o.Step(0.1); err != nil {
			t.Fatal(err)
		}
	}
}

func TestInvalidConfig(t *testing.T) {
	dev := cpu.New()
	m := mlp(dev, 1)
	good := mac.DefaultConfig()
	good.FirstLayerCov = false
	cases := []struct {
		field string
		edit  func(*mac.Config)
	}{
		{"damping", func(c *mac.Config) { c.Damping = 0 }},
		{"damping", func(c *mac.Config) { c.Damping = -1 }},
		{"stat_decay", func(c *mac.Config) { c.StatDecay = 1 }},
		{"stat_decay", func(c *mac.Config) { c.StatDecay = -0.1 }},
		{"tcov", func(c *mac.Config) { c.TCov = 0 }},
		{"tinv", func(c *mac.Config) { c.TInv = 0 }},
		{"momentum", func(c *mac.Config) { c.Momentum = 1 }},
		{"weight_decay", func(c *mac.Config) { c.WeightDecay = -1 }},
	}
	for _, c := range cases {
		cfg := good
		c.edit(&cfg)
		_, err := mac.NewMAC(dev, m, cfg)
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: error %v does not name the field", c.field, err)
		}
	}
	if _, err := mac.NewMAC(dev, m, good); err != nil {
		t.Errorf("default config refused: %v", err)
	}
	if _, err := mac.NewSchedule("cosine", -0.1, 0, 10, 0); err == nil || !strings.Contains(err.Error(), "learning rate") {
		t.Errorf("negative lr: error %v", err)
	}
}

// TestNonFiniteSkips checks that a NaN gradient leaves parameters and state
// untouched, and that too many in a row is an error.
func TestNonFiniteSkips(t *testing.T) {
	dev := cpu.New()
	m := mlp(dev, 4)
	cfg := mac.Config{Common: mac.Common{Momentum: 0.9, MaxNonFinite: 3}, StatDecay: 0.95, Damping: 1, TCov: 1, TInv: 1}
	o, err := mac.NewMAC(dev, m, cfg)
	if err != nil {
		t.Fatal(err)
	}
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
		if i == 1 {
			v[3] = float32(math.Inf(1))
		}
		dev.Upload(g.Data, v)
		err := o.Step(0.1)
		if i < 2 && err != nil {
			t.Fatalf("skip %d: unexpected error %v", i, err)
		}
		if i == 2 && !errors.Is(err, mac.ErrNonFinite) {
			t.Fatalf("third skip in a row: error %v, want ErrNonFinite", err)
		}
	}
	if o.Skipped() != 3 || o.Steps() != 1 {
		t.Errorf("skipped %d, steps %d; want 3 and 1", o.Skipped(), o.Steps())
	}
	after := snapshot(dev, m.Params())
	for k, v := range before {
		for i := range v {
			if v[i] != after[k][i] {
				t.Fatalf("%s changed by a skipped step", k)
			}
		}
	}
	stAfter, _ := o.State()
	for k, v := range stBefore.Tensors {
		for i := range v {
			if v[i] != stAfter.Tensors[k][i] {
				t.Fatalf("state %s changed by a skipped step", k)
			}
		}
	}
	// Large but finite gradients are not mistaken for overflow.
	forwardBackward(dev, m, loss, o, x, []int{4, 6}, y)
	o.Stats()
	g := m.Params()[2].Grad
	v := get(dev, g.Data)
	v[3], v[4] = 1e30, -3e38
	dev.Upload(g.Data, v)
	if err := o.Step(1e-40); err != nil || o.Skipped() != 3 || o.Steps() != 2 {
		t.Fatalf("large finite gradient: err %v, skipped %d, steps %d; want a step taken", err, o.Skipped(), o.Steps())
	}
	// A NaN in the statistics alone is caught too.
	forwardBackward(dev, m, loss, o, x, []int{4, 6}, y)
	s := o.Stats()
	v = get(dev, s)
	v[0] = float32(math.NaN())
	dev.Upload(s, v)
	// (The step before reset the count in a row: this skip is the first.)
	if err := o.Step(0.1); err != nil || o.Skipped() != 4 || o.Steps() != 2 {
		t.Errorf("NaN statistic: err %v, skipped %d, steps %d; want a skip", err, o.Skipped(), o.Steps())
	}
}

// TestDistributedSeam checks that two ranks that average their gradients
// and their statistics vectors take exactly the step one rank takes on the
// whole batch.
func TestDistributedSeam(t *testing.T) {
	dev := cpu.New()
	cfg := mac.Config{Common: mac.Common{Momentum: 0.9, WeightDecay: 1e-3}, StatDecay: 0.95, Damping: 0.7, TCov: 1, TInv: 1}
	full := mlp(dev, 5)
	ranks := []*nn.Sequential{mlp(dev, 5), mlp(dev, 5)}
	oFull, _ := mac.NewMAC(dev, full, cfg)
	oRank := make([]*mac.MAC, 2)
	for i := range ranks {
		oRank[i], _ = mac.NewMAC(dev, ranks[i], cfg)
	}
	lossFull := nn.NewCrossEntropyLoss(dev, 0)
	losses := []*nn.CrossEntropyLoss{nn.NewCrossEntropyLoss(dev, 0), nn.NewCrossEntropyLoss(dev, 0)}
	for k := range 3 {
		x, y := batch(k, 8, 6, 3)
		step(t, dev, full, lossFull, oFull, x, []int{8, 6}, y, 0.1)
		var stats []kernels.Buffer
		for r := range 2 {
			forwardBackward(dev, ranks[r], losses[r], oRank[r], x[r*24:(r+1)*24], []int{4, 6}, y[r*4:(r+1)*4])
			stats = append(stats, oRank[r].Stats())
		}
		// What the all-reduce does: average gradients and statistics.
		allReduceMean(dev, stats[0], stats[1])
		averageGrads(dev, ranks[0].Params(), ranks[1].Params())
		for r := range 2 {
			if err := oRank[r].Step(0.1); err != nil {
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
}

func allReduceMean(dev kernels.Device, a, b kernels.Buffer) {
	dev.Axpby(a, 0.5, b, 0.5)
	dev.Copy(b, a)
}

// averageGrads is the gradient all-reduce of two ranks' replicas.
func averageGrads(dev kernels.Device, p0, p1 []*nn.Param) {
	for i := range p0 {
		if p0[i].Grad != nil {
			allReduceMean(dev, p0[i].Grad.Data, p1[i].Grad.Data)
		}
	}
}

func relErr(got, want []float32) float64 {
	var d, s float64
	for i := range want {
		d = math.Max(d, math.Abs(float64(got[i]-want[i])))
		s = math.Max(s, math.Abs(float64(want[i])))
	}
	return d / s
}

// TestResumeInFreshProcess runs 10 steps straight, and 5 steps, a save, a
// load in a new process and 5 more: the parameters must agree to 1e-6.
func TestResumeInFreshProcess(t *testing.T) {
	if phase := os.Getenv("MACDIST_RESUME_PHASE"); phase != "" {
		resumePhase(t, phase, os.Getenv("MACDIST_RESUME_DIR"))
		return
	}
	dir := t.TempDir()
	straight := runSteps(t, 0, 10, "", "")
	for _, phase := range []string{"first", "second"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestResumeInFreshProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), "MACDIST_RESUME_PHASE="+phase, "MACDIST_RESUME_DIR="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("phase %s: %v\n%s", phase, err, out)
		}
	}
	dev := cpu.New()
	m := mlp(dev, 9)
	if err := nn.LoadParams(dev, filepath.Join(dir, "model2.safetensors"), m.Params()); err != nil {
		t.Fatal(err)
	}
	resumed := snapshot(dev, m.Params())
	for k, w := range straight {
		if e := relErr(resumed[k], w); e > 1e-6 {
			t.Errorf("%s: resumed run differs from the straight one by %.3g", k, e)
		}
	}
}

var resumeCfg = mac.Config{Common: mac.Common{Momentum: 0.9, WeightDecay: 5e-4}, StatDecay: 0.95, Damping: 1, TCov: 2, TInv: 3, FirstLayerCov: true}

func resumePhase(t *testing.T, phase, dir string) {
	switch phase {
	case "first":
		runSteps(t, 0, 5, "", dir)
	case "second":
		runSteps(t, 5, 10, dir, dir)
	}
}

// runSteps runs steps [from, to) of a fixed run, loading model and
// optimizer state from loadDir first and saving them to saveDir after.
func runSteps(t *testing.T, from, to int, loadDir, saveDir string) map[string][]float32 {
	dev := cpu.New()
	m := mlp(dev, 9)
	o, err := mac.NewMAC(dev, m, resumeCfg)
	if err != nil {
		t.Fatal(err)
	}
	if loadDir != "" {
		if err := nn.LoadParams(dev, filepath.Join(loadDir, "model1.safetensors"), m.Params()); err != nil {
			t.Fatal(err)
		}
		if err := mac.LoadState(filepath.Join(loadDir, "opt1.safetensors"), o); err != nil {
			t.Fatal(err)
		}
	} else {
		acc, _ := mac.NewCovarianceAccumulator(dev, o.FirstLayer())
		x, _ := batch(1000, 16, 6, 3)
		in := nn.NewTensor(dev, 16, 6)
		dev.Upload(in.Data, x)
		acc.Add(in)
		if err := o.SetFirstLayerCovariance(acc.Sum()); err != nil {
			t.Fatal(err)
		}
	}
	loss := nn.NewCrossEntropyLoss(dev, 0)
	sched := mac.Cosine{Base: 0.1, Steps: 10}
	for k := from; k < to; k++ {
		x, y := batch(k, 8, 6, 3)
		step(t, dev, m, loss, o, x, []int{8, 6}, y, sched.LR(k))
	}
	if saveDir != "" {
		n := "1"
		if from > 0 {
			n = "2"
		}
		if err := nn.SaveParams(dev, filepath.Join(saveDir, "model"+n+".safetensors"), m.Params()); err != nil {
			t.Fatal(err)
		}
		if err := mac.SaveState(filepath.Join(saveDir, "opt"+n+".safetensors"), o); err != nil {
			t.Fatal(err)
		}
	}
	return snapshot(dev, m.Params())
}

func TestSchedules(t *testing.T) {
	cases := []struct {
		name string
		s    mac.Schedule
		step int
		want float64
	}{
		{"constant", mac.Constant(0.1), 7, 0.1},
		{"cosine start", mac.Cosine{Base: 0.1, Steps: 10}, 0, 0.1},
		{"cosine middle", mac.Cosine{Base: 0.1, Steps: 10}, 5, 0.05},
		{"cosine floor", mac.Cosine{Base: 0.1, Floor: 0.01, Steps: 10}, 10, 0.01},
		{"multistep before", mac.MultiStep{Base: 1, Milestones: []int{3, 6}, Gamma: 0.1}, 2, 1},
		{"multistep after both", mac.MultiStep{Base: 1, Milestones: []int{3, 6}, Gamma: 0.1}, 6, 0.01},
		{"warmup first", mac.Warmup{Steps: 4, Then: mac.Constant(0.2)}, 0, 0.05},
		{"warmup last", mac.Warmup{Steps: 4, Then: mac.Constant(0.2)}, 3, 0.2},
		{"warmup then cosine", mac.Warmup{Steps: 2, Then: mac.Cosine{Base: 0.1, Steps: 4}}, 4, 0.05},
	}
	for _, c := range cases {
		if got := c.s.LR(c.step); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%s: LR(%d) = %v, want %v", c.name, c.step, got, c.want)
		}
	}
}

// TestStepAllocs checks that a steady-state optimizer step (statistics,
// the finite check, the update) allocates nothing.
func TestStepAllocs(t *testing.T) {
	dev := cpu.New()
	for _, method := range []string{"mac", "sgd"} {
		m := mlp(dev, 4)
		o, err := mac.New(method, dev, m, mac.Options{Momentum: 0.9, Damping: 1, StatDecay: 0.95, TCov: 1, TInv: 1})
		if err != nil {
			t.Fatal(err)
		}
		loss := nn.NewCrossEntropyLoss(dev, 0)
		x, y := batch(0, 4, 6, 3)
		for range 3 {
			step(t, dev, m, loss, o, x, []int{4, 6}, y, 0.01)
		}
		allocs := testing.AllocsPerRun(20, func() {
			o.BeginStep()
			o.Stats()
			if err := o.Step(0.01); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per step", method, allocs)
		}
	}
	// The attention rule: EarlyStats, then Stats forms ā_V from it.
	m, err := models.New(dev, "vit-tiny-cifar", models.Config{InChannels: 1, ImageSize: 8, Classes: 3, Depth: 1, Dim: 16, Heads: 2, Patch: 4, MLPRatio: 2})
	if err != nil {
		t.Fatal(err)
	}
	o, err := mac.NewMAC(dev, m, mac.Config{Common: mac.Common{Momentum: 0.9}, StatDecay: 0.95, Damping: 1, TCov: 1, TInv: 1, AttentionV: true})
	if err != nil {
		t.Fatal(err)
	}
	loss := nn.NewCrossEntropyLoss(dev, 0)
	shape := m.InputShape(4)
	x, y := batch(0, 4, nn.Numel(shape)/4, 3)
	forwardBackward(dev, m, loss, o, x, shape, y)
	o.EarlyStats()
	o.Stats()
	if err := o.Step(0.01); err != nil {
		t.Fatal(err)
	}
	in := nn.NewTensor(dev, shape...)
	dev.Upload(in.Data, x)
	allocs := testing.AllocsPerRun(20, func() {
		o.BeginStep()
		m.Forward(in) // the taps record during forward
		if o.EarlyStats() == nil || o.Stats() == nil {
			t.Fatal("no statistics on a collecting step")
		}
		if err := o.Step(0.01); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("mac with attention: %v allocations per step", allocs)
	}
}
