package nn

import (
	"fmt"
	"math/rand/v2"

	"github.com/macdist/macdist/kernels"
)

// PatchEmbed is timm's ViT PatchEmbed without its optional norm: a Conv2d
// with kernel and stride equal to the patch size cuts the image into
// non-overlapping patches and projects each to dim features; the output
// [B, dim, H/p, W/p] is then flattened and transposed into tokens
// [B, N, dim], N = (H/p)·(W/p), patches in row-major order.
type PatchEmbed struct {
	dev              kernels.Device
	name             string
	inC, dim, patch  int
	proj             *Conv2d
	x                *Tensor
	convOut          *Tensor // proj's output of the last Forward, [B, dim, gh, gw]
	y, dconv         slot
	batch, positions int
}

// NewPatchEmbed returns a patch embedding of inC-channel images into
// dim-dimensional tokens with square patches of side patch. Its parameters
// are name.proj.weight and name.proj.bias, initialised as PyTorch's Conv2d.
func NewPatchEmbed(dev kernels.Device, name string, inC, dim, patch int, rng *rand.Rand) *PatchEmbed {
	if inC <= 0 || dim <= 0 || patch <= 0 {
		panic(fmt.Sprintf("nn: %s: PatchEmbed with %d channels, dimension %d, patch %d",
			layerName(name, "PatchEmbed"), inC, dim, patch))
	}
	cfg := Conv2dConfig{In: inC, Out: dim, Kernel: patch, Stride: patch, Padding: 0, Dilation: 1, Groups: 1, Bias: true}
	return &PatchEmbed{dev: dev, name: name, inC: inC, dim: dim, patch: patch,
		proj: NewConv2d(dev, join(name, "proj"), cfg, rng)}
}

// Forward embeds images x [B, inC, H, W] into tokens [B, (H/p)·(W/p), dim].
// As with PyTorch's convolution, rows and columns that do not fill a patch
// are dropped.
func (p *PatchEmbed) Forward(x *Tensor) *Tensor {
	if len(x.Shape) != 4 || x.Shape[1] != p.inC || x.Shape[2] < p.patch || x.Shape[3] < p.patch {
		shapePanic(layerName(p.name, "PatchEmbed"), x.Shape, shapeStr("B", p.inC, fmt.Sprintf("H≥%d", p.patch), fmt.Sprintf("W≥%d", p.patch)))
	}
	p.x = x
	out := p.proj.Forward(x)
	p.convOut = out
	B, D := out.Shape[0], out.Shape[1]
	N := out.Shape[2] * out.Shape[3]
	p.batch, p.positions = B, N
	shape := [3]int{B, N, D}
	y := p.y.ensure(p.dev, shape[:])
	transposeBatched(p.dev, y.Data, out.Data, B, D, N)
	return y
}

// Backward accumulates the gradients of proj and returns dL/dx.
func (p *PatchEmbed) Backward(dy *Tensor) *Tensor {
	mustForward(layerName(p.name, "PatchEmbed"), p.convOut != nil)
	if !dy.SameShape(p.y.t.Shape) {
		gradPanic(layerName(p.name, "PatchEmbed"), dy.Shape, p.y.t.Shape)
	}
	dconv := p.dconv.ensure(p.dev, p.convOut.Shape)
	transposeBatched(p.dev, dconv.Data, dy.Data, p.batch, p.positions, p.dim)
	return p.proj.Backward(dconv)
}

// SkipInputGrad makes Backward compute proj's gradients only and return
// nil (see InputGradSkipper).
func (p *PatchEmbed) SkipInputGrad(on bool) { p.proj.SkipInputGrad(on) }

// Params returns proj's weight and bias.
func (p *PatchEmbed) Params() []*Param { return p.proj.Params() }

// SetTraining passes the mode on to proj.
func (p *PatchEmbed) SetTraining(on bool) { p.proj.SetTraining(on) }

// Children returns proj.
func (p *PatchEmbed) Children() []Module { return []Module{p.proj} }

// Proj returns the patch projection, the first layer MAC preconditions.
func (p *PatchEmbed) Proj() *Conv2d { return p.proj }

// transposeBatched writes dst[b, c, r] = src[b, r, c] for src of shape
// batch × rows × cols: one CopyStrided where the device is a
// kernels.Permuter. Elsewhere, as a transpose has no contiguous runs for
// Copy2D to move, it takes one strided Copy2D line per element of the two
// shortest axes, the longest axis being the line, which on a device where
// each call is a kernel launch is slow.
func transposeBatched(dev kernels.Device, dst, src kernels.Buffer, batch, rows, cols int) {
	rc := rows * cols
	if p, ok := dev.(kernels.Permuter); ok {
		// Written in order, read across.
		p.CopyStrided(dst, 0, [4]int{0, rc, rows, 1}, src, 0, [4]int{0, rc, 1, cols}, [4]int{1, batch, cols, rows})
		return
	}
	switch {
	case batch >= rows && batch >= cols:
		for r := 0; r < rows; r++ {
			for c := 0; c < cols; c++ {
				dev.Copy2D(dst, c*rows+r, rc, src, r*cols+c, rc, batch, 1)
			}
		}
	case cols >= rows:
		for b := 0; b < batch; b++ {
			for r := 0; r < rows; r++ {
				dev.Copy2D(dst, b*rc+r, rows, src, b*rc+r*cols, 1, cols, 1)
			}
		}
	default:
		for b := 0; b < batch; b++ {
			for c := 0; c < cols; c++ {
				dev.Copy2D(dst, b*rc+c*rows, 1, src, b*rc+c, cols, rows, 1)
			}
		}
	}
}
