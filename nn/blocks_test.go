package nn_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/macdist/macdist/internal/fixture"
	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/nntest"
)

// cnnBlock builds the block a fixture case describes, under the prefix
// "block" as the generator's wrapper names it.
func cnnBlock(t *testing.T, dev kernels.Device, raw json.RawMessage) nn.Module {
	t.Helper()
	var cfg struct {
		Kind            string
		In, Out, Stride int
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	rng := cnnRNG(1)
	switch cfg.Kind {
	case "basic":
		return nn.NewBasicBlock(dev, "block", cfg.In, cfg.Out, cfg.Stride, rng)
	case "bottleneck":
		return nn.NewBottleneck(dev, "block", cfg.In, cfg.Out, cfg.Stride, rng)
	case "wide":
		return nn.NewWideBlock(dev, "block", cfg.In, cfg.Out, cfg.Stride, 0, rng)
	case "sequential":
		// PyTorch's nn.Sequential names its children 0, 1, ...
		return nn.NewSequential(
			nn.NewConv2d(dev, "0", nn.Conv2dConfig{In: 3, Out: 4, Kernel: 3, Padding: 1, Bias: true}, rng),
			nn.NewReLU(dev),
			nn.NewBatchNorm2d(dev, "2", 4),
			nn.NewMaxPool2d(dev, 2, 0, 0),
			nn.NewFlatten(dev),
			nn.NewLinear(dev, "5", 4*3*2, 5, true, rng),
		)
	}
	t.Fatalf("unknown block kind %q", cfg.Kind)
	return nil
}

// TestBlocksParity compares BasicBlock, Bottleneck and WideBlock (with and
// without projection shortcuts, training and evaluation mode) and a small
// Sequential network with PyTorch. Tolerance 1e-4: each is a handful of
// layers, and BatchNorm's batch statistics sum over the whole batch.
func TestBlocksParity(t *testing.T) {
	f := fixture.Load(t, "layers_cnn_blocks")
	cases, metas := cnnCases(t, f)
	for path, dev := range cnnPaths() {
		for _, c := range cases {
			t.Run(path+"/"+c, func(t *testing.T) {
				cnnParityOn(t, dev, f, c, metas[c], cnnBlock(t, dev, metas[c].Cfg), 1e-4)
			})
		}
	}
}

func TestBlocksGradCheck(t *testing.T) {
	dev := cnnDevice()
	for _, tc := range []struct {
		name  string
		build func() nn.Module
		shape []int
	}{
		{"basic_identity", func() nn.Module { return nn.NewBasicBlock(dev, "b", 3, 3, 1, cnnRNG(20)) }, []int{2, 3, 5, 5}},
		{"basic_downsample", func() nn.Module { return nn.NewBasicBlock(dev, "b", 3, 4, 2, cnnRNG(20)) }, []int{2, 3, 5, 5}},
		{"bottleneck", func() nn.Module { return nn.NewBottleneck(dev, "b", 4, 2, 2, cnnRNG(20)) }, []int{2, 4, 5, 5}},
		{"wide_identity", func() nn.Module { return nn.NewWideBlock(dev, "b", 3, 3, 1, 0, cnnRNG(20)) }, []int{2, 3, 5, 5}},
		{"wide_shortcut", func() nn.Module { return nn.NewWideBlock(dev, "b", 3, 4, 2, 0, cnnRNG(20)) }, []int{2, 3, 5, 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.build()
			nn.HashInit(dev, m.Params(), 21)
			x := cnnRandn(cnnRNG(22), nn.Numel(tc.shape))
			// Training mode, so BatchNorm uses batch statistics. The ReLUs
			// inside see values no input choice keeps off their kinks,
			// and batch statistics of a few elements make them sensitive:
			// at a step of 1e-3 crossings still cost up to 0.2 relative
			// error on some parameters, at 1e-4 none is left and float32
			// rounding of L costs at most about 5e-3.
			nntest.GradCheck{Eps: 1e-4, Tol: 2e-2, Samples: 30, Seed: 23}.Run(t, dev, m, x, tc.shape)
		})
	}
}

// TestBlocksStructure checks the shortcut choice, the names, Children for
// nn.Walk, and that SetTraining reaches every layer.
func TestBlocksStructure(t *testing.T) {
	dev := cnnDevice()
	rng := cnnRNG(24)
	names := func(m nn.Module) string {
		var s []string
		for _, p := range m.Params() {
			s = append(s, p.Name)
		}
		return strings.Join(s, " ")
	}
	bb := nn.NewBasicBlock(dev, "layer2.0", 16, 32, 2, rng)
	if bb.Downsample == nil {
		t.Error("BasicBlock 16→32 stride 2 has no downsample")
	}
	if nn.NewBasicBlock(dev, "x", 16, 16, 1, rng).Downsample != nil {
		t.Error("BasicBlock 16→16 stride 1 has a downsample")
	}
	if nn.NewBasicBlock(dev, "x", 16, 16, 2, rng).Downsample == nil {
		t.Error("BasicBlock 16→16 stride 2 has no downsample")
	}
	want := "layer2.0.conv1.weight layer2.0.bn1.weight layer2.0.bn1.bias layer2.0.bn1.running_mean " +
		"layer2.0.bn1.running_var layer2.0.bn1.num_batches_tracked layer2.0.conv2.weight layer2.0.bn2.weight " +
		"layer2.0.bn2.bias layer2.0.bn2.running_mean layer2.0.bn2.running_var layer2.0.bn2.num_batches_tracked " +
		"layer2.0.downsample.0.weight layer2.0.downsample.1.weight layer2.0.downsample.1.bias " +
		"layer2.0.downsample.1.running_mean layer2.0.downsample.1.running_var layer2.0.downsample.1.num_batches_tracked"
	if got := names(bb); got != want {
		t.Errorf("BasicBlock names\n got %s\nwant %s", got, want)
	}
	bt := nn.NewBottleneck(dev, "layer1.0", 64, 64, 1, rng)
	if bt.Downsample == nil || !bt.Conv3.Weight().Value.SameShape([]int{256, 64, 1, 1}) {
		t.Error("Bottleneck 64→256: no downsample or wrong conv3")
	}
	if nn.NewBottleneck(dev, "x", 256, 64, 1, rng).Downsample != nil {
		t.Error("Bottleneck 256→256 stride 1 has a downsample")
	}
	// v1.5: the stride sits on the 3×3 convolution.
	if s := nn.NewBottleneck(dev, "x", 256, 128, 2, rng); s.Conv1.Config().Stride != 1 || s.Conv2.Config().Stride != 2 {
		t.Error("Bottleneck stride is not on conv2 (ResNet v1.5)")
	}
	wb := nn.NewWideBlock(dev, "block1.layer.0", 16, 160, 1, 0.3, rng)
	if wb.ConvShortcut == nil || names(wb) != "block1.layer.0.bn1.weight block1.layer.0.bn1.bias block1.layer.0.bn1.running_mean "+
		"block1.layer.0.bn1.running_var block1.layer.0.bn1.num_batches_tracked block1.layer.0.conv1.weight "+
		"block1.layer.0.bn2.weight block1.layer.0.bn2.bias block1.layer.0.bn2.running_mean block1.layer.0.bn2.running_var "+
		"block1.layer.0.bn2.num_batches_tracked block1.layer.0.conv2.weight block1.layer.0.convShortcut.weight" {
		t.Errorf("WideBlock names: %s", names(wb))
	}
	msg := cnnPanics(t, func() { nn.NewWideBlock(dev, "w", 16, 16, 2, 0, rng) })
	cnnWantMsg(t, msg, "w", "stride 2")

	// nn.Walk finds every tapped layer, in forward order.
	var tapped []string
	nn.Walk(bb, func(m nn.Module) {
		if tp, ok := m.(nn.Tapped); ok {
			tapped = append(tapped, tp.Weight().Name)
		}
	})
	if got := strings.Join(tapped, " "); got != "layer2.0.conv1.weight layer2.0.conv2.weight layer2.0.downsample.0.weight" {
		t.Errorf("Walk found tapped layers %s", got)
	}
	// SetTraining(false) reaches the dropout inside a WideBlock: its
	// Forward is then the identity, and the seed stays.
	seed := wb.Drop.Seed
	wb.SetTraining(false)
	wb.Forward(nn.NewTensor(dev, 1, 16, 4, 4))
	if wb.Drop.Seed != seed {
		t.Error("SetTraining(false) did not reach the WideBlock's dropout")
	}
}

// TestWideBlockDropoutTrains checks that a WideBlock with dropout uses it
// in training mode: two Forwards of one input differ.
func TestWideBlockDropoutTrains(t *testing.T) {
	dev := cnnDevice()
	wb := nn.NewWideBlock(dev, "b", 4, 4, 1, 0.5, cnnRNG(25))
	x := cnnUpload(dev, cnnRandn(cnnRNG(26), 2*4*5*5), []int{2, 4, 5, 5})
	y1 := cnnDownload(dev, wb.Forward(x).Data)
	y2 := cnnDownload(dev, wb.Forward(x).Data)
	if fixture.RelErr(y1, y2) == 0 {
		t.Error("two training Forwards with dropout 0.5 agree")
	}
}

func TestBasicBlockNoAllocs(t *testing.T) {
	dev := cnnDevice()
	rng := cnnRNG(27)
	for _, tc := range []struct{ in, out, stride int }{{8, 8, 1}, {8, 16, 2}} {
		b := nn.NewBasicBlock(dev, "b", tc.in, tc.out, tc.stride, rng)
		nn.Walk(b, func(m nn.Module) {
			if tp, ok := m.(nn.Tapped); ok {
				tp.SetTap(true)
			}
		})
		x := cnnUpload(dev, cnnRandn(rng, 4*tc.in*8*8), []int{4, tc.in, 8, 8})
		y := b.Forward(x)
		dy := cnnUpload(dev, cnnRandn(rng, y.Len()), y.Shape)
		step := func() { b.Forward(x); b.Backward(dy) }
		step()
		if a := testing.AllocsPerRun(10, step); a != 0 {
			t.Errorf("%d→%d: steady-state Forward+Backward allocates %.0f times", tc.in, tc.out, a)
		}
	}
}

func TestSequential(t *testing.T) {
	dev := cnnDevice()
	rng := cnnRNG(28)
	l1 := nn.NewLinear(dev, "0", 4, 3, true, rng)
	drop := nn.NewDropout(dev, 0.5, 1)
	l2 := nn.NewLinear(dev, "2", 3, 2, false, rng)
	s := nn.NewSequential(l1, drop, l2)
	var names []string
	for _, p := range s.Params() {
		names = append(names, p.Name)
	}
	if got := strings.Join(names, " "); got != "0.weight 0.bias 2.weight" {
		t.Errorf("Params %s", got)
	}
	if len(s.Children()) != 3 || s.Children()[1] != drop {
		t.Error("Children are not the modules in order")
	}
	s.SetTraining(false)
	x := nn.NewTensor(dev, 5, 4)
	s.Forward(x)
	if drop.Seed != 1 {
		t.Error("SetTraining(false) did not reach the dropout")
	}
	s.SetTraining(true)
	y := s.Forward(x)
	if drop.Seed != 2 || !y.SameShape([]int{5, 2}) {
		t.Errorf("training Forward: seed %d, output %v", drop.Seed, y.Shape)
	}
	if dx := s.Backward(nn.NewTensor(dev, 5, 2)); !dx.SameShape([]int{5, 4}) {
		t.Errorf("Backward gives %v", dx.Shape)
	}
	shape := []int{3, 4}
	s.SetTraining(false)
	nntest.GradCheck{Eps: 5e-2, Tol: 1e-2, Seed: 29}.Run(t, dev, s, cnnRandn(rng, 12), shape)
}
