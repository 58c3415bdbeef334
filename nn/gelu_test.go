package nn_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/macdist/macdist/internal/fixture"
	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/nntest"
	"github.com/macdist/macdist/safetensors"
)

// The helpers in this file serve the tests of every transformer layer
// (gelu, layernorm, attention, patchembed, tokens, vitblock); their names
// start with vit to stay clear of the other layers' tests.

// vitDownload copies the first n elements of b to the host.
func vitDownload(dev kernels.Device, b kernels.Buffer, n int) []float32 {
	out := make([]float32, n)
	dev.Download(out, b)
	return out
}

// vitRandn returns n standard normal numbers.
func vitRandn(rng *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * scale)
	}
	return v
}

// vitTensor uploads v into a new tensor of the given shape.
func vitTensor(dev kernels.Device, v []float32, shape ...int) *nn.Tensor {
	t := nn.NewTensor(dev, shape...)
	dev.Upload(t.Data, v)
	return t
}

// vitParity checks m against the fixture layers_vit_<name>: it loads the
// parameters, runs Forward on x and Backward on r, and compares the output,
// dL/dx and every parameter gradient with PyTorch's (relative error ≤ tol).
// A second step then checks that gradients accumulate, as PyTorch's do.
// Parameter names must be prefix followed by the fixture's state_dict key
// (PyTorch's reference is a top-level module).
// When warm is not nil, a Forward and Backward on a random input of that
// shape come first, so that the compared step runs on buffers that had to be
// reallocated for a new shape.
func vitParity(t *testing.T, dev kernels.Device, name string, m nn.Module, prefix string, warm []int, tol float64) *safetensors.File {
	t.Helper()
	f := fixture.Load(t, "layers_vit_"+name)
	m.SetTraining(true)
	if warm != nil {
		rng := rand.New(rand.NewPCG(1, 2))
		x := vitTensor(dev, vitRandn(rng, nn.Numel(warm), 1), warm...)
		y := m.Forward(x)
		m.Backward(vitTensor(dev, vitRandn(rng, y.Len(), 1), y.Shape...))
	}

	params := m.Params()
	inFixture := 0
	for _, n := range f.Names() {
		if strings.HasPrefix(n, "param.") {
			inFixture++
		}
	}
	if len(params) != inFixture {
		names := make([]string, len(params))
		for i, p := range params {
			names[i] = p.Name
		}
		t.Fatalf("module has parameters %v, fixture has %d", names, inFixture)
	}
	key := func(p *nn.Param) string {
		if !strings.HasPrefix(p.Name, prefix) {
			t.Fatalf("parameter %q lacks the prefix %q", p.Name, prefix)
		}
		return strings.TrimPrefix(p.Name, prefix)
	}
	for _, p := range params {
		v, shape := fixture.Floats(t, f, "param."+key(p))
		if !slices.Equal(shape, p.Value.Shape) {
			t.Fatalf("%s: shape %v, PyTorch's %v", p.Name, p.Value.Shape, shape)
		}
		dev.Upload(p.Value.Data, v)
	}
	xv, xs := fixture.Floats(t, f, "x")
	x := vitTensor(dev, xv, xs...)
	want, ws := fixture.Floats(t, f, "y")
	r, _ := fixture.Floats(t, f, "r")

	for step := 1; step <= 2; step++ {
		if step == 1 {
			nn.ZeroGrad(dev, params)
		}
		y := m.Forward(x)
		if !slices.Equal(y.Shape, ws) {
			t.Fatalf("output shape %v, PyTorch's %v", y.Shape, ws)
		}
		fixture.Close(t, fmt.Sprintf("step %d: y", step), vitDownload(dev, y.Data, y.Len()), want, tol)
		dx := m.Backward(vitTensor(dev, r, ws...))
		if !slices.Equal(dx.Shape, xs) {
			t.Fatalf("dx shape %v, x's %v", dx.Shape, xs)
		}
		wdx, _ := fixture.Floats(t, f, "dx")
		fixture.Close(t, fmt.Sprintf("step %d: dx", step), vitDownload(dev, dx.Data, dx.Len()), wdx, tol)
		for _, p := range params {
			if p.Grad == nil {
				continue
			}
			g, _ := fixture.Floats(t, f, "grad."+key(p))
			for i := range g {
				g[i] *= float32(step)
			}
			fixture.Close(t, fmt.Sprintf("step %d: grad %s", step, p.Name), vitDownload(dev, p.Grad.Data, p.Grad.Len()), g, tol)
		}
	}
	return f
}

// vitMustPanic runs fn and checks that it panics with a message containing
// every one of want.
func vitMustPanic(t *testing.T, fn func(), want ...string) {
	t.Helper()
	var msg string
	func() {
		defer func() {
			if r := recover(); r != nil {
				msg = fmt.Sprint(r)
			}
		}()
		fn()
	}()
	if msg == "" {
		t.Errorf("no panic, want one mentioning %q", want)
		return
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("panic %q does not mention %q", msg, w)
		}
	}
}

// vitZeroAllocs checks that a steady-state Forward and Backward of m
// allocate nothing.
func vitZeroAllocs(t *testing.T, dev kernels.Device, m nn.Module, shape []int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	x := vitTensor(dev, vitRandn(rng, nn.Numel(shape), 1), shape...)
	y := m.Forward(x)
	dy := vitTensor(dev, vitRandn(rng, y.Len(), 1), y.Shape...)
	m.Backward(dy)
	if n := testing.AllocsPerRun(5, func() {
		m.Forward(x)
		m.Backward(dy)
	}); n != 0 {
		t.Errorf("steady-state Forward+Backward allocates %v times per step", n)
	}
}

func TestGELUParity(t *testing.T) {
	for _, tanh := range []bool{false, true} {
		name := "gelu_erf"
		if tanh {
			name = "gelu_tanh"
		}
		t.Run(name, func(t *testing.T) {
			dev := cpu.New()
			vitParity(t, dev, name, nn.NewGELU(dev, tanh), "", []int{4, 2}, 1e-4)
		})
	}
}

func TestGELUGradCheck(t *testing.T) {
	for _, tanh := range []bool{false, true} {
		dev := cpu.New()
		rng := rand.New(rand.NewPCG(5, uint64(len(fmt.Sprint(tanh)))))
		nntest.GradCheck{Seed: 1, Tol: 1e-2}.Run(t, dev, nn.NewGELU(dev, tanh), vitRandn(rng, 60, 2), []int{3, 4, 5})
	}
}

func TestGELUGradShapePanics(t *testing.T) {
	dev := cpu.New()
	g := nn.NewGELU(dev, false)
	vitMustPanic(t, func() { g.Backward(nn.NewTensor(dev, 2, 3)) }, "GELU", "Backward before Forward")
	g.Forward(nn.NewTensor(dev, 2, 3))
	vitMustPanic(t, func() { g.Backward(nn.NewTensor(dev, 3, 2)) }, "GELU", "[3 2]", "[2 3]")
}
