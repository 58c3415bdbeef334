package cpu_test

import (
	"testing"

	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/kernels/kernelstest"
)

func TestConformance(t *testing.T) {
	for _, name := range []string{"openblas", "gonum"} {
		t.Run(name, func(t *testing.T) {
			d, err := cpu.NewWithBLAS(name)
			if err != nil {
				t.Skip(err)
			}
			kernelstest.Run(t, d)
		})
	}
}
