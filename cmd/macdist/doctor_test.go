package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestDoctor(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"doctor"}, &out, &errb); code != 0 {
		t.Fatalf("doctor exited %d: %s", code, errb.String())
	}
	s := out.String()
	t.Log("\n" + s)
	for _, want := range []string{"== CPU", "BLAS: ", "== CUDA", "NCCL", "devices: cpu", "CPU training: ", "GPU training: ", "to fix: "} {
		if !strings.Contains(s, want) {
			t.Errorf("doctor's report lacks %q", want)
		}
	}
	gpuLess := strings.Contains(s, "no NVIDIA driver")
	if gpuLess {
		// A machine without GPUs is not broken: nothing GPU-side is listed
		// to fix, and CPU training is ready when OpenBLAS is there.
		if strings.Contains(s, "unusable:") || strings.Contains(s, "to fix: cuda") || strings.Contains(s, "nccl (") {
			t.Error("a machine without a GPU is reported as broken")
		}
		if !strings.Contains(s, "GPU training: no GPUs here") {
			t.Error("the summary does not say that GPUs are simply absent")
		}
	}
	if strings.Contains(s, "BLAS: cpu/openblas") && !strings.Contains(s, "CPU training: ready") {
		t.Error("OpenBLAS is loaded but CPU training is not reported ready")
	}

	out.Reset()
	errb.Reset()
	if code := run(context.Background(), []string{"doctor", "--require", "gpu"}, &out, &errb); code != 2 {
		t.Errorf("doctor --require gpu exited %d, want 2 (usage)", code)
	}
	// --require of something unusable fails with status 1, naming it, also
	// when it is absent rather than broken.
	if !gpuLess {
		return
	}
	errb.Reset()
	if code := run(context.Background(), []string{"doctor", "--require", "cuda"}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "cuda") {
		t.Errorf("doctor --require cuda without a GPU exited %d (%q), want 1 naming it", code, errb.String())
	}
}
