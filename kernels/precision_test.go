package kernels_test

import (
	"strings"
	"testing"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
)

// fp32Only is a Device without MixedPrecision, as the cuda Device is.
type fp32Only struct{ kernels.Device }

func (fp32Only) Name() string { return "cuda:0 (test)" }

func TestSetPrecisionFP32Only(t *testing.T) {
	dev := fp32Only{cpu.New()}
	if err := kernels.SetPrecision(dev, kernels.FP32); err != nil {
		t.Errorf("FP32 on an fp32-only device: %v", err)
	}
	err := kernels.SetPrecision(dev, kernels.BF16)
	if err == nil || !strings.Contains(err.Error(), "cuda:0 (test) computes in fp32 only") || !strings.Contains(err.Error(), "--precision fp32") {
		t.Errorf("BF16 on an fp32-only device: %v", err)
	}
	if p := kernels.PrecisionOf(dev); p != kernels.FP32 {
		t.Errorf("PrecisionOf = %v", p)
	}
	if s := kernels.DescribePrecision(dev); s != "fp32" {
		t.Errorf("DescribePrecision = %q", s)
	}
}

func TestParsePrecision(t *testing.T) {
	for s, want := range map[string]kernels.Precision{"": kernels.FP32, "fp32": kernels.FP32, "bf16": kernels.BF16} {
		if p, err := kernels.ParsePrecision(s); err != nil || p != want {
			t.Errorf("ParsePrecision(%q) = %v, %v", s, p, err)
		}
	}
	for _, s := range []string{"fp16", "BF16", "float32"} {
		if _, err := kernels.ParsePrecision(s); err == nil || !strings.Contains(err.Error(), "want fp32 or bf16") {
			t.Errorf("ParsePrecision(%q): %v", s, err)
		}
	}
	if kernels.BF16.String() != "bf16" || kernels.FP32.String() != "fp32" {
		t.Error("String")
	}
}
