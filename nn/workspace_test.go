package nn_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/macdist/macdist/internal/fixture"
	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/safetensors"
)

// cnnDevice is the device of the CNN layer tests, one per test binary so
// that the shared nn.Workspace is exercised across tests.
var cnnDevice = sync.OnceValue(func() kernels.Device { return cpu.New() })

// cnnSeed is SEED of testdata/gen/gen_layers_cnn.py.
const cnnSeed = 7

// cnnMeta is a case's metadata as gen_layers_cnn.py writes it.
type cnnMeta struct {
	Cfg   json.RawMessage `json:"cfg"`
	Names []string        `json:"names"`
	Train bool            `json:"train"`
}

// cnnCases returns the case names of a fixture file, sorted, with their
// metadata.
func cnnCases(t *testing.T, f *safetensors.File) ([]string, map[string]cnnMeta) {
	t.Helper()
	metas := map[string]cnnMeta{}
	var names []string
	for k, v := range f.Metadata {
		var m cnnMeta
		if err := json.Unmarshal([]byte(v), &m); err != nil {
			t.Fatalf("metadata of case %s: %v", k, err)
		}
		metas[k] = m
		names = append(names, k)
	}
	sort.Strings(names)
	if len(names) == 0 {
		t.Fatal("fixture has no cases")
	}
	return names, metas
}

// cnnUpload returns a tensor holding v.
func cnnUpload(dev kernels.Device, v []float32, shape []int) *nn.Tensor {
	t := nn.NewTensor(dev, shape...)
	dev.Upload(t.Data, v)
	return t
}

// cnnDownload returns the contents of a buffer.
func cnnDownload(dev kernels.Device, b kernels.Buffer) []float32 {
	v := make([]float32, b.Len())
	dev.Download(v, b)
	return v
}

// cnnHas reports whether the fixture holds a tensor.
func cnnHas(f *safetensors.File, name string) bool {
	_, err := f.Tensor(name)
	return err == nil
}

// cnnParity runs case c of fixture f through m: hash-initialised
// parameters, Forward of x in the recorded mode, Backward of r, and
// compares output, input gradient, parameter gradients, buffers after the
// step and, for tapped layers, ā, each within tol.
func cnnParity(t *testing.T, f *safetensors.File, c string, meta cnnMeta, m nn.Module, tol float64) {
	t.Helper()
	cnnParityOn(t, cnnDevice(), f, c, meta, m, tol)
}

