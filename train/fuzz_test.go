package train

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/mac"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/models"
	"github.com/macdist/macdist/safetensors"
)

// The fuzz targets of the files a run reads back: weights (a checkpoint's
// model.safetensors, --init), optimizer state, a checkpoint's MANIFEST and
// state.json, and config.json. Each writes the fuzzer's bytes where the
// real entry point reads them, once per input, into a directory of the
// fuzzing process (inputs run one at a time there).

// fuzzModel is a small MLP: the fuzzer wants many inputs a second, and the
// loaders treat every parameter alike.
func fuzzModel(t testing.TB, dev kernels.Device) *models.Model {
	t.Helper()
	m, err := models.New(dev, "mlp", models.Config{InChannels: 1, ImageSize: 3, Classes: 2, Width: 4})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func encode(t testing.TB, ts []safetensors.Tensor, meta map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := safetensors.Encode(&b, ts, meta); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func download(dev kernels.Device, params []*nn.Param) [][]float32 {
	out := make([][]float32, len(params))
	for i, p := range params {
		out[i] = make([]float32, p.Value.Len())
		dev.Download(out[i], p.Value.Data)
	}
	return out
}

// FuzzLoadWeights loads a state_dict file as a checkpoint's weights
// (nn.LoadParams) and as --init (LoadInit). Both take the same files, and
// a refused file changes no parameter.
func FuzzLoadWeights(f *testing.F) {
	dev := cpu.New()
	m := fuzzModel(f, dev)
	params := m.Params()
	good := nn.StateDict(dev, params)
	f.Add(encode(f, good, map[string]string{"format": "pt"}))
	f.Add(encode(f, good[:len(good)-1], nil))
	wrong := slices.Clone(good)
	v, _ := wrong[0].Floats()
	wrong[0] = safetensors.Float32(wrong[0].Name, []int{len(v)}, v)
	f.Add(encode(f, wrong, nil))
	f.Add(encode(f, append(slices.Clone(good), safetensors.Int64("extra", []int{1}, []int64{7})), nil))
	base := download(dev, params)
	path := filepath.Join(f.TempDir(), "model.safetensors")
	f.Fuzz(func(t *testing.T, raw []byte) {
		if err := os.WriteFile(path, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		defer func() { // the next input starts from the same weights
			for i, p := range params {
				dev.Upload(p.Value.Data, base[i])
			}
		}()
		errParams := nn.LoadParams(dev, path, params)
		if errParams != nil {
			if !strings.Contains(errParams.Error(), path) {
				t.Fatalf("error %q does not name the file", errParams)
			}
			if !reflect.DeepEqual(download(dev, params), base) {
				t.Fatalf("refused (%v), yet parameters changed", errParams)
			}
		} else {
			file, err := safetensors.Parse(raw)
			if err != nil {
				t.Fatalf("loaded a file that does not parse: %v", err)
			}
			got := download(dev, params)
			for i, p := range params {
				tn, _ := file.Tensor(p.Name)
				want, _ := tn.Floats()
				if !reflect.DeepEqual(got[i], want) && !sameBits(got[i], want) {
					t.Fatalf("%s holds other values than the file's", p.Name)
				}
			}
		}
		errInit := LoadInit(dev, path, params)
		if (errInit == nil) != (errParams == nil) {
			t.Fatalf("a checkpoint's weights load with %v, the same file as --init with %v", errParams, errInit)
		}
		if errInit != nil && !strings.Contains(errInit.Error(), path) {
			t.Fatalf("error %q does not name the file", errInit)
		}
	})
}

// sameBits compares as bits, so that NaN loaded is NaN read.
func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] && (a[i] == a[i] || b[i] == b[i]) {
			return false
		}
	}
	return true
}

