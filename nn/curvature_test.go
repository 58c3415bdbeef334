package nn_test

import (
	"encoding/json"
	"fmt"
	"sort"
	"testing"

	"github.com/macdist/macdist/internal/fixture"
	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/nn"
)

type curvCase struct {
	Kind      string
	Shape     []int
	Cfg       json.RawMessage
	Positions int
}

// newCurvLayer builds the case's layer with the fixture's weights.
func newCurvLayer(t *testing.T, dev kernels.Device, get func(string) []float32, name string, c curvCase) nn.KFACTapped {
	t.Helper()
	var l nn.KFACTapped
	switch c.Kind {
	case "linear":
		var cfg struct {
			In, Out int
			Bias    bool
		}
		if err := json.Unmarshal(c.Cfg, &cfg); err != nil {
			t.Fatal(err)
		}
		l = nn.NewLinear(dev, "fc", cfg.In, cfg.Out, cfg.Bias, cnnRNG(1))
	case "conv":
		var cfg nn.Conv2dConfig
		if err := json.Unmarshal(c.Cfg, &cfg); err != nil {
			t.Fatal(err)
		}
		l = nn.NewConv2d(dev, "conv", cfg, cnnRNG(1))
	default:
		t.Fatalf("case %s: kind %q", name, c.Kind)
	}
	dev.Upload(l.Weight().Value.Data, get(name+"/weight"))
	if l.Bias() != nil {
		dev.Upload(l.Bias().Value.Data, get(name+"/bias"))
	}
	return l
}

// TestCurvatureTapParity checks A, G, ḡ and P against the float64
// statistics of testdata/gen/gen_curvature.py, and that A/P and P²·G are
// kfac-pytorch's factors. Convolutions run whole-batch, one image a chunk
// and two images a chunk, so that A's accumulation over chunks is covered.
func TestCurvatureTapParity(t *testing.T) {
	f := fixture.Load(t, "layers_curvature")
	var names []string
	for k := range f.Metadata {
		names = append(names, k)
	}
	sort.Strings(names)
	get := func(n string) []float32 { v, _ := fixture.Floats(t, f, n); return v }
	for path, dev := range cnnPaths() {
		for _, perChunk := range []int{0, 1, 2} {
			for _, name := range names {
				var c curvCase
				if err := json.Unmarshal([]byte(f.Metadata[name]), &c); err != nil {
					t.Fatal(err)
				}
				if c.Kind != "conv" && perChunk > 0 {
					continue
				}
				t.Run(fmt.Sprintf("%s/chunk%d/%s", path, perChunk, name), func(t *testing.T) {
					ws := nn.Workspace(dev)
					defer ws.SetLimit(0)
					if perChunk > 0 {
						var cfg nn.Conv2dConfig
						_ = json.Unmarshal(c.Cfg, &cfg)
						_, dys := fixture.Floats(t, f, name+"/dy")
						ws.SetLimit(perChunk * cfg.In * cfg.Kernel * cfg.Kernel * dys[2] * dys[3])
					}
					l := newCurvLayer(t, dev, get, name, c)
					l.SetCovTap(true)
					l.SetGradTap(true)
					l.SetGradMeanTap(true)
					x := cnnUpload(dev, get(name+"/x"), c.Shape)
					y := l.Forward(x)
					l.Backward(cnnUpload(dev, get(name+"/dy"), y.Shape))
					if l.TapPositions() != c.Positions {
						t.Errorf("TapPositions = %d, want %d", l.TapPositions(), c.Positions)
					}
					a, g := cnnDownload(dev, l.CovTap()), cnnDownload(dev, l.GradTap())
					fixture.Close(t, "A", a, get(name+"/A"), 1e-5)
					fixture.Close(t, "G", g, get(name+"/G"), 1e-5)
					fixture.Close(t, "ḡ", cnnDownload(dev, l.GradMeanTap()), get(name+"/gbar"), 1e-5)
					p := float32(c.Positions)
					for i := range a {
						a[i] /= p
					}
					for i := range g {
						g[i] *= p * p
					}
					fixture.Close(t, "A/P against kfac-pytorch's A", a, get(name+"/kfac_A"), 1e-5)
					fixture.Close(t, "P²·G against kfac-pytorch's G", g, get(name+"/kfac_G"), 1e-5)
				})
			}
		}
	}
}

// TestCurvatureTapsOffAndEval checks that the taps hold no buffer until
// turned on, record nothing in evaluation mode or when off, and allocate
// nothing in a steady-state step while on.
func TestCurvatureTapsOffAndEval(t *testing.T) {
	dev := cnnDevice()
	layers := []struct {
		l     nn.KFACTapped
		shape []int
	}{
		{nn.NewLinear(dev, "fc", 6, 4, true, cnnRNG(1)), []int{3, 6}},
		{nn.NewConv2d(dev, "conv", nn.Conv2dConfig{In: 2, Out: 3, Kernel: 3, Padding: 1, Bias: true}, cnnRNG(1)), []int{2, 2, 5, 5}},
	}
	for _, tc := range layers {
		l := tc.l
		name := l.Weight().Name
		if l.CovTap() != nil || l.GradTap() != nil || l.GradMeanTap() != nil {
			t.Fatalf("%s: tap buffers exist before the taps were turned on", name)
		}
		rng := cnnRNG(2)
		x := cnnUpload(dev, cnnRandn(rng, nn.Numel(tc.shape)), tc.shape)
		y := l.Forward(x)
		dy := cnnUpload(dev, cnnRandn(rng, y.Len()), y.Shape)
		l.Backward(dy)
		if l.CovTap() != nil || l.GradTap() != nil || l.GradMeanTap() != nil {
			t.Fatalf("%s: a step with the taps off allocated tap buffers", name)
		}
		l.SetCovTap(true)
		l.SetGradTap(true)
		l.SetGradMeanTap(true)
		step := func() {
			l.Forward(x)
			l.Backward(dy)
		}
		step()
		a, g, gm := cnnDownload(dev, l.CovTap()), cnnDownload(dev, l.GradTap()), cnnDownload(dev, l.GradMeanTap())
		if allocs := testing.AllocsPerRun(5, step); allocs != 0 {
			t.Errorf("%s: %v allocations in a step with the taps on", name, allocs)
		}
		other := cnnUpload(dev, cnnRandn(rng, nn.Numel(tc.shape)), tc.shape)
		l.SetTraining(false)
		l.Forward(other)
		l.Backward(dy)
		l.SetTraining(true)
		l.SetCovTap(false)
		l.SetGradTap(false)
		l.SetGradMeanTap(false)
		l.Forward(other)
		l.Backward(dy)
		fixture.Close(t, name+" A after eval and off steps", cnnDownload(dev, l.CovTap()), a, 0)
		fixture.Close(t, name+" G after eval and off steps", cnnDownload(dev, l.GradTap()), g, 0)
		fixture.Close(t, name+" ḡ after eval and off steps", cnnDownload(dev, l.GradMeanTap()), gm, 0)
	}
}
