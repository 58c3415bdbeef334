package models

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/nn"
)

// Config holds a model's options. New fills every field left at zero from
// the model's Default, so a caller sets only what it changes. Fields that a
// model does not use are ignored.
type Config struct {
	InChannels int // channels of the input images
	ImageSize  int // height and width of the input images, in pixels
	Classes    int // outputs of the classifier

	Depth    int     // layers: 6n+2 for CIFAR ResNets, 6n+4 for WRN, blocks for ViT
	Dim      int     // ViT embedding width
	Heads    int     // ViT attention heads
	Patch    int     // ViT patch size, in pixels
	MLPRatio float64 // ViT MLP hidden width over Dim

	// Stages lists the blocks of each Swin stage; stage s has width Dim·2^s
	// and Heads·2^s heads. Window is the side of Swin's attention windows.
	Stages []int
	Window int

	Width    int     // WRN widen factor; MLP hidden width
	DropRate float32 // WRN dropout between the convolutions of a block
	// DropPath is the stochastic depth rate of the last block of a ViT or
	// Swin (timm's drop_path_rate): block i of n drops its residual
	// branches with probability DropPath·i/(n−1), as timm's linspace.
	DropPath float32
	Seed     uint64 // seed of the initial weights (and of dropout masks)
}

type spec struct {
	def   Config
	build func(b *builder) error
}

var zoo = map[string]spec{
	"mlp":            {Config{InChannels: 1, ImageSize: 28, Classes: 10, Width: 256}, buildMLP},
	"lenet5":         {Config{InChannels: 1, ImageSize: 28, Classes: 10}, buildLeNet5},
	"resnet20":       {Config{InChannels: 3, ImageSize: 32, Classes: 10, Depth: 20}, buildCifarResNet},
	"resnet32":       {Config{InChannels: 3, ImageSize: 32, Classes: 10, Depth: 32}, buildCifarResNet},
	"resnet56":       {Config{InChannels: 3, ImageSize: 32, Classes: 10, Depth: 56}, buildCifarResNet},
	"resnet110":      {Config{InChannels: 3, ImageSize: 32, Classes: 10, Depth: 110}, buildCifarResNet},
	"resnet18":       {Config{InChannels: 3, ImageSize: 224, Classes: 1000, Depth: 18}, buildResNet},
	"resnet34":       {Config{InChannels: 3, ImageSize: 224, Classes: 1000, Depth: 34}, buildResNet},
	"resnet50":       {Config{InChannels: 3, ImageSize: 224, Classes: 1000, Depth: 50}, buildResNet},
	"resnet101":      {Config{InChannels: 3, ImageSize: 224, Classes: 1000, Depth: 101}, buildResNet},
	"resnet152":      {Config{InChannels: 3, ImageSize: 224, Classes: 1000, Depth: 152}, buildResNet},
	"wrn28-10":       {Config{InChannels: 3, ImageSize: 32, Classes: 10, Depth: 28, Width: 10}, buildWideResNet},
	"vit-tiny":       {Config{InChannels: 3, ImageSize: 224, Classes: 1000, Depth: 12, Dim: 192, Heads: 3, Patch: 16, MLPRatio: 4}, buildViT},
	"vit-tiny-cifar": {Config{InChannels: 3, ImageSize: 32, Classes: 10, Depth: 12, Dim: 192, Heads: 3, Patch: 4, MLPRatio: 4}, buildViT},
	"deit-small":     {Config{InChannels: 3, ImageSize: 224, Classes: 1000, Depth: 12, Dim: 384, Heads: 6, Patch: 16, MLPRatio: 4}, buildViT},
	"deit-base":      {Config{InChannels: 3, ImageSize: 224, Classes: 1000, Depth: 12, Dim: 768, Heads: 12, Patch: 16, MLPRatio: 4}, buildViT},
	"swin-tiny": {Config{InChannels: 3, ImageSize: 224, Classes: 1000, Dim: 96, Heads: 3, Patch: 4, MLPRatio: 4,
		Stages: []int{2, 2, 6, 2}, Window: 7}, buildSwin},
}

