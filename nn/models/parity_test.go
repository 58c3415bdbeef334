package models_test

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/macdist/macdist/internal/fixture"
	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/models"
	"github.com/macdist/macdist/nn/nntest"
	"github.com/macdist/macdist/safetensors"
)

// parityCases are the fixtures of testdata/gen/gen_models.py, and the
// models they build. Each builds a model with hash-initialised weights,
// runs one training-mode step on a batch of two and compares logits, loss
// and every parameter's gradient with PyTorch's, computed in float64.
var parityCases = []string{
	"mlp", "lenet5", "lenet5-rgb20",
	"resnet8", "resnet20", "resnet32", "resnet56", "resnet110",
	"resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
	"wrn10-1", "wrn28-10",
	"vit-micro", "vit-tiny", "vit-tiny-cifar", "deit-small", "deit-base",
	"swin-micro",
}

// bigCases take seconds each; -short leaves them out.
var bigCases = map[string]bool{"resnet50": true, "wrn28-10": true, "resnet110": true, "resnet34": true,
	"resnet101": true, "resnet152": true}

// baseTol bounds every relative error where float32 is well-conditioned:
// there the Go model agrees with the float64 reference as closely as
// PyTorch's own float32 run does (about 1e-6 to 1e-5).
const baseTol = 1e-4

// spreadFactor widens the tolerance of a quantity to this many times the
// fixture's f32_spread: the worst error, against the float64 reference, of
// PyTorch's float32 runs on the same input with weights and input nudged by
// an ulp. The deep networks need it. At a batch of two their forward
// rounding grows to 1e-4 by the last layers, enough for some ReLU inputs to
// fall on the other side of zero than in float64, and each such switch
// changes the gradient of everything before it by a percent or more; which
// inputs switch depends on the summation order. Their logits and loss stay
// within baseTol (the forward pass is continuous); their gradients are held
// to what float32 can give there, which still catches a wrong connection,
// and the same blocks meet baseTol in the shallower cases.
const spreadFactor = 4

// projSeed is the seed of the ±1 projection of gen_models.py's summaries.
const projSeed = 99

type caseMeta struct {
	model     string
	cfg       models.Config
	seed      uint64
	full      bool
	spread    map[string]float64 // f32_spread: "logits", "loss", "grads"
	stateDict []struct {
		name  string
		shape []int
	}
}

func readMeta(t *testing.T, f *safetensors.File) caseMeta {
	t.Helper()
	md := f.Metadata
	var m caseMeta
	m.model = md["model"]
	if err := json.Unmarshal([]byte(md["config"]), &m.cfg); err != nil {
		t.Fatalf("fixture config: %v", err)
	}
	seed, err := strconv.ParseUint(md["seed"], 10, 64)
	if err != nil {
		t.Fatalf("fixture seed: %v", err)
	}
	m.seed = seed
	m.full = md["grads"] == "full"
	if err := json.Unmarshal([]byte(md["f32_spread"]), &m.spread); err != nil {
		t.Fatalf("fixture f32_spread: %v", err)
	}
	var sd [][2]json.RawMessage
	if err := json.Unmarshal([]byte(md["state_dict"]), &sd); err != nil {
		t.Fatalf("fixture state_dict: %v", err)
	}
	for _, e := range sd {
		var ent struct {
			name  string
			shape []int
		}
		if err := json.Unmarshal(e[0], &ent.name); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(e[1], &ent.shape); err != nil {
			t.Fatal(err)
		}
		m.stateDict = append(m.stateDict, ent)
	}
	return m
}

func download(dev kernels.Device, t *nn.Tensor) []float32 {
	v := make([]float32, t.Len())
	dev.Download(v, t.Data)
	return v
}

func TestParity(t *testing.T) {
	// Both ways the cpu Device convolves: New's (oneDNN where it is
	// installed) and im2col.
	paths := nntest.CPUPaths(t)
	covered := map[string]bool{}
	for _, name := range parityCases {
		f := fixture.Load(t, "models_"+name)
		meta := readMeta(t, f)
		covered[meta.model] = true
		for _, p := range paths {
			t.Run(name+"/"+p.Name, func(t *testing.T) {
				if testing.Short() && bigCases[name] {
					t.Skip("large model; run without -short")
				}
				checkParity(t, p.Dev, f, meta)
			})
		}
	}
	for _, name := range models.Names() {
		if !covered[name] {
			t.Errorf("model %s has no parity fixture", name)
		}
	}
}

