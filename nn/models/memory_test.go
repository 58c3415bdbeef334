package models_test

import (
	"runtime"
	"testing"

	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/models"
)

// stepMemory builds a model on a fresh CPU device, runs one training step
// at the given batch, and returns the bytes the model, its step and its
// device's pool then hold on the Go heap (a CPU device's buffers live
// there), its parameters' share (values and gradients), and the pool's.
func stepMemory(t *testing.T, name string, cfg models.Config, batch int) (held, params, lent int64) {
	t.Helper()
	heap := func() int64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	before := heap()
	dev := cpu.New()
	m := mustNew(t, dev, name, cfg)
	nn.SkipFirstInputGrad(m) // as the trainer does
	step := newStep(dev, m, batch)
	step()
	held = heap() - before
	for _, p := range m.Params() {
		params += int64(p.Value.Len()) * 4
		if p.Grad != nil {
			params += int64(p.Grad.Len()) * 4
		}
	}
	lent = nn.LentBytes(dev)
	runtime.KeepAlive(step)
	return held, params, lent
}

// TestStepMemoryPerBlock checks that a training step holds, for each
// residual block, only what Backward needs: the four activations a
// BasicBlock keeps (the outputs of its two convolutions, of its first
// ReLU and of the block), and not the block's input gradients or the
// batch norm's output that only the sum reads, which come from a pool
// that does not grow with depth. Deepening ResNet-20 from one to five
// blocks per stage adds four identity blocks per stage; with a buffer per
// layer and gradient, as before the pool, each block held eleven
// activations.
func TestStepMemoryPerBlock(t *testing.T) {
	const batch = 8
	shallow, deep := models.Config{Depth: 8}, models.Config{Depth: 32} // 1 and 5 blocks per stage
	heldS, paramsS, lentS := stepMemory(t, "resnet20", shallow, batch)
	heldD, paramsD, lentD := stepMemory(t, "resnet20", deep, batch)
	if lentD != lentS {
		t.Errorf("the pool holds %d bytes at depth 8 but %d at depth 32: it should not grow with depth", lentS, lentD)
	}
	// The stages' activations: 16 channels at 32×32, 32 at 16×16, 64 at
	// 8×8, each image, in bytes.
	act := int64(batch) * 4 * (16*32*32 + 32*16*16 + 64*8*8)
	const extraBlocks, kept = 4, 4
	// Beyond values and gradients, the im2col path keeps each
	// convolution's weight flipped for the input gradient (see
	// Conv2d.transposedDx): half the parameters' bytes again.
	weights := (paramsD - paramsS) * 3 / 2
	got := heldD - heldS
	t.Logf("depth 8: %d bytes held (%d in the pool); depth 32: %d (%d); the %d extra blocks: %d, %.2f activations each beyond their parameters",
		heldS, lentS, heldD, lentD, 3*extraBlocks, got, float64(got-(paramsD-paramsS))/float64(extraBlocks*act))
	// A tenth of an activation per block for the Go values around the
	// buffers (tensors, views, shapes).
	if limit := weights + extraBlocks*kept*act + extraBlocks*act/10; got > limit {
		t.Errorf("the extra blocks hold %d bytes, want at most %d: their weights and %d activations each", got, limit, kept)
	}
}
