package train

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/macdist/macdist/collective"
	"github.com/macdist/macdist/data"
	"github.com/macdist/macdist/internal/fixture"
	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/nn"
)

// TestNoDecayBNBias takes one SGD step with zero gradients: weight decay
// alone moves the parameters, p ← (1 − lr·wd)·p, and with
// --no-decay-bn-bias the biases stay where they are.
func TestNoDecayBNBias(t *testing.T) {
	for _, spare := range []bool{false, true} {
		t.Run(fmt.Sprint(spare), func(t *testing.T) {
			c := smallConfig(t, t.TempDir())
			c.Optimizer, c.Momentum, c.LR, c.WeightDecay = "sgd", 0, 0.1, 0.5
			c.NoDecayBNBias = spare
			tr, err := newTrainer(c, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.close()
			before := hostParams(tr.dev, tr.params)
			nn.ZeroGrad(tr.dev, tr.params)
			tr.opt.BeginStep()
			if err := tr.opt.Step(c.LR); err != nil {
				t.Fatal(err)
			}
			after := hostParams(tr.dev, tr.params)
			biases := 0
			for i, p := range tr.params {
				if !p.Trainable() {
					continue
				}
				f := float32(1 - c.LR*c.WeightDecay)
				if spare && p.Kind == nn.KindBias {
					f = 1
					biases++
				}
				for j, v := range before[i] {
					if d := math.Abs(float64(after[i][j] - v*f)); d > 1e-6 {
						t.Fatalf("%s[%d]: %v → %v, want ×%v", p.Name, j, v, after[i][j], f)
					}
				}
			}
			if spare && biases == 0 {
				t.Fatal("the model has no biases: the test proves nothing")
			}
		})
	}
}

func hostParams(dev kernels.Device, ps []*nn.Param) [][]float32 {
	out := make([][]float32, len(ps))
	for i, p := range ps {
		out[i] = make([]float32, p.Value.Len())
		dev.Download(out[i], p.Value.Data)
	}
	return out
}

// TestClipGradMatchesTorch compares the clipper with
// torch.nn.utils.clip_grad_norm_ (testdata/gen/gen_recipe.py) when it
// clips and when it does not.
func TestClipGradMatchesTorch(t *testing.T) {
	f := fixture.Load(t, "recipe")
	dev := cpu.New()
	for _, name := range []string{"clip", "noclip"} {
		var grads []kernels.Buffer
		for i := range 3 {
			v, _ := fixture.Floats(t, f, fmt.Sprintf("%s.grad%d", name, i))
			b := dev.Alloc(len(v))
			dev.Upload(b, v)
			grads = append(grads, b)
		}
		norm, _ := fixture.Floats(t, f, name+".norm")
		c := newClipper(dev, grads)
		if got := c.clip(float64(norm[1])); math.Abs(got-float64(norm[0])) > 1e-5*float64(norm[0]) {
			t.Errorf("%s: norm %v, torch's %v", name, got, norm[0])
		}
		for i, g := range grads {
			want, _ := fixture.Floats(t, f, fmt.Sprintf("%s.clipped%d", name, i))
			got := make([]float32, g.Len())
			dev.Download(got, g)
			fixture.Close(t, fmt.Sprintf("%s: gradient %d", name, i), got, want, 1e-6)
		}
	}
}

// TestClipGradAcrossRanks: two ranks clip the averaged gradients, so that
// they end where one process with their whole batch ends. Clipping each
// rank's own gradients before the average would not. With gradient
// accumulation too, each rank's micro-batches (the overlapped all-reduce
// starting on the last) still make the whole batch's step.
func TestClipGradAcrossRanks(t *testing.T) {
	if testing.Short() {
		t.Skip("three short runs")
	}
	for _, accum := range []int{0, 2} {
		t.Run(fmt.Sprint("accum", accum), func(t *testing.T) {
			edit := func(c *Config) {
				c.Optimizer, c.LR, c.Momentum, c.WeightDecay = "sgd", 0.1, 0.9, 0
				c.ClipGrad = 0.05 // below every step's norm here
				c.Epochs, c.MaxSteps = 1, 8
				c.GradAccumSteps = accum
			}
			one := t.TempDir()
			c := smallConfig(t, one)
			edit(&c)
			c.GradAccumSteps = 0
			var norms []float64
			tr, err := newTrainer(c, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			tr.hookStep = func(tr *trainer) { norms = append(norms, tr.rc.clip.norm()) }
			if err := tr.run(context.Background()); err != nil {
				t.Fatal(err)
			}
			tr.close()
			for i, n := range norms {
				// After clipping, the gradients' norm is the bound (the
				// optimizer leaves SGD's gradients as they are).
				if math.Abs(n-c.ClipGrad) > 1e-4*c.ClipGrad {
					t.Fatalf("step %d: norm after clipping %v, want %v", i+1, n, c.ClipGrad)
				}
			}
			dirs := []string{t.TempDir(), t.TempDir()}
			for r, err := range runSmallBuckets(t, dirs, edit) {
				if err != nil {
					t.Fatalf("rank %d: %v", r, err)
				}
			}
			want := readParams(t, filepath.Join(one, FinalDir, modelFile))
			if d := maxRelDiff(t, readParams(t, filepath.Join(dirs[0], FinalDir, modelFile)), want); d > 1e-5 {
				t.Errorf("two ranks with --clip-grad end %.3g away from one process", d)
			}
		})
	}
}

// runSmallBuckets is runRanks with buckets of 4 KiB, so that LeNet-5's
// gradients leave in many buckets while backward goes on.
func runSmallBuckets(t *testing.T, dirs []string, edit func(*Config)) []error {
	t.Helper()
	comms := collective.NewLocal(len(dirs))
	errs := make([]error, len(dirs))
	var wg sync.WaitGroup
	for r, dir := range dirs {
		c := smallConfig(t, dir)
		c.Batch, c.Rank, c.World = c.Batch/len(dirs), r, len(dirs)
		edit(&c)
		sr := collective.NewStepReducer(context.Background(), comms[r], collective.BucketConfig{FirstBytes: 4096, BucketBytes: 4096})
		c.Reducer = sr
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer sr.Close()
			if errs[r] = Run(context.Background(), c, io.Discard); errs[r] != nil {
				comms[r].Abort(errs[r])
			}
		}()
	}
	wg.Wait()
	return errs
}

// TestGradAccumMatchesFullBatch: k micro-batches make the step of the
// whole batch, for SGD (gradients) and MAC (gradients and statistics), an
// uneven split of the last batch included.
func TestGradAccumMatchesFullBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("four short runs")
	}
	for _, opt := range []string{"sgd", "mac"} {
		t.Run(opt, func(t *testing.T) {
			run := func(k int) map[string][]float32 {
				c, err := OptimizerDefaults(opt)
				if err != nil {
					t.Fatal(err)
				}
				s := smallConfig(t, t.TempDir())
				c.Data, c.Batch, c.RunDir, c.Seed, c.Workers, c.ProgressMode = s.Data, s.Batch, s.RunDir, s.Seed, s.Workers, s.ProgressMode
				c.Epochs = 1
				c.Subset = 630 // the last batch holds 22: micro-batches of 6, 6, 5, 5
				c.GradAccumSteps = k
				if opt == "mac" {
					c.TCov, c.TInv = 1, 1 // statistics on every step
				}
				if err := Run(context.Background(), c, io.Discard); err != nil {
					t.Fatal(err)
				}
				return readParams(t, filepath.Join(c.RunDir, FinalDir, modelFile))
			}
			whole, split := run(1), run(4)
			if d := maxRelDiff(t, split, whole); d > 2e-5 {
				t.Errorf("4 micro-batches end %.3g away from whole batches", d)
			}
		})
	}
}

