package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
)

func runArgs(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(context.Background(), args, &o, &e)
	return code, o.String(), e.String()
}

func TestBench(t *testing.T) {
	code, out, errOut := runArgs("bench", "--model", "lenet5", "--batch", "4", "--steps", "2", "--warmup", "1", "--classes", "7")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one JSON line, got %q", out)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatalf("%v in %q", err, lines[0])
	}
	for _, k := range []string{"framework", "model", "batch", "steps", "step_ms", "img_per_s", "blas", "device", "threads", "params"} {
		if _, ok := got[k]; !ok {
			t.Errorf("key %q missing from %s", k, lines[0])
		}
	}
	if got["model"] != "lenet5" || got["batch"] != 4.0 || got["steps"] != 2.0 || got["framework"] != "macdist" {
		t.Errorf("output %s does not echo model lenet5, batch 4, steps 2", lines[0])
	}
	if b := got["blas"]; b != "openblas" && b != "gonum" {
		t.Errorf("blas %v, want openblas or gonum", b)
	}
	// LeNet-5 with 7 classes: 61706 parameters for 10 classes, less 3·(84+1).
	if got["params"] != float64(61706-3*85) {
		t.Errorf("params %v, want %d: --classes not applied", got["params"], 61706-3*85)
	}
}

func TestBenchGonum(t *testing.T) {
	code, out, errOut := runArgs("bench", "--model", "mlp", "--batch", "2", "--steps", "1", "--warmup", "0", "--blas", "gonum")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if !strings.Contains(out, `"blas":"gonum"`) {
		t.Errorf("--blas gonum: %s", out)
	}
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		code int
		want string // in stderr
	}{
		{"no command", nil, 2, "usage: macdist"},
		{"unknown command", []string{"fly"}, 2, `unknown command "fly"`},
		{"unknown model", []string{"bench", "--model", "alexnet"}, 2, "resnet20"},
		{"no model", []string{"bench"}, 2, "--model is required"},
		{"bad flag", []string{"bench", "--model", "lenet5", "--speed", "9"}, 2, "speed"},
		{"stray argument", []string{"bench", "--model", "lenet5", "extra"}, 2, `"extra"`},
		{"zero batch", []string{"bench", "--model", "lenet5", "--batch", "0"}, 2, "positive"},
		{"bad depth", []string{"bench", "--model", "resnet20", "--depth", "21"}, 2, "depth 21"},
		{"bad blas", []string{"bench", "--model", "lenet5", "--blas", "mkl"}, 2, "mkl"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runArgs(c.args...)
			if code != c.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, c.code, errOut)
			}
			if !strings.Contains(errOut, c.want) {
				t.Errorf("stderr %q does not contain %q", errOut, c.want)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	code, out, _ := runArgs("help")
	if code != 0 || !strings.Contains(out, "bench") {
		t.Errorf("help: exit %d, %q", code, out)
	}
	code, _, errOut := runArgs("bench", "-h")
	if code != 0 || !strings.Contains(errOut, "-model") {
		t.Errorf("bench -h: exit %d, %q", code, errOut)
	}
}

// TestBenchLockstep paces bench's timed steps from its input: "ready" after
// the warmup, a "step_ms" line per go-ahead, the JSON line at the end; and
// input that ends early is an error, not a hang.
func TestBenchLockstep(t *testing.T) {
	defer func(r io.Reader) { benchStdin = r }(benchStdin)
	benchStdin = strings.NewReader("go\ngo\ngo\n")
	code, out, errOut := runArgs("bench", "--model", "lenet5", "--batch", "4", "--steps", "3", "--warmup", "1", "--lockstep")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || lines[0] != "ready" {
		t.Fatalf("want ready, three step_ms lines and the JSON, got %q", out)
	}
	var sum float64
	for _, l := range lines[1:4] {
		var ms float64
		if _, err := fmt.Sscanf(l, "step_ms %g", &ms); err != nil || ms <= 0 {
			t.Fatalf("line %q: want step_ms and a positive time (%v)", l, err)
		}
		sum += ms
	}
	var got struct {
		StepMS float64 `json:"step_ms"`
	}
	if err := json.Unmarshal([]byte(lines[4]), &got); err != nil {
		t.Fatal(err)
	}
	if math.Abs(got.StepMS*3-sum) > 0.01 {
		t.Errorf("step_ms %g × 3 steps, the lines add up to %g ms", got.StepMS, sum)
	}

	benchStdin = strings.NewReader("go\n")
	code, _, errOut = runArgs("bench", "--model", "lenet5", "--batch", "4", "--steps", "3", "--warmup", "1", "--lockstep")
	if code == 0 || !strings.Contains(errOut, "go-ahead") {
		t.Errorf("two go-aheads short: exit %d, stderr %q", code, errOut)
	}
}
