package collective

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
)

var dev = cpu.New()

// listeners binds n loopback listeners on free ports.
func listeners(t testing.TB, n int) ([]net.Listener, []string) {
	t.Helper()
	ls := make([]net.Listener, n)
	addrs := make([]string, n)
	for i := range ls {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		ls[i], addrs[i] = l, l.Addr().String()
	}
	return ls, addrs
}

// newRings builds an n-rank ring on loopback; edit may change each rank's
// config before NewRing.
func newRings(t testing.TB, n int, edit func(*RingConfig)) ([]*Ring, []error) {
	t.Helper()
	ls, addrs := listeners(t, n)
	rings := make([]*Ring, n)
	errs := parallel(n, func(r int) error {
		cfg := RingConfig{Rank: r, Size: n, Addrs: addrs, Listener: ls[r], Generation: 7, Token: "secret",
			Timeout: 20 * time.Second, ConnectTimeout: 10 * time.Second}
		if edit != nil {
			edit(&cfg)
		}
		var err error
		rings[r], err = NewRing(context.Background(), cfg)
		return err
	})
	t.Cleanup(func() {
		for _, r := range rings {
			if r != nil {
				r.Close()
			}
		}
	})
	return rings, errs
}

func mustRings(t testing.TB, n int, edit func(*RingConfig)) []*Ring {
	t.Helper()
	rings, errs := newRings(t, n, edit)
	for r, err := range errs {
		if err != nil {
			t.Fatalf("NewRing rank %d: %v", r, err)
		}
	}
	return rings
}

// parallel runs f for every rank on its own goroutine and returns the errors.
func parallel(n int, f func(r int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[r] = f(r)
		}()
	}
	wg.Wait()
	return errs
}

func asComms[C Communicator](cs []C) []Communicator {
	out := make([]Communicator, len(cs))
	for i, c := range cs {
		out[i] = c
	}
	return out
}

// inputs returns each rank's values: varied signs and magnitudes, so that
// the summation order shows in the low bits.
func inputs(ranks, n int, seed uint64) [][]float32 {
	scales := [...]float32{1, 1e-3, 1e3, 3e-7, 7}
	xs := make([][]float32, ranks)
	for r := range xs {
		rng := rand.New(rand.NewPCG(seed, uint64(r)))
		xs[r] = make([]float32, n)
		for i := range xs[r] {
			xs[r][i] = (2*rng.Float32() - 1) * scales[i%len(scales)]
		}
	}
	return xs
}

// allReduce runs AllReduce on every communicator with a copy of xs[rank]
// and returns the results.
func allReduce(t *testing.T, comms []Communicator, xs [][]float32, op Op) [][]float32 {
	t.Helper()
	out := make([][]float32, len(comms))
	errs := parallel(len(comms), func(r int) error {
		buf := dev.Alloc(len(xs[r]))
		dev.Upload(buf, xs[r])
		err := comms[r].AllReduce(context.Background(), buf, op)
		out[r] = cpu.Data(buf)
		return err
	})
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	return out
}

// checkReduced checks every rank's result against the float64 reduction:
// a sum of R float32 values in any fixed order is within (R−1)·u·Σ|x| of
// the exact sum, plus the final rounding (and the division, for Avg).
func checkReduced(t *testing.T, xs, got [][]float32, op Op) {
	t.Helper()
	R := len(xs)
	const u = 1.0 / (1 << 24)
	for i := range xs[0] {
		var sum, abs float64
		for r := range xs {
			sum += float64(xs[r][i])
			abs += math.Abs(float64(xs[r][i]))
		}
		tol := float64(R+1) * u * abs
		if op == Avg {
			sum, tol = sum/float64(R), tol/float64(R)+u*math.Abs(sum/float64(R))
		}
		if d := math.Abs(float64(got[0][i]) - sum); d > tol {
			t.Fatalf("element %d: got %v, want %v (±%g)", i, got[0][i], sum, tol)
		}
	}
	for r := 1; r < R; r++ {
		for i := range got[r] {
			if math.Float32bits(got[r][i]) != math.Float32bits(got[0][i]) {
				t.Fatalf("element %d: rank %d has %v, rank 0 has %v: ranks must agree bit for bit", i, r, got[r][i], got[0][i])
			}
		}
	}
}

