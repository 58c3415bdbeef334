package collective

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

func TestZZReport(t *testing.T) {
	if os.Getenv("ZZ") == "" {
		t.Skip()
	}
	ctx := context.Background()
	chunks := []int{DefaultChunkBytes}
	if c := os.Getenv("ZZ_CHUNKS"); c != "" {
		chunks = nil
		for _, f := range strings.Split(c, ",") {
			n, _ := strconv.Atoi(f)
			chunks = append(chunks, n)
		}
	}
	ranks := []int{2, 3, 4}
	sizes := BenchSizes()
	if os.Getenv("ZZ_QUICK") != "" {
		sizes = []int{1 << 20, 16 << 20, 64 << 20}
	}
	fmt.Printf("GOMAXPROCS %d NumCPU %d\n", runtime.GOMAXPROCS(0), runtime.NumCPU())
	for _, ch := range chunks {
		benchChunkBytes = ch
		s, err := BenchStream(ctx, 256<<20)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("chunk %d: stream of 256 MiB: %.0f MB/s\n", ch, s.BW/1e6)
		for _, b := range []int{256 << 10, 16 << 20} {
			s2, _ := BenchStream(ctx, b)
			fmt.Printf("chunk %d: stream of %d: %.0f MB/s\n", ch, b, s2.BW/1e6)
		}
		for _, R := range ranks {
			res, err := BenchRing(ctx, R, sizes)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res {
				fmt.Printf("chunk %d R=%d %10d B iters %5d %9.3f ms algbw %7.0f MB/s busbw %7.0f MB/s (%.0f%% of stream)\n", ch, r.Ranks, r.Bytes, r.Iters, r.Seconds*1e3, r.AlgBW/1e6, r.BusBW/1e6, 100*r.BusBW/s.BW)
			}
		}
		s, _ = BenchStream(ctx, 256<<20)
		fmt.Printf("chunk %d: stream again: %.0f MB/s\n", ch, s.BW/1e6)
	}
}
