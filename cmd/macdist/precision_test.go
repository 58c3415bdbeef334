package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/macdist/macdist/kernels/cpu"
)

// needOneDNN skips where libdnnl.so.2 is not installed: bf16 runs through it.
func needOneDNN(t *testing.T) {
	t.Helper()
	if _, _, err := cpu.OneDNN(); err != nil {
		t.Skipf("bf16 needs oneDNN: %v", err)
	}
	if cpu.DNNName() != "onednn" {
		t.Skipf("bf16 needs oneDNN's convolutions, and MACDIST_DNN=%s", os.Getenv("MACDIST_DNN"))
	}
}

// TestTrainPrecision trains a few steps in bf16 (emulated where the CPU
// has no native bf16), resumes the run in fp32 and another fp32 run in
// bf16 (checkpoints are float32 either way), evaluates and benchmarks in
// bf16, and checks the refusal where bf16 is neither native nor emulated.
func TestTrainPrecision(t *testing.T) {
	needOneDNN(t)
	syn := "synthetic:1x28x28:10:64:16"
	trainArgs := func(dir, precision string, more ...string) []string {
		return append([]string{"train", "--model", "lenet5", "--data", syn, "--batch", "16", "--epochs", "2",
			"--run-dir", dir, "--precision", precision, "--progress", "none"}, more...)
	}
	native, isa, _ := cpu.BF16Support()
	if !native {
		t.Setenv("MACDIST_BF16", "")
		code, _, errOut := runArgs(trainArgs(filepath.Join(t.TempDir(), "refused"), "bf16")...)
		wants := []string{"no native bf16", isa, "--precision fp32"}
		if strings.HasPrefix(isa, "avx512_core") {
			wants = append(wants, "MACDIST_BF16=emulate")
		}
		for _, want := range wants {
			if code != 1 || !strings.Contains(errOut, want) {
				t.Errorf("bf16 on %s without MACDIST_BF16: exit %d, stderr %q; want 1 and a message with %q", isa, code, errOut, want)
			}
		}
		// launch refuses before it starts a worker that would fail.
		code, _, errOut = runArgs(append([]string{"launch", "--standalone", "--nproc-per-node", "1", "--"},
			trainArgs(filepath.Join(t.TempDir(), "launched"), "bf16")[1:]...)...)
		if code != 1 || !strings.Contains(errOut, "no native bf16") || strings.Contains(errOut, "rank 0") {
			t.Errorf("launch with bf16 on %s: exit %d, stderr %q; want the refusal before any worker", isa, code, errOut)
		}
	}
	if !strings.HasPrefix(isa, "avx512_core") {
		t.Skipf("bf16 needs AVX-512 here, native or emulated; oneDNN's ISA is %s", isa)
	}
	t.Setenv("MACDIST_BF16", "emulate")

	for _, c := range [][2]string{{"bf16", "fp32"}, {"fp32", "bf16"}} {
		dir := filepath.Join(t.TempDir(), c[0]+"-then-"+c[1])
		code, out, errOut := runArgs(trainArgs(dir, c[0], "--max-steps", "3")...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", c[0], code, errOut)
		}
		header := ", fp32; run directory"
		if c[0] == "bf16" {
			header = ", bf16 (emulated by oneDNN: slow, MACDIST_BF16=emulate); run directory"
			if native {
				header = ", bf16 (native, " + isa + "); run directory"
			}
		}
		if !strings.Contains(out+errOut, header) {
			t.Errorf("%s: the run header does not say the precision:\n%s", c[0], out+errOut)
		}
		if js, err := os.ReadFile(filepath.Join(dir, "config.json")); err != nil || !strings.Contains(string(js), `"precision": "`+c[0]+`"`) {
			t.Errorf("%s: config.json does not record the precision: %v %s", c[0], err, js)
		}
		code, out, errOut = runArgs(trainArgs(dir, c[1], "--resume")...)
		if code != 0 {
			t.Fatalf("resuming a %s run in %s: exit %d: %s", c[0], c[1], code, errOut)
		}
		if !strings.Contains(out+errOut, "resuming from") {
			t.Errorf("resuming a %s run in %s did not resume:\n%s", c[0], c[1], out+errOut)
		}
		recs := records(t, out)
		if len(recs) == 0 || recs[len(recs)-1].Step != 8 {
			t.Errorf("resuming a %s run in %s: records %+v, want the run to end at step 8", c[0], c[1], recs)
		}
		if c[1] == "bf16" {
			code, out, errOut = runArgs("eval", "--checkpoint", dir, "--precision", "bf16")
			if code != 0 || !strings.Contains(out, `"accuracy"`) {
				t.Errorf("eval --precision bf16: exit %d, %s %s", code, out, errOut)
			}
		}
	}

	// The same seed and threads, the same bits: two bf16 runs end with
	// identical weights.
	var final [2][]byte
	for i := range final {
		dir := filepath.Join(t.TempDir(), "again")
		if code, _, errOut := runArgs(trainArgs(dir, "bf16", "--max-steps", "3", "--seed", "5")...); code != 0 {
			t.Fatalf("bf16 run %d: exit %d: %s", i, code, errOut)
		}
		b, err := os.ReadFile(filepath.Join(dir, "final", "model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		final[i] = b
	}
	if !bytes.Equal(final[0], final[1]) {
		t.Error("two bf16 runs with the same seed end with different weights")
	}

	code, out, errOut := runArgs("bench", "--model", "lenet5", "--batch", "4", "--steps", "1", "--warmup", "1", "--precision", "bf16")
	var b benchOutput
	if code != 0 || json.Unmarshal([]byte(out), &b) != nil || b.Precision != "bf16" || b.BF16Native != native {
		t.Errorf("bench --precision bf16: exit %d, %q %s; want precision bf16, bf16_native %v", code, out, errOut, native)
	}
}

func TestPrecisionFlagError(t *testing.T) {
	for _, cmd := range []string{"train", "eval", "bench"} {
		code, _, errOut := runArgs(cmd, "--precision", "fp16")
		if code != 2 || !strings.Contains(errOut, `invalid value "fp16" for flag -precision`) || !strings.Contains(errOut, "fp32 or bf16") {
			t.Errorf("%s --precision fp16: exit %d, stderr %q; want a flag error (2) naming fp32 and bf16", cmd, code, errOut)
		}
	}
}

func TestDoctorBF16Line(t *testing.T) {
	line := bf16Line()
	native, isa, err := cpu.BF16Support()
	switch {
	case err != nil:
		if !strings.Contains(line, "bf16: unavailable") {
			t.Errorf("without oneDNN: %q", line)
		}
	case native:
		if line != "bf16: native ("+isa+")" {
			t.Errorf("native: %q", line)
		}
	case !strings.HasPrefix(isa, "avx512_core"):
		if !strings.HasPrefix(line, "bf16: not supported by this CPU (ISA "+isa) {
			t.Errorf("no AVX-512: %q", line)
		}
	default:
		if !strings.HasPrefix(line, "bf16: not supported natively by this CPU (ISA "+isa+")") || !strings.Contains(line, "MACDIST_BF16=emulate") {
			t.Errorf("emulated: %q", line)
		}
	}
}
