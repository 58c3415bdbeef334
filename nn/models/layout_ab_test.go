package models_test

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/models"
)

// TestLayoutAB times training steps of one model on an NCHW device, a
// Blocked16 one, an NHWC one and a Blocked16 one whose convolutions are
// oneDNN's choice (cpu.ConvAuto: Winograd for the 3×3 stride-1 ones),
// alternating, in one process: on a shared
// machine the load then falls on all alike, which separate bench runs
// cannot promise. It runs only when asked, as
//
//	MACDIST_LAYOUT_AB=model,image-size,batch,steps go test ./nn/models -run LayoutAB -v
//
// (resnet20,32,128,10 or resnet50,224,16,3), and logs the fastest and the
// median step of each.
func TestLayoutAB(t *testing.T) {
	spec := strings.Split(os.Getenv("MACDIST_LAYOUT_AB"), ",")
	if len(spec) != 4 {
		t.Skip("MACDIST_LAYOUT_AB=model,image-size,batch,steps is not set")
	}
	var num [3]int
	for i, s := range spec[1:] {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("MACDIST_LAYOUT_AB: %q is not a positive number", s)
		}
		num[i] = v
	}
	size, batch, steps := num[0], num[1], num[2]
	type variant struct {
		dev   *cpu.Device
		m     *models.Model
		x     *nn.Tensor
		ce    *nn.CrossEntropyLoss
		times []time.Duration
	}
	type config struct {
		l    kernels.Layout
		alg  cpu.ConvAlgorithm
		gemm bool
	}
	configs := []config{{kernels.NCHW, cpu.ConvDirect, false}, {kernels.Blocked16, cpu.ConvDirect, false},
		{kernels.NHWC, cpu.ConvDirect, false}, {kernels.Blocked16, cpu.ConvAuto, false}, {kernels.Blocked16, cpu.ConvAuto, true}}
	var vs []*variant
	for _, c := range configs {
		d, err := cpu.NewWithDNN("")
		if err != nil {
			t.Fatal(err)
		}
		if err := d.SetActivationLayout(c.l); err != nil {
			t.Skip(err)
		}
		if err := d.SetConvAlgorithm(c.alg); err != nil {
			t.Skip(err)
		}
		if err := d.SetGemmOnDNN(c.gemm); err != nil {
			t.Skip(err)
		}
		m := mustNew(t, d, spec[0], models.Config{ImageSize: size, Seed: 1})
		nn.SkipFirstInputGrad(m) // as the trainer
		vs = append(vs, &variant{dev: d, m: m, x: randInput(d, m.InputShape(batch), 3), ce: nn.NewCrossEntropyLoss(d, 0)})
	}
	labels := make([]int32, batch)
	for r := -1; r < steps; r++ { // one untimed step each first
		for _, v := range vs {
			t0 := time.Now()
			nn.ZeroGrad(v.dev, v.m.Params())
			v.ce.Forward(v.m.Forward(v.x), labels)
			v.m.Backward(v.ce.Backward())
			if r >= 0 {
				v.times = append(v.times, time.Since(t0))
			}
		}
	}
	for i, v := range vs {
		// Each round's steps ran back to back: the median of their
		// ratios to NCHW's is the least disturbed by a load that comes
		// and goes.
		ratios := make([]float64, steps)
		for r := range ratios {
			ratios[r] = v.times[r].Seconds() / vs[0].times[r].Seconds()
		}
		slices.Sort(ratios)
		times := slices.Sorted(slices.Values(v.times))
		fast, med := times[0], times[len(times)/2]
		t.Logf("%s %v/%v/gemm on oneDNN %v batch %d: fastest step %v (%.0f img/s), median %v (%.0f img/s), median ratio to NCHW's step %.3f",
			spec[0], configs[i].l, configs[i].alg, configs[i].gemm, batch,
			fast.Round(time.Millisecond), float64(batch)/fast.Seconds(), med.Round(time.Millisecond), float64(batch)/med.Seconds(), ratios[steps/2])
	}
}
