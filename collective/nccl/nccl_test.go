package nccl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/macdist/macdist/collective"
	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cuda"
)

// These tests need a GPU and NCCL: scripts/gpu-check.sh runs them on a
// lent GPU machine, emu/run.sh against an emulated GPU and a stand-in
// NCCL. Without either they skip, saying what is missing.

// gpu returns a Device on GPU 0 (each call a new one, with its own
// stream), or skips the test.
func gpu(t *testing.T) *cuda.Device {
	t.Helper()
	if err := load(); err != nil {
		t.Skipf("no NCCL: %v", err)
	}
	d, err := cuda.New(0)
	if err != nil {
		t.Skipf("no GPU: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("closing the device: %v", err)
		}
	})
	return d
}

func newComm(t *testing.T, dev *cuda.Device, rank, size int, id [IDBytes]byte, timeout time.Duration) *Comm {
	t.Helper()
	c, err := New(context.Background(), dev, rank, size, id, timeout)
	if err != nil {
		t.Fatalf("New(rank %d of %d): %v", rank, size, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func upload(dev kernels.Device, v []float32) kernels.Buffer {
	b := dev.Alloc(len(v))
	dev.Upload(b, v)
	return b
}

func download(dev kernels.Device, b kernels.Buffer) []float32 {
	v := make([]float32, b.Len())
	dev.Download(v, b)
	return v
}

// firstDiff returns the first index where got and want differ, or -1.
func firstDiff(got, want []float32) int {
	for i := range want {
		if got[i] != want[i] {
			return i
		}
	}
	return -1
}

// TestOneRank runs every collective on a communicator of one rank, which
// NCCL runs like any other (its kernels, the stream, the event wait) and
// which must leave the data as it was.
func TestOneRank(t *testing.T) {
	dev := gpu(t)
	id, err := NewUniqueID()
	if err != nil {
		t.Fatal(err)
	}
	c := newComm(t, dev, 0, 1, id, 30*time.Second)
	if c.Rank() != 0 || c.Size() != 1 {
		t.Errorf("rank %d of %d, want 0 of 1", c.Rank(), c.Size())
	}
	ctx := context.Background()
	for _, n := range []int{1, 1000, 1<<20 + 3} {
		want := make([]float32, n)
		for i := range want {
			want[i] = float32(i%977) - 300.5
		}
		buf := upload(dev, want)
		for _, op := range []collective.Op{collective.Sum, collective.Avg} {
			if err := c.AllReduce(ctx, buf, op); err != nil {
				t.Fatalf("AllReduce %v of %d: %v", op, n, err)
			}
			if i := firstDiff(download(dev, buf), want); i >= 0 {
				t.Fatalf("AllReduce %v of %d over one rank changed element %d", op, n, i)
			}
		}
		if err := c.Broadcast(ctx, buf, 0); err != nil {
			t.Fatalf("Broadcast of %d: %v", n, err)
		}
		if i := firstDiff(download(dev, buf), want); i >= 0 {
			t.Fatalf("Broadcast of %d from the only rank changed element %d", n, i)
		}
		// A view: NCCL gets the view's own address.
		v := dev.View(buf, 7%n, n-7%n)
		if err := c.AllReduce(ctx, v, collective.Sum); err != nil {
			t.Fatalf("AllReduce of a view: %v", err)
		}
		dev.Free(buf)
	}
	if err := c.Barrier(ctx); err != nil {
		t.Fatalf("Barrier: %v", err)
	}
	if err := c.Broadcast(ctx, c.barrier, 1); err == nil {
		t.Error("Broadcast from root 1 of 1 rank succeeded")
	}
	if err := dev.Sync(); err != nil {
		t.Fatalf("the device after the collectives: %v", err)
	}

	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	buf := upload(dev, []float32{1})
	if err := c.AllReduce(ctx, buf, collective.Sum); !errors.Is(err, collective.ErrClosed) {
		t.Errorf("AllReduce after Close: %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
}

// TestBucketer averages a few gradients and a statistics vector over one
// rank through collective.Bucketer, as the trainer does.
func TestBucketer(t *testing.T) {
	dev := gpu(t)
	id, err := NewUniqueID()
	if err != nil {
		t.Fatal(err)
	}
	c := newComm(t, dev, 0, 1, id, 30*time.Second)
	sizes := []int{300, 5, 70000, 1, 4096}
	var grads []kernels.Buffer
	var want [][]float32
	for k, n := range sizes {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(k*1000+i%1000) / 8
		}
		grads = append(grads, upload(dev, v))
		want = append(want, v)
	}
	stats := upload(dev, []float32{1.5, -2, 3.25})
	b, err := collective.NewBucketer(c, dev, grads, collective.BucketConfig{FirstBytes: 1024, BucketBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for step := 0; step < 3; step++ {
		if err := b.Reduce(context.Background(), stats); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
	}
	for k := range grads {
		if i := firstDiff(download(dev, grads[k]), want[k]); i >= 0 {
			t.Errorf("gradient %d changed at %d after averaging over one rank", k, i)
		}
	}
	if got := download(dev, stats); firstDiff(got, []float32{1.5, -2, 3.25}) >= 0 {
		t.Errorf("statistics %v changed", got)
	}
	if n := b.Counters().Steps; n != 3 {
		t.Errorf("%d steps counted, want 3", n)
	}
}

// pair builds two ranks in this process, on two Devices (two streams) of
// GPU 0. NCCL before 2.30 refuses two ranks on one GPU, and later ones
// only with NCCL_MULTI_RANK_GPU_ENABLE=1 (which TestMain sets); then the
// test is skipped, saying so.
func pair(t *testing.T, timeout time.Duration) ([2]*cuda.Device, [2]*Comm) {
	t.Helper()
	if pairFailed != "" {
		// One failed set-up costs its timeout; the next would too.
		t.Skip(pairFailed)
	}
	devs := [2]*cuda.Device{gpu(t), gpu(t)}
	id, err := NewUniqueID()
	if err != nil {
		t.Fatal(err)
	}
	var comms [2]*Comm
	var errs [2]error
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			comms[r], errs[r] = New(context.Background(), devs[r], r, 2, id, timeout)
		}()
	}
	wg.Wait()
	for r := range 2 {
		if comms[r] != nil {
			t.Cleanup(func() { comms[r].Close() })
		}
	}
	// Each rank finds the duplicate GPU on its own, after exchanging its
	// peers' descriptions, so either may report it.
	for _, err := range errs {
		var ne *Error
		if errors.As(err, &ne) && ne.Code == 5 { // ncclInvalidUsage
			pairFailed = fmt.Sprintf("NCCL %s refuses two ranks on one GPU (%v); a 2-rank run needs 2 GPUs", Probe().Version, err)
			t.Skip(pairFailed)
		}
	}
	for _, err := range errs {
		if err != nil {
			pairFailed = fmt.Sprintf("the first 2-rank set-up failed: %v", err)
			t.Fatalf("New: %v", err)
		}
	}
	return devs, comms
}

// pairFailed says why two ranks could not be set up, once they could not.
var pairFailed string

// both runs f for both ranks at once and returns their errors.
func both(f func(r int) error) [2]error {
	var errs [2]error
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[r] = f(r)
		}()
	}
	wg.Wait()
	return errs
}

func TestTwoRanks(t *testing.T) {
	devs, comms := pair(t, 20*time.Second)
	ctx := context.Background()
	const n = 100003
	// Values whose sums and halves are exact in float32, so that any
	// summation order gives the same bits.
	in := [2][]float32{make([]float32, n), make([]float32, n)}
	for i := range n {
		in[0][i] = float32(i % 1000)
		in[1][i] = float32(2 * (i % 777))
	}
	var bufs [2]kernels.Buffer
	for r := range 2 {
		bufs[r] = upload(devs[r], in[r])
	}
	for _, op := range []collective.Op{collective.Sum, collective.Avg} {
		for r := range 2 {
			devs[r].Upload(bufs[r], in[r])
		}
		errs := both(func(r int) error { return comms[r].AllReduce(ctx, bufs[r], op) })
		for r, err := range errs {
			if err != nil {
				t.Fatalf("AllReduce %v, rank %d: %v", op, r, err)
			}
		}
		want := make([]float32, n)
		for i := range want {
			want[i] = in[0][i] + in[1][i]
			if op == collective.Avg {
				want[i] /= 2
			}
		}
		for r := range 2 {
			if got := download(devs[r], bufs[r]); firstDiff(got, want) >= 0 {
				i := firstDiff(got, want)
				t.Errorf("AllReduce %v on rank %d: element %d is %g, want %g", op, r, i, got[i], want[i])
			}
		}
	}
	for r := range 2 {
		devs[r].Upload(bufs[r], in[r])
	}
	if errs := both(func(r int) error { return comms[r].Broadcast(ctx, bufs[r], 1) }); errs[0] != nil || errs[1] != nil {
		t.Fatalf("Broadcast: %v", errs)
	}
	for r := range 2 {
		if i := firstDiff(download(devs[r], bufs[r]), in[1]); i >= 0 {
			t.Errorf("Broadcast from rank 1: rank %d differs at %d", r, i)
		}
	}
	if errs := both(func(r int) error { return comms[r].Barrier(ctx) }); errs[0] != nil || errs[1] != nil {
		t.Fatalf("Barrier: %v", errs)
	}
}

// TestTimeoutAborts leaves rank 1 out of a collective: rank 0 must give up
// at its context's deadline, abort, and stay broken.
func TestTimeoutAborts(t *testing.T) {
	devs, comms := pair(t, 20*time.Second)
	buf := upload(devs[0], make([]float32, 1000))
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	err := comms[0].AllReduce(ctx, buf, collective.Sum)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AllReduce without its peer: %v, want an error wrapping context.DeadlineExceeded", err)
	}
	if took > 10*time.Second {
		t.Errorf("the abort took %v after a 1 s deadline", took)
	}
	t.Logf("gave up after %v: %v", took, err)
	if err := comms[0].Barrier(context.Background()); err == nil || !strings.Contains(err.Error(), "broken") {
		t.Errorf("a collective after the abort: %v, want the communicator broken", err)
	}

	// Rank 1's collective, whose peer has aborted, fails too: at the
	// communicator's own timeout (os.ErrDeadlineExceeded) without a
	// context deadline, or sooner if NCCL notices the abort.
	comms[1].timeout = time.Second
	buf1 := upload(devs[1], make([]float32, 10))
	start = time.Now()
	err = comms[1].AllReduce(context.Background(), buf1, collective.Sum)
	var ne *Error
	if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.As(err, &ne) {
		t.Errorf("AllReduce with an aborted peer: %v, want os.ErrDeadlineExceeded or an NCCL error", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("rank 1 gave up after %v, with a 1 s timeout", took)
	}
	t.Logf("rank 1: %v", err)
}

// TestAbortWakes aborts a rank from another goroutine while it waits in a
// collective its peer never joins.
func TestAbortWakes(t *testing.T) {
	devs, comms := pair(t, 20*time.Second)
	comms[0].timeout = time.Minute // only Abort may end the wait
	buf := upload(devs[0], make([]float32, 10))
	cause := errors.New("peer 1 left the membership")
	done := make(chan error, 1)
	go func() { done <- comms[0].AllReduce(context.Background(), buf, collective.Sum) }()
	time.Sleep(200 * time.Millisecond)
	comms[0].Abort(cause)
	comms[0].Abort(errors.New("a later abort, ignored"))
	select {
	case err := <-done:
		if !errors.Is(err, cause) {
			t.Errorf("AllReduce after Abort(cause): %v, want it to wrap the cause", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Abort did not wake the collective within 15 s")
	}
	if err := comms[0].Barrier(context.Background()); !errors.Is(err, cause) {
		t.Errorf("Barrier after Abort: %v, want the first Abort's cause", err)
	}
	comms[1].Abort(nil)
	if err := comms[1].Barrier(context.Background()); !errors.Is(err, collective.ErrAborted) {
		t.Errorf("Barrier after Abort(nil): %v, want ErrAborted", err)
	}
}

// TestSetupTimeout joins rank 0 of 2 alone: the non-blocking set-up must be
// aborted at the timeout, not hang. The process keeps NCCL's bootstrap
// root thread of that id waiting; gpu-check.sh runs this test on its own.
func TestSetupTimeout(t *testing.T) {
	dev := gpu(t)
	id, err := NewUniqueID()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c, err := New(context.Background(), dev, 0, 2, id, 2*time.Second)
	took := time.Since(start)
	if err == nil {
		c.Close()
		t.Fatal("New of rank 0 of 2 without rank 1 succeeded")
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("New without the peer: %v, want os.ErrDeadlineExceeded", err)
	}
	if took > 15*time.Second {
		t.Errorf("the set-up's abort took %v after a 2 s timeout", took)
	}
	t.Logf("gave up after %v: %v", took, err)
}

func TestNewArguments(t *testing.T) {
	var id [IDBytes]byte
	for _, c := range []struct{ rank, size int }{{0, 0}, {2, 2}, {-1, 3}} {
		if _, err := New(context.Background(), &cuda.Device{}, c.rank, c.size, id, 0); err == nil ||
			!strings.Contains(err.Error(), fmt.Sprintf("rank %d of %d", c.rank, c.size)) {
			t.Errorf("New(rank %d of %d): %v", c.rank, c.size, err)
		}
	}
	if _, err := New(context.Background(), nil, 0, 1, id, 0); err == nil {
		t.Error("New with a nil device succeeded")
	}
}

func TestMain(m *testing.M) {
	// NCCL ≥ 2.30 lets two ranks share a GPU when asked; NCCL reads it at
	// the first set-up, so it must be set before any.
	if os.Getenv("NCCL_MULTI_RANK_GPU_ENABLE") == "" {
		os.Setenv("NCCL_MULTI_RANK_GPU_ENABLE", "1")
	}
	os.Exit(m.Run())
}
