package gpucheck

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cuda"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/models"
)

// macTarget is the bound on MAC's optimizer step, as a share of
// the training step on a GPU.
const macTarget = 0.03

// shareResult is MAC's cost on one model: the optimizer step's share of a
// MAC training step, and SGD's for comparison.
type shareResult struct {
	Check      string  `json:"check"`
	Model      string  `json:"model"`
	Batch      int     `json:"batch"`
	Steps      int     `json:"steps"`
	MACStepMS  float64 `json:"mac_step_ms"`
	MACOptMS   float64 `json:"mac_opt_ms"`
	SGDStepMS  float64 `json:"sgd_step_ms"`
	SGDOptMS   float64 `json:"sgd_opt_ms"`
	Share      float64 `json:"mac_opt_share"`   // MACOptMS / MACStepMS
	OverSGD    float64 `json:"mac_step_vs_sgd"` // MACStepMS / SGDStepMS − 1: the taps' cost included
	Target     float64 `json:"target"`
	DeviceName string  `json:"device"`
}

// measureShare builds the named model on dev and runs measureShareOn.
func measureShare(t *testing.T, dev kernels.Device, name string, bs, steps int) shareResult {
	def, err := models.Default(name)
	if err != nil {
		t.Fatal(err)
	}
	data := synthetic(3, 1, []int{bs, def.InChannels, def.ImageSize, def.ImageSize}, def.Classes)
	m, err := models.New(dev, name, models.Config{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	nn.HashInit(dev, m.Params(), 9)
	r := measureShareOn(t, dev, m, name, bs, data[0], steps)
	r.DeviceName = dev.Name()
	return r
}

// TestMACShare reports MAC's optimizer step as a share of the training
// step on the GPU. Above the 3% target it logs, not fails: a performance
// target, which gpu-check.sh reports as WARN.
func TestMACShare(t *testing.T) {
	dev := openGPU(t, true)
	for _, name := range envList("GPUCHECK_SHARE_MODELS", "resnet20") {
		t.Run(name, func(t *testing.T) {
			r := measureShare(t, dev, name, envInt(t, "GPUCHECK_BATCH", 128), 10)
			emit(t, r)
			t.Logf("%s batch %d: MAC step %.2f ms of which optimizer %.2f ms (%.1f%%, target ≤ %.0f%%); SGD step %.2f ms, optimizer %.2f ms; MAC's step is %+.1f%% of SGD's",
				name, r.Batch, r.MACStepMS, r.MACOptMS, 100*r.Share, 100*macTarget, r.SGDStepMS, r.SGDOptMS, 100*r.OverSGD)
			if r.Share > macTarget {
				t.Logf("ABOVE TARGET: MAC's optimizer step is %.1f%% of the step", 100*r.Share)
			}
		})
	}
}

// benchResult is one throughput measurement, with bench/torch_gpu.py's
// keys.
type benchResult struct {
	Framework string  `json:"framework"`
	Model     string  `json:"model"`
	Batch     int     `json:"batch"`
	Steps     int     `json:"steps"`
	Warmup    int     `json:"warmup"`
	StepMS    float64 `json:"step_ms"`
	MedianMS  float64 `json:"median_step_ms"`
	ImgPerS   float64 `json:"img_per_s"`
	Loss      float64 `json:"loss"`
	ForwardMS float64 `json:"fwd_ms"`
	BackMS    float64 `json:"bwd_ms"`
	OptMS     float64 `json:"opt_ms"`
	Device    string  `json:"device"`
	Params    int     `json:"params"`
	PeakGiB   float64 `json:"peak_gib"` // the device allocator's peak, where it reports one
	TF32      bool    `json:"tf32"`
	// Top lists the kernels.Device methods taking most of one step run
	// with a Sync after every call (Profiler), as "name share%".
	Top string `json:"top"`
}

// TestThroughput times training steps on the GPU: forward, cross-entropy,
// backward and an SGD step (momentum 0.9, weight decay 5e-4), the step
// bench/torch_gpu.py times in PyTorch, on one synthetic batch kept on the
// device. Then one step with every call timed, for where the time goes;
// then MAC's share on the same model.
func TestThroughput(t *testing.T) {
	dev := openGPU(t, true)
	bs := envInt(t, "GPUCHECK_BATCH", 128)
	warmup := envInt(t, "GPUCHECK_WARMUP", 2)
	maxSteps := envInt(t, "GPUCHECK_STEPS", 5)
	budget := time.Duration(envInt(t, "GPUCHECK_BENCH_SECONDS", 30)) * time.Second
	for _, name := range envList("GPUCHECK_BENCH_MODELS", "resnet50,vit-tiny") {
		t.Run(name, func(t *testing.T) {
			def, err := models.Default(name)
			if err != nil {
				t.Fatal(err)
			}
			prof := NewProfiler(dev)
			pdev := prof.ForLayers()
			nn.Workspace(pdev).SetLimit(nn.Workspace(dev).Limit())
			data := synthetic(5, 1, []int{bs, def.InChannels, def.ImageSize, def.ImageSize}, def.Classes)
			tr, err := newTrainer(pdev, name, models.Config{Seed: 1}, bs, "sgd", 3, nil)
			if err != nil {
				t.Fatal(err)
			}
			prof.Upload(tr.x.Data, data[0].x)
			b := batch{y: data[0].y}
			t0 := time.Now()
			for s := range warmup {
				if _, _, err := tr.step(b, 0.01, false); err != nil {
					t.Fatalf("warmup step %d: %v", s, err)
				}
			}
			if err := prof.Sync(); err != nil {
				t.Fatal(err)
			}
			per := time.Since(t0) / time.Duration(max(warmup, 1))
			steps := maxSteps
			if per > 0 && time.Duration(steps)*per > budget {
				steps = max(2, int(budget/per))
			}
			times := make([]time.Duration, 0, steps)
			var loss float64
			start := time.Now()
			for s := range steps {
				t1 := time.Now()
				l, _, err := tr.step(b, 0.01, false)
				if err == nil {
					err = prof.Sync()
				}
				if err != nil {
					t.Fatalf("step %d: %v", s, err)
				}
				times = append(times, time.Since(t1))
				loss = l
			}
			total := time.Since(start)
			slices.Sort(times)
			_, ph, err := tr.step(b, 0.01, true)
			if err != nil {
				t.Fatal(err)
			}
			r := benchResult{
				Framework: "macdist", Model: name, Batch: bs, Steps: steps, Warmup: warmup,
				StepMS:    ms(total) / float64(steps),
				MedianMS:  ms(times[len(times)/2]),
				ImgPerS:   math.Round(float64(bs*steps)/total.Seconds()*10) / 10,
				Loss:      loss,
				ForwardMS: ms(ph.upload + ph.forward), BackMS: ms(ph.backward), OptMS: ms(ph.opt),
				Device: dev.Name(), Params: tr.model.NumParams(),
				TF32: strings.Contains(dev.Name(), "TF32"),
			}
			if g, ok := dev.(*cuda.Device); ok {
				r.PeakGiB = math.Round(float64(g.MemStats().Peak)/(1<<30)*100) / 100
			} else {
				_, peak := prof.Memory()
				r.PeakGiB = math.Round(float64(peak)/(1<<30)*100) / 100
			}

			// Where the time goes: one step with a Sync after every call.
			if err := prof.Start(); err != nil {
				t.Fatal(err)
			}
			if _, _, err := tr.step(b, 0.01, false); err != nil {
				t.Fatal(err)
			}
			prof.Stop()
			t.Logf("%s batch %d, one step with every call timed:\n%s", name, bs, prof.Table())
			var top []string
			ops := prof.Ops()
			var sum time.Duration
			for _, o := range ops {
				sum += o.Time
			}
			for _, o := range ops[:min(6, len(ops))] {
				top = append(top, fmt.Sprintf("%s %.0f%%", o.Name, 100*o.Time.Seconds()/sum.Seconds()))
			}
			r.Top = strings.Join(top, ", ")
			emit(t, r)
			t.Logf("%s batch %d: %.1f img/s, %.1f ms/step (median %.1f) over %d steps; forward %.1f, backward %.1f, SGD %.1f ms; peak %.2f GiB",
				name, bs, r.ImgPerS, r.StepMS, r.MedianMS, steps, r.ForwardMS, r.BackMS, r.OptMS, r.PeakGiB)

			if envString("GPUCHECK_BENCH_MAC", "1") == "1" {
				s := measureShareOn(t, pdev, tr.model, name, bs, data[0], min(steps, 5))
				s.DeviceName = dev.Name()
				emit(t, s)
				t.Logf("%s batch %d: MAC step %.1f ms, of which optimizer %.2f ms (%.2f%%, target ≤ %.0f%%); SGD step %.1f ms",
					name, bs, s.MACStepMS, s.MACOptMS, 100*s.Share, 100*macTarget, s.SGDStepMS)
			}
		})
	}
}

// measureShareOn times steps of m with SGD and then with MAC, after one
// untimed step of each (MAC's first refreshes its preconditioner, which it
// does every TInv = 50 steps). Every phase is timed up to a Sync, which
// removes the overlap of launching and running between phases: a normal
// step is a little shorter. With steps a multiple of TCov = 5, MAC
// collects statistics in its due share of the timed steps. Both
// optimizers train one model, so the activations' memory is paid once.
func measureShareOn(t *testing.T, dev kernels.Device, m *models.Model, name string, bs int, data batch, steps int) shareResult {
	r := shareResult{Check: "mac_share", Model: name, Batch: bs, Steps: steps, Target: macTarget}
	for _, method := range []string{"sgd", "mac"} {
		tr, err := newTrainerFor(dev, m, bs, method, []batch{data})
		if err != nil {
			t.Fatal(err)
		}
		dev.Upload(tr.x.Data, data.x)
		b := batch{y: data.y}
		var step, opt time.Duration
		for s := range steps + 1 {
			_, ph, err := tr.step(b, 0.01, true)
			if err != nil {
				t.Fatalf("%s %s step %d: %v", name, method, s, err)
			}
			if s >= 1 {
				step += ph.total()
				opt += ph.opt
			}
		}
		n := float64(steps)
		if method == "sgd" {
			r.SGDStepMS, r.SGDOptMS = ms(step)/n, ms(opt)/n
		} else {
			r.MACStepMS, r.MACOptMS = ms(step)/n, ms(opt)/n
		}
	}
	r.Share = r.MACOptMS / r.MACStepMS
	r.OverSGD = r.MACStepMS/r.SGDStepMS - 1
	return r
}
