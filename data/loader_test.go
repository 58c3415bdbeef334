package data

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// byteSet is an in-memory byte dataset of n c×h×w images with random
// content, augmenting with crop padding pad and flips when augment.
func byteSet(t testing.TB, n, c, h, w, pad int, augment bool) *bytesDataset {
	r := rand.New(rand.NewPCG(1, 1))
	d := &bytesDataset{name: "test", pix: make([]uint8, n*c*h*w), labels: make([]uint8, n), n: n, c: c, h: h, w: w, classes: 10}
	for i := range d.pix {
		d.pix[i] = uint8(r.IntN(256))
	}
	for i := range d.labels {
		d.labels[i] = uint8(i % 10)
	}
	if err := d.setStats(identityStats); err != nil {
		t.Fatal(err)
	}
	if augment {
		d.setAugment(pad, true)
	}
	return d
}

type collected struct {
	x     []float32
	y     []int32
	index []int
	sizes []int
}

// drain runs one epoch and copies out everything it yields.
func drain(t testing.TB, l *Loader, epoch int) collected {
	t.Helper()
	if err := l.Start(context.Background(), epoch); err != nil {
		t.Fatal(err)
	}
	var c collected
	for step := 0; ; step++ {
		b, err := l.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if b.Step != step || b.Epoch != epoch || len(b.X) != b.N*b.C*b.H*b.W || len(b.Y) != b.N {
			t.Fatalf("batch step %d epoch %d N %d len(X) %d, want step %d epoch %d", b.Step, b.Epoch, b.N, len(b.X), step, epoch)
		}
		c.x = append(c.x, b.X...)
		c.y = append(c.y, b.Y...)
		c.index = append(c.index, b.Index...)
		c.sizes = append(c.sizes, b.N)
	}
	if len(c.sizes) != l.Len() {
		t.Fatalf("%d batches, Len() = %d", len(c.sizes), l.Len())
	}
	return c
}

