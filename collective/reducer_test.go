package collective

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"sync"
	"testing"
)

// TestStepReducerHostCollectives checks the two host collectives of the
// StepReducer on in-process ranks: BroadcastBytes delivers the sending
// rank's bytes exactly (from the last rank here) (NaN bit patterns and lengths that are not a multiple of 4
// included), and AllReduceSum64 sums in float64 to the same bits
// everywhere.
func TestStepReducerHostCollectives(t *testing.T) {
	for _, ranks := range []int{1, 2, 3} {
		for _, n := range []int{0, 1, 6, 4099} {
			t.Run(fmt.Sprintf("ranks=%d/bytes=%d", ranks, n), func(t *testing.T) {
				want := make([]byte, n)
				for i := range want {
					want[i] = byte(i*7 + 1)
				}
				if n >= 4 {
					copy(want, []byte{0x01, 0x00, 0xc0, 0x7f}) // a signalling NaN's bits
				}
				comms := NewLocal(ranks)
				got := make([][]byte, ranks)
				sums := make([][]float64, ranks)
				errs := make([]error, ranks)
				var wg sync.WaitGroup
				for r := range ranks {
					wg.Add(1)
					go func() {
						defer wg.Done()
						sr := NewStepReducer(context.Background(), comms[r], BucketConfig{})
						defer sr.Close()
						var mine []byte
						src := ranks - 1
						if r == src {
							mine = want
						}
						if got[r], errs[r] = sr.BroadcastBytes(src, mine); errs[r] != nil {
							return
						}
						sums[r] = []float64{1e-9 * float64(r+1), 1e12 + float64(r)}
						errs[r] = sr.AllReduceSum64(sums[r])
					}()
				}
				wg.Wait()
				for r := range ranks {
					if errs[r] != nil {
						t.Fatalf("rank %d: %v", r, errs[r])
					}
					if !bytes.Equal(got[r], want) {
						t.Errorf("rank %d received %d bytes, not the sender's %d", r, len(got[r]), len(want))
					}
					var a, b float64
					for k := range ranks {
						a += 1e-9 * float64(k+1)
						b += 1e12 + float64(k)
					}
					if math.Float64bits(sums[r][0]) != math.Float64bits(a) || sums[r][1] != b {
						t.Errorf("rank %d sums %v, want [%v %v]", r, sums[r], a, b)
					}
				}
			})
		}
	}
}
