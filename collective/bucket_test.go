package collective

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
)

func gradBuffers(lengths []int) []kernels.Buffer {
	gs := make([]kernels.Buffer, len(lengths))
	for i, n := range lengths {
		gs[i] = dev.Alloc(n)
	}
	return gs
}

func TestBucketLayout(t *testing.T) {
	for _, tc := range []struct {
		name    string
		lengths []int
		cfg     BucketConfig
		want    []BucketInfo
	}{
		{"thresholds", []int{10, 20, 30, 40}, BucketConfig{FirstBytes: 100, BucketBytes: 200},
			[]BucketInfo{{[]int{3}, 40}, {[]int{2, 1}, 50}, {[]int{0}, 10}}},
		{"large gradient alone", []int{5, 1000, 5, 5}, BucketConfig{FirstBytes: 40, BucketBytes: 80},
			[]BucketInfo{{[]int{3, 2}, 10}, {[]int{1}, 1000}, {[]int{0}, 5}}},
		{"exact fit leaves no empty bucket", []int{25, 25}, BucketConfig{FirstBytes: 100, BucketBytes: 100},
			[]BucketInfo{{[]int{1}, 25}, {[]int{0}, 25}}},
		{"defaults: small model in one bucket", []int{100, 200, 300}, BucketConfig{},
			[]BucketInfo{{[]int{2, 1, 0}, 600}}},
		// 1 MiB closes the first bucket; 24 MiB does not close the next.
		{"defaults: 1 MiB, then 25 MiB", []int{1 << 20, 6<<20 - 1<<18, 1 << 18, 1 << 18},
			BucketConfig{}, []BucketInfo{{[]int{3}, 1 << 18}, {[]int{2, 1, 0}, 7 << 20}}},
		{"no gradients: one bucket for the statistics", nil, BucketConfig{}, []BucketInfo{{nil, 0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var layouts [][]BucketInfo
			for range 2 { // two ranks lay out the same buckets
				b, err := NewBucketer(NewLocal(1)[0], dev, gradBuffers(tc.lengths), tc.cfg)
				if err != nil {
					t.Fatal(err)
				}
				layouts = append(layouts, b.Buckets())
				b.Close()
			}
			if !reflect.DeepEqual(layouts[0], tc.want) {
				t.Errorf("got %v, want %v", layouts[0], tc.want)
			}
			if !reflect.DeepEqual(layouts[0], layouts[1]) {
				t.Errorf("ranks disagree: %v and %v", layouts[0], layouts[1])
			}
		})
	}
}

// recorder logs the lengths of the AllReduces it passes on, and signals each.
type recorder struct {
	Communicator
	mu    sync.Mutex
	log   []int
	calls chan int
}

func newRecorder(c Communicator) *recorder {
	return &recorder{Communicator: c, calls: make(chan int, 100)}
}

func (c *recorder) AllReduce(ctx context.Context, buf kernels.Buffer, op Op) error {
	c.mu.Lock()
	c.log = append(c.log, buf.Len())
	c.mu.Unlock()
	c.calls <- buf.Len()
	return c.Communicator.AllReduce(ctx, buf, op)
}

// TestBucketer runs a few steps on 3 ranks, each marking its gradients ready
// in its own random order, with statistics vectors of changing length, and
// checks the averages, the agreement between ranks, the collectives' order
// and the counters.
func TestBucketer(t *testing.T) {
	const ranks = 3
	rng := rand.New(rand.NewPCG(1, 2))
	lengths := make([]int, 17)
	total := 0
	for i := range lengths {
		lengths[i] = 1 + rng.IntN(3000)
		total += lengths[i]
	}
	cfg := BucketConfig{FirstBytes: 1 << 10, BucketBytes: 8 << 10}
	for _, kind := range []string{"ring", "local"} {
		t.Run(kind, func(t *testing.T) {
			var comms []Communicator
			if kind == "ring" {
				comms = asComms(mustRings(t, ranks, nil))
			} else {
				comms = NewLocal(ranks)
			}
			recs := make([]*recorder, ranks)
			bs := make([]*Bucketer, ranks)
			grads := make([][]kernels.Buffer, ranks)
			for r := range ranks {
				recs[r] = newRecorder(comms[r])
				grads[r] = gradBuffers(lengths)
				var err error
				if bs[r], err = NewBucketer(recs[r], dev, grads[r], cfg); err != nil {
					t.Fatal(err)
				}
				defer bs[r].Close()
			}
			nb := len(bs[0].Buckets())
			if nb < 4 {
				t.Fatalf("only %d buckets: the test needs several", nb)
			}
			wantBytes := int64(0)
			for step, ne := range []int{123, 0, 50, 123} {
				gs := make([][][]float32, len(lengths)) // [param][rank]
				for i, n := range lengths {
					gs[i] = inputs(ranks, n, uint64(100*step+i))
				}
				es := inputs(ranks, ne, uint64(step))
				extras := make([]kernels.Buffer, ranks)
				errs := parallel(ranks, func(r int) error {
					for i := range lengths {
						dev.Upload(grads[r][i], gs[i][r])
					}
					if ne > 0 {
						extras[r] = dev.Alloc(ne)
						dev.Upload(extras[r], es[r])
					}
					order := rand.New(rand.NewPCG(uint64(step), uint64(r))).Perm(len(lengths))
					bs[r].Start(context.Background())
					for _, i := range order {
						bs[r].MarkReady(i)
						bs[r].MarkReady(i) // twice is harmless
						if i%5 == 0 {
							time.Sleep(time.Millisecond)
						}
					}
					return bs[r].Finish(extras[r])
				})
				for r, err := range errs {
					if err != nil {
						t.Fatalf("step %d, rank %d: %v", step, r, err)
					}
				}
				for i := range lengths {
					got := make([][]float32, ranks)
					for r := range ranks {
						got[r] = cpu.Data(grads[r][i])
					}
					checkReduced(t, gs[i], got, Avg)
				}
				if ne > 0 {
					got := make([][]float32, ranks)
					for r := range ranks {
						got[r] = cpu.Data(extras[r])
					}
					checkReduced(t, es, got, Avg)
				}
				wantBytes += int64(4 * (total + ne))
				c := bs[0].Counters()
				if c.Steps != int64(step+1) || c.Buckets != nb || c.LastStepBytes != int64(4*(total+ne)) || c.Bytes != wantBytes {
					t.Errorf("step %d: counters %+v; want %d steps, %d buckets, %d bytes last step, %d in all",
						step, c, step+1, nb, 4*(total+ne), wantBytes)
				}
			}
			// Every rank issued the same collectives in bucket order,
			// whatever order its gradients became ready in.
			var want []int
			for range 4 {
				for k, info := range bs[0].Buckets() {
					want = append(want, info.Elements)
					if k == nb-1 {
						want[len(want)-1] = -1 // depends on the statistics
					}
				}
			}
			for r, rec := range recs {
				got := append([]int(nil), rec.log...)
				for k := nb - 1; k < len(got); k += nb {
					got[k] = -1
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("rank %d issued %v, want %v", r, rec.log, want)
				}
			}
		})
	}
}

// TestBucketerOverlap checks that a bucket goes out as soon as its
// gradients are ready, before Finish.
func TestBucketerOverlap(t *testing.T) {
	const ranks = 2
	comms := NewLocal(ranks)
	lengths := []int{100, 100, 100, 100}
	errs := parallel(ranks, func(r int) error {
		rec := newRecorder(comms[r])
		b, err := NewBucketer(rec, dev, gradBuffers(lengths), BucketConfig{FirstBytes: 400, BucketBytes: 400})
		if err != nil {
			return err
		}
		defer b.Close()
		b.Start(context.Background())
		b.MarkReady(2) // bucket 1: not yet, bucket 0 is not ready
		var early error
		select {
		case n := <-rec.calls:
			early = fmt.Errorf("an AllReduce of %d elements went out before its bucket was ready", n)
		case <-time.After(20 * time.Millisecond):
		}
		b.MarkReady(3) // buckets 0 and 1 are ready now
		for k := range 2 {
			if early != nil {
				break
			}
			select {
			case <-rec.calls:
			case <-time.After(time.Minute):
				early = fmt.Errorf("bucket %d did not go out before Finish", k)
			}
		}
		if err := b.Finish(nil); early == nil {
			early = err
		}
		return early
	})
	for r, err := range errs {
		if err != nil {
			t.Errorf("rank %d: %v", r, err)
		}
	}
}

// TestBucketerAllocs checks that a steady-state step over a real ring
// allocates nothing.
func TestBucketerAllocs(t *testing.T) {
	const ranks = 2
	rings := mustRings(t, ranks, nil)
	lengths := []int{3000, 20, 5000, 20, 4000}
	bs := make([]*Bucketer, ranks)
	extras := make([]kernels.Buffer, ranks)
	for r := range ranks {
		var err error
		if bs[r], err = NewBucketer(rings[r], dev, gradBuffers(lengths), BucketConfig{FirstBytes: 4 << 10, BucketBytes: 16 << 10}); err != nil {
			t.Fatal(err)
		}
		defer bs[r].Close()
		extras[r] = dev.Alloc(77)
	}
	ctx := context.Background()
	start, done := make(chan struct{}), make(chan error)
	go func() {
		for range start {
			done <- bs[1].Reduce(ctx, extras[1])
		}
	}()
	defer close(start)
	step := func() {
		start <- struct{}{}
		err := bs[0].Reduce(ctx, extras[0])
		if e := <-done; err == nil {
			err = e
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	step()
	if a := testing.AllocsPerRun(20, step); a > 0 {
		t.Errorf("%v allocations per step", a)
	}
}
