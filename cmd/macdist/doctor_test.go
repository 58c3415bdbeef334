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
	for _, want := range []string{"== CPU", "BLAS: ", "== CUDA", "CUDA driver", "NCCL", "devices: cpu", "missing: "} {
		if !strings.Contains(s, want) {
			t.Errorf("doctor's report lacks %q", want)
		}
	}
	// Whatever is missing comes with a fix: the CUDA and NCCL errors name
	// what to install, kernels/cpu's BLAS line says apt-get.
	if strings.Contains(s, "NCCL: not loaded") && !strings.Contains(s, "pip install nvidia-nccl") {
		t.Error("NCCL is missing but the report gives no fix")
	}

	out.Reset()
	errb.Reset()
	if code := run(context.Background(), []string{"doctor", "--require", "gpu"}, &out, &errb); code != 2 {
		t.Errorf("doctor --require gpu exited %d, want 2 (usage)", code)
	}
	// --require of something missing fails with status 1, naming it.
	if strings.Contains(s, "missing: nothing") {
		return
	}
	missing := strings.TrimSpace(strings.TrimPrefix(s[strings.LastIndex(s, "missing: "):], "missing: "))
	first := strings.Fields(strings.Split(missing, ",")[0])[0]
	errb.Reset()
	if code := run(context.Background(), []string{"doctor", "--require", first}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), first) {
		t.Errorf("doctor --require %s exited %d (%q), want 1 naming it", first, code, errb.String())
	}
}