// Names lists the models New builds, sorted.
func Names() []string {
	names := make([]string, 0, len(zoo))
	for n := range zoo {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func lookup(name string) (spec, error) {
	s, ok := zoo[name]
	if !ok {
		return spec{}, fmt.Errorf("models: unknown model %q (have %s)", name, strings.Join(Names(), ", "))
	}
	return s, nil
}

// Default returns the options of the named model as its original has them.
func Default(name string) (Config, error) {
	s, err := lookup(name)
	if err != nil {
		return Config{}, err
	}
	return s.def, nil
}

// Model is a network of the zoo. It is an nn.Module whose Params are the
// PyTorch original's state_dict, in its order.
type Model struct {
	Name   string
	Config Config // with New's defaults filled in

	root   *nn.Sequential
	params []*nn.Param
	tapped []nn.Tapped
	attn   []nn.AttentionTapped
}

// New builds the named model with cfg, whose zero fields take the model's
// defaults, in training mode.
func New(dev kernels.Device, name string, cfg Config) (*Model, error) {
	s, err := lookup(name)
	if err != nil {
		return nil, err
	}
	cfg = fill(cfg, s.def)
	if cfg.InChannels < 0 || cfg.ImageSize < 0 || cfg.Classes < 0 {
		return nil, fmt.Errorf("models: %s: negative size in %+v", name, cfg)
	}
	// The second PCG word keeps these draws apart from any other generator a
	// caller seeds with the same number.
	b := &builder{dev: dev, cfg: cfg, def: s.def, name: name, rng: rand.New(rand.NewPCG(cfg.Seed, 0x6d6f64656c73))}
	if err := s.build(b); err != nil {
		return nil, err
	}
	m := &Model{Name: name, Config: cfg, root: nn.NewSequential(b.mods...)}
	m.params = m.root.Params()
	if b.firstParams != nil {
		m.params = append(slices.Clone(b.firstParams), withoutParams(m.params, b.firstParams)...)
	}
	seen := map[nn.Module]bool{}
	nn.Walk(m.root, func(mod nn.Module) {
		if seen[mod] {
			return
		}
		seen[mod] = true
		if t, ok := mod.(nn.Tapped); ok {
			m.tapped = append(m.tapped, t)
		}
		if a, ok := mod.(nn.AttentionTapped); ok {
			m.attn = append(m.attn, a)
		}
	})
	m.SetTraining(true)
	// Activations between the layers that know layouts stay in the
	// device's own (see nn.DeviceLayouter); the model's edges are NCHW.
	m.root.SetDeviceLayouts(true)
	return m, nil
}

func fill(c, d Config) Config {
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setInt(&c.InChannels, d.InChannels)
	setInt(&c.ImageSize, d.ImageSize)
	setInt(&c.Classes, d.Classes)
	setInt(&c.Depth, d.Depth)
	setInt(&c.Dim, d.Dim)
	setInt(&c.Heads, d.Heads)
	setInt(&c.Patch, d.Patch)
	setInt(&c.Width, d.Width)
	setInt(&c.Window, d.Window)
	if len(c.Stages) == 0 {
		c.Stages = slices.Clone(d.Stages)
	}
	if c.MLPRatio == 0 {
		c.MLPRatio = d.MLPRatio
	}
	if c.DropRate == 0 {
		c.DropRate = d.DropRate
	}
	if c.DropPath == 0 {
		c.DropPath = d.DropPath
	}
	return c
}

func withoutParams(ps, drop []*nn.Param) []*nn.Param {
	out := make([]*nn.Param, 0, len(ps))
	for _, p := range ps {
		if !slices.Contains(drop, p) {
			out = append(out, p)
		}
	}
	return out
}

// InputShape is the shape of a batch of input images: [batch, C, S, S].
func (m *Model) InputShape(batch int) []int {
	return []int{batch, m.Config.InChannels, m.Config.ImageSize, m.Config.ImageSize}
}

// Forward maps images [N, C, S, S] to logits [N, Classes], owned by the model.
func (m *Model) Forward(x *nn.Tensor) *nn.Tensor {
	c := m.Config
	if len(x.Shape) != 4 || x.Shape[0] < 1 || x.Shape[1] != c.InChannels || x.Shape[2] != c.ImageSize || x.Shape[3] != c.ImageSize {
		panic(fmt.Sprintf("models: %s: input %v, want [N %d %d %d]", m.Name, x.Shape, c.InChannels, c.ImageSize, c.ImageSize))
	}
	return m.root.Forward(x)
}

// Backward takes dL/dlogits, accumulates every parameter's gradient and
// returns dL/dx.
func (m *Model) Backward(dy *nn.Tensor) *nn.Tensor { return m.root.Backward(dy) }

// Params returns the state_dict entries in the PyTorch original's order.
func (m *Model) Params() []*nn.Param { return m.params }

// SetBackwardHook makes Backward report each layer as its gradients become
// final (see nn.BackwardHooker).
func (m *Model) SetBackwardHook(fn func(nn.Module)) { m.root.SetBackwardHook(fn) }

// SetTraining switches every layer between training and evaluation mode.
func (m *Model) SetTraining(on bool) { m.root.SetTraining(on) }

// SetDeviceLayouts lets the model keep activations in its device's own
// layout between the layers that know it (on, New's default) or keeps
// them in NCHW (off); see nn.DeviceLayouter. Inputs, logits and gradients
// are NCHW either way.
func (m *Model) SetDeviceLayouts(on bool) { m.root.SetDeviceLayouts(on) }

// Children returns the top-level layers in forward order.
func (m *Model) Children() []nn.Module { return m.root.Children() }

// Tapped returns the layers MAC preconditions (every Linear and Conv2d), in
// the order nn.Walk visits them: forward order, a block's shortcut after its
// residual branch.
func (m *Model) Tapped() []nn.Tapped { return m.tapped }

// Attention returns the attention layers, first block first (none outside
// the ViTs).
func (m *Model) Attention() []nn.AttentionTapped { return m.attn }

// NumParams counts the trainable parameters' elements.
func (m *Model) NumParams() int {
	n := 0
	for _, p := range m.params {
		if p.Trainable() {
			n += p.Value.Len()
		}
	}
	return n
}

// builder collects a model's layers in forward order.
type builder struct {
	dev  kernels.Device
	cfg  Config
	def  Config
	name string
	rng  *rand.Rand
	mods []nn.Module
	// firstParams go first in the state_dict although their layer does not
	// run first: a ViT's cls_token and pos_embed, which timm registers on
	// the model itself.
	firstParams []*nn.Param
}

func (b *builder) add(mods ...nn.Module) { b.mods = append(b.mods, mods...) }

func (b *builder) errorf(format string, args ...any) error {
	return fmt.Errorf("models: %s: "+format, append([]any{b.name}, args...)...)
}

func (b *builder) linear(name string, in, out int) *nn.Linear {
	return nn.NewLinear(b.dev, name, in, out, true, b.rng)
}

func (b *builder) conv(name string, in, out, k, stride, pad int, bias bool) *nn.Conv2d {
	return nn.NewConv2d(b.dev, name, nn.Conv2dConfig{In: in, Out: out, Kernel: k, Stride: stride, Padding: pad, Bias: bias}, b.rng)
}

func buildMLP(b *builder) error {
	c := b.cfg
	if c.Width < 1 {
		return b.errorf("hidden width %d", c.Width)
	}
	in := c.InChannels * c.ImageSize * c.ImageSize
	b.add(nn.NewFlatten(b.dev),
		b.linear("fc1", in, c.Width), nn.NewReLU(b.dev),
		b.linear("fc2", c.Width, c.Width), nn.NewReLU(b.dev),
		b.linear("fc3", c.Width, c.Classes))
	return nil
}

func buildLeNet5(b *builder) error {
	c := b.cfg
	// conv1 keeps the size (padding 2), pool halves it, conv2 (5×5, no
	// padding) takes 4, pool halves again.
	s := (c.ImageSize/2 - 4) / 2
	if s < 1 {
		return b.errorf("image size %d is too small (at least 12 px)", c.ImageSize)
	}
	d := b.dev
	b.add(b.conv("conv1", c.InChannels, 6, 5, 1, 2, true), nn.NewReLU(d), nn.NewMaxPool2d(d, 2, 2, 0),
		b.conv("conv2", 6, 16, 5, 1, 0, true), nn.NewReLU(d), nn.NewMaxPool2d(d, 2, 2, 0),
		nn.NewFlatten(d),
		b.linear("fc1", 16*s*s, 120), nn.NewReLU(d),
		b.linear("fc2", 120, 84), nn.NewReLU(d),
		b.linear("fc3", 84, c.Classes))
	return nil
}

// buildCifarResNet is He et al.'s ResNet-(6n+2) for 32 px images: three
// stages of n BasicBlocks at 16, 32 and 64 channels.
func buildCifarResNet(b *builder) error {
	c := b.cfg
	if c.Depth < 8 || (c.Depth-2)%6 != 0 {
		return b.errorf("depth %d, want 6n+2 with n ≥ 1", c.Depth)
	}
	n := (c.Depth - 2) / 6
	d := b.dev
	b.add(b.conv("conv1", c.InChannels, 16, 3, 1, 1, false), nn.NewBatchNorm2d(d, "bn1", 16), nn.NewReLU(d))
	in := 16
	for stage, width := range []int{16, 32, 64} {
		for i := range n {
			stride := 1
			if i == 0 && stage > 0 {
				stride = 2
			}
			b.add(nn.NewBasicBlock(d, fmt.Sprintf("layer%d.%d", stage+1, i), in, width, stride, b.rng))
			in = width
		}
	}
	b.add(nn.NewGlobalAvgPool2d(d), nn.NewFlatten(d), b.linear("fc", 64, c.Classes))
	// akamaster's _weights_init: kaiming_normal_ (fan in, gain √2) on every
	// Conv2d and Linear weight; Linear biases and BatchNorms keep PyTorch's
	// defaults.
	b.eachWeight(func(w *nn.Param, bias *nn.Param, conv bool) {
		b.normal(w, math.Sqrt(2/float64(fanIn(w))))
	})
	return nil
}

// buildResNet is torchvision's resnet18, 34, 50, 101 or 152.
func buildResNet(b *builder) error {
	c := b.cfg
	var blocks []int
	bottleneck := false
	switch b.name {
	case "resnet18":
		blocks = []int{2, 2, 2, 2}
	case "resnet34":
		blocks = []int{3, 4, 6, 3}
	case "resnet50":
		blocks, bottleneck = []int{3, 4, 6, 3}, true
	case "resnet101":
		blocks, bottleneck = []int{3, 4, 23, 3}, true
	case "resnet152":
		blocks, bottleneck = []int{3, 8, 36, 3}, true
	}
	if want := b.def.Depth; c.Depth != want {
		return b.errorf("depth %d: torchvision's %s has no depth option (want %d)", c.Depth, b.name, want)
	}
	d := b.dev
	b.add(b.conv("conv1", c.InChannels, 64, 7, 2, 3, false), nn.NewBatchNorm2d(d, "bn1", 64), nn.NewReLU(d),
		nn.NewMaxPool2d(d, 3, 2, 1))
	in := 64
	for stage, n := range blocks {
		width := 64 << stage
		for i := range n {
			stride := 1
			if i == 0 && stage > 0 {
				stride = 2
			}
			name := fmt.Sprintf("layer%d.%d", stage+1, i)
			if bottleneck {
				b.add(nn.NewBottleneck(d, name, in, width, stride, b.rng))
				in = width * nn.BottleneckExpansion
			} else {
				b.add(nn.NewBasicBlock(d, name, in, width, stride, b.rng))
				in = width
			}
		}
	}
	b.add(nn.NewGlobalAvgPool2d(d), nn.NewFlatten(d), b.linear("fc", in, c.Classes))
	// torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu") on
	// convolutions, BatchNorm 1 and 0, fc left at PyTorch's default.
	b.eachWeight(func(w *nn.Param, bias *nn.Param, conv bool) {
		if conv {
			b.normal(w, math.Sqrt(2/float64(fanOut(w))))
		}
	})
	return nil
}

// buildWideResNet is WRN-depth-width as xternalz's WideResNet-pytorch: a
// 3×3 convolution to 16 channels, three NetworkBlocks of (depth−4)/6
// pre-activation blocks at 16·k, 32·k and 64·k channels, then BatchNorm,
// ReLU, global average pooling and fc.
func buildWideResNet(b *builder) error {
	c := b.cfg
	if c.Depth < 10 || (c.Depth-4)%6 != 0 {
		return b.errorf("depth %d, want 6n+4 with n ≥ 1", c.Depth)
	}
	if c.Width < 1 {
		return b.errorf("widen factor %d", c.Width)
	}
	if c.DropRate < 0 || c.DropRate >= 1 {
		return b.errorf("dropout rate %g, want [0, 1)", c.DropRate)
	}
	n := (c.Depth - 4) / 6
	d := b.dev
	b.add(b.conv("conv1", c.InChannels, 16, 3, 1, 1, false))
	in := 16
	for stage, base := range []int{16, 32, 64} {
		out := base * c.Width
		for i := range n {
			stride := 1
			if i == 0 && stage > 0 {
				stride = 2
			}
			b.add(nn.NewWideBlock(d, fmt.Sprintf("block%d.layer.%d", stage+1, i), in, out, stride, c.DropRate, b.rng))
			in = out
		}
	}
	// xternalz pools with avg_pool2d(out, 8), which is global at 32 px;
	// global pooling keeps other sizes working.
	b.add(nn.NewBatchNorm2d(d, "bn1", in), nn.NewReLU(d), nn.NewGlobalAvgPool2d(d), nn.NewFlatten(d),
		b.linear("fc", in, c.Classes))
	// xternalz: convolutions N(0, 2/(k·k·out)), BatchNorm 1 and 0, Linear
	// biases 0 and weights at PyTorch's default.
	b.eachWeight(func(w *nn.Param, bias *nn.Param, conv bool) {
		if conv {
			b.normal(w, math.Sqrt(2/float64(fanOut(w))))
		} else if bias != nil {
			b.dev.Fill(bias.Value.Data, 0)
		}
	})
	return nil
}

// buildViT is timm's VisionTransformer with a class token, as DeiT trains
// it: patch_embed, cls_token and pos_embed, Depth blocks, norm, and a head
// on the class token.
func buildViT(b *builder) error {
	c := b.cfg
	switch {
	case c.Patch < 1 || c.ImageSize%c.Patch != 0:
		return b.errorf("image size %d is not a multiple of the patch size %d", c.ImageSize, c.Patch)
	case c.Dim < 1 || c.Heads < 1 || c.Dim%c.Heads != 0:
		return b.errorf("width %d does not split into %d heads", c.Dim, c.Heads)
	case c.Depth < 1:
		return b.errorf("depth %d", c.Depth)
	case int(float64(c.Dim)*c.MLPRatio) < 1:
		return b.errorf("MLP ratio %g", c.MLPRatio)
	case !(c.DropPath >= 0 && c.DropPath < 1):
		return b.errorf("drop path rate %g, want [0, 1)", c.DropPath)
	}
	d := b.dev
	g := c.ImageSize / c.Patch
	tokens := nn.NewTokenEmbed(d, "", g*g, c.Dim, b.rng)
	b.add(nn.NewPatchEmbed(d, "patch_embed", c.InChannels, c.Dim, c.Patch, b.rng), tokens)
	b.firstParams = tokens.Params()
	blocks := make([]*nn.ViTBlock, c.Depth)
	for i := range c.Depth {
		blocks[i] = nn.NewViTBlock(d, fmt.Sprintf("blocks.%d", i), c.Dim, c.Heads, c.MLPRatio, b.rng)
		b.add(blocks[i])
	}
	b.add(nn.NewLayerNorm(d, "norm", c.Dim, 1e-6), nn.NewTakeToken(d, 0), b.linear("head", c.Dim, c.Classes))
	// timm's init_weights_vit_timm: every Linear trunc_normal_(std=.02) with
	// zero bias; LayerNorms 1 and 0; the patch projection keeps PyTorch's
	// Conv2d default; cls_token and pos_embed as TokenEmbed draws them.
	b.truncNormalLinears(0.02)
	setDropPaths(b, c.DropPath, blocks)
	return nil
}

// dropPathRate is block i's stochastic depth rate out of n blocks: timm's
// torch.linspace(0, rate, n)[i], computed as torchvision does (rate·i/(n−1)).
// truncNormalLinears draws every Linear weight from trunc_normal_(std)
// and zeroes its bias, as timm's and torchvision's transformers initialise
// them; convolutions keep PyTorch's default.
func (b *builder) truncNormalLinears(std float64) {
	b.eachWeight(func(w *nn.Param, bias *nn.Param, conv bool) {
		if conv {
			return
		}
		b.truncNormal(w, std)
		if bias != nil {
			b.dev.Fill(bias.Value.Data, 0)
		}
	})
}

// setDropPaths gives block i of n the drop rate dropPathRate(rate, i, n).
// The masks' seeds are drawn after the weights, so that a rate of 0
// leaves every weight as it was.
func setDropPaths[B interface{ SetDropPath(float32, uint64) }](b *builder, rate float32, blocks []B) {
	for i, blk := range blocks {
		if p := dropPathRate(rate, i, len(blocks)); p > 0 {
			blk.SetDropPath(p, b.rng.Uint64())
		}
	}
}

func dropPathRate(rate float32, i, n int) float32 {
	if n < 2 {
		return 0
	}
	return float32(float64(rate) * float64(i) / float64(n-1))
}

// buildSwin is torchvision's SwinTransformer (swin_t at the defaults):
// features.0 embeds 4 × 4 patches (convolution, channels last, LayerNorm),
// features.1, 3, 5, 7 are the stages of Swin blocks, their odd blocks
// shifted by half a window, features.2, 4, 6 merge patches, then norm,
// average pooling over positions and head.
func buildSwin(b *builder) error {
	c := b.cfg
	switch {
	case c.Depth != 0:
		return b.errorf("depth %d: Swin's depth is Config.Stages (%v)", c.Depth, c.Stages)
	case c.Patch < 1 || c.ImageSize%c.Patch != 0:
		return b.errorf("image size %d is not a multiple of the patch size %d", c.ImageSize, c.Patch)
	case c.Dim < 1 || c.Heads < 1 || c.Dim%c.Heads != 0:
		return b.errorf("width %d does not split into %d heads", c.Dim, c.Heads)
	case c.Window < 1:
		return b.errorf("window %d", c.Window)
	case len(c.Stages) == 0 || slices.Min(c.Stages) < 1:
		return b.errorf("stages %v, want at least one of at least one block", c.Stages)
	case int(float64(c.Dim)*c.MLPRatio) < 1:
		return b.errorf("MLP ratio %g", c.MLPRatio)
	case !(c.DropPath >= 0 && c.DropPath < 1):
		return b.errorf("drop path rate %g, want [0, 1)", c.DropPath)
	}
	res := c.ImageSize / c.Patch
	if unit := c.Window << (len(c.Stages) - 1); res%unit != 0 {
		return b.errorf("image size %d: every stage's map must be a multiple of the window %d (image size a multiple of patch·window·2^(stages−1) = %d)",
			c.ImageSize, c.Window, c.Patch*unit)
	}
	d := b.dev
	b.add(b.conv("features.0.0", c.InChannels, c.Dim, c.Patch, c.Patch, 0, true), nn.NewChannelsLast(d),
		nn.NewLayerNorm(d, "features.0.2", c.Dim, 1e-5))
	var blocks []*nn.SwinBlock
	dim, heads := c.Dim, c.Heads
	for s, n := range c.Stages {
		for i := range n {
			shift := 0
			if i%2 == 1 {
				shift = c.Window / 2
			}
			blk := nn.NewSwinBlock(d, fmt.Sprintf("features.%d.%d", 2*s+1, i), dim, heads, c.Window, shift, c.MLPRatio, b.rng)
			blocks = append(blocks, blk)
			b.add(blk)
		}
		if s < len(c.Stages)-1 {
			b.add(nn.NewPatchMerging(d, fmt.Sprintf("features.%d", 2*s+2), dim, b.rng))
			dim, heads = 2*dim, 2*heads
		}
	}
	b.add(nn.NewLayerNorm(d, "norm", dim, 1e-5), nn.NewMeanTokens(d), b.linear("head", dim, c.Classes))
	// torchvision: every Linear trunc_normal_(std=.02) with zero bias (this
	// overrides the blocks' xavier init of the MLPs), the bias tables
	// trunc_normal_(std=.02), LayerNorms 1 and 0, the patch convolution
	// PyTorch's default.
	b.truncNormalLinears(0.02)
	setDropPaths(b, c.DropPath, blocks)
	return nil
}

// eachWeight calls fn for every Linear and Conv2d built so far, in forward
// order, with its weight and bias (nil without one).
func (b *builder) eachWeight(fn func(w, bias *nn.Param, conv bool)) {
	seen := map[nn.Module]bool{}
	for _, m := range b.mods {
		nn.Walk(m, func(mod nn.Module) {
			if seen[mod] {
				return
			}
			seen[mod] = true
			switch l := mod.(type) {
			case *nn.Conv2d:
				fn(l.Weight(), l.Bias(), true)
			case *nn.Linear:
				fn(l.Weight(), l.Bias(), false)
			}
		})
	}
}

// normal overwrites p with draws from N(0, std²).
func (b *builder) normal(p *nn.Param, std float64) {
	v := make([]float32, p.Value.Len())
	for i := range v {
		v[i] = float32(b.rng.NormFloat64() * std)
	}
	b.dev.Upload(p.Value.Data, v)
}

// truncNormal overwrites p with draws from N(0, std²) conditioned on
// [−2, 2], PyTorch's trunc_normal_ with its default absolute bounds.
func (b *builder) truncNormal(p *nn.Param, std float64) {
	v := make([]float32, p.Value.Len())
	for i := range v {
		x := b.rng.NormFloat64() * std
		for math.Abs(x) > 2 {
			x = b.rng.NormFloat64() * std
		}
		v[i] = float32(x)
	}
	b.dev.Upload(p.Value.Data, v)
}

// fanIn is PyTorch's fan in of a weight: its size over the first dimension.
func fanIn(w *nn.Param) int { return w.Value.Len() / w.Value.Shape[0] }

// fanOut is PyTorch's fan out: the first dimension times the kernel size.
func fanOut(w *nn.Param) int {
	s := w.Value.Shape
	return w.Value.Len() / s[1]
}