// cnnParityOn is cnnParity for a module built on dev.
func cnnParityOn(t *testing.T, dev kernels.Device, f *safetensors.File, c string, meta cnnMeta, m nn.Module, tol float64) {
	t.Helper()
	params := m.Params()
	var got []string
	for _, p := range params {
		got = append(got, p.Name)
	}
	if strings.Join(got, ",") != strings.Join(meta.Names, ",") {
		t.Fatalf("Params names\n got %v\nwant %v (PyTorch state_dict order)", got, meta.Names)
	}
	nn.HashInit(dev, params, cnnSeed)
	nn.ZeroGrad(dev, params)
	m.SetTraining(meta.Train)
	tapped, isTapped := m.(nn.Tapped)
	if isTapped {
		tapped.SetTap(true)
	}

	xv, xs := fixture.Floats(t, f, c+"/x")
	x := cnnUpload(dev, xv, xs)
	if isTapped {
		// A Forward of other data first: ā must be overwritten, not
		// accumulated across calls.
		m.Forward(cnnUpload(dev, cnnRandn(cnnRNG(99), len(xv)), xs))
	}
	y := m.Forward(x)
	wantY, ys := fixture.Floats(t, f, c+"/y")
	if !y.SameShape(ys) {
		t.Fatalf("output shape %v, want %v", y.Shape, ys)
	}
	fixture.Close(t, c+" y", cnnDownload(dev, y.Data), wantY, tol)
	if isTapped && cnnHas(f, c+"/tap") {
		want, _ := fixture.Floats(t, f, c+"/tap")
		if tapped.TapDim() != len(want) {
			t.Fatalf("TapDim %d, want %d", tapped.TapDim(), len(want))
		}
		fixture.Close(t, c+" tap", cnnDownload(dev, tapped.Tap()), want, tol)
	}

	// Backward twice: dx must be overwritten each time and the parameter
	// gradients accumulated, so they end at twice PyTorch's.
	rv, rs := fixture.Floats(t, f, c+"/r")
	r := cnnUpload(dev, rv, rs)
	wantDx, dxs := fixture.Floats(t, f, c+"/dx")
	for pass := 1; pass <= 2; pass++ {
		dx := m.Backward(r)
		if !dx.SameShape(dxs) {
			t.Fatalf("dx shape %v, want %v", dx.Shape, dxs)
		}
		fixture.Close(t, fmt.Sprintf("%s dx (Backward %d)", c, pass), cnnDownload(dev, dx.Data), wantDx, tol)
	}
	for _, p := range params {
		if p.Grad != nil {
			want, _ := fixture.Floats(t, f, c+"/grad."+p.Name)
			for i := range want {
				want[i] *= 2
			}
			fixture.Close(t, c+" grad "+p.Name+" (accumulated twice)", cnnDownload(dev, p.Grad.Data), want, tol)
		} else {
			want, _ := fixture.Floats(t, f, c+"/after."+p.Name)
			fixture.Close(t, c+" "+p.Name+" after the step", cnnDownload(dev, p.Value.Data), want, tol)
		}
	}
}

// cnnRandn returns n standard normal numbers.
func cnnRandn(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// cnnRandAway returns n standard normal numbers at least gap away from
// zero, so that finite differences of step below gap do not cross a ReLU's
// kink at an input element.
func cnnRandAway(rng *rand.Rand, n int, gap float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		x := rng.NormFloat64()
		for x > -gap && x < gap {
			x = rng.NormFloat64()
		}
		v[i] = float32(x)
	}
	return v
}

// cnnDistinct returns n numbers in [-1, 1) that differ pairwise by at least
// 2/n, in random order, so that max pooling has no near ties.
func cnnDistinct(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i, j := range rng.Perm(n) {
		v[i] = float32(2*float64(j)/float64(n) - 1)
	}
	return v
}

// cnnRNG is a fixed generator for tests.
func cnnRNG(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x6e6e)) }

func TestWorkspaceGetGrowsAndReuses(t *testing.T) {
	dev := cpu.New() // a private device: its Scratch starts empty
	s := nn.Workspace(dev)
	if nn.Workspace(dev) != s {
		t.Fatal("nn.Workspace returned a second Scratch for the same device")
	}
	a := s.Get(100)
	if a.Len() != 100 || s.Size() != 100 {
		t.Fatalf("Get(100): len %d, size %d", a.Len(), s.Size())
	}
	b := s.Get(40)
	if b.Len() != 40 || s.Size() != 100 {
		t.Fatalf("Get(40): len %d, size %d; it must view the 100 already there", b.Len(), s.Size())
	}
	if s.Get(40) != b {
		t.Error("a second Get(40) made a new view")
	}
	// The view shares the memory of the whole buffer.
	cpu.Data(b)[3] = 5
	if cpu.Data(a)[3] != 5 {
		t.Error("Get(40) does not share the memory of Get(100)")
	}
	c := s.Get(300)
	if c.Len() != 300 || s.Size() != 300 {
		t.Fatalf("Get(300): len %d, size %d", c.Len(), s.Size())
	}
	if s.Get(40) == b {
		t.Error("after growing, Get(40) returned a view of the freed buffer")
	}
	if allocs := testing.AllocsPerRun(10, func() { s.Get(40); s.Get(300) }); allocs != 0 {
		t.Errorf("steady-state Get allocates %.0f times", allocs)
	}
	if nn.Workspace(cpu.New()) == s {
		t.Error("two devices share a Scratch")
	}
}