func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d elements, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: element %d is %v, want %v", what, i, got[i], want[i])
		}
	}
}

func TestRingAllReduce(t *testing.T) {
	sizes := []int{0, 1, 3, 7, 1000, 1001, 1 << 20}
	for ranks := 1; ranks <= 8; ranks++ {
		for _, chunk := range []int{0, 20} { // default, and 5-float chunks: many per segment
			t.Run(fmt.Sprintf("ranks=%d/chunk=%d", ranks, chunk), func(t *testing.T) {
				rings := mustRings(t, ranks, func(c *RingConfig) { c.ChunkBytes = chunk })
				local := NewLocal(ranks)
				for _, n := range sizes {
					// 4 MiB takes seconds under the race detector, mostly
					// in this test's own checks: -short keeps two cases.
					if n == 1<<20 && (chunk != 0 || (testing.Short() && ranks != 2 && ranks != 3)) {
						continue
					}
					for _, op := range []Op{Sum, Avg} {
						t.Run(fmt.Sprintf("n=%d/%v", n, op), func(t *testing.T) {
							xs := inputs(ranks, n, uint64(n))
							got := allReduce(t, asComms(rings), xs, op)
							checkReduced(t, xs, got, op)
							// Local promises the ring's order, so the bits match.
							sameBits(t, "local vs ring", allReduce(t, local, xs, op)[0], got[0])
						})
					}
				}
			})
		}
	}
}

// TestRingLanes spreads collectives over several connections per
// neighbour: the results are right, bit for bit those of one lane (Local
// reduces in one lane's order), and every lane carries its share.
func TestRingLanes(t *testing.T) {
	for _, ranks := range []int{2, 3, 5} {
		for _, lanes := range []int{2, 3} {
			t.Run(fmt.Sprintf("ranks=%d/lanes=%d", ranks, lanes), func(t *testing.T) {
				// 5-float chunks: an AllReduce uses every lane from
				// 5·ranks·lanes elements on.
				rings := mustRings(t, ranks, func(c *RingConfig) { c.ChunkBytes, c.Lanes = 20, lanes })
				local := NewLocal(ranks)
				for _, n := range []int{0, 1, 7, 5 * ranks * lanes, 1001, 4099} {
					for _, op := range []Op{Sum, Avg} {
						xs := inputs(ranks, n, uint64(n))
						got := allReduce(t, asComms(rings), xs, op)
						checkReduced(t, xs, got, op)
						sameBits(t, fmt.Sprintf("n=%d %v: local vs %d lanes", n, op, lanes), allReduce(t, local, xs, op)[0], got[0])
					}
					if want := min(lanes, max(1, n/(5*ranks))); rings[0].lanesFor(kindAllReduce, n) != want {
						t.Errorf("n=%d: %d lanes in use, want %d", n, rings[0].lanesFor(kindAllReduce, n), want)
					}
					for k, l := range rings[0].lanes[:rings[0].lanesFor(kindAllReduce, n)] {
						// Each lane's receiver counted the header and
						// every chunk of its share.
						if n > 0 && l.recvd.n.Load() < 2 {
							t.Errorf("n=%d: lane %d received %d units", n, k, l.recvd.n.Load())
						}
					}
				}
				for root := range ranks {
					xs := inputs(ranks, 1001, uint64(root))
					got := make([][]float32, ranks)
					errs := parallel(ranks, func(r int) error {
						buf := dev.Alloc(len(xs[r]))
						dev.Upload(buf, xs[r])
						got[r] = cpu.Data(buf)
						return rings[r].Broadcast(context.Background(), buf, root)
					})
					for r, err := range errs {
						if err != nil {
							t.Fatalf("broadcast from %d, rank %d: %v", root, r, err)
						}
						sameBits(t, fmt.Sprintf("broadcast from %d, rank %d", root, r), got[r], xs[root])
					}
				}
				testBarrier(t, asComms(rings))
			})
		}
	}
}

