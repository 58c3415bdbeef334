package nn_test

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
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

// roundEveryTime is a bf16 Device without kernels.OperandKeeper and
// kernels.SharedOperandMatMul: every product rounds its operands afresh.
type roundEveryTime struct {
	kernels.Device
	kernels.MixedPrecision
}

// TestBF16KeptCopiesExact runs attention and window attention (their
// qkv and proj linear layers included) for two training steps on
// different inputs, two backwards each, once keeping the bf16 copies of X, Q, K, V, P, dctx
// and dS between products and once rounding every operand every time:
// the outputs and gradients must agree bit for bit, so no copy outlives
// its matrix (the second step's inputs differ) and none stands in for
// another.
func TestBF16KeptCopiesExact(t *testing.T) {
	kept := bf16Device(t)
	d2 := bf16Device(t)
	fresh := roundEveryTime{d2, d2.(kernels.MixedPrecision)}
	if _, ok := kernels.Device(fresh).(kernels.OperandKeeper); ok {
		t.Fatal("the fresh device keeps copies")
	}
	const dim, heads = 32, 2
	for _, c := range []struct {
		name  string
		shape []int
		layer func(dev kernels.Device) nn.Module
	}{
		{"attention", []int{3, 9, dim}, func(dev kernels.Device) nn.Module {
			return nn.NewMultiHeadSelfAttention(dev, "attn", dim, heads, true, rand.New(rand.NewPCG(3, 4)))
		}},
		{"window attention", []int{2, 4, 4, dim}, func(dev kernels.Device) nn.Module {
			return nn.NewWindowAttention(dev, "attn", dim, heads, 2, 1, rand.New(rand.NewPCG(3, 4)))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m1, m2 := c.layer(kept), c.layer(fresh)
			rng := rand.New(rand.NewPCG(5, 6))
			size := 1
			for _, s := range c.shape {
				size *= s
			}
			random := func() []float32 {
				v := make([]float32, size)
				for i := range v {
					v[i] = float32(rng.NormFloat64())
				}
				return v
			}
			read := func(dev kernels.Device, buf kernels.Buffer) []float32 {
				v := make([]float32, buf.Len())
				dev.Download(v, buf)
				return v
			}
			for step := range 2 {
				// Two backwards after one forward: the second's dctx and
				// dS are new matrices too.
				x, r, r2 := random(), random(), random()
				var outs [2][][]float32
				for i, s := range []struct {
					dev kernels.Device
					m   nn.Module
				}{{kept, m1}, {fresh, m2}} {
					xt, rt, rt2 := nn.NewTensor(s.dev, c.shape...), nn.NewTensor(s.dev, c.shape...), nn.NewTensor(s.dev, c.shape...)
					s.dev.Upload(xt.Data, x)
					s.dev.Upload(rt.Data, r)
					s.dev.Upload(rt2.Data, r2)
					outs[i] = append(outs[i], read(s.dev, s.m.Forward(xt).Data))
					outs[i] = append(outs[i], read(s.dev, s.m.Backward(rt).Data))
					outs[i] = append(outs[i], read(s.dev, s.m.Backward(rt2).Data))
					for _, p := range s.m.Params() {
						if p.Trainable() {
							outs[i] = append(outs[i], read(s.dev, p.Grad.Data))
						}
					}
				}
				for j := range outs[0] {
					if !slices.Equal(outs[0][j], outs[1][j]) {
						t.Errorf("step %d, output %d (y, two dx, then the gradients): kept copies differ from fresh roundings", step, j)
					}
				}
			}
		})
	}
}
