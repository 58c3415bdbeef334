package mac

import (
	"fmt"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/nn"
)

// CovarianceAccumulator sums p·pᵀ over every input row p of a Linear or
// Conv2d layer (the im2col patches for a convolution, with a trailing 1 when
// the layer has a bias): what MAC's first-layer rule needs, computed by a
// no-grad pass over the training set before training.
//
// Each batch is reduced on the device in float32 and added on the host in
// float64, so that summing millions of rows loses no precision. With many
// ranks, each accumulates its shard and the sums and row counts are
// all-reduced before SetFirstLayerCovariance.
type CovarianceAccumulator struct {
	dev        kernels.Device
	conv       *nn.Conv2d
	din, d     int
	bias       bool
	part, rsum kernels.Buffer
	host       []float32
	sum        []float64
	rows       float64
}

// NewCovarianceAccumulator returns an accumulator for layer, which must be
// a *nn.Linear or an ungrouped *nn.Conv2d.
func NewCovarianceAccumulator(dev kernels.Device, layer nn.Tapped) (*CovarianceAccumulator, error) {
	c := &CovarianceAccumulator{dev: dev, d: layer.TapDim(), bias: layer.Bias() != nil}
	switch l := layer.(type) {
	case *nn.Linear:
	case *nn.Conv2d:
		if l.Config().Groups > 1 {
			return nil, fmt.Errorf("mac: covariance of grouped convolution %s is not supported", layer.Weight().Name)
		}
		c.conv = l
	default:
		return nil, fmt.Errorf("mac: covariance of %T (%s) is not supported", layer, layer.Weight().Name)
	}
	c.din = c.d - btoi(c.bias)
	c.part, c.rsum = dev.Alloc(c.din*c.din), dev.Alloc(c.din)
	c.host = make([]float32, c.din*c.din)
	c.sum = make([]float64, c.d*c.d)
	return c, nil
}

// Add accumulates the rows of x, a batch of the layer's input.
func (c *CovarianceAccumulator) Add(x *nn.Tensor) {
	d := c.dev
	var rows int
	if c.conv == nil {
		if x.Len()%c.din != 0 {
			panic(fmt.Sprintf("mac: covariance: input %v does not hold rows of %d", x.Shape, c.din))
		}
		rows = x.Len() / c.din
		d.Gemm(true, false, c.din, c.din, rows, 1, x.Data, c.din, x.Data, c.din, 0, c.part, c.din)
		d.ReduceSum(c.rsum, x.Data, 1, rows, c.din, 1, 0)
	} else {
		cfg := c.conv.Config()
		if len(x.Shape) != 4 || x.Shape[1] != cfg.In {
			panic(fmt.Sprintf("mac: covariance: input %v, want [N %d H W]", x.Shape, cfg.In))
		}
		g := kernels.ConvGeom{C: cfg.In, H: x.Shape[2], W: x.Shape[3], KH: cfg.Kernel, KW: cfg.Kernel,
			StrideH: cfg.Stride, StrideW: cfg.Stride, PadH: cfg.Padding, PadW: cfg.Padding,
			DilH: cfg.Dilation, DilW: cfg.Dilation}
		per := g.ColRows() * g.ColCols()
		step := max(1, min(x.Shape[0], nn.MaxWorkspace/per))
		first := true
		for i0 := 0; i0 < x.Shape[0]; i0 += step {
			nimg := min(step, x.Shape[0]-i0)
			col := nn.Workspace(d).Get(nimg * per)
			d.Im2col(col, x.Data, g, i0, nimg)
			for i := range nimg {
				beta := float32(1)
				if first {
					beta, first = 0, false
				}
				cols := g.ColCols()
				d.GemmStrided(false, true, c.din, c.din, cols, 1, col, i*per, cols, 0, col, i*per, cols, 0,
					beta, c.part, 0, c.din, 0, 1)
			}
			beta := float32(1)
			if i0 == 0 {
				beta = 0
			}
			d.ReduceSumMid(c.rsum, col, nimg, c.din, g.ColCols(), 1, beta)
		}
		rows = x.Shape[0] * g.ColCols()
	}
	d.Download(c.host, c.part)
	for i := range c.din {
		for j := range c.din {
			c.sum[i*c.d+j] += float64(c.host[i*c.din+j])
		}
	}
	if c.bias {
		d.Download(c.host[:c.din], c.rsum)
		for i := range c.din {
			c.sum[i*c.d+c.din] += float64(c.host[i])
			c.sum[c.din*c.d+i] += float64(c.host[i])
		}
		c.sum[c.d*c.d-1] += float64(rows)
	}
	c.rows += float64(rows)
}

// Sum returns Σ p·pᵀ (d × d, row-major) and the number of rows summed.
func (c *CovarianceAccumulator) Sum() ([]float64, float64) { return c.sum, c.rows }