func TestRingBroadcast(t *testing.T) {
	for _, ranks := range []int{1, 2, 3, 5} {
		t.Run(fmt.Sprintf("ranks=%d", ranks), func(t *testing.T) {
			rings := mustRings(t, ranks, func(c *RingConfig) { c.ChunkBytes = 64 })
			for root := range ranks {
				for _, n := range []int{0, 1, 1000} {
					xs := inputs(ranks, n, uint64(root))
					got := make([][]float32, ranks)
					errs := parallel(ranks, func(r int) error {
						buf := dev.Alloc(n)
						dev.Upload(buf, xs[r])
						got[r] = cpu.Data(buf)
						return rings[r].Broadcast(context.Background(), buf, root)
					})
					for r, err := range errs {
						if err != nil {
							t.Fatalf("root %d, n %d, rank %d: %v", root, n, r, err)
						}
						sameBits(t, fmt.Sprintf("root %d, n %d, rank %d", root, n, r), got[r], xs[root])
					}
				}
			}
		})
	}
}

// testBarrier checks that no rank leaves the barrier before the last one
// has entered; ranks enter at staggered times.
func testBarrier(t *testing.T, comms []Communicator) {
	for round := range 3 {
		var entered atomic.Int32
		errs := parallel(len(comms), func(r int) error {
			time.Sleep(time.Duration((r+round)%len(comms)) * 15 * time.Millisecond)
			entered.Add(1)
			if err := comms[r].Barrier(context.Background()); err != nil {
				return err
			}
			if n := entered.Load(); int(n) != len(comms) {
				return fmt.Errorf("left the barrier with %d of %d ranks entered", n, len(comms))
			}
			return nil
		})
		for r, err := range errs {
			if err != nil {
				t.Fatalf("round %d, rank %d: %v", round, r, err)
			}
		}
	}
}

func TestRingBarrier(t *testing.T) {
	for _, ranks := range []int{1, 2, 3, 4, 6} {
		t.Run(fmt.Sprintf("ranks=%d", ranks), func(t *testing.T) {
			testBarrier(t, asComms(mustRings(t, ranks, nil)))
		})
	}
}

func TestRingMismatch(t *testing.T) {
	rings := mustRings(t, 3, nil)
	errs := parallel(3, func(r int) error {
		n := 100
		if r == 1 {
			n = 101
		}
		return rings[r].AllReduce(context.Background(), dev.Alloc(n), Sum)
	})
	// Rank 1 or rank 2 (whichever reads a header of the other first) sees
	// the mismatch; the rest see their neighbours hang up.
	named := false
	for r, err := range errs {
		if err == nil {
			t.Fatalf("rank %d: no error", r)
		}
		t.Logf("rank %d: %v", r, err)
		msg := err.Error()
		named = named || errors.Is(err, ErrMismatch) && strings.Contains(msg, "100 elements") && strings.Contains(msg, "101 elements")
	}
	if !named {
		t.Error("no rank reports the mismatch with both sizes")
	}
	// Broken for good.
	if err := rings[0].Barrier(context.Background()); err == nil {
		t.Error("a call after a failure succeeded")
	}
}

// failFast runs an AllReduce on the given ranks and checks that each fails
// within limit.
func failFast(t *testing.T, rings []*Ring, ranks []int, n int, limit time.Duration, during func()) []error {
	t.Helper()
	errs := make([]error, len(ranks))
	took := make([]time.Duration, len(ranks))
	var wg sync.WaitGroup
	for i, r := range ranks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			errs[i] = rings[r].AllReduce(context.Background(), dev.Alloc(n), Sum)
			took[i] = time.Since(t0)
		}()
	}
	if during != nil {
		during()
	}
	wg.Wait()
	for i, r := range ranks {
		if errs[i] == nil {
			t.Fatalf("rank %d: no error", r)
		}
		if took[i] > limit {
			t.Errorf("rank %d failed after %v, want within %v: %v", r, took[i], limit, errs[i])
		}
		t.Logf("rank %d after %v: %v", r, took[i].Round(time.Millisecond), errs[i])
	}
	return errs
}

