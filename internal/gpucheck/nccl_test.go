package gpucheck

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/macdist/macdist/collective"
	"github.com/macdist/macdist/collective/nccl"
	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cuda"
	"github.com/macdist/macdist/nn/models"
)

// TestNCCL averages a MAC step's gradients and statistics of resnet20 over
// a 1-rank NCCL communicator through collective.Bucketer, as a
// data-parallel trainer does: NCCL runs its kernels on the replica's
// stream, and over one rank the average must leave every bit in place.
func TestNCCL(t *testing.T) {
	dev := openGPU(t, false)
	g, ok := dev.(*cuda.Device)
	if !ok {
		t.Skipf("%s is not a CUDA device", dev.Name())
	}
	r := nccl.Probe()
	if r.Err != nil {
		t.Skipf("no NCCL: %v", r.Err)
	}
	t.Log(r)
	id, err := nccl.NewUniqueID()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	comm, err := nccl.New(ctx, g, 0, 1, id, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer comm.Close()

	def, _ := models.Default("resnet20")
	data := synthetic(7, 1, []int{32, def.InChannels, def.ImageSize, def.ImageSize}, def.Classes)
	tr, err := newTrainer(dev, "resnet20", models.Config{Seed: 1}, 32, "mac", 4, data)
	if err != nil {
		t.Fatal(err)
	}
	var grads []kernels.Buffer
	for _, p := range tr.model.Params() {
		if p.Trainable() {
			grads = append(grads, p.Grad.Data)
		}
	}
	b, err := collective.NewBucketer(comm, dev, grads, collective.BucketConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	// One MAC step's forward and backward (step 0 collects statistics).
	tr.opt.BeginStep()
	dev.Upload(tr.x.Data, data[0].x)
	logits := tr.model.Forward(tr.x)
	tr.loss.Forward(logits, data[0].y)
	tr.model.Backward(tr.loss.Backward())
	stats := tr.opt.Stats()
	if stats == nil {
		t.Fatal("MAC collected no statistics on its first step")
	}
	before := download(dev, grads, stats)

	t0 := time.Now()
	if err := b.Reduce(ctx, stats); err != nil {
		t.Fatalf("bucketed all-reduce: %v", err)
	}
	if err := dev.Sync(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(t0)
	after := download(dev, grads, stats)
	var n int
	for i := range before {
		for j := range before[i] {
			if math.Float32bits(before[i][j]) != math.Float32bits(after[i][j]) {
				t.Fatalf("buffer %d element %d changed from %g to %g averaging over one rank", i, j, before[i][j], after[i][j])
			}
		}
		n += len(before[i])
	}
	c := b.Counters()
	t.Logf("%d gradients and %d statistics (%.1f MB) in %d buckets through NCCL %s: %v; unchanged", len(grads), stats.Len(),
		float64(4*n)/1e6, c.Buckets, r.Version, took)
	emit(t, map[string]any{"check": "nccl", "ranks": 1, "nccl": r.Version, "library": r.Library.Path,
		"elements": n, "buckets": c.Buckets, "ms": ms(took)})

	if err := comm.Barrier(ctx); err != nil {
		t.Errorf("Barrier: %v", err)
	}
}

func download(dev kernels.Device, grads []kernels.Buffer, extra kernels.Buffer) [][]float32 {
	var out [][]float32
	for _, b := range append(append([]kernels.Buffer(nil), grads...), extra) {
		v := make([]float32, b.Len())
		dev.Download(v, b)
		out = append(out, v)
	}
	return out
}
