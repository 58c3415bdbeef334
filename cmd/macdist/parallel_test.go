package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/macdist/macdist/safetensors"
)

// TestDataParallelEquivalence trains 20 steps with 2 processes × batch 64
// over the real TCP ring and with 1 process × batch 128, and requires the
// same final parameters (1e-5 relative): gradients and MAC's statistics
// are averaged, and with --shuffle=false rank r takes samples r, r+2, …, so
// the two ranks' batches make up the single process's batch. The negative
// case turns the statistics all-reduce off and shows that MAC's replicas
// then leave the single-process trajectory.
func TestDataParallelEquivalence(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process training")
	}
	if _, err := os.Stat("/usr/share/datasets/fashion-mnist"); err != nil {
		t.Fatalf("Fashion-MNIST missing (apt-get install dataset-fashion-mnist): %v", err)
	}
	cases := []struct {
		name      string
		args      []string
		noStats   bool
		wantEqual bool
		launch    []string // launch flags
	}{
		// SGD at lr 0.1 from a fresh LeNet-5 is chaotic enough that float32
		// rounding (a different summation order) grows ×300 in five steps;
		// at 0.01 the comparison measures the data-parallel arithmetic.
		{"sgd-lenet5", []string{"--model", "lenet5", "--optimizer", "sgd", "--lr", "0.01"}, false, true, nil},
		{"mac-lenet5", []string{"--model", "lenet5", "--optimizer", "mac"}, false, true, nil},
		{"sgd-vit", []string{"--model", "vit-tiny-cifar", "--depth", "1", "--patch", "7", "--optimizer", "sgd"}, false, true, nil},
		// Its gradient buckets are large enough to use both lanes,
		// which reduce in one lane's order.
		{"mac-vit", []string{"--model", "vit-tiny-cifar", "--depth", "1", "--patch", "7", "--optimizer", "mac"}, false, true,
			[]string{"--ring-lanes", "2"}},
		{"mac-lenet5-no-stats-allreduce", []string{"--model", "lenet5", "--optimizer", "mac"}, true, false, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			common := append([]string{"--data", "fashion-mnist", "--subset", "2560", "--test-subset", "128",
				"--batch", "128", "--epochs", "1", "--max-steps", "20", "--shuffle=false",
				"--progress", "none", "--workers", "1", "--seed", "3"}, c.args...)
			single := startMacdist(t, "single", append(append([]string{"train"}, common...), "--run-dir", filepath.Join(dir, "one"))...)
			if err := single.wait(5 * time.Minute); err != nil {
				t.Fatalf("single process: %v", err)
			}
			launch := append(append([]string{"launch", "--standalone", "--nproc-per-node", "2"}, c.launch...), "--")
			if c.noStats {
				t.Setenv("MACDIST_TEST_NO_STATS_ALLREDUCE", "1")
			}
			two := startMacdist(t, "two ranks", append(append(launch, common...), "--run-dir", filepath.Join(dir, "two"))...)
			if err := two.wait(5 * time.Minute); err != nil {
				t.Fatalf("two ranks: %v", err)
			}
			e := paramDiff(t, filepath.Join(dir, "one", "final", "model.safetensors"), filepath.Join(dir, "two", "final", "model.safetensors"))
			t.Logf("largest relative difference of a parameter tensor: %.3g", e)
			if c.wantEqual && e > 1e-5 {
				t.Errorf("2 ranks × 64 differ from 1 rank × 128 by %.3g (> 1e-5)", e)
			}
			if !c.wantEqual && e <= 1e-5 {
				t.Errorf("without the statistics all-reduce the runs still agree (%.3g): the test cannot tell", e)
			}
		})
	}
}

// paramDiff is the largest, over tensors, of max|a−b| / max|a|.
func paramDiff(t *testing.T, pa, pb string) float64 {
	t.Helper()
	fa, err := safetensors.ReadFile(pa)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := safetensors.ReadFile(pb)
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for _, name := range fa.Names() {
		a, err := fa.Float32s(name, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := fb.Float32s(name, nil)
		if err != nil {
			t.Fatal(err)
		}
		var d, s float64
		for i := range a {
			d = math.Max(d, math.Abs(float64(a[i])-float64(b[i])))
			s = math.Max(s, math.Abs(float64(a[i])))
		}
		if s > 0 {
			worst = math.Max(worst, d/s)
		}
	}
	return worst
}

func TestBenchCollective(t *testing.T) {
	code, out, errOut := runArgs("bench", "collective", "--ranks", "1,2", "--lanes", "1,2", "--size", "4096")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.Contains(lines[0], `"bench":"stream"`) || !strings.Contains(lines[4], `"ranks":2`) ||
		!strings.Contains(lines[4], `"lanes":2`) || !strings.Contains(lines[4], "busbw_gbps") {
		t.Errorf("output:\n%s", out)
	}
	for _, bad := range [][]string{{"--ranks", "0"}, {"--lanes", "0"}, {"--lanes", "33"}} {
		if code, _, _ := runArgs(append([]string{"bench", "collective"}, bad...)...); code != 2 {
			t.Errorf("%v: exit %d, want 2", bad, code)
		}
	}
}
