package models_test

import (
	"testing"

	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/nn/models"
)

// BenchmarkTrainStep times one training step (forward, loss, backward,
// zeroing the gradients) at a batch of 128 on the CPU device.
func BenchmarkTrainStep(b *testing.B) {
	const batch = 128
	for _, bc := range []struct {
		label, name string
		cfg         models.Config
	}{
		{"lenet5", "lenet5", models.Config{}},
		{"resnet20", "resnet20", models.Config{}},
		{"vit-tiny-cifar-d6", "vit-tiny-cifar", models.Config{Depth: 6}},
	} {
		b.Run(bc.label, func(b *testing.B) {
			dev := cpu.New()
			m := mustNew(b, dev, bc.name, bc.cfg)
			step := newStep(dev, m, batch)
			// Size every buffer and let the runtime's caches fill before
			// b.Loop starts the clock and the allocation count.
			for range 3 {
				step()
			}
			b.ReportAllocs()
			for b.Loop() {
				step()
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "img/s")
		})
	}
}
