package gpucheck

import (
	"testing"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
)

// plainDevice has a Device's methods and none of the optional ones.
type plainDevice struct{ kernels.Device }

// gpuLike has the optional methods of kernels/cuda's Device, recording
// the calls that reach it.
type gpuLike struct {
	kernels.Device
	convolves      bool
	fwd, bwd, perm int
}

func (g *gpuLike) LaunchBound() bool { return true }
func (g *gpuLike) Convolves(kernels.ConvGeom, int, int, int, bool) bool {
	return g.convolves
}
func (g *gpuLike) ConvForward(_, _, _, _ kernels.Buffer, _ kernels.ConvGeom, _, _, _ int) { g.fwd++ }
func (g *gpuLike) ConvBackward(_, _, _, _, _, _ kernels.Buffer, _ kernels.ConvGeom, _, _, _ int) {
	g.bwd++
}
func (g *gpuLike) CopyStrided(kernels.Buffer, int, [4]int, kernels.Buffer, int, [4]int, [4]int) {
	g.perm++
}

// TestForLayersKeepsPaths checks that layers built on a Profiler see the
// optional methods the wrapped device has, and only those: a GPU's
// convolutions must reach cuDNN through it, and be charged to it.
func TestForLayersKeepsPaths(t *testing.T) {
	base := cpu.New()
	for _, tc := range []struct {
		name                        string
		dev                         kernels.Device
		launchBound, conv, permuter bool
	}{
		{"plain", plainDevice{base}, false, false, false},
		{"gpu-like convolving", &gpuLike{Device: base, convolves: true}, true, true, true},
		{"gpu-like refusing", &gpuLike{Device: base}, true, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewProfiler(tc.dev)
			d := p.ForLayers()
			if got := kernels.IsLaunchBound(d); got != tc.launchBound {
				t.Errorf("IsLaunchBound = %v, want %v", got, tc.launchBound)
			}
			cv, ok := d.(kernels.Convolver)
			if got := ok && cv.Convolves(kernels.ConvGeom{}, 1, 1, 1, false); got != tc.conv {
				t.Errorf("Convolves = %v, want %v", got, tc.conv)
			}
			pm, ok := d.(kernels.Permuter)
			if ok != tc.permuter {
				t.Fatalf("Permuter: %v, want %v", ok, tc.permuter)
			}
			g, _ := tc.dev.(*gpuLike)
			if !tc.conv {
				return
			}
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			cv.ConvForward(nil, nil, nil, nil, kernels.ConvGeom{}, 1, 1, 1)
			cv.ConvBackward(nil, nil, nil, nil, nil, nil, kernels.ConvGeom{}, 1, 1, 1)
			cv.ConvBackward(nil, nil, nil, nil, nil, nil, kernels.ConvGeom{}, 1, 1, 1)
			pm.CopyStrided(nil, 0, [4]int{}, nil, 0, [4]int{}, [4]int{})
			p.Stop()
			if g.fwd != 1 || g.bwd != 2 || g.perm != 1 {
				t.Errorf("calls reaching the device: forward %d, backward %d, CopyStrided %d; want 1, 2, 1", g.fwd, g.bwd, g.perm)
			}
			calls := map[string]int{}
			for _, o := range p.Ops() {
				calls[o.Name] = o.Calls
			}
			if calls["ConvForward"] != 1 || calls["ConvBackward"] != 2 || calls["CopyStrided"] != 1 {
				t.Errorf("profile %v, want ConvForward 1, ConvBackward 2, CopyStrided 1", calls)
			}
		})
	}
}