func TestRingDeadPeer(t *testing.T) {
	// A timeout far beyond the bound below: a rank that notices within
	// the bound noticed the closed connections, not the timeout, however
	// slow the machine.
	const timeout = time.Minute
	for _, tc := range []struct{ n, lanes int }{{10, 1}, {1 << 20, 1}, {1 << 20, 3}} {
		t.Run(fmt.Sprintf("n=%d/lanes=%d", tc.n, tc.lanes), func(t *testing.T) {
			n := tc.n
			rings := mustRings(t, 4, func(c *RingConfig) { c.Timeout, c.Lanes = timeout, tc.lanes })
			// Rank 2 dies while the others are in the collective: its
			// connections close, and the others must not wait for the
			// timeout to notice.
			failFast(t, rings, []int{0, 1, 3}, n, timeout/3, func() {
				time.Sleep(50 * time.Millisecond)
				rings[2].Close()
			})
		})
	}
}

func TestRingStalledPeer(t *testing.T) {
	const timeout = 400 * time.Millisecond
	// 4 MiB fills the socket buffers: writes stall too.
	for _, tc := range []struct{ n, lanes int }{{10, 1}, {1 << 20, 1}, {1 << 20, 2}} {
		t.Run(fmt.Sprintf("n=%d/lanes=%d", tc.n, tc.lanes), func(t *testing.T) {
			n := tc.n
			rings := mustRings(t, 3, func(c *RingConfig) { c.Timeout, c.Lanes = timeout, tc.lanes })
			// Rank 1 is alive (its connections are open) but never joins.
			// The bound is a hang's, with room for a loaded machine.
			errs := failFast(t, rings, []int{0, 2}, n, 25*timeout, nil)
			timedOut := false
			for _, err := range errs {
				timedOut = timedOut || errors.Is(err, os.ErrDeadlineExceeded)
			}
			if !timedOut {
				t.Error("no rank reports the timeout")
			}
		})
	}
}

func TestRingAbort(t *testing.T) {
	rings := mustRings(t, 3, func(c *RingConfig) { c.Timeout = time.Minute })
	cause := errors.New("membership lost rank 7")
	errs := failFast(t, rings, []int{0, 1}, 1000, 20*time.Second, func() {
		time.Sleep(50 * time.Millisecond)
		rings[0].Abort(cause)
		rings[0].Abort(errors.New("second abort")) // no-op
	})
	if !errors.Is(errs[0], cause) {
		t.Errorf("rank 0: %v; want it to wrap the abort's cause", errs[0])
	}
	if !errors.Is(rings[0].Err(), cause) {
		t.Errorf("Err() = %v after a second Abort; the first must stay", rings[0].Err())
	}
	// Rank 2 never joined; its neighbours are gone, so it fails at once.
	t0 := time.Now()
	if err := rings[2].Barrier(context.Background()); err == nil || time.Since(t0) > 20*time.Second {
		t.Errorf("rank 2: %v after %v", err, time.Since(t0))
	}
	if err := rings[0].AllReduce(context.Background(), dev.Alloc(3), Sum); !errors.Is(err, cause) {
		t.Errorf("call after Abort: %v", err)
	}
}

func TestRingContext(t *testing.T) {
	rings := mustRings(t, 2, func(c *RingConfig) { c.Timeout = time.Minute })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	err := rings[0].AllReduce(ctx, dev.Alloc(10), Sum) // rank 1 never joins
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(t0) > 20*time.Second {
		t.Fatalf("got %v after %v, want the context's deadline", err, time.Since(t0))
	}
}

