package nn

import (
	"fmt"
	"math"

	"github.com/macdist/macdist/kernels"
)

// SoftTargetCrossEntropy is timm's SoftTargetCrossEntropy: the mean over
// rows of −Σ_j t_j·log softmax(x)_j, for target distributions t (mixup's and
// CutMix's mixed, label-smoothed one-hots). Its gradient is
// (softmax(x) − t)/rows, as every target row sums to 1.
//
// The log-softmax is taken on the device and the rest on the host, in
// float64: the rows × classes values cross once each way per step, as the
// loss and accuracy have to anyway.
type SoftTargetCrossEntropy struct {
	dev     kernels.Device
	logp    slot
	dlogits slot
	host    []float32
	have    bool
}

// NewSoftTargetCrossEntropy returns the loss on dev.
func NewSoftTargetCrossEntropy(dev kernels.Device) *SoftTargetCrossEntropy {
	return &SoftTargetCrossEntropy{dev: dev}
}

// Forward returns the mean loss of logits [..., classes] against targets
// (rows × classes, row-major) and how many rows' arg-max equals their
// target's (the dominant label of a mixed pair). It synchronises the device.
func (l *SoftTargetCrossEntropy) Forward(logits *Tensor, targets []float32) (loss float64, correct int) {
	nd := len(logits.Shape)
	if nd == 0 {
		shapePanic("SoftTargetCrossEntropy", logits.Shape, "[N classes]")
	}
	cols := logits.Shape[nd-1]
	rows := logits.Len() / max(cols, 1)
	if cols == 0 || len(targets) != rows*cols {
		panic(fmt.Sprintf("nn: SoftTargetCrossEntropy: logits %v, but %d target values", logits.Shape, len(targets)))
	}
	lp := l.logp.ensure(l.dev, logits.Shape)
	dl := l.dlogits.ensure(l.dev, logits.Shape)
	l.dev.LogSoftmax(lp.Data, logits.Data, rows, cols)
	if cap(l.host) < rows*cols {
		l.host = make([]float32, rows*cols)
	}
	h := l.host[:rows*cols]
	l.dev.Download(h, lp.Data)
	inv := 1 / float64(rows)
	var sum float64
	for r := range rows {
		lr, tr := h[r*cols:(r+1)*cols], targets[r*cols:(r+1)*cols]
		best, bestT := 0, 0
		bestV := lr[0]
		for j := range cols {
			sum -= float64(tr[j]) * float64(lr[j])
			if lr[j] > bestV {
				best, bestV = j, lr[j]
			}
			if tr[j] > tr[bestT] {
				bestT = j
			}
			lr[j] = float32((math.Exp(float64(lr[j])) - float64(tr[j])) * inv)
		}
		if best == bestT {
			correct++
		}
	}
	l.dev.Upload(dl.Data, h)
	l.have = true
	return sum * inv, correct
}

// Backward returns dL/dlogits for the last Forward, owned by l.
func (l *SoftTargetCrossEntropy) Backward() *Tensor {
	mustForward("SoftTargetCrossEntropy", l.have)
	return &l.dlogits.t
}
