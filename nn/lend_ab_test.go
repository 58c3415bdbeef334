package nn

import (
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/macdist/macdist/kernels/cpu"
)

// TestLendAB times training steps of a ResNet-20 (CIFAR, 32 px) whose
// gradients come from its device's pool against one whose pool gives
// nothing back, so that every layer keeps its buffers as slots did,
// alternating in one process so that a shared machine's load falls on both
// alike. It runs only when asked, as
//
//	MACDIST_LEND_AB=batch,steps go test ./nn -run LendAB -v
//
// and logs the fastest and the median step of each.
func TestLendAB(t *testing.T) {
	spec := os.Getenv("MACDIST_LEND_AB")
	if spec == "" {
		t.Skip("MACDIST_LEND_AB=batch,steps is not set")
	}
	bs, ns, _ := strings.Cut(spec, ",")
	batch, err1 := strconv.Atoi(bs)
	steps, err2 := strconv.Atoi(ns)
	if err1 != nil || err2 != nil || batch < 1 || steps < 1 {
		t.Fatalf("MACDIST_LEND_AB=%q: want two positive numbers, batch,steps", spec)
	}
	type variant struct {
		name  string
		dev   *cpu.Device
		m     *Sequential
		x     *Tensor
		ce    *CrossEntropyLoss
		times []time.Duration
	}
	var vs []*variant
	for _, hold := range []bool{true, false} {
		dev := cpu.New()
		lendMu.Lock()
		lenderOf(dev).hold = hold
		lendMu.Unlock()
		m := resnet20(dev)
		SkipFirstInputGrad(m)
		x := NewTensor(dev, batch, 3, 32, 32)
		v := make([]float32, x.Len())
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		dev.Upload(x.Data, v)
		name := "pool"
		if hold {
			name = "a buffer per layer"
		}
		vs = append(vs, &variant{name: name, dev: dev, m: m, x: x, ce: NewCrossEntropyLoss(dev, 0)})
	}
	labels := make([]int32, batch)
	for r := -1; r < steps; r++ { // one untimed step each first
		// Each goes first every other round, so that neither always
		// finds the caches as the other left them.
		slices.Reverse(vs)
		for _, v := range vs {
			t0 := time.Now()
			ZeroGrad(v.dev, v.m.Params())
			v.ce.Forward(v.m.Forward(v.x), labels)
			v.m.Backward(v.ce.Backward())
			if r >= 0 {
				v.times = append(v.times, time.Since(t0))
			}
		}
	}
	for _, v := range vs {
		slices.Sort(v.times)
		fast, med := v.times[0], v.times[len(v.times)/2]
		t.Logf("%s, batch %d: fastest step %v (%.0f img/s), median %v (%.0f img/s); pool %d MB", v.name, batch,
			fast.Round(time.Millisecond), float64(batch)/fast.Seconds(), med.Round(time.Millisecond), float64(batch)/med.Seconds(),
			LentBytes(v.dev)>>20)
	}
}

// resnet20 is the CIFAR ResNet-20 of package models, built here from
// its layers: a 3×3 stem, three stages of three BasicBlocks (16, 32, 64
// channels), global pooling and a linear classifier.
func resnet20(dev *cpu.Device) *Sequential {
	rng := rand.New(rand.NewPCG(5, 6))
	mods := []Module{
		NewConv2d(dev, "conv1", Conv2dConfig{In: 3, Out: 16, Kernel: 3, Padding: 1}, rng),
		NewBatchNorm2d(dev, "bn1", 16), NewReLU(dev),
	}
	in := 16
	for s, w := range []int{16, 32, 64} {
		for i := range 3 {
			stride := 1
			if s > 0 && i == 0 {
				stride = 2
			}
			mods = append(mods, NewBasicBlock(dev, "", in, w, stride, rng))
			in = w
		}
	}
	mods = append(mods, NewGlobalAvgPool2d(dev), NewFlatten(dev), NewLinear(dev, "fc", 64, 10, true, rng))
	m := NewSequential(mods...)
	m.SetDeviceLayouts(true)
	return m
}
