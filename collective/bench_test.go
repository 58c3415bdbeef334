package collective

import (
	"context"
	"fmt"
	"testing"

	"github.com/macdist/macdist/kernels"
)

func TestBenchRing(t *testing.T) {
	res, err := BenchRing(context.Background(), 3, 2, []int{4 << 10, 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Ranks != 3 || r.Lanes != 2 || r.Iters < 1 || r.Seconds <= 0 || r.AlgBW <= 0 || r.BusBW != r.AlgBW*4/3 {
			t.Errorf("implausible result %+v", r)
		}
		t.Logf("%+v", r)
	}
	s, err := BenchStream(context.Background(), 1<<20)
	if err != nil || s.BW <= 0 {
		t.Fatalf("%+v, %v", s, err)
	}
	if len(BenchSizes()) != 9 || BenchSizes()[0] != 4<<10 || BenchSizes()[8] != 256<<20 {
		t.Errorf("BenchSizes() = %v", BenchSizes())
	}
}

// BenchmarkRingAllReduce reports busbw (nccl-tests' definition) in MB/s
// next to the usual ns/op; go test's own MB/s is the algbw.
func BenchmarkRingAllReduce(b *testing.B) {
	for _, ranks := range []int{2, 3, 4} {
		for _, lanes := range []int{1, 2} {
			for _, size := range []int{64 << 10, 1 << 20, 16 << 20, 64 << 20} {
				b.Run(fmt.Sprintf("ranks=%d/lanes=%d/bytes=%d", ranks, lanes, size), func(b *testing.B) {
					benchmarkRing(b, ranks, lanes, size)
				})
			}
		}
	}
}

func benchmarkRing(b *testing.B, ranks, lanes, size int) {
	rings := mustRings(b, ranks, func(c *RingConfig) { c.Lanes = lanes })
	n := size / 4
	bufs := make([]kernels.Buffer, ranks)
	for r := range bufs {
		bufs[r] = dev.Alloc(n)
	}
	ctx := context.Background()
	b.SetBytes(int64(size))
	b.ResetTimer()
	d, err := timeRing(ctx, rings, bufs, b.N)
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	alg := float64(size) * float64(b.N) / d.Seconds()
	b.ReportMetric(alg*2*float64(ranks-1)/float64(ranks)/1e6, "busMB/s")
}

func BenchmarkStream(b *testing.B) {
	for range b.N {
		s, err := BenchStream(context.Background(), 64<<20)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(s.BW/1e6, "streamMB/s")
	}
}
