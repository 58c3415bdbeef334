package collective

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/macdist/macdist/kernels/cpu"
)

func TestLocalAllReduce(t *testing.T) {
	for _, ranks := range []int{1, 2, 3, 7} {
		for _, n := range []int{0, 1, 5, 1001} {
			for _, op := range []Op{Sum, Avg} {
				t.Run(fmt.Sprintf("ranks=%d/n=%d/%v", ranks, n, op), func(t *testing.T) {
					comms := NewLocal(ranks)
					xs := inputs(ranks, n, 9)
					for range 2 { // the second call reuses the group's state
						checkReduced(t, xs, allReduce(t, comms, xs, op), op)
					}
				})
			}
		}
	}
}

func TestLocalBroadcast(t *testing.T) {
	const ranks, n = 4, 33
	comms := NewLocal(ranks)
	for root := range ranks {
		xs := inputs(ranks, n, uint64(root))
		got := make([][]float32, ranks)
		errs := parallel(ranks, func(r int) error {
			buf := dev.Alloc(n)
			dev.Upload(buf, xs[r])
			got[r] = cpu.Data(buf)
			return comms[r].Broadcast(context.Background(), buf, root)
		})
		for r, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
			sameBits(t, fmt.Sprintf("root %d, rank %d", root, r), got[r], xs[root])
		}
	}
}

func TestLocalBarrier(t *testing.T) {
	testBarrier(t, NewLocal(4))
}

func TestLocalMismatch(t *testing.T) {
	comms := NewLocal(3)
	errs := parallel(3, func(r int) error {
		if r == 2 {
			return comms[r].Barrier(context.Background())
		}
		return comms[r].AllReduce(context.Background(), dev.Alloc(4), Sum)
	})
	for r, err := range errs {
		if !errors.Is(err, ErrMismatch) {
			t.Errorf("rank %d: %v, want ErrMismatch", r, err)
		}
	}
}

func TestLocalAbort(t *testing.T) {
	comms := NewLocal(3)
	cause := errors.New("lost a member")
	errs := make(chan error, 2)
	for r := range 2 {
		go func() { errs <- comms[r].AllReduce(context.Background(), dev.Alloc(4), Sum) }()
	}
	time.Sleep(20 * time.Millisecond)
	comms[2].Abort(cause) // rank 2 never joined; its abort breaks the group
	for range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, cause) {
				t.Errorf("got %v, want the abort's cause", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Abort did not wake a blocked call")
		}
	}
	if err := comms[0].Barrier(context.Background()); !errors.Is(err, cause) {
		t.Errorf("after Abort: %v", err)
	}
}

func TestLocalContext(t *testing.T) {
	comms := NewLocal(2)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := comms[0].Barrier(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the context's deadline", err)
	}
}
