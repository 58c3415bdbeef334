package models_test

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/macdist/macdist/internal/allocs"
	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/models"
	"github.com/macdist/macdist/safetensors"
)

func mustNew(t testing.TB, dev kernels.Device, name string, cfg models.Config) *models.Model {
	t.Helper()
	m, err := models.New(dev, name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func paramMap(m *models.Model) map[string]*nn.Param {
	ps := map[string]*nn.Param{}
	for _, p := range m.Params() {
		ps[p.Name] = p
	}
	return ps
}

func randInput(dev kernels.Device, shape []int, seed uint64) *nn.Tensor {
	x := nn.NewTensor(dev, shape...)
	rng := rand.New(rand.NewPCG(seed, 1))
	v := make([]float32, x.Len())
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	dev.Upload(x.Data, v)
	return x
}

func TestNames(t *testing.T) {
	want := []string{"deit-base", "deit-small", "lenet5", "mlp", "resnet101", "resnet110", "resnet152", "resnet18", "resnet20", "resnet32",
		"resnet34", "resnet50", "resnet56", "swin-tiny", "vit-tiny", "vit-tiny-cifar", "wrn28-10"}
	if got := models.Names(); !slices.Equal(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
}

func TestUnknownModel(t *testing.T) {
	_, err := models.New(cpu.New(), "resnet9000", models.Config{})
	if err == nil {
		t.Fatal("New accepted an unknown model")
	}
	for _, n := range append(models.Names(), "resnet9000") {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("error %q does not mention %s", err, n)
		}
	}
	if _, err := models.Default("vit-huge"); err == nil || !strings.Contains(err.Error(), "vit-tiny-cifar") {
		t.Errorf("Default(vit-huge) error %v does not list the models", err)
	}
}

func TestDefaults(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		channels, size, classes int
	}{
		{"mlp", 1, 28, 10}, {"lenet5", 1, 28, 10}, {"resnet20", 3, 32, 10}, {"resnet110", 3, 32, 10},
		{"resnet18", 3, 224, 1000}, {"resnet50", 3, 224, 1000}, {"wrn28-10", 3, 32, 10},
		{"vit-tiny", 3, 224, 1000}, {"vit-tiny-cifar", 3, 32, 10},
	} {
		c, err := models.Default(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		if c.InChannels != tc.channels || c.ImageSize != tc.size || c.Classes != tc.classes {
			t.Errorf("%s: default %+v, want %d channels, %d px, %d classes", tc.name, c, tc.channels, tc.size, tc.classes)
		}
	}
	c, _ := models.Default("vit-tiny")
	if c.Dim != 192 || c.Depth != 12 || c.Heads != 3 || c.Patch != 16 || c.MLPRatio != 4 {
		t.Errorf("vit-tiny default %+v is not DeiT-Tiny", c)
	}
	c, _ = models.Default("wrn28-10")
	if c.Depth != 28 || c.Width != 10 {
		t.Errorf("wrn28-10 default %+v", c)
	}
}

// TestParamCounts compares with the sizes the originals are known by.
func TestParamCounts(t *testing.T) {
	dev := cpu.New()
	for _, tc := range []struct {
		name string
		cfg  models.Config
		want int
	}{
		{"lenet5", models.Config{}, 61706},
		{"resnet20", models.Config{}, 272474},    // 0.27M (He et al.), with 1×1 shortcuts
		{"resnet18", models.Config{}, 11689512},  // torchvision
		{"resnet34", models.Config{}, 21797672},  // torchvision
		{"resnet50", models.Config{}, 25557032},  // torchvision
		{"resnet101", models.Config{}, 44549160}, // torchvision
		{"resnet152", models.Config{}, 60192808}, // torchvision
		{"wrn28-10", models.Config{}, 36479194},  // 36.5M (Zagoruyko & Komodakis)
		{"vit-tiny", models.Config{}, 5717416},   // timm deit_tiny_patch16_224
		{"vit-tiny-cifar", models.Config{Depth: 6}, 2693578},
	} {
		if got := mustNew(t, dev, tc.name, tc.cfg).NumParams(); got != tc.want {
			t.Errorf("%s: %d parameters, want %d", tc.name, got, tc.want)
		}
	}
}

func TestOptions(t *testing.T) {
	dev := cpu.New()
	for _, tc := range []struct {
		name   string
		cfg    models.Config
		shapes map[string][]int // nil: must not exist
	}{
		{"mlp", models.Config{InChannels: 3, ImageSize: 8, Classes: 5, Width: 20}, map[string][]int{
			"fc1.weight": {20, 192}, "fc2.weight": {20, 20}, "fc3.weight": {5, 20}, "fc3.bias": {5}}},
		{"lenet5", models.Config{InChannels: 3, ImageSize: 32, Classes: 100}, map[string][]int{
			"conv1.weight": {6, 3, 5, 5}, "fc1.weight": {120, 16 * 6 * 6}, "fc3.weight": {100, 84}}},
		{"lenet5", models.Config{ImageSize: 12}, map[string][]int{"fc1.weight": {120, 16}}},
		{"resnet20", models.Config{InChannels: 1, ImageSize: 16, Classes: 7}, map[string][]int{
			"conv1.weight": {16, 1, 3, 3}, "layer2.0.downsample.0.weight": {32, 16, 1, 1},
			"layer3.2.conv2.weight": {64, 64, 3, 3}, "layer3.3.conv1.weight": nil, "layer1.0.downsample.0.weight": nil,
			"fc.weight": {7, 64}}},
		{"resnet32", models.Config{}, map[string][]int{"layer1.4.conv1.weight": {16, 16, 3, 3}, "layer1.5.conv1.weight": nil}},
		{"resnet56", models.Config{Classes: 100}, map[string][]int{"layer3.8.bn2.running_var": {64}, "layer3.9.bn2.weight": nil, "fc.bias": {100}}},
		{"resnet20", models.Config{Depth: 8}, map[string][]int{"layer3.0.conv1.weight": {64, 32, 3, 3}, "layer3.1.conv1.weight": nil}},
		{"resnet18", models.Config{InChannels: 1, ImageSize: 32, Classes: 10}, map[string][]int{
			"conv1.weight": {64, 1, 7, 7}, "layer1.1.conv2.weight": {64, 64, 3, 3}, "layer1.0.downsample.0.weight": nil,
			"layer4.0.downsample.1.num_batches_tracked": {}, "layer4.2.conv1.weight": nil, "fc.weight": {10, 512}}},
		{"resnet50", models.Config{ImageSize: 32, Classes: 10}, map[string][]int{
			"layer1.0.downsample.0.weight": {256, 64, 1, 1}, "layer3.5.conv3.weight": {1024, 256, 1, 1},
			"layer4.0.conv2.weight": {512, 512, 3, 3}, "fc.weight": {10, 2048}}},
		{"wrn28-10", models.Config{Depth: 16, Width: 2, ImageSize: 16, InChannels: 4, Classes: 3}, map[string][]int{
			"conv1.weight": {16, 4, 3, 3}, "block1.layer.0.convShortcut.weight": {32, 16, 1, 1},
			"block1.layer.1.conv1.weight": {32, 32, 3, 3}, "block1.layer.1.convShortcut.weight": nil,
			"block1.layer.2.conv1.weight": nil, "block3.layer.0.conv1.weight": {128, 64, 3, 3},
			"bn1.weight": {128}, "fc.weight": {3, 128}}},
		{"wrn28-10", models.Config{Depth: 10, Width: 1, ImageSize: 8}, map[string][]int{
			// 16 = 16·1: xternalz's first block then has an identity shortcut.
			"block1.layer.0.convShortcut.weight": nil, "block2.layer.0.convShortcut.weight": {32, 16, 1, 1}}},
		{"vit-tiny-cifar", models.Config{ImageSize: 16, Depth: 2, Classes: 5}, map[string][]int{
			"cls_token": {1, 1, 192}, "pos_embed": {1, 17, 192}, "patch_embed.proj.weight": {192, 3, 4, 4},
			"blocks.1.mlp.fc2.weight": {192, 768}, "blocks.2.norm1.weight": nil, "head.weight": {5, 192}}},
		{"vit-tiny", models.Config{ImageSize: 64, Depth: 1, Dim: 64, Heads: 4, MLPRatio: 2, InChannels: 1}, map[string][]int{
			"pos_embed": {1, 17, 64}, "patch_embed.proj.weight": {64, 1, 16, 16}, "blocks.0.attn.qkv.weight": {192, 64},
			"blocks.0.mlp.fc1.weight": {128, 64}, "norm.weight": {64}, "head.weight": {1000, 64}}},
	} {
		m := mustNew(t, dev, tc.name, tc.cfg)
		ps := paramMap(m)
		for name, want := range tc.shapes {
			p, ok := ps[name]
			switch {
			case want == nil && ok:
				t.Errorf("%s %+v: has %s", tc.name, tc.cfg, name)
			case want != nil && !ok:
				t.Errorf("%s %+v: no %s", tc.name, tc.cfg, name)
			case ok && !slices.Equal(p.Value.Shape, want):
				t.Errorf("%s %+v: %s is %v, want %v", tc.name, tc.cfg, name, p.Value.Shape, want)
			}
		}
		c := m.Config
		if tc.cfg.InChannels != 0 && c.InChannels != tc.cfg.InChannels || tc.cfg.ImageSize != 0 && c.ImageSize != tc.cfg.ImageSize {
			t.Errorf("%s: Config %+v does not hold the options %+v", tc.name, c, tc.cfg)
		}
		shape := m.InputShape(2)
		if !slices.Equal(shape, []int{2, c.InChannels, c.ImageSize, c.ImageSize}) {
			t.Errorf("%s: InputShape(2) = %v", tc.name, shape)
		}
		y := m.Forward(randInput(dev, shape, 1))
		if !slices.Equal(y.Shape, []int{2, c.Classes}) {
			t.Errorf("%s %+v: logits %v, want [2 %d]", tc.name, tc.cfg, y.Shape, c.Classes)
		}
		if dx := m.Backward(randInput(dev, y.Shape, 2)); !slices.Equal(dx.Shape, shape) {
			t.Errorf("%s %+v: input gradient %v, want %v", tc.name, tc.cfg, dx.Shape, shape)
		}
	}
}

func TestBadConfig(t *testing.T) {
	dev := cpu.New()
	for _, tc := range []struct {
		name string
		cfg  models.Config
		want string
	}{
		{"resnet20", models.Config{Depth: 21}, "6n+2"},
		{"resnet18", models.Config{Depth: 34}, "depth"},
		{"wrn28-10", models.Config{Depth: 27}, "6n+4"},
		{"wrn28-10", models.Config{DropRate: 1}, "dropout"},
		{"vit-tiny-cifar", models.Config{ImageSize: 30}, "multiple"},
		{"vit-tiny-cifar", models.Config{Heads: 5}, "heads"},
		{"deit-small", models.Config{DropPath: 1}, "drop path"},
		{"swin-tiny", models.Config{ImageSize: 112}, "multiple of patch·window"},
		{"swin-tiny", models.Config{Depth: 12}, "Stages"},
		{"swin-tiny", models.Config{Heads: 5}, "heads"},
		{"swin-tiny", models.Config{Stages: []int{2, 0}}, "stages"},
		{"swin-tiny", models.Config{DropPath: 1.5}, "drop path"},
		{"deit-small", models.Config{DropPath: -0.1}, "drop path"},
		{"lenet5", models.Config{ImageSize: 8}, "too small"},
		{"mlp", models.Config{Classes: -1}, "negative"},
	} {
		_, err := models.New(dev, tc.name, tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("New(%s, %+v) error %v, want one naming the model and saying %q", tc.name, tc.cfg, err, tc.want)
		}
	}
}

func TestInputShapePanics(t *testing.T) {
	dev := cpu.New()
	m := mustNew(t, dev, "lenet5", models.Config{})
	defer func() {
		msg, _ := recover().(string)
		if !strings.Contains(msg, "lenet5") || !strings.Contains(msg, "[2 3 28 28]") || !strings.Contains(msg, "[N 1 28 28]") {
			t.Errorf("panic %q does not name the model and both shapes", msg)
		}
	}()
	m.Forward(nn.NewTensor(dev, 2, 3, 28, 28))
}

func TestTapped(t *testing.T) {
	dev := cpu.New()
	for _, tc := range []struct {
		name         string
		cfg          models.Config
		n            int
		first, last  string
		attn         int
		firstQKVName string
	}{
		{"mlp", models.Config{}, 3, "fc1.weight", "fc3.weight", 0, ""},
		{"lenet5", models.Config{}, 5, "conv1.weight", "fc3.weight", 0, ""},
		{"resnet20", models.Config{}, 1 + 18 + 2 + 1, "conv1.weight", "fc.weight", 0, ""},
		{"resnet50", models.Config{Classes: 10}, 1 + 16*3 + 4 + 1, "conv1.weight", "fc.weight", 0, ""},
		{"wrn28-10", models.Config{Depth: 10, Width: 2}, 1 + 3*2 + 3 + 1, "conv1.weight", "fc.weight", 0, ""},
		{"vit-tiny-cifar", models.Config{Depth: 3}, 1 + 3*4 + 1, "patch_embed.proj.weight", "head.weight", 3, "blocks.0.attn.qkv.weight"},
		{"swin-tiny", models.Config{}, 1 + 12*4 + 3 + 1, "features.0.0.weight", "head.weight", 12, "features.1.0.attn.qkv.weight"},
	} {
		m := mustNew(t, dev, tc.name, tc.cfg)
		tp := m.Tapped()
		weights := 0
		for _, p := range m.Params() {
			if p.Kind == nn.KindWeight {
				weights++
			}
		}
		if len(tp) != tc.n || weights != tc.n {
			t.Errorf("%s: %d tapped layers and %d weights, want %d", tc.name, len(tp), weights, tc.n)
			continue
		}
		if tp[0].Weight().Name != tc.first || tp[len(tp)-1].Weight().Name != tc.last {
			t.Errorf("%s: tapped layers run from %s to %s, want %s to %s", tc.name,
				tp[0].Weight().Name, tp[len(tp)-1].Weight().Name, tc.first, tc.last)
		}
		at := m.Attention()
		if len(at) != tc.attn {
			t.Errorf("%s: %d attention layers, want %d", tc.name, len(at), tc.attn)
		} else if tc.attn > 0 && at[0].QKV().Weight().Name != tc.firstQKVName {
			t.Errorf("%s: first attention's qkv is %s", tc.name, at[0].QKV().Weight().Name)
		}
	}
	// In forward order: each block's convolutions before the next block's.
	m := mustNew(t, dev, "resnet20", models.Config{})
	var names []string
	for _, l := range m.Tapped() {
		names = append(names, strings.TrimSuffix(l.Weight().Name, ".weight"))
	}
	want := []string{"conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1"}
	if !slices.Equal(names[:4], want) || names[9] != "layer2.0.downsample.0" || names[10] != "layer2.1.conv1" {
		t.Errorf("resnet20 tapped order %v", names)
	}
}

func values(dev kernels.Device, p *nn.Param) []float64 {
	v := make([]float32, p.Value.Len())
	dev.Download(v, p.Value.Data)
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func stats(v []float64) (mean, std, maxAbs float64) {
	for _, x := range v {
		mean += x
		maxAbs = math.Max(maxAbs, math.Abs(x))
	}
	mean /= float64(len(v))
	for _, x := range v {
		std += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(std / float64(len(v))), maxAbs
}

// TestInit checks each family's initialisation against its original's
// rule: normal laws by their standard deviation (5%, on tensors large
// enough for that to be many standard errors), uniform laws by their bound,
// constants exactly.
func TestInit(t *testing.T) {
	dev := cpu.New()
	type rule struct {
		param string
		kind  string // "normal", "uniform", "const"
		scale float64
	}
	for _, tc := range []struct {
		name  string
		cfg   models.Config
		rules []rule
	}{
		{"resnet18", models.Config{}, []rule{ // kaiming normal, fan out
			{"conv1.weight", "normal", math.Sqrt(2.0 / (64 * 49))},
			{"layer4.1.conv2.weight", "normal", math.Sqrt(2.0 / (512 * 9))},
			{"layer3.0.downsample.0.weight", "normal", math.Sqrt(2.0 / 256)},
			{"bn1.weight", "const", 1}, {"layer2.1.bn2.bias", "const", 0}, {"layer2.1.bn2.running_var", "const", 1},
			{"fc.weight", "uniform", 1 / math.Sqrt(512)}, {"fc.bias", "uniform", 1 / math.Sqrt(512)}}},
		{"resnet20", models.Config{Classes: 100}, []rule{ // kaiming normal, fan in
			{"layer3.2.conv2.weight", "normal", math.Sqrt(2.0 / 576)},
			{"layer2.0.conv1.weight", "normal", math.Sqrt(2.0 / 144)},
			{"fc.weight", "normal", math.Sqrt(2.0 / 64)}, {"fc.bias", "uniform", 1.0 / 8},
			{"layer1.0.bn1.weight", "const", 1}}},
		{"wrn28-10", models.Config{Depth: 10, Width: 4}, []rule{ // normal by 2/(k²·out), fc bias 0
			{"block3.layer.0.conv2.weight", "normal", math.Sqrt(2.0 / (9 * 256))},
			{"block2.layer.0.convShortcut.weight", "normal", math.Sqrt(2.0 / 128)},
			{"fc.weight", "uniform", 1.0 / 16}, {"fc.bias", "const", 0}, {"bn1.weight", "const", 1}}},
		{"vit-tiny-cifar", models.Config{Depth: 2}, []rule{ // timm
			{"blocks.0.attn.qkv.weight", "normal", 0.02}, {"blocks.1.mlp.fc1.weight", "normal", 0.02},
			{"head.weight", "normal", 0.02}, {"pos_embed", "normal", 0.02},
			{"blocks.0.attn.qkv.bias", "const", 0}, {"blocks.1.attn.proj.bias", "const", 0},
			{"blocks.1.mlp.fc2.bias", "const", 0}, {"head.bias", "const", 0},
			{"blocks.0.norm1.weight", "const", 1}, {"norm.bias", "const", 0},
			{"patch_embed.proj.weight", "uniform", 1 / math.Sqrt(48)}}},
		{"lenet5", models.Config{}, []rule{ // PyTorch defaults
			{"fc1.weight", "uniform", 1 / math.Sqrt(400)}, {"conv2.bias", "uniform", 1 / math.Sqrt(150)}}},
		{"mlp", models.Config{}, []rule{{"fc1.weight", "uniform", 1 / math.Sqrt(784)}}},
	} {
		m := mustNew(t, dev, tc.name, tc.cfg)
		ps := paramMap(m)
		for _, r := range tc.rules {
			p := ps[r.param]
			if p == nil {
				t.Errorf("%s: no %s", tc.name, r.param)
				continue
			}
			v := values(dev, p)
			mean, std, maxAbs := stats(v)
			switch r.kind {
			case "const":
				if mean != r.scale || std != 0 {
					t.Errorf("%s %s: mean %g, std %g, want all %g", tc.name, r.param, mean, std, r.scale)
				}
			case "normal":
				se := 4 * std / math.Sqrt(float64(len(v)))
				if math.Abs(std/r.scale-1) > 0.05 || math.Abs(mean) > se+1e-9 {
					t.Errorf("%s %s: mean %g, std %g, want N(0, %g²)", tc.name, r.param, mean, std, r.scale)
				}
			case "uniform":
				if maxAbs > r.scale || maxAbs < 0.8*r.scale || math.Abs(std/(r.scale/math.Sqrt(3))-1) > 0.15 {
					t.Errorf("%s %s: max |x| %g, std %g, want U(±%g)", tc.name, r.param, maxAbs, std, r.scale)
				}
			}
		}
	}
}

func TestSeed(t *testing.T) {
	dev := cpu.New()
	get := func(seed uint64) []float64 {
		m := mustNew(t, dev, "resnet20", models.Config{Seed: seed})
		return values(dev, paramMap(m)["layer2.1.conv1.weight"])
	}
	a, b, c := get(1), get(1), get(2)
	if !slices.Equal(a, b) {
		t.Error("the same seed gave different weights")
	}
	if slices.Equal(a, c) {
		t.Error("different seeds gave the same weights")
	}
}

// TestTrainingMode checks that SetTraining reaches every layer: dropout and
// batch statistics in training mode, neither in evaluation mode.
func TestTrainingMode(t *testing.T) {
	dev := cpu.New()
	m := mustNew(t, dev, "wrn28-10", models.Config{Depth: 10, Width: 1, ImageSize: 8, DropRate: 0.5})
	x := randInput(dev, m.InputShape(2), 3)
	run := func() []float32 {
		y := m.Forward(x)
		v := make([]float32, y.Len())
		dev.Download(v, y.Data)
		return v
	}
	a, b := run(), run()
	if slices.Equal(a, b) {
		t.Error("training mode: two forwards agree, so dropout is off")
	}
	m.SetTraining(false)
	a, b = run(), run()
	if !slices.Equal(a, b) {
		t.Error("evaluation mode: two forwards differ")
	}
	rv := paramMap(m)["bn1.running_var"]
	before := values(dev, rv)
	run()
	if !slices.Equal(before, values(dev, rv)) {
		t.Error("evaluation mode moved the running statistics")
	}
}

// TestStepAllocs checks that a steady-state training step allocates
// nothing, dropout included.
func TestStepAllocs(t *testing.T) {
	dev := cpu.New()
	for _, tc := range []struct {
		name string
		cfg  models.Config
	}{
		{"mlp", models.Config{}},
		{"lenet5", models.Config{}},
		{"resnet20", models.Config{Depth: 8, ImageSize: 16}},
		{"resnet18", models.Config{ImageSize: 32, Classes: 10}},
		{"resnet50", models.Config{ImageSize: 32, Classes: 10}},
		{"wrn28-10", models.Config{Depth: 10, Width: 1, ImageSize: 16, DropRate: 0.3}},
		{"vit-tiny-cifar", models.Config{Depth: 1, ImageSize: 16}},
		{"deit-small", models.Config{Depth: 1, ImageSize: 32, Dim: 24, DropPath: 0.5}},
		{"swin-tiny", models.Config{ImageSize: 16, Patch: 2, Dim: 8, Heads: 1, Stages: []int{2, 2}, Window: 2}},
	} {
		if testing.Short() && tc.name == "resnet50" {
			continue
		}
		m := mustNew(t, dev, tc.name, tc.cfg)
		step := newStep(dev, m, 2)
		step()
		if n := allocs.Steady(3, step); n != 0 {
			t.Errorf("%s: %v allocations per training step", tc.name, n)
		}
		// A data-parallel trainer's hook asks each reported layer for
		// its parameters.
		params := 0
		m.SetBackwardHook(func(mod nn.Module) { params += len(mod.Params()) })
		if n := allocs.Steady(3, step); n != 0 || params == 0 {
			t.Errorf("%s: %v allocations per training step with a backward hook (%d parameters reported)", tc.name, n, params)
		}
		m.SetBackwardHook(nil)
	}
}

// newStep returns one training step of m on a fixed random batch: forward,
// loss, backward and zeroing the gradients.
func newStep(dev kernels.Device, m *models.Model, batch int) func() {
	x := randInput(dev, m.InputShape(batch), 5)
	labels := make([]int32, batch)
	for i := range labels {
		labels[i] = int32(i % m.Config.Classes)
	}
	ce := nn.NewCrossEntropyLoss(dev, 0)
	ps := m.Params()
	return func() {
		ce.Forward(m.Forward(x), labels)
		m.Backward(ce.Backward())
		nn.ZeroGrad(dev, ps)
	}
}

// TestBackwardHook checks what a data-parallel trainer relies on to
// overlap the all-reduce with backward: the hook reports every trainable
// parameter exactly once, with its final gradient, layer by layer (never a
// block), while backward still runs (the last layer reported still has a
// zero gradient when the first is).
func TestBackwardHook(t *testing.T) {
	dev := cpu.New()
	for _, tc := range []struct {
		name string
		cfg  models.Config
	}{
		{"lenet5", models.Config{}},
		{"resnet20", models.Config{Depth: 8, ImageSize: 16}},
		{"resnet50", models.Config{ImageSize: 32, Classes: 10}},
		{"wrn28-10", models.Config{Depth: 10, Width: 1, ImageSize: 16}},
		{"vit-tiny-cifar", models.Config{Depth: 2, ImageSize: 16}},
		{"swin-tiny", models.Config{ImageSize: 16, Patch: 2, Dim: 8, Heads: 1, Stages: []int{2, 2}, Window: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if testing.Short() && tc.name == "resnet50" {
				t.Skip("resnet50 is slow for -short")
			}
			m := mustNew(t, dev, tc.name, tc.cfg)
			grad := func(p *nn.Param) []float64 { return values(dev, &nn.Param{Value: p.Grad}) }
			type report struct {
				p        *nn.Param
				grad     []float64
				lastZero bool // the last-reported layer's gradient is zero
			}
			var (
				reports []report
				last    *nn.Param // of the previous pass
			)
			m.SetBackwardHook(func(mod nn.Module) {
				if _, ok := mod.(nn.BackwardHooker); ok {
					t.Errorf("reported %T, which reports its own layers", mod)
				}
				if c, ok := mod.(nn.Container); ok {
					withParams := 0
					for _, ch := range c.Children() {
						if len(ch.Params()) > 0 {
							withParams++
						}
					}
					if withParams > 1 {
						t.Errorf("reported %T, a container of %d layers", mod, withParams)
					}
				}
				zero := last != nil && !slices.ContainsFunc(grad(last), func(v float64) bool { return v != 0 })
				for _, p := range mod.Params() {
					if p.Trainable() {
						reports = append(reports, report{p, grad(p), zero})
					}
				}
			})
			x := randInput(dev, m.InputShape(2), 3)
			ce := nn.NewCrossEntropyLoss(dev, 0)
			step := func() {
				reports = reports[:0]
				nn.ZeroGrad(dev, m.Params())
				ce.Forward(m.Forward(x), []int32{0, 1})
				m.Backward(ce.Backward())
			}
			step()
			last = reports[len(reports)-1].p
			step() // the same reports, now knowing which comes last

			seen := map[*nn.Param]bool{}
			for _, r := range reports {
				if seen[r.p] {
					t.Errorf("%s reported twice", r.p.Name)
				}
				seen[r.p] = true
				if !slices.Equal(grad(r.p), r.grad) {
					t.Errorf("%s reported before its gradient was final", r.p.Name)
				}
			}
			for _, p := range m.Params() {
				if p.Trainable() && !seen[p] {
					t.Errorf("%s never reported", p.Name)
				}
			}
			if !reports[0].lastZero {
				t.Errorf("first report %s came after %s's gradient was written: not during backward", reports[0].p.Name, last.Name)
			}

			// Removing the hook removes it everywhere.
			calls := 0
			m.SetBackwardHook(func(nn.Module) { calls++ })
			m.SetBackwardHook(nil)
			step()
			if calls != 0 {
				t.Errorf("%d reports after the hook was removed", calls)
			}
		})
	}
}

// TestDropPath checks --drop-path as timm applies it: block i of n at rate
// DropPath·i/(n−1), the same weights as without it, and the identity in
// evaluation mode.
func TestDropPath(t *testing.T) {
	dev := cpu.New()
	cfg := models.Config{ImageSize: 32, Depth: 5, Dim: 16, Heads: 2, Classes: 3, Seed: 4}
	plain := mustNew(t, dev, "deit-small", cfg)
	cfg.DropPath = 0.2
	m := mustNew(t, dev, "deit-small", cfg)
	var rates []float32
	for _, c := range m.Children() {
		if b, ok := c.(*nn.ViTBlock); ok {
			a, mlp := b.DropPath()
			switch {
			case a == nil && mlp == nil:
				rates = append(rates, 0)
			case a == nil || mlp == nil || a.P != mlp.P:
				t.Fatalf("block with drop path on one branch only")
			default:
				rates = append(rates, a.P)
			}
		}
	}
	if want := []float32{0, 0.05, 0.1, 0.15, 0.2}; !slices.Equal(rates, want) {
		t.Errorf("drop path rates %v, want %v (torch.linspace(0, 0.2, 5))", rates, want)
	}
	// A trainer finds them by nn.Walk (to advance their seeds on resume),
	// in Swin too.
	for _, mm := range []*models.Model{m, mustNew(t, dev, "swin-tiny", models.Config{ImageSize: 16, Patch: 2, Dim: 8,
		Heads: 1, Stages: []int{2, 2}, Window: 2, DropPath: 0.1})} {
		found := 0
		for _, c := range mm.Children() {
			nn.Walk(c, func(x nn.Module) {
				if _, ok := x.(*nn.DropPath); ok {
					found++
				}
			})
		}
		// Two in each block but the first: 5 blocks in deit, 4 in swin.
		if want := map[string]int{"deit-small": 8, "swin-tiny": 6}[mm.Name]; found != want {
			t.Errorf("%s: nn.Walk finds %d DropPath modules, want %d (two in each block but the first)", mm.Name, found, want)
		}
	}
	pp := paramMap(plain)
	for _, p := range m.Params() {
		if !slices.Equal(values(dev, p), values(dev, pp[p.Name])) {
			t.Fatalf("%s differs from the model without drop path", p.Name)
		}
	}
	x := randInput(dev, m.InputShape(8), 1)
	logits := func(m *models.Model) []float64 {
		return values(dev, &nn.Param{Value: m.Forward(x)})
	}
	want := logits(plain)
	if slices.Equal(logits(m), want) {
		t.Error("training mode: drop path changed nothing")
	}
	m.SetTraining(false)
	plain.SetTraining(false)
	if got := logits(m); !slices.Equal(got, logits(plain)) {
		t.Error("evaluation mode: drop path is not the identity")
	}
}

// TestStateDictRoundTrip checks what export and --init rely on for the
// models of issue 15: the state_dict written by nn.SaveParams loads back
// into a model built from another seed and gives it the same values, and
// the integer buffers travel as int64, as PyTorch keeps them.
func TestStateDictRoundTrip(t *testing.T) {
	dev := cpu.New()
	for _, tc := range []struct {
		name string
		cfg  models.Config
	}{
		{"resnet34", models.Config{ImageSize: 32, Classes: 10}},
		{"resnet101", models.Config{ImageSize: 32, Classes: 10}},
		{"deit-small", models.Config{Depth: 2}},
		{"swin-tiny", models.Config{ImageSize: 64, Dim: 24, Stages: []int{2, 2, 2, 2}, Window: 2, Classes: 7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if testing.Short() && tc.name == "resnet101" {
				t.Skip("large model")
			}
			tc.cfg.Seed = 1
			a := mustNew(t, dev, tc.name, tc.cfg)
			tc.cfg.Seed = 2
			b := mustNew(t, dev, tc.name, tc.cfg)
			path := filepath.Join(t.TempDir(), "m.safetensors")
			if err := nn.SaveParams(dev, path, a.Params()); err != nil {
				t.Fatal(err)
			}
			if err := nn.LoadParams(dev, path, b.Params()); err != nil {
				t.Fatal(err)
			}
			bp := paramMap(b)
			for _, p := range a.Params() {
				if !slices.Equal(values(dev, p), values(dev, bp[p.Name])) {
					t.Fatalf("%s differs after the round trip", p.Name)
				}
			}
			f, err := safetensors.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			ints := 0
			for _, n := range f.Names() {
				tt, _ := f.Tensor(n)
				isInt := strings.HasSuffix(n, "num_batches_tracked") || strings.HasSuffix(n, "relative_position_index")
				if isInt != (tt.DType == safetensors.I64) {
					t.Errorf("%s stored as %v", n, tt.DType)
				}
				if strings.HasSuffix(n, "relative_position_index") {
					ints++
					v, err := tt.Ints()
					if err != nil {
						t.Fatal(err)
					}
					for i, k := range nn.RelativePositionIndex(tc.cfg.Window) {
						if v[i] != int64(k) {
							t.Fatalf("%s[%d] = %d, want %d", n, i, v[i], k)
						}
					}
				}
			}
			if tc.name == "swin-tiny" && ints != 8 {
				t.Errorf("%d relative_position_index buffers, want 8", ints)
			}
		})
	}
}
