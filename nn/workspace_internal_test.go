package nn

import (
	"testing"

	"github.com/macdist/macdist/kernels/cpu"
)

func TestSlotReusesAndShrinksByView(t *testing.T) {
	dev := cpu.New()
	var s slot
	a := s.ensure(dev, []int{4, 5})
	base := s.base
	if a.Len() != 20 || !a.SameShape([]int{4, 5}) {
		t.Fatalf("ensure [4 5]: %v", a.Shape)
	}
	b := s.ensure(dev, []int{2, 5})
	if b.Data.Len() != 10 || s.base != base {
		t.Errorf("shrinking reallocated (len %d)", b.Data.Len())
	}
	c := s.ensure(dev, []int{4, 5})
	if c.Data != base {
		t.Error("growing back to capacity does not use the base buffer")
	}
	s.ensure(dev, []int{5, 5})
	if s.base == base || s.cap != 25 {
		t.Errorf("growing past capacity kept the old buffer (cap %d)", s.cap)
	}
	shape := []int{5, 5}
	if allocs := testing.AllocsPerRun(10, func() { s.ensure(dev, shape) }); allocs != 0 {
		t.Errorf("ensure of an unchanged shape allocates %.0f times", allocs)
	}
}
