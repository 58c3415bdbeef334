package nn

import "github.com/macdist/macdist/kernels"

// Module is a layer or a network of layers. Forward and Backward come in
// pairs: Backward takes dL/dy for the output of the most recent Forward,
// accumulates the gradients of the module's parameters (as PyTorch does: zero
// them with ZeroGrad between steps) and returns dL/dx.
//
// Outputs are owned by the module and reused by the next call with the same
// input shape, so that a steady-state step allocates nothing: a caller that
// wants to keep an output past the next Forward must copy it.
type Module interface {
	Forward(x *Tensor) *Tensor
	Backward(dy *Tensor) *Tensor
	// Params returns every state_dict entry of the module in PyTorch's order:
	// trainable parameters and buffers such as BatchNorm's running statistics.
	Params() []*Param
	// SetTraining switches between training mode (batch statistics, dropout,
	// taps) and evaluation mode, as PyTorch's train() and eval() do.
	SetTraining(on bool)
}

// Container is a Module made of other modules, in forward order.
type Container interface {
	Module
	Children() []Module
}

// ParamKind says what a parameter is, so that optimizers can treat kinds
// differently (no weight decay on norms and biases, say).
type ParamKind int

const (
	KindWeight    ParamKind = iota // Linear or Conv2d weight
	KindBias                       // Linear or Conv2d bias
	KindNorm                       // scale or shift of a norm layer
	KindEmbedding                  // class token, position embedding
	KindBuffer                     // not trainable: running statistics
)

// Param is one state_dict entry.
type Param struct {
	Name  string // state_dict key, such as "layer1.0.conv1.weight"
	Kind  ParamKind
	Value *Tensor
	Grad  *Tensor // nil for buffers
}

// Trainable reports whether an optimizer updates p.
func (p *Param) Trainable() bool { return p.Kind != KindBuffer }

// Tapped is a layer whose weight MAC preconditions (Linear and Conv2d). While
// its tap is on, every training-mode Forward records ā, the mean of the rows
// of its input: Linear rows are the input's last dimension, Conv2d rows are
// the im2col patches (zero padding included); with a bias a trailing 1 is
// appended. Off by default, and then it costs nothing.
type Tapped interface {
	Module
	Weight() *Param
	Bias() *Param // nil without a bias
	// TapDim is the length of ā: the fan-in, plus one with a bias.
	TapDim() int
	SetTap(on bool)
	// Tap holds ā of the last training-mode Forward while the tap is on.
	Tap() kernels.Buffer
}

// AttentionTapped is implemented by attention layers that can record what
// MAC's value-row rule needs (shared/MAC.md): X̄, the input rows (with the
// trailing 1) averaged over the batch, one per token, and t̄, the attention
// each key token receives, averaged over batch, heads and queries.
type AttentionTapped interface {
	// QKV is the fused projection whose value rows use the rule.
	QKV() Tapped
	SetAttentionTap(on bool)
	// AttentionTap returns X̄ (tokens × QKV().TapDim()) and t̄ (tokens).
	AttentionTap() (xbar, tbar kernels.Buffer, tokens int)
}

// Walk calls fn for m and every module inside it, in forward order.
func Walk(m Module, fn func(Module)) {
	fn(m)
	if c, ok := m.(Container); ok {
		for _, ch := range c.Children() {
			Walk(ch, fn)
		}
	}
}

// ZeroGrad sets every gradient of params to zero.
func ZeroGrad(dev kernels.Device, params []*Param) {
	for _, p := range params {
		if p.Grad != nil {
			dev.Fill(p.Grad.Data, 0)
		}
	}
}

// InputGradSkipper is a layer that can leave dL/dx uncomputed. The first
// layer of a network reads the data, whose gradient nobody wants, and its
// dx is one of the step's larger products (for ResNet-20 on the CPU, the
// first convolution's backward-data pass is 7% of a step).
type InputGradSkipper interface {
	Module
	// SkipInputGrad makes Backward accumulate the parameter gradients only
	// and return nil (on), or compute dx as usual (off, the default).
	SkipInputGrad(on bool)
}

// SkipFirstInputGrad turns dx off in m's first layer in forward order (the
// first child, recursively, of each Container), if that layer is an
// InputGradSkipper, and reports whether it was. m's Backward then returns
// nil. A trainer calls it; a test of a single layer does not and gets dx.
func SkipFirstInputGrad(m Module) bool {
	for {
		if s, ok := m.(InputGradSkipper); ok {
			s.SkipInputGrad(true)
			return true
		}
		c, ok := m.(Container)
		if !ok || len(c.Children()) == 0 {
			return false
		}
		m = c.Children()[0]
	}
}
