package nn_test

import (
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/macdist/macdist/internal/fixture"
	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/nntest"
)

// bf16Device is a bf16 cpu Device, or skips t (see nntest.BF16Device).
func bf16Device(t *testing.T) kernels.Device { return nntest.BF16Device(t) }

// bf16Tol are the tolerances against PyTorch's autocast, relative to the
// largest element of each tensor (fixture.RelErr). Both sides round the
// same inputs to bf16 and accumulate in float32; they differ in that
// autocast rounds its outputs to bf16 too (2^-9 relative; macdist keeps
// float32 outputs, more accurate, and does not round them to match), in
// the gradients autocast then computes from those rounded outputs, and in
// the order of the sums. Attention compounds three products and a
// softmax, each with its roundings.
var bf16Tol = map[string]float64{"conv": 1e-2, "linear": 1e-2, "attention": 3e-2}

// TestBF16AutocastLayers compares the layers' forward and backward in
// bf16 with torch.autocast("cpu", torch.bfloat16)'s (testdata/gen/gen_bf16.py).
func TestBF16AutocastLayers(t *testing.T) {
	dev := bf16Device(t)
	f := fixture.Load(t, "layers_bf16")
	for c, js := range f.Metadata {
		var meta struct {
			Kind string
			Cfg  json.RawMessage
		}
		if err := json.Unmarshal([]byte(js), &meta); err != nil {
			continue // not a case
		}
		t.Run(c, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			var m nn.Module
			switch meta.Kind {
			case "conv":
				var cfg nn.Conv2dConfig
				if err := json.Unmarshal(meta.Cfg, &cfg); err != nil {
					t.Fatal(err)
				}
				m = nn.NewConv2d(dev, "layer", cfg, rng)
			case "linear":
				var cfg struct {
					In, Out int
					Bias    bool
				}
				if err := json.Unmarshal(meta.Cfg, &cfg); err != nil {
					t.Fatal(err)
				}
				m = nn.NewLinear(dev, "layer", cfg.In, cfg.Out, cfg.Bias, rng)
			case "attention":
				var cfg struct {
					Dim, Heads int
					QKVBias    bool
				}
				if err := json.Unmarshal(meta.Cfg, &cfg); err != nil {
					t.Fatal(err)
				}
				m = nn.NewMultiHeadSelfAttention(dev, "layer", cfg.Dim, cfg.Heads, cfg.QKVBias, rng)
			default:
				t.Fatalf("unknown kind %q", meta.Kind)
			}
			tol := bf16Tol[meta.Kind]
			params := m.Params()
			for _, p := range params {
				v, _ := fixture.Floats(t, f, c+"/param."+p.Name)
				dev.Upload(p.Value.Data, v)
			}
			nn.ZeroGrad(dev, params)
			up := func(key string) *nn.Tensor {
				v, shape := fixture.Floats(t, f, c+"/"+key)
				x := nn.NewTensor(dev, shape...)
				dev.Upload(x.Data, v)
				return x
			}
			y := m.Forward(up("x"))
			dx := m.Backward(up("r"))
			check := func(what string, got kernels.Buffer) {
				ours := make([]float32, got.Len())
				dev.Download(ours, got)
				want, _ := fixture.Floats(t, f, c+"/"+what)
				f32, _ := fixture.Floats(t, f, c+"/f32."+what)
				e, e32 := fixture.RelErr(ours, want), fixture.RelErr(f32, want)
				t.Logf("%-22s vs autocast %.2e (PyTorch fp32 vs autocast %.2e)", what, e, e32)
				if e > tol {
					t.Errorf("%s: relative error %.3g against autocast, above %g", what, e, tol)
				}
			}
			check("y", y.Data)
			check("dx", dx.Data)
			for _, p := range params {
				check("grad."+p.Name, p.Grad.Data)
			}
		})
	}
}
