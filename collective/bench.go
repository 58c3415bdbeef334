package collective

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
)

// BenchResult is the timing of an all-reduce of one size, with nccl-tests'
// definitions: AlgBW is Bytes over the time of one all-reduce; BusBW scales
// it by 2(R−1)/R, the share of the buffer each rank's link carries in a ring,
// so that it compares with the bandwidth of one link whatever R is.
type BenchResult struct {
	Ranks   int
	Lanes   int
	Bytes   int // per rank: the buffer reduced
	Iters   int
	Seconds float64 // mean time of one all-reduce
	AlgBW   float64 // bytes per second
	BusBW   float64 // bytes per second
}

// StreamResult is the throughput of one TCP stream over loopback.
type StreamResult struct {
	Bytes   int64 // moved in all
	Seconds float64
	BW      float64 // bytes per second
}

// BenchSizes are the sizes `macdist bench collective` reports by default:
// 4 KiB to 256 MiB in steps of 4×.
func BenchSizes() []int {
	var s []int
	for n := 4 << 10; n <= 256<<20; n *= 4 {
		s = append(s, n)
	}
	return s
}

// benchMinTime is how long each size is timed for, at least one
// all-reduce after a warm-up one.
const benchMinTime = 500 * time.Millisecond

// benchChunkBytes is the ring's chunk size in the benchmarks; tests change it.
var benchChunkBytes = DefaultChunkBytes

// BenchRing forms a ring of `ranks` ranks inside this process, each on its
// own goroutines and its own loopback TCP connections (the same code as
// between processes, without the process boundary), and times a Sum
// all-reduce of each size in bytes (rounded down to whole float32s). On one
// machine the ranks share its cores and its memory bandwidth, so the
// numbers say what the code can do there, not what a network of R machines
// would give.
func BenchRing(ctx context.Context, ranks, lanes int, sizes []int) ([]BenchResult, error) {
	if ranks < 1 {
		return nil, fmt.Errorf("collective: BenchRing: %d ranks", ranks)
	}
	rings, err := localRing(ctx, ranks, lanes)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, r := range rings {
			r.Close()
		}
	}()
	dev := cpu.New()
	var out []BenchResult
	for _, size := range sizes {
		n := size / 4
		bufs := make([]kernels.Buffer, ranks)
		for r := range bufs {
			bufs[r] = dev.Alloc(n)
			dev.Fill(bufs[r], 1)
		}
		// A warm-up all-reduce says how many fit in benchMinTime.
		warm, err := timeRing(ctx, rings, bufs, 1)
		if err != nil {
			return out, err
		}
		iters := max(1, min(100000, int(benchMinTime/max(warm, time.Microsecond))))
		d, err := timeRing(ctx, rings, bufs, iters)
		if err != nil {
			return out, err
		}
		for _, b := range bufs {
			dev.Free(b)
		}
		sec := d.Seconds() / float64(iters)
		alg := float64(4*n) / sec
		out = append(out, BenchResult{Ranks: ranks, Lanes: max(1, lanes), Bytes: 4 * n, Iters: iters, Seconds: sec,
			AlgBW: alg, BusBW: alg * 2 * float64(ranks-1) / float64(ranks)})
	}
	return out, nil
}

// timeRing runs iters all-reduces on every rank, after a barrier, and
// returns the time of the slowest rank.
func timeRing(ctx context.Context, rings []*Ring, bufs []kernels.Buffer, iters int) (time.Duration, error) {
	took := make([]time.Duration, len(rings))
	errs := make([]error, len(rings))
	var wg sync.WaitGroup
	for r := range rings {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[r] = rings[r].Barrier(ctx); errs[r] != nil {
				return
			}
			t0 := time.Now()
			for range iters {
				if errs[r] = rings[r].AllReduce(ctx, bufs[r], Sum); errs[r] != nil {
					return
				}
			}
			took[r] = time.Since(t0)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	var slowest time.Duration
	for _, d := range took {
		slowest = max(slowest, d)
	}
	return slowest, nil
}

// localRing forms a ring of n ranks on loopback ports.
func localRing(ctx context.Context, n, lanes int) ([]*Ring, error) {
	lns := make([]net.Listener, n)
	addrs := make([]string, n)
	defer func() {
		for _, l := range lns {
			if l != nil {
				l.Close()
			}
		}
	}()
	for i := range lns {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns[i], addrs[i] = l, l.Addr().String()
	}
	rings := make([]*Ring, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range rings {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rings[r], errs[r] = NewRing(ctx, RingConfig{Rank: r, Size: n, Addrs: addrs, Listener: lns[r],
				Token: "bench", ConnectTimeout: 30 * time.Second, ChunkBytes: benchChunkBytes, Lanes: lanes})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, r := range rings {
			if r != nil {
				r.Close()
			}
		}
		return nil, err
	}
	return rings, nil
}

// BenchStream measures one TCP stream over loopback: one goroutine sends a
// buffer of the given size in writes of the ring's chunk size, as a ring
// rank does, another receives it into a buffer of the same size, repeated
// for at least half a second. It is the yardstick for BenchRing's BusBW.
// Like the ring's, its buffers are only cache-resident when they are small,
// so compare sizes with sizes: one stream of 256 KiB runs from cache and is
// faster than one of 256 MiB, which runs from memory.
func BenchStream(ctx context.Context, bytes int) (StreamResult, error) {
	if bytes < 1 {
		return StreamResult{}, fmt.Errorf("collective: BenchStream: %d bytes", bytes)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return StreamResult{}, err
	}
	defer l.Close()
	var d net.Dialer
	type accepted struct {
		c   net.Conn
		err error
	}
	ac := make(chan accepted, 1)
	go func() {
		c, err := l.Accept()
		ac <- accepted{c, err}
	}()
	w, err := d.DialContext(ctx, "tcp", l.Addr().String())
	if err != nil {
		return StreamResult{}, err
	}
	defer w.Close()
	a := <-ac
	if a.err != nil {
		return StreamResult{}, a.err
	}
	rc := a.c
	defer rc.Close()
	stop := context.AfterFunc(ctx, func() { w.Close(); rc.Close() })
	defer stop()

	src, dst := make([]byte, bytes), make([]byte, bytes)
	for i := range src {
		// Touch every page of both now, not in the timed loop.
		src[i], dst[i] = byte(i), 1
	}
	var total int64
	t0 := time.Now()
	for total == 0 || time.Since(t0) < benchMinTime {
		werr := make(chan error, 1)
		go func() {
			for off := 0; off < bytes; off += benchChunkBytes {
				if _, err := w.Write(src[off:min(off+benchChunkBytes, bytes)]); err != nil {
					werr <- err
					return
				}
			}
			werr <- nil
		}()
		if _, err := io.ReadFull(rc, dst); err != nil {
			return StreamResult{}, err
		}
		if err := <-werr; err != nil {
			return StreamResult{}, err
		}
		total += int64(bytes)
	}
	sec := time.Since(t0).Seconds()
	return StreamResult{Bytes: total, Seconds: sec, BW: float64(total) / sec}, nil
}
