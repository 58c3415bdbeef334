package nn

import (
	"testing"

	"github.com/macdist/macdist/kernels/cpu"
)

func TestLentKeepsItsBufferUntilReleased(t *testing.T) {
	dev := cpu.New()
	var a, b lent
	x := a.ensure(dev, []int{2, 8})
	first := x.Data
	if got := a.ensure(dev, []int{2, 8}).Data; got != first {
		t.Fatal("a borrower that nobody released lost its buffer")
	}
	// Held, so b gets another buffer.
	if b.ensure(dev, []int{2, 8}).Data == first {
		t.Fatal("two borrowers share a buffer that neither gave back")
	}
	release(x)
	// a's buffer is free again: the next borrower of its size takes it,
	// and a, which no longer holds it, borrows anew.
	var c lent
	if c.ensure(dev, []int{16}).Data != first {
		t.Error("a released buffer is not lent again")
	}
	if a.ensure(dev, []int{2, 8}).Data == first {
		t.Error("a borrower whose buffer was released and lent to another still uses it")
	}
	if got, want := LentBytes(dev), int64(3*16*4); got != want {
		t.Errorf("pool holds %d bytes, want %d (three buffers of 16)", got, want)
	}
}

func TestLentSmallerTakesAView(t *testing.T) {
	dev := cpu.New()
	var a, b lent
	release(a.ensure(dev, []int{10}))
	y := b.ensure(dev, []int{4})
	if y.Data.Len() != 4 || !y.SameShape([]int{4}) {
		t.Fatalf("ensure [4] from a pool of one buffer of 10: len %d, shape %v", y.Data.Len(), y.Shape)
	}
	if LentBytes(dev) != 40 {
		t.Errorf("a smaller request allocated: pool of %d bytes", LentBytes(dev))
	}
}

func TestConsumedKeepsWhatIsPassedOn(t *testing.T) {
	dev := cpu.New()
	var a, b lent
	dy := a.ensure(dev, []int{6})
	alias := &Tensor{Shape: []int{2, 3}, Data: dy.Data} // as Flatten's Backward returns
	consumed(dy, alias)
	if b.ensure(dev, []int{6}).Data == dy.Data {
		t.Fatal("a gradient passed on as the next one's memory was given back")
	}
	consumed(alias, nil)
	var c lent
	if c.ensure(dev, []int{6}).Data != dy.Data {
		t.Error("a consumed gradient was not given back")
	}
}

func TestLentSteadyStateAllocatesNothing(t *testing.T) {
	dev := cpu.New()
	var a, b, c lent
	step := func() {
		x := a.ensure(dev, []int{8, 4})
		y := b.ensure(dev, []int{8, 2})
		release(x)
		z := c.ensure(dev, []int{8, 3})
		release(y)
		release(z)
	}
	step()
	if n := testing.AllocsPerRun(10, step); n != 0 {
		t.Errorf("%v allocations per round of borrowing and giving back", n)
	}
}