// FuzzOptimizerState loads an optimizer.safetensors into each method's
// optimizer (mac.LoadState). What loads, saves and loads again the same.
func FuzzOptimizerState(f *testing.F) {
	dev := cpu.New()
	m := fuzzModel(f, dev)
	var opts []mac.Optimizer
	dir := f.TempDir()
	for i, name := range mac.Methods {
		o, err := mac.DefaultOptions(name)
		if err != nil {
			f.Fatal(err)
		}
		o.FirstLayerCov = false
		opt, err := mac.New(name, dev, m, o)
		if err != nil {
			f.Fatal(err)
		}
		opts = append(opts, opt)
		p := filepath.Join(dir, name+".safetensors")
		if err := mac.SaveState(p, opt); err != nil {
			f.Fatal(err)
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw, uint8(i))
		f.Add(raw, uint8(i+1)) // another method's state
	}
	path := filepath.Join(dir, "optimizer.safetensors")
	again := filepath.Join(dir, "again.safetensors")
	f.Fuzz(func(t *testing.T, raw []byte, which uint8) {
		opt := opts[int(which)%len(opts)]
		if err := os.WriteFile(path, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := mac.LoadState(path, opt); err != nil {
			if !strings.Contains(err.Error(), path) && !strings.HasPrefix(err.Error(), "mac: ") {
				t.Fatalf("error %q says neither file nor package", err)
			}
			return
		}
		st, err := opt.State()
		if err != nil {
			t.Fatalf("state after loading: %v", err)
		}
		if err := mac.SaveState(again, opt); err != nil {
			t.Fatalf("saving a loaded state: %v", err)
		}
		if err := mac.LoadState(again, opt); err != nil {
			t.Fatalf("a loaded state, saved, does not load: %v", err)
		}
		st2, err := opt.State()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(st.Meta, st2.Meta) || len(st.Tensors) != len(st2.Tensors) {
			t.Fatalf("state changed through a save and load")
		}
		for k, v := range st.Tensors {
			if !sameBits(v, st2.Tensors[k]) {
				t.Fatalf("state tensor %s changed through a save and load", k)
			}
		}
	})
}

// FuzzCheckpointFiles verifies a checkpoint whose MANIFEST and state.json
// are the fuzzer's. With hash, the MANIFEST is written true to the files,
// so that the fuzzer reaches state.json's decoding behind the checksums.
func FuzzCheckpointFiles(f *testing.F) {
	dev := cpu.New()
	m := fuzzModel(f, dev)
	opt, err := mac.NewSGD(dev, m, mac.Common{Momentum: 0.9})
	if err != nil {
		f.Fatal(err)
	}
	st := RunState{Step: 7, Epoch: 1, EpochStep: 2, Seed: 3, ConfigHash: "abc", Model: "mlp", Optimizer: "sgd",
		Settings: &Settings{Model: "mlp", Data: "synthetic:1x3x3:2:8", Epochs: 2, GlobalBatch: 4},
		History:  []EpochRecord{{Epoch: 1, Step: 5}}}
	root := f.TempDir()
	good, err := SaveCheckpoint(root, dev, m.Params(), opt, st, 0)
	if err != nil {
		f.Fatal(err)
	}
	manifest, err := os.ReadFile(filepath.Join(good, manifestFile))
	if err != nil {
		f.Fatal(err)
	}
	state, err := os.ReadFile(filepath.Join(good, stateFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(manifest, state, false)
	f.Add(manifest, state, true)
	f.Add([]byte(`{"files":null}`), state, false)
	f.Add(manifest, []byte(`{"step":-1,"epoch":0,"epoch_step":0}`), true)
	f.Add(manifest, []byte(`{"step":1,"settings":null,"history":[null]}`), true)
	dir := filepath.Join(root, CheckpointName(99))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.Fatal(err)
	}
	for _, name := range []string{modelFile, optimizerFile} {
		b, err := os.ReadFile(filepath.Join(good, name))
		if err != nil {
			f.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, manifest, state []byte, hash bool) {
		if err := os.WriteFile(filepath.Join(dir, stateFile), state, 0o644); err != nil {
			t.Fatal(err)
		}
		if hash {
			man := Manifest{Files: map[string]ManifestEntry{}}
			for _, name := range []string{modelFile, optimizerFile, stateFile} {
				e, err := hashFile(filepath.Join(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				man.Files[name] = e
			}
			manifest, _ = json.Marshal(man)
		}
		if err := os.WriteFile(filepath.Join(dir, manifestFile), manifest, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := VerifyCheckpoint(dir)
		if err != nil {
			if !strings.Contains(err.Error(), dir) {
				t.Fatalf("error %q does not name the checkpoint", err)
			}
			return
		}
		if got.Step < 0 || got.Epoch < 0 || got.EpochStep < 0 || got.EpochStep > got.Step {
			t.Fatalf("accepted a state at step %d, epoch %d, epoch step %d", got.Step, got.Epoch, got.EpochStep)
		}
		// What was accepted is what a checkpoint of it would record.
		js, err := json.Marshal(got)
		if err != nil {
			t.Fatalf("an accepted state does not re-encode: %v", err)
		}
		var back RunState
		if err := json.Unmarshal(js, &back); err != nil || !reflect.DeepEqual(back, got) {
			t.Fatalf("an accepted state does not survive a rewrite (%v): %+v, then %+v", err, got, back)
		}
		if got.Settings != nil {
			_ = got.Settings.Diff(Settings{}) // resume's refusal lists it
		}
	})
}

// FuzzConfigJSON decodes a run's config.json into the configuration it
// records and validates it as a run would. A valid one records the
// settings it hashes to.
func FuzzConfigJSON(f *testing.F) {
	c := DefaultConfig()
	c.Model, c.Data, c.RunDir = "lenet5", "fashion-mnist", "runs/x"
	rc := runConfig{Settings: c.settings(), Device: "cpu", ConfigHash: c.settings().Hash()}
	js, err := json.MarshalIndent(rc, "", "  ")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(js)
	f.Add([]byte(`{"model":"vit-tiny","depth":-1,"patch":0,"lr":1e308,"epochs":0,"global_batch":0}`))
	f.Add([]byte(`{"optimizer":"kfac","lr_schedule":"step","warmup":"NaN"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var rc runConfig
		if err := json.Unmarshal(raw, &rc); err != nil {
			return
		}
		s := rc.Settings
		cfg := Config{
			Model: s.Model, Depth: s.Depth, Patch: s.Patch, Data: s.Data, Augment: s.Augment, Normalize: s.Normalize,
			Subset: s.Subset, TestSubset: rc.TestSubset, Device: rc.Device, Optimizer: s.Optimizer, LR: s.LR,
			Momentum: s.Momentum, Nesterov: s.Nesterov, WeightDecay: s.WeightDecay, DecoupledWD: s.DecoupledWD,
			Damping: s.Damping, StatDecay: s.StatDecay, TCov: s.TCov, TInv: s.TInv, FirstLayerCov: s.FirstLayerCov,
			AttentionV: s.AttentionV, KLClip: s.KLClip, Beta1: s.Beta1, Beta2: s.Beta2, Eps: s.Eps,
			LabelSmoothing: s.LabelSmoothing, Epochs: s.Epochs, MaxSteps: rc.MaxSteps, Batch: s.GlobalBatch,
			Schedule: s.Schedule, Warmup: s.Warmup, Seed: s.Seed, Shuffle: s.Shuffle, Init: rc.Init,
			RunDir: "runs/fuzz", CheckpointEvery: rc.CheckpointEvery, Keep: rc.Keep, Workers: rc.Workers,
		}
		cfg = cfg.withDefaults()
		if err := cfg.Validate(); err != nil {
			if !strings.HasPrefix(err.Error(), "train: ") {
				t.Fatalf("error %q", err)
			}
			return
		}
		if d := cfg.settings().Diff(s); len(d) != 0 && s.Augment != "" {
			t.Fatalf("a valid configuration records other settings than it was given: %v", d)
		}
		if s.Augment != "" && cfg.settings().Hash() != s.Hash() {
			t.Fatalf("the same settings hash differently")
		}
	})
}