// tol is the tolerance of one quantity of a case (see spreadFactor).
func (m caseMeta) tol(t *testing.T, what string) float64 {
	if s := spreadFactor * m.spread[what]; s > baseTol {
		t.Logf("%s: float32 strays by %.2g on this input; tolerance %.2g", what, m.spread[what], s)
		return s
	}
	return baseTol
}

func checkParity(t *testing.T, dev kernels.Device, f *safetensors.File, meta caseMeta) {
	m, err := models.New(dev, meta.model, meta.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ps := m.Params()
	checkStateDict(t, ps, meta)
	if t.Failed() {
		return
	}
	nn.HashInit(dev, ps, meta.seed)
	byName := map[string]*nn.Param{}
	for _, p := range ps {
		byName[p.Name] = p
	}
	for _, name := range f.Names() {
		if pname, ok := strings.CutPrefix(name, "init."); ok {
			// Bit for bit: HashInit and common.hash_init are one rule.
			want, _ := fixture.Floats(t, f, name)
			got := download(dev, byName[pname].Value)
			if !slices.Equal(got, want) {
				t.Errorf("HashInit of %s differs from hash_init's", pname)
			}
		}
	}

	x, xs := fixture.Floats(t, f, "input")
	labels := fixture.Labels(t, f, "labels")
	if want := m.InputShape(len(labels)); !slices.Equal(xs, want) {
		t.Fatalf("fixture input %v, model wants %v", xs, want)
	}
	in := nn.NewTensor(dev, xs...)
	dev.Upload(in.Data, x)
	logits := m.Forward(in)
	wantLogits, _ := fixture.Floats(t, f, "logits")
	fixture.Close(t, "logits", download(dev, logits), wantLogits, meta.tol(t, "logits"))

	ce := nn.NewCrossEntropyLoss(dev, 0)
	loss, _ := ce.Forward(logits, labels)
	wantLoss, _ := fixture.Floats(t, f, "loss")
	fixture.Close(t, "loss", []float32{float32(loss)}, wantLoss, meta.tol(t, "loss"))
	m.Backward(ce.Backward())
	worst, tol := 0.0, meta.tol(t, "grads")

	for _, p := range ps {
		if !p.Trainable() {
			continue
		}
		g := download(dev, p.Grad)
		if meta.full {
			want, _ := fixture.Floats(t, f, "grad."+p.Name)
			fixture.Close(t, "grad "+p.Name, g, want, tol)
			worst = math.Max(worst, fixture.RelErr(g, want))
			continue
		}
		want, _ := fixture.Floats(t, f, "gsum."+p.Name)
		worst = math.Max(worst, checkSummary(t, p.Name, g, want, tol))
	}
	t.Logf("relative errors: logits %.2g, loss %.2g, gradients %.2g (PyTorch float32's: %s, spread %s)",
		fixture.RelErr(download(dev, logits), wantLogits), fixture.RelErr([]float32{float32(loss)}, wantLoss), worst,
		f.Metadata["torch_f32_err"], f.Metadata["f32_spread"])
	for _, name := range f.Names() {
		if pname, ok := strings.CutPrefix(name, "state."); ok {
			want, _ := fixture.Floats(t, f, name)
			fixture.Close(t, pname+" after the step", download(dev, byName[pname].Value), want, baseTol)
		}
	}
}

func checkStateDict(t *testing.T, ps []*nn.Param, meta caseMeta) {
	t.Helper()
	if len(ps) != len(meta.stateDict) {
		t.Errorf("state_dict has %d entries, PyTorch's has %d", len(ps), len(meta.stateDict))
	}
	for i := range min(len(ps), len(meta.stateDict)) {
		want := meta.stateDict[i]
		if ps[i].Name != want.name || !slices.Equal(ps[i].Value.Shape, want.shape) {
			t.Errorf("state_dict entry %d is %s %v, PyTorch's is %s %v", i, ps[i].Name, ps[i].Value.Shape, want.name, want.shape)
			return
		}
	}
}

// checkSummary compares a gradient with gen_models.py's summary of it: its
// sum, the sum of its absolute values, its sum of squares and its
// projection on a ±1 hash direction. The sum compares against the sum of
// absolute values (the bound of its error when every element is off by a
// relative tol), the sum of squares relatively, and the projection against
// the norm, the scale of its rounding error, so that an element off by
// tol·‖g‖ shows in the projection whatever the others do. It returns the
// largest of the three errors.
func checkSummary(t *testing.T, name string, g, want []float32, tol float64) float64 {
	t.Helper()
	r := nn.HashUniform(name, projSeed, len(g))
	var sum, sq, proj float64
	for i, v := range g {
		x := float64(v)
		sum += x
		sq += x * x
		proj += x * (2*r[i] - 1)
	}
	abs, sq0 := float64(want[1]), float64(want[2])
	norm := math.Sqrt(sq0)
	errs := [3]float64{
		math.Abs(sum-float64(want[0])) / nonzero(abs),
		math.Abs(sq-sq0) / nonzero(sq0),
		math.Abs(proj-float64(want[3])) / nonzero(norm),
	}
	got := [3]float64{sum, sq, proj}
	wants := [3]float32{want[0], want[2], want[3]}
	worst := 0.0
	for i, what := range []string{"sum", "sum of squares", "projection"} {
		if errs[i] > tol || math.IsNaN(errs[i]) {
			t.Errorf("grad %s: %s %.7g, want %.7g (relative error %.3g > %.3g)", name, what, got[i], wants[i], errs[i], tol)
		}
		worst = math.Max(worst, errs[i])
	}
	return worst
}

// nonzero keeps a scale of zero from dividing: the error is then absolute.
func nonzero(x float64) float64 {
	if x == 0 {
		return 1
	}
	return x
}

// TestFullStateDict compares the state_dict of swin-tiny at its defaults,
// names and shapes in order, with torchvision's swin_t (stored with the
// swin-micro fixture, whose numbers are checked at a smaller size).
func TestFullStateDict(t *testing.T) {
	f := fixture.Load(t, "models_swin-micro")
	var sd [][2]json.RawMessage
	if err := json.Unmarshal([]byte(f.Metadata["full_state_dict"]), &sd); err != nil {
		t.Fatalf("fixture full_state_dict: %v", err)
	}
	var meta caseMeta
	for _, e := range sd {
		var ent struct {
			name  string
			shape []int
		}
		if err := json.Unmarshal(e[0], &ent.name); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(e[1], &ent.shape); err != nil {
			t.Fatal(err)
		}
		meta.stateDict = append(meta.stateDict, ent)
	}
	if len(meta.stateDict) < 100 {
		t.Fatalf("fixture holds %d state_dict entries; swin_t has 185", len(meta.stateDict))
	}
	m, err := models.New(cpu.New(), "swin-tiny", models.Config{})
	if err != nil {
		t.Fatal(err)
	}
	checkStateDict(t, m.Params(), meta)
}

// TestFullSizeForward runs swin-tiny at its defaults (224 px, 7 × 7
// windows, every stage as in swin_t) on one image and compares the logits
// with torchvision's swin_t on the same hash-initialised weights, in
// float64 (testdata/gen/gen_models.py's FULL_CASES).
func TestFullSizeForward(t *testing.T) {
	if testing.Short() {
		t.Skip("a 224 px forward pass of a 28M-parameter model; run without -short")
	}
	dev := cpu.New()
	f := fixture.Load(t, "models_swin-tiny-full")
	seed, err := strconv.ParseUint(f.Metadata["seed"], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	m, err := models.New(dev, f.Metadata["model"], models.Config{})
	if err != nil {
		t.Fatal(err)
	}
	nn.HashInit(dev, m.Params(), seed)
	m.SetTraining(false)
	shape := m.InputShape(1)
	u := nn.HashUniform("x", seed, nn.Numel(shape))
	xs := make([]float32, len(u))
	for i, v := range u {
		xs[i] = float32(2*v - 1)
	}
	x := nn.NewTensor(dev, shape...)
	dev.Upload(x.Data, xs)
	want, _ := fixture.Floats(t, f, "logits")
	got := download(dev, m.Forward(x))
	fixture.Close(t, "swin-tiny logits", got, want, baseTol)
	t.Logf("relative error %.2g", fixture.RelErr(got, want))
}