// TestModelEMA follows the average over a run against its definition,
// e ← d·e + (1−d)·w after every step from e = w₀, in float64 on the host.
func TestModelEMA(t *testing.T) {
	c := smallConfig(t, t.TempDir())
	c.Epochs, c.MaxSteps = 1, 6
	c.ModelEMA, c.ModelEMADecay = true, 0.7
	tr, err := newTrainer(c, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.close()
	var ref [][]float64
	tr.hookStep = func(tr *trainer) {
		now := hostParams(tr.dev, tr.params)
		if ref == nil {
			t.Fatal("no start")
		}
		for i := range ref {
			for j := range ref[i] {
				ref[i][j] = 0.7*ref[i][j] + 0.3*float64(now[i][j])
			}
		}
	}
	// The average starts from the weights training starts from.
	if err := tr.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, v := range hostParams(tr.dev, tr.params) {
		r := make([]float64, len(v))
		for j := range v {
			r[j] = float64(v[j])
		}
		ref = append(ref, r)
	}
	if err := tr.loader.Start(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	for range 6 {
		if _, err := tr.step(); err != nil {
			t.Fatal(err)
		}
		tr.hookStep(tr)
	}
	for i, e := range tr.rc.ema.ema {
		got := make([]float32, e.Len())
		tr.dev.Download(got, e)
		want := make([]float32, len(got))
		for j := range want {
			want[j] = float32(ref[i][j])
		}
		fixture.Close(t, tr.params[i].Name, got, want, 1e-5)
	}
}

// TestModelEMAEvaluated: with decay 0 the average is the model, so its
// evaluation must repeat the model's to the last digit; final/ holds it.
func TestModelEMAEvaluated(t *testing.T) {
	c := smallConfig(t, t.TempDir())
	c.Epochs = 1
	c.ModelEMA, c.ModelEMADecay = true, 0
	var out bytes.Buffer
	if err := Run(context.Background(), c, &out); err != nil {
		t.Fatal(err)
	}
	recs := records(t, out.String())
	if len(recs) != 1 || recs[0].TestAccEMA != recs[0].TestAcc || recs[0].TestLossEMA != recs[0].TestLoss || recs[0].TestAccEMA == 0 {
		t.Fatalf("records %+v: want test_acc_ema = test_acc, test_loss_ema = test_loss", recs)
	}
	if !strings.Contains(out.String(), `"test_acc_ema"`) {
		t.Errorf("no test_acc_ema in %s", out.String())
	}
	a := readParams(t, filepath.Join(c.RunDir, FinalDir, modelFile))
	b := readParams(t, filepath.Join(c.RunDir, FinalDir, EMAFile))
	if d := maxRelDiff(t, a, b); d != 0 {
		t.Errorf("final/%s is %.3g away from the model with decay 0", EMAFile, d)
	}
}

// recipeConfig turns every part of the recipe on.
func recipeConfig(t testing.TB, dir string) Config {
	c := smallConfig(t, dir)
	c.ModelEMA, c.ModelEMADecay = true, 0.9
	c.Mixup, c.Cutmix, c.MixupProb, c.MixupSwitchProb = 0.8, 1, 0.9, 0.5
	c.LabelSmoothing = 0.1
	c.ClipGrad = 1
	c.GradAccumSteps = 2
	c.NoDecayBNBias = true
	return c
}

// TestRecipeResumesExactly interrupts a run with the whole recipe on
// inside its second epoch and resumes it: the model, the average and the
// epochs' records are those of the uninterrupted run.
func TestRecipeResumesExactly(t *testing.T) {
	if testing.Short() {
		t.Skip("three short runs")
	}
	straight := t.TempDir()
	var want bytes.Buffer
	if err := Run(context.Background(), recipeConfig(t, straight), &want); err != nil {
		t.Fatal(err)
	}
	split := t.TempDir()
	c := recipeConfig(t, split)
	c.MaxSteps = 25
	if err := Run(context.Background(), c, io.Discard); err != nil {
		t.Fatal(err)
	}
	c = recipeConfig(t, split)
	c.Resume = true
	var got bytes.Buffer
	if err := Run(context.Background(), c, &got); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{modelFile, EMAFile} {
		if d := maxRelDiff(t, readParams(t, filepath.Join(split, FinalDir, f)), readParams(t, filepath.Join(straight, FinalDir, f))); d > 1e-6 {
			t.Errorf("%s: the resumed run ends %.3g away from the straight one", f, d)
		}
	}
	w, g := records(t, want.String()), records(t, got.String())
	if len(g) == 0 || len(w) != 2 {
		t.Fatalf("records: straight %d, resumed %d", len(w), len(g))
	}
	last, wl := g[len(g)-1], w[1]
	if last.TrainLoss != wl.TrainLoss || last.TestAccEMA != wl.TestAccEMA || last.TrainAcc != wl.TrainAcc {
		t.Errorf("epoch 2: resumed %+v, straight %+v", last, wl)
	}
}

// TestMixupInTraining trains on images whose every pixel is their label:
// whatever λ, pairing and box a step draws, a mixed image's mean must be
// its soft target's mean label, Σ_j t_j·j, when the images and the
// targets are mixed alike.
func TestMixupInTraining(t *testing.T) {
	const n, size, classes = 64, 28 * 28, 4
	x := make([]float32, n*size)
	y := make([]int32, n)
	for i := range n {
		y[i] = int32((i * 5 / 3) % classes)
		for j := range size {
			x[i*size+j] = float32(y[i])
		}
	}
	c := smallConfig(t, t.TempDir())
	c.Mixup, c.Cutmix, c.MixupProb, c.MixupSwitchProb = 1, 1, 1, 0.5
	c.Normalize = "none"
	c.openData = func() (data.Dataset, data.Dataset, error) {
		tr, err := data.NewMemory(x, y, 1, 28, 28, classes)
		if err != nil {
			return nil, nil, err
		}
		return tr, tr, nil
	}
	tr, err := newTrainer(c, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.close()
	if err := tr.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := tr.loader.Start(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	img := make([]float32, c.Batch*size)
	var mixed, cut int
	for range n / c.Batch {
		if _, err := tr.step(); err != nil {
			t.Fatal(err)
		}
		tr.dev.Download(img, tr.inputs[c.Batch].Data)
		for i := range c.Batch {
			var mean, want float64
			distinct := map[float32]bool{}
			for _, v := range img[i*size : (i+1)*size] {
				mean += float64(v)
				distinct[v] = true
			}
			mean /= size
			for j, tj := range tr.rc.targets[i*classes : (i+1)*classes] {
				want += float64(tj) * float64(j)
			}
			if math.Abs(mean-want) > 1e-5 {
				t.Fatalf("image %d: mean %v, its target's mean label %v", i, mean, want)
			}
			if mean != math.Round(mean) {
				mixed++
			}
			if len(distinct) == 2 {
				cut++
			}
		}
	}
	if mixed == 0 || cut == 0 {
		t.Errorf("%d images mixed, %d by CutMix: the test saw too little", mixed, cut)
	}
}

// TestRecipeValidate: each bad value is refused with its flag's name.
func TestRecipeValidate(t *testing.T) {
	for _, tc := range []struct {
		flag string
		edit func(*Config)
	}{
		{"--clip-grad", func(c *Config) { c.ClipGrad = -1 }},
		{"--clip-grad", func(c *Config) { c.ClipGrad = math.Inf(1) }},
		{"--grad-accum-steps", func(c *Config) { c.GradAccumSteps = -2 }},
		{"--grad-accum-steps", func(c *Config) { c.GradAccumSteps = c.Batch + 1 }},
		{"--model-ema-decay", func(c *Config) { c.ModelEMADecay = 1 }},
		{"--mixup", func(c *Config) { c.Mixup = -0.1 }},
		{"--cutmix", func(c *Config) { c.Cutmix = math.NaN() }},
		{"--mixup-prob", func(c *Config) { c.MixupProb = 1.5 }},
		{"--mixup-switch-prob", func(c *Config) { c.MixupSwitchProb = -1 }},
		{"--random-erase", func(c *Config) { c.RandomErase = 2 }},
		{"--repeated-aug", func(c *Config) { c.RepeatedAug = -1 }},
		{"--layer-decay", func(c *Config) { c.LayerDecay = 1.5 }},
		{"--auto-augment", func(c *Config) { c.AutoAugment = "rand-m99" }},
	} {
		c := smallConfig(t, "run")
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("%s: Validate said %v", tc.flag, err)
		}
	}
	if err := recipeConfig(t, "run").Validate(); err != nil {
		t.Errorf("the whole recipe: %v", err)
	}
}

// TestRecipeSettingsKeepOldHash: a run without the recipe hashes its
// settings as before the recipe existed, so that its checkpoints resume;
// each part of the recipe changes the hash.
func TestRecipeSettingsKeepOldHash(t *testing.T) {
	base := smallConfig(t, "run")
	js, err := json.Marshal(base.settings())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"mixup", "clip_grad", "model_ema", "grad_accum_steps", "no_decay_bn_bias", "auto_augment", "random_erase", "repeated_aug", "layer_decay"} {
		if strings.Contains(string(js), k) {
			t.Errorf("settings without the recipe mention %s: %s", k, js)
		}
	}
	seen := map[string]bool{base.settings().Hash(): true}
	for _, edit := range []func(*Config){
		func(c *Config) { c.NoDecayBNBias = true },
		func(c *Config) { c.ClipGrad = 1 },
		func(c *Config) { c.GradAccumSteps = 2 },
		func(c *Config) { c.ModelEMA = true },
		func(c *Config) { c.Mixup = 0.8 },
		func(c *Config) { c.Cutmix = 1 },
		func(c *Config) { c.AutoAugment = "trivialaugment" },
		func(c *Config) { c.RandomErase = 0.25 },
		func(c *Config) { c.RepeatedAug = 3 },
		func(c *Config) { c.LayerDecay = 0.75 },
	} {
		c := base
		edit(&c)
		h := c.settings().Hash()
		if seen[h] {
			t.Errorf("%+v: the hash did not change", c.settings())
		}
		seen[h] = true
	}
}

// TestAutoAugmentRun trains on images with RandAugment and random erasing:
// the training set is augmented, evaluation is not, and a dataset without
// byte images is refused with the flag's name.
func TestAutoAugmentRun(t *testing.T) {
	root, _ := imageFolder(t)
	c := smallConfig(t, t.TempDir())
	c.Model, c.Data, c.Batch, c.Epochs, c.SkipBad = "mlp", "imagefolder:"+root, 4, 1, true
	c.AutoAugment, c.RandomErase = "rand-m9-mstd0.5", 0.5
	tr, err := newTrainer(c, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tr.trainSet.(*skipBad).Dataset.(*data.Augmented); !ok {
		t.Errorf("training set %T is not augmented", tr.trainSet.(*skipBad).Dataset)
	}
	if _, ok := tr.testSet.(*skipBad).Dataset.(*data.Augmented); ok {
		t.Error("the evaluation set is augmented")
	}
	tr.close()
	var out bytes.Buffer
	if err := Run(context.Background(), c, &out); err != nil {
		t.Fatal(err)
	}
	if recs := records(t, out.String()); len(recs) != 1 {
		t.Errorf("%d records", len(recs))
	}
	c = smallConfig(t, t.TempDir())
	c.AutoAugment = "trivialaugment"
	if err := Run(context.Background(), c, io.Discard); err == nil || !strings.Contains(err.Error(), "auto-augment") {
		t.Errorf("auto-augment on synthetic data: %v", err)
	}
}

// TestRepeatedAugEpoch: with --repeated-aug the training loader is DeiT's
// RASampler's: ⌊640/256⌋·256 = 512 samples per epoch on one rank, 16
// batches of 32 instead of 20, each sample three times in a row.
func TestRepeatedAugEpoch(t *testing.T) {
	c := smallConfig(t, t.TempDir())
	c.RepeatedAug = 3
	tr, err := newTrainer(c, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.close()
	if tr.nb != 16 {
		t.Fatalf("%d steps per epoch, want 16", tr.nb)
	}
	if err := tr.loader.Start(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	b, err := tr.loader.Next()
	if err != nil {
		t.Fatal(err)
	}
	for j := 0; j+2 < 30; j += 3 {
		if b.Index[j] != b.Index[j+1] || b.Index[j] != b.Index[j+2] {
			t.Fatalf("indices %v: not in threes", b.Index)
		}
	}
}

// TestLayerDecay takes one step with every gradient 1 on a two-block ViT:
// SGD moves each parameter by −lr·s and AdamW by −lr·s/(1+ε), with s as
// timm's param_groups_layer_decay gives it: 0.5³ for the embeddings, 0.5²
// and 0.5 for blocks 0 and 1, 1 for the final norm and head.
func TestLayerDecay(t *testing.T) {
	want := func(name string) float64 {
		switch {
		case strings.HasPrefix(name, "cls_token"), strings.HasPrefix(name, "pos_embed"), strings.HasPrefix(name, "patch_embed"):
			return 0.125
		case strings.HasPrefix(name, "blocks.0."):
			return 0.25
		case strings.HasPrefix(name, "blocks.1."):
			return 0.5
		}
		return 1
	}
	for _, opt := range []string{"sgd", "adamw"} {
		t.Run(opt, func(t *testing.T) {
			c, err := OptimizerDefaults(opt)
			if err != nil {
				t.Fatal(err)
			}
			s := smallConfig(t, t.TempDir())
			c.RunDir, c.ProgressMode, c.Workers = s.RunDir, s.ProgressMode, s.Workers
			c.Model, c.Data, c.Depth, c.Patch, c.Batch = "vit-tiny-cifar", "synthetic:3x16x16:4:64", 2, 8, 16
			c.Momentum, c.WeightDecay, c.LR, c.LayerDecay = 0, 0, 0.1, 0.5
			tr, err := newTrainer(c, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.close()
			before := hostParams(tr.dev, tr.params)
			for _, p := range tr.params {
				if p.Grad != nil {
					tr.dev.Fill(p.Grad.Data, 1)
				}
			}
			tr.opt.BeginStep()
			if err := tr.opt.Step(c.LR); err != nil {
				t.Fatal(err)
			}
			after := hostParams(tr.dev, tr.params)
			seen := map[float64]bool{}
			for i, p := range tr.params {
				if !p.Trainable() {
					continue
				}
				step := c.LR * want(p.Name)
				if opt == "adamw" {
					step /= 1 + c.Eps
				}
				seen[want(p.Name)] = true
				for j := range before[i] {
					if d := float64(before[i][j] - after[i][j]); math.Abs(d-step) > 1e-5*step+1e-6 {
						t.Fatalf("%s[%d] moved by %v, want %v", p.Name, j, d, step)
					}
				}
			}
			if len(seen) != 4 {
				t.Errorf("scales seen: %v", seen)
			}
		})
	}
	c := smallConfig(t, t.TempDir())
	c.LayerDecay = 0.75
	if _, err := newTrainer(c, io.Discard); err == nil || !strings.Contains(err.Error(), "--layer-decay") {
		t.Errorf("--layer-decay on LeNet-5: %v", err)
	}
}

// TestGradAccumViTMAC runs MAC's attention rule with uneven micro-batches
// (its early statistics, averaged per micro-batch, then the statistics'
// weighted mean) and with mixup's soft targets: the run finishes, finite.
func TestGradAccumViTMAC(t *testing.T) {
	c := smallConfig(t, t.TempDir())
	c.Model, c.Data, c.Depth, c.Patch, c.Batch = "vit-tiny-cifar", "synthetic:3x16x16:4:80", 1, 8, 20
	c.AttentionV, c.TCov, c.TInv, c.Epochs = true, 1, 1, 1
	c.GradAccumSteps, c.Mixup = 3, 0.8
	var out bytes.Buffer
	if err := Run(context.Background(), c, &out); err != nil {
		t.Fatal(err)
	}
	recs := records(t, out.String())
	if len(recs) != 1 || recs[0].NaNSkips != 0 || !(recs[0].TrainLoss > 0) {
		t.Errorf("records %+v", recs)
	}
}