func newLoader(t testing.TB, ds Dataset, cfg LoaderConfig) *Loader {
	t.Helper()
	l, err := NewLoader(ds, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestLoaderDeterministic: worker count and prefetch depth change nothing;
// epoch and seed change order and augmentation.
func TestLoaderDeterministic(t *testing.T) {
	ds := byteSet(t, 103, 3, 8, 8, 2, true)
	base := LoaderConfig{BatchSize: 8, Shuffle: true, Seed: 42, Workers: 1, Prefetch: 1}
	ref := drain(t, newLoader(t, ds, base), 3)
	for _, wp := range [][2]int{{2, 1}, {3, 2}, {5, 8}, {16, 3}} {
		cfg := base
		cfg.Workers, cfg.Prefetch = wp[0], wp[1]
		got := drain(t, newLoader(t, ds, cfg), 3)
		if !slices.Equal(got.x, ref.x) || !slices.Equal(got.y, ref.y) || !slices.Equal(got.index, ref.index) {
			t.Errorf("workers %d prefetch %d: batches differ from 1 worker", wp[0], wp[1])
		}
	}
	// Each sample equals a direct Get with the documented generator.
	dst := make([]float32, 3*8*8)
	for k, i := range ref.index {
		y, _ := ds.Get(i, dst, AugmentRand(42, 3, i))
		if !slices.Equal(dst, ref.x[k*len(dst):(k+1)*len(dst)]) || int32(y) != ref.y[k] {
			t.Fatalf("position %d (sample %d) differs from Get with AugmentRand", k, i)
		}
	}
	// Augmentation actually happens and depends on the epoch.
	other := drain(t, newLoader(t, ds, base), 4)
	if slices.Equal(other.index, ref.index) {
		t.Error("epochs 3 and 4 in the same order")
	}
	plain := make([]float32, len(dst))
	augmented := 0
	for k, i := range ref.index {
		ds.Get(i, plain, nil)
		if !slices.Equal(plain, ref.x[k*len(dst):(k+1)*len(dst)]) {
			augmented++
		}
	}
	if augmented < len(ref.index)/2 {
		t.Errorf("only %d of %d samples augmented", augmented, len(ref.index))
	}
	noAug := base
	noAug.NoAugment = true
	na := drain(t, newLoader(t, ds, noAug), 3)
	for k, i := range na.index {
		ds.Get(i, plain, nil)
		if !slices.Equal(plain, na.x[k*len(dst):(k+1)*len(dst)]) {
			t.Fatalf("NoAugment: sample %d augmented", i)
		}
	}
}

func TestLoaderBatching(t *testing.T) {
	ds := byteSet(t, 23, 1, 2, 2, 0, false)
	for _, tc := range []struct {
		name      string
		cfg       LoaderConfig
		sizes     []int
		wantIndex []int
	}{
		{"partial last", LoaderConfig{BatchSize: 5}, []int{5, 5, 5, 5, 3}, nil},
		{"drop last batch", LoaderConfig{BatchSize: 5, DropLastBatch: true}, []int{5, 5, 5, 5}, nil},
		{"rank 1 of 4, padded", LoaderConfig{BatchSize: 4, Rank: 1, World: 4}, []int{4, 2}, []int{1, 5, 9, 13, 17, 21}},
		{"rank 3 of 4, padded", LoaderConfig{BatchSize: 4, Rank: 3, World: 4}, []int{4, 2}, []int{3, 7, 11, 15, 19, 0}},
		{"rank 3 of 4, sampler drop", LoaderConfig{BatchSize: 4, Rank: 3, World: 4, DropLast: true}, []int{4, 1}, []int{3, 7, 11, 15, 19}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Workers = 2
			c := drain(t, newLoader(t, ds, tc.cfg), 0)
			if !slices.Equal(c.sizes, tc.sizes) {
				t.Errorf("batch sizes %v, want %v", c.sizes, tc.sizes)
			}
			if tc.wantIndex != nil && !slices.Equal(c.index, tc.wantIndex) {
				t.Errorf("indices %v, want %v", c.index, tc.wantIndex)
			}
			for k, i := range c.index {
				if c.y[k] != int32(i%10) {
					t.Fatalf("label of sample %d = %d", i, c.y[k])
				}
			}
		})
	}
	if _, err := NewLoader(ds, LoaderConfig{BatchSize: 30, DropLastBatch: true}); err == nil {
		t.Error("a loader with no batch was accepted")
	}
	if _, err := NewLoader(ds, LoaderConfig{BatchSize: 1, Rank: 2, World: 2}); err == nil {
		t.Error("rank 2 of 2 accepted")
	}
}

// TestShardsUnionIsGlobalBatch: step s of R ranks with batch B together hold
// exactly step s of one process with batch R·B, and the same sample values.
func TestShardsUnionIsGlobalBatch(t *testing.T) {
	ds := byteSet(t, 96, 3, 4, 4, 1, true)
	const world, bs = 4, 3
	for _, shuffle := range []bool{false, true} {
		single := drain(t, newLoader(t, ds, LoaderConfig{BatchSize: world * bs, Shuffle: shuffle, Seed: 9, Workers: 2}), 1)
		chw := 3 * 4 * 4
		where := map[int][]float32{}
		shards := make([]collected, world)
		for r := range world {
			shards[r] = drain(t, newLoader(t, ds, LoaderConfig{BatchSize: bs, Rank: r, World: world, Shuffle: shuffle, Seed: 9, Workers: 2}), 1)
			for k, i := range shards[r].index {
				where[i] = shards[r].x[k*chw : (k+1)*chw]
			}
		}
		for step := range 96 / (world * bs) {
			var union []int
			for r := range world {
				union = append(union, shards[r].index[step*bs:(step+1)*bs]...)
			}
			global := single.index[step*world*bs : (step+1)*world*bs]
			slices.Sort(union)
			if g := slices.Sorted(slices.Values(global)); !slices.Equal(union, g) {
				t.Fatalf("shuffle %v step %d: union of shards %v, single batch %v", shuffle, step, union, g)
			}
			if !shuffle {
				// The identity order: step s is samples s·R·B … (s+1)·R·B−1.
				for k, i := range global {
					if i != step*world*bs+k {
						t.Fatalf("unshuffled step %d holds %v", step, global)
					}
				}
			}
		}
		for k, i := range single.index {
			if !slices.Equal(where[i], single.x[k*chw:(k+1)*chw]) {
				t.Fatalf("shuffle %v: sample %d decoded differently on its rank", shuffle, i)
			}
		}
	}
}

// TestLoaderNoAllocs: in steady state a batch of an in-memory dataset costs
// no allocation anywhere (consumer, scheduler or workers).
func TestLoaderNoAllocs(t *testing.T) {
	ds := byteSet(t, 20000, 3, 8, 8, 2, true)
	l := newLoader(t, ds, LoaderConfig{BatchSize: 8, Shuffle: true, Workers: 2, Prefetch: 2})
	if err := l.Start(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	for range 10 { // warm up: goroutine stacks, lazily made channels
		if _, err := l.Next(); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	allocs := testing.AllocsPerRun(500, func() {
		var b *Batch
		b, err = l.Next()
		if err == nil {
			l.Release(b)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if allocs != 0 {
		t.Errorf("%.2f allocations per batch, want 0", allocs)
	}
}

// gate is a dataset whose Get blocks until released, to catch the loader
// with work in flight.
type gate struct {
	Dataset
	entered chan struct{}
	open    chan struct{}
}

func (g *gate) Get(i int, dst []float32, rng *rand.Rand) (int, error) {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.open
	return g.Dataset.Get(i, dst, rng)
}

func TestLoaderCancel(t *testing.T) {
	before := runtime.NumGoroutine()
	ds := byteSet(t, 200, 1, 4, 4, 0, false)
	l := newLoader(t, ds, LoaderConfig{BatchSize: 4, Workers: 3})
	ctx, cancel := context.WithCancel(context.Background())
	if err := l.Start(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Next(); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := l.Next(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next after cancel: %v, want context.Canceled", err)
	}
	if _, err := l.Next(); !errors.Is(err, context.Canceled) {
		t.Fatalf("second Next after cancel: %v", err)
	}
	waitGoroutines(t, before)

	// Cancelled while the consumer waits on workers stuck in Get.
	g := &gate{Dataset: ds, entered: make(chan struct{}, 1), open: make(chan struct{})}
	lg := newLoader(t, g, LoaderConfig{BatchSize: 4, Workers: 2})
	ctx, cancel = context.WithCancel(context.Background())
	lg.Start(ctx, 0)
	errc := make(chan error, 1)
	go func() { _, err := lg.Next(); errc <- err }()
	<-g.entered // a worker is inside Get, the consumer is (about to be) waiting
	cancel()
	// Next answers at once, without waiting for the stuck worker.
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("blocked Next after cancel: %v", err)
	}
	closed := make(chan struct{})
	go func() { lg.Close(); close(closed) }() // Close waits for the worker
	select {
	case <-closed:
		t.Fatal("Close returned while a worker was still inside Get")
	case <-time.After(20 * time.Millisecond):
	}
	close(g.open)
	<-closed
	waitGoroutines(t, before)

	// A new epoch after a cancelled one works.
	c := drain(t, l, 1)
	if len(c.index) != 200 {
		t.Fatalf("epoch after cancel: %d samples", len(c.index))
	}
	waitGoroutines(t, before)
}

func TestLoaderClose(t *testing.T) {
	before := runtime.NumGoroutine()
	ds := byteSet(t, 500, 1, 4, 4, 0, false)
	l, err := NewLoader(ds, LoaderConfig{BatchSize: 4, Workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	l.Start(context.Background(), 0)
	l.Next()
	// Restarting mid-epoch abandons the old epoch's goroutines.
	l.Start(context.Background(), 1)
	b, err := l.Next()
	if err != nil || b.Epoch != 1 || b.Step != 0 {
		t.Fatalf("after restart: %+v, %v", b, err)
	}
	l.Close()
	l.Close()
	if _, err := l.Next(); !errors.Is(err, ErrClosed) {
		t.Errorf("Next after Close: %v", err)
	}
	if err := l.Start(context.Background(), 2); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: %v", err)
	}
	waitGoroutines(t, before)
}

// broken fails on some indices as a corrupt file would.
type broken struct {
	Dataset
	bad int
}

func (b *broken) Get(i int, dst []float32, rng *rand.Rand) (int, error) {
	if i == b.bad {
		return 0, &SampleError{Index: i, File: "/data/train/cat/0042.jpg", Err: errors.New("invalid JPEG format: missing SOI marker")}
	}
	return b.Dataset.Get(i, dst, rng)
}

func TestLoaderSampleError(t *testing.T) {
	before := runtime.NumGoroutine()
	ds := &broken{Dataset: byteSet(t, 40, 1, 2, 2, 0, false), bad: 17}
	l := newLoader(t, ds, LoaderConfig{BatchSize: 4, Workers: 3})
	l.Start(context.Background(), 5)
	var err error
	steps := 0
	for err == nil {
		_, err = l.Next()
		steps++
	}
	if steps != 5 { // samples 16..19 are batch 4
		t.Errorf("error surfaced at batch %d, want 4", steps-1)
	}
	var se *SampleError
	if !errors.As(err, &se) || se.Index != 17 || se.File != "/data/train/cat/0042.jpg" {
		t.Fatalf("error %v does not carry the sample", err)
	}
	for _, s := range []string{"epoch 5", "batch 4", "sample 17", "0042.jpg", "missing SOI"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
	if _, again := l.Next(); again != err {
		t.Errorf("Next after an error: %v", again)
	}
	l.Close()
	waitGoroutines(t, before)
}

// TestLoaderReleaseEarly: releasing before Next lets the buffer refill,
// and later batches are still right.
func TestLoaderReleaseEarly(t *testing.T) {
	ds := byteSet(t, 64, 1, 2, 2, 0, false)
	l := newLoader(t, ds, LoaderConfig{BatchSize: 4, Workers: 2, Prefetch: 1})
	l.Start(context.Background(), 0)
	dst := make([]float32, 4)
	for {
		b, err := l.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for k, i := range b.Index {
			ds.Get(i, dst, nil)
			if !slices.Equal(dst, b.X[k*4:(k+1)*4]) {
				t.Fatalf("batch %d sample %d wrong", b.Step, i)
			}
		}
		l.Release(b)
		l.Release(b) // twice is harmless
	}
}

// TestLoaderStartAt: resuming mid-epoch gives the rest of the epoch exactly.
func TestLoaderStartAt(t *testing.T) {
	ds := byteSet(t, 50, 3, 4, 4, 1, true)
	cfg := LoaderConfig{BatchSize: 4, Shuffle: true, Seed: 3, Workers: 2}
	full := drain(t, newLoader(t, ds, cfg), 2)
	l := newLoader(t, ds, cfg)
	if err := l.StartAt(context.Background(), 2, 5); err != nil {
		t.Fatal(err)
	}
	chw := 3 * 4 * 4
	for step := 5; ; step++ {
		b, err := l.Next()
		if err == io.EOF {
			if step != l.Len() {
				t.Fatalf("ended at batch %d of %d", step, l.Len())
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		lo := step * 4
		if b.Step != step || !slices.Equal(b.Index, full.index[lo:lo+b.N]) || !slices.Equal(b.X, full.x[lo*chw:(lo+b.N)*chw]) {
			t.Fatalf("batch %d differs from the uninterrupted epoch", step)
		}
	}
	if err := l.StartAt(context.Background(), 0, l.Len()+1); err == nil {
		t.Error("start past the end accepted")
	}
}
