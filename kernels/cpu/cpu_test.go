package cpu_test

import (
	"testing"

	"github.com/macdist/macdist/kernels"

	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/kernels/kernelstest"
)

func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func() (*cpu.Device, error)
	}{
		{"openblas", func() (*cpu.Device, error) { return cpu.NewWithBLAS("openblas") }},
		{"gonum", func() (*cpu.Device, error) { return cpu.NewWithBLAS("gonum") }},
		// The two convolution paths, each with New's BLAS.
		{"onednn", func() (*cpu.Device, error) { return cpu.NewWithDNN("onednn") }},
		{"im2col", func() (*cpu.Device, error) { return cpu.NewWithDNN("none") }},
		// The oneDNN path in each activation layout besides its default.
		{"onednn-nhwc", func() (*cpu.Device, error) { return inLayout(kernels.NHWC) }},
		{"onednn-blocked16", func() (*cpu.Device, error) { return inLayout(kernels.Blocked16) }},
		// And with oneDNN's choice of algorithm (Winograd where it takes it).
		{"onednn-auto", func() (*cpu.Device, error) {
			d, err := inLayout(kernels.Blocked16)
			if err != nil {
				return nil, err
			}
			return d, d.SetConvAlgorithm(cpu.ConvAuto)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := tc.open()
			if err != nil {
				t.Skip(err)
			}
			kernelstest.Run(t, d)
		})
	}
}

// inLayout returns a Device on the oneDNN path keeping l.
func inLayout(l kernels.Layout) (*cpu.Device, error) {
	d, err := cpu.NewWithDNN("onednn")
	if err != nil {
		return nil, err
	}
	return d, d.SetActivationLayout(l)
}