func TestRingSizeOne(t *testing.T) {
	r, err := NewRing(context.Background(), RingConfig{Size: 1, Addrs: []string{""}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := dev.Alloc(5)
	dev.Upload(buf, []float32{1, 2, 3, 4, 5})
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		if err := r.AllReduce(ctx, buf, Avg); err != nil {
			t.Fatal(err)
		}
		if err := r.Broadcast(ctx, buf, 0); err != nil {
			t.Fatal(err)
		}
		if err := r.Barrier(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per call", allocs)
	}
	sameBits(t, "world of one", cpu.Data(buf), []float32{1, 2, 3, 4, 5})
	r.Close()
	if err := r.Barrier(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

func TestRingConfigErrors(t *testing.T) {
	ls, addrs := listeners(t, 2)
	for _, tc := range []struct {
		name string
		cfg  RingConfig
		want string
	}{
		{"no ranks", RingConfig{}, "size 0"},
		{"rank outside", RingConfig{Rank: 2, Size: 2, Addrs: addrs, Listener: ls[0]}, "rank 2 outside"},
		{"addresses", RingConfig{Size: 2, Addrs: addrs[:1], Listener: ls[0]}, "1 addresses for 2 ranks"},
		{"no listener", RingConfig{Size: 2, Addrs: addrs}, "no listener"},
		{"lanes", RingConfig{Size: 2, Addrs: addrs, Listener: ls[0], Lanes: MaxLanes + 1}, "33 lanes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewRing(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestRingHandshakeRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*RingConfig)
		want string
	}{
		{"token", func(c *RingConfig) {
			if c.Rank == 1 {
				c.Token = "guess"
			}
		}, "token"},
		{"generation", func(c *RingConfig) {
			if c.Rank == 1 {
				c.Generation = 6
			}
		}, "generation"},
		{"lanes", func(c *RingConfig) {
			if c.Rank == 1 {
				c.Lanes = 2
			}
		}, "lanes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Now()
			_, errs := newRings(t, 2, func(c *RingConfig) {
				c.ConnectTimeout = time.Second
				tc.edit(c)
			})
			// A rank that finds the mismatch stops accepting, so its
			// peer may only see the handshake go unanswered; at least
			// one rank must name the reason.
			named := false
			for r, err := range errs {
				if err == nil {
					t.Fatalf("rank %d joined a ring it does not belong to", r)
				}
				t.Logf("rank %d: %v", r, err)
				named = named || errors.Is(err, ErrRefused) && strings.Contains(err.Error(), tc.want)
			}
			if !named {
				t.Errorf("no rank says the handshake was refused because of the %s", tc.want)
			}
			if d := time.Since(t0); d > 20*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

// TestRingStrays sends connections that do not belong to the ring at a
// rank's listener while the ring forms: one from an old generation, one
// with the wrong token, one that never speaks. Each stray is told why it
// was refused, and the ring forms anyway.
func TestRingStrays(t *testing.T) {
	ls, addrs := listeners(t, 2)
	cfg := func(r int) RingConfig {
		return RingConfig{Rank: r, Size: 2, Addrs: addrs, Listener: ls[r], Generation: 5, Token: "secret",
			Timeout: 10 * time.Second, ConnectTimeout: time.Minute}
	}
	ctx := context.Background()
	strayErrs := make(chan error, 2)
	for _, edit := range []func(*RingConfig){
		func(c *RingConfig) { c.Generation = 4 },
		func(c *RingConfig) { c.Token = "guess" },
	} {
		c := cfg(1) // rank 0's left neighbour, as far as the hello goes
		edit(&c)
		conn, err := net.Dial("tcp", addrs[0])
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		go func() { strayErrs <- dialHandshake(conn, &c, 0, 0) }()
	}
	silent, err := net.Dial("tcp", addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	// Rank 0 starts forming the ring and meets the strays; rank 1 comes
	// once both were refused, so that a refusal never races the real
	// handshake (which ends every other one when it completes).
	rings := make([]*Ring, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	join := func(r int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rings[r], errs[r] = NewRing(ctx, cfg(r))
		}()
	}
	join(0)
	for range 2 {
		err := <-strayErrs
		if !errors.Is(err, ErrRefused) {
			t.Errorf("stray: %v, want ErrRefused", err)
		}
		t.Logf("stray: %v", err)
	}
	join(1)
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
		defer rings[r].Close()
	}
	xs := inputs(2, 10, 1)
	checkReduced(t, xs, allReduce(t, asComms(rings), xs, Sum), Sum)
}

// TestRingAllocs checks that a steady-state collective allocates nothing,
// on any rank (AllocsPerRun counts the whole process).
func TestRingAllocs(t *testing.T) {
	for _, lanes := range []int{1, 2} {
		t.Run(fmt.Sprintf("lanes=%d", lanes), func(t *testing.T) { testRingAllocs(t, lanes) })
	}
}

func testRingAllocs(t *testing.T, lanes int) {
	const ranks, n = 3, 50000
	rings := mustRings(t, ranks, func(c *RingConfig) { c.ChunkBytes, c.Lanes = 16<<10, lanes })
	ctx, cancel := context.WithCancel(context.Background()) // a Done channel: the watcher runs
	defer cancel()
	bufs := make([]kernels.Buffer, ranks)
	for r := range bufs {
		bufs[r] = dev.Alloc(n)
	}
	start := make([]chan struct{}, ranks)
	done := make(chan error, ranks)
	for r := 1; r < ranks; r++ {
		start[r] = make(chan struct{})
		go func() {
			for range start[r] {
				err := rings[r].AllReduce(ctx, bufs[r], Avg)
				if err == nil {
					err = rings[r].Broadcast(ctx, bufs[r], 1)
				}
				if err == nil {
					err = rings[r].Barrier(ctx)
				}
				done <- err
			}
		}()
	}
	defer func() {
		for r := 1; r < ranks; r++ {
			close(start[r])
		}
	}()
	step := func() {
		for r := 1; r < ranks; r++ {
			start[r] <- struct{}{}
		}
		err := rings[0].AllReduce(ctx, bufs[0], Avg)
		if err == nil {
			err = rings[0].Broadcast(ctx, bufs[0], 1)
		}
		if err == nil {
			err = rings[0].Barrier(ctx)
		}
		for r := 1; r < ranks; r++ {
			if e := <-done; err == nil {
				err = e
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	step()
	if a := testing.AllocsPerRun(20, step); a > 0 {
		t.Errorf("%v allocations per step of three collectives on %d ranks", a, ranks)
	}
}

// stagedDevice is a device whose buffers the ring cannot touch directly:
// it must stage them through Download and Upload.
type stagedDevice struct {
	kernels.Device // nil: any other method panics
	downloads      int
	uploads        int
}

type stagedBuffer struct{ data []float32 }

func (b *stagedBuffer) Len() int { return len(b.data) }

func (d *stagedDevice) Alloc(n int) kernels.Buffer { return &stagedBuffer{make([]float32, n)} }
func (d *stagedDevice) Upload(dst kernels.Buffer, src []float32) {
	d.uploads++
	copy(dst.(*stagedBuffer).data, src)
}
func (d *stagedDevice) Download(dst []float32, src kernels.Buffer) {
	d.downloads++
	copy(dst, src.(*stagedBuffer).data)
}

func TestRingStaged(t *testing.T) {
	const ranks, n = 3, 1001
	devs := make([]*stagedDevice, ranks)
	for r := range devs {
		devs[r] = &stagedDevice{}
	}
	rings := mustRings(t, ranks, func(c *RingConfig) { c.Device = devs[c.Rank] })
	xs := inputs(ranks, n, 3)
	got := make([][]float32, ranks)
	errs := parallel(ranks, func(r int) error {
		buf := devs[r].Alloc(n)
		devs[r].Upload(buf, xs[r])
		err := rings[r].AllReduce(context.Background(), buf, Sum)
		got[r] = buf.(*stagedBuffer).data
		if err == nil {
			err = rings[r].Broadcast(context.Background(), buf, 2)
		}
		return err
	})
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	checkReduced(t, xs, got, Sum)
	for r, d := range devs {
		// Set-up upload; AllReduce down and up; Broadcast down at the
		// root, up elsewhere.
		wantDown, wantUp := 1, 3
		if r == 2 {
			wantDown, wantUp = 2, 2
		}
		if d.downloads != wantDown || d.uploads != wantUp {
			t.Errorf("rank %d: %d downloads, %d uploads; want %d and %d", r, d.downloads, d.uploads, wantDown, wantUp)
		}
	}
}
