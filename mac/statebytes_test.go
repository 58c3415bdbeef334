package mac_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/mac"
	"github.com/macdist/macdist/nn/models"
)

// sizeDevice is a kernels.Device that only counts: its buffers have a
// length and no memory, and the few methods that building a model and an
// optimizer call do nothing. It lets the test build ResNet-50 and every
// optimizer's state for it without allocating gigabytes; any other method
// panics (the embedded interface is nil).
type sizeDevice struct {
	kernels.Device
	allocated int64
}

type sizeBuf int

func (b sizeBuf) Len() int { return int(b) }

func (d *sizeDevice) Name() string                                   { return "size" }
func (d *sizeDevice) Alloc(n int) kernels.Buffer                     { d.allocated += int64(n) * 4; return sizeBuf(n) }
func (d *sizeDevice) Free(kernels.Buffer)                            {}
func (d *sizeDevice) View(_ kernels.Buffer, _, n int) kernels.Buffer { return sizeBuf(n) }
func (d *sizeDevice) Upload(kernels.Buffer, []float32)               {}
func (d *sizeDevice) Download(dst []float32, _ kernels.Buffer)       { clear(dst) }
func (d *sizeDevice) Fill(kernels.Buffer, float32)                   {}
func (d *sizeDevice) Copy(_, _ kernels.Buffer)                       {}
func (d *sizeDevice) Sync() error                                    { return nil }

// TestStateBytes logs every optimizer's state for ResNet-50 and ViT-Tiny
// (ImageNet shapes) and checks it against the layer shapes: the momentum
// buffers plus, per preconditioned layer, MAC's 2·d floats, Eva's d + out,
// FOOF's 2·d², KFAC's 2·d² + 2·out², AdamW's two moments.
func TestStateBytes(t *testing.T) {
	for _, model := range []string{"resnet50", "vit-tiny"} {
		dev := &sizeDevice{}
		m, err := models.New(dev, model, models.Config{})
		if err != nil {
			t.Fatal(err)
		}
		var params, sumD, sumOut, sumD2, sumOut2 int64
		for _, p := range m.Params() {
			if p.Trainable() {
				params += int64(p.Value.Len())
			}
		}
		first := int64(0)
		for i, l := range m.Tapped() {
			d, out := int64(l.TapDim()), int64(l.Weight().Value.Shape[0])
			sumD, sumOut, sumD2, sumOut2 = sumD+d, sumOut+out, sumD2+d*d, sumOut2+out*out
			if i == 0 {
				first = d
			}
		}
		mom := 4 * params
		want := map[string]int64{
			"sgd":   mom,
			"adamw": 2 * mom,
			"mac":   mom + 4*2*sumD + 4*first*first, // the first layer's inverse; attention's m_V below
			"eva":   mom + 4*(sumD+sumOut),
			"foof":  mom + 4*2*sumD2,
			"kfac":  mom + 4*2*(sumD2+sumOut2),
		}
		for _, a := range m.Attention() {
			want["mac"] += 4 * 2 * int64(a.QKV().TapDim())
		}
		var report []string
		for _, method := range mac.Methods {
			o, err := mac.DefaultOptions(method)
			if err != nil {
				t.Fatal(err)
			}
			before := dev.allocated
			opt, err := mac.New(method, dev, m, o)
			if err != nil {
				t.Fatalf("%s %s: %v", model, method, err)
			}
			got := opt.StateBytes()
			if got != want[method] {
				t.Errorf("%s %s: StateBytes %d, want %d", model, method, got, want[method])
			}
			report = append(report, fmt.Sprintf("%s %.1f MiB (%.2f× SGD; %.1f MiB allocated at construction)",
				method, mib(got), float64(got)/float64(mom), mib(dev.allocated-before)))
		}
		t.Logf("%s, %d parameters, %d preconditioned layers: %s", model, params, len(m.Tapped()), strings.Join(report, "; "))
	}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
