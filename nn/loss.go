package nn

import (
	"fmt"

	"github.com/macdist/macdist/kernels"
)

// CrossEntropyLoss is PyTorch's nn.CrossEntropyLoss with mean reduction and
// optional label smoothing, over logits [..., classes] whose leading
// dimensions are the rows. Forward computes the loss and its gradient in
// one pass; Backward returns that gradient.
type CrossEntropyLoss struct {
	dev       kernels.Device
	Smoothing float32
	dlogits   slot
	have      bool
}

// NewCrossEntropyLoss returns a CrossEntropyLoss with the given label
// smoothing (0 for none).
func NewCrossEntropyLoss(dev kernels.Device, smoothing float32) *CrossEntropyLoss {
	if smoothing < 0 || smoothing > 1 {
		panic(fmt.Sprintf("nn: CrossEntropyLoss: smoothing %g, want [0, 1]", smoothing))
	}
	return &CrossEntropyLoss{dev: dev, Smoothing: smoothing}
}

// Forward returns the mean loss over the rows of logits and how many rows'
// arg-max equals their label. It synchronises the device.
func (l *CrossEntropyLoss) Forward(logits *Tensor, labels []int32) (loss float64, correct int) {
	nd := len(logits.Shape)
	if nd == 0 {
		shapePanic("CrossEntropyLoss", logits.Shape, "[N classes]")
	}
	cols := logits.Shape[nd-1]
	rows := logits.Len() / max(cols, 1)
	if rows != len(labels) || cols == 0 {
		panic(fmt.Sprintf("nn: CrossEntropyLoss: logits %v hold %d rows, but %d labels were given", logits.Shape, rows, len(labels)))
	}
	dl := l.dlogits.ensure(l.dev, logits.Shape)
	l.have = true
	return l.dev.CrossEntropy(dl.Data, logits.Data, labels, rows, cols, l.Smoothing)
}

// Backward returns dL/dlogits for the last Forward, owned by l.
func (l *CrossEntropyLoss) Backward() *Tensor {
	mustForward("CrossEntropyLoss", l.have)
	return &l.dlogits.t
}
