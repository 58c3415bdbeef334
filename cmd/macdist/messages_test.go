package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestMessages holds what a user reads on a mistake: one line naming the
// flag, with a single prefix, and where it helps, the way out.
func TestMessages(t *testing.T) {
	empty := t.TempDir()
	cases := []struct {
		name    string
		args    []string
		code    int
		want    []string // in stderr
		notWant []string
		lines   int // at most this many stderr lines (0: no bound)
	}{
		{"bad value", []string{"train", "--lr", "abc"}, 2,
			[]string{`invalid value "abc" for flag -lr`, "'macdist train -h'"}, []string{"Usage of", "-attention-v"}, 1},
		{"bad launch flag", []string{"launch", "--lanes", "2", "--"}, 2,
			[]string{"-lanes", "'macdist launch -h'"}, []string{"usage: macdist launch"}, 1},
		{"momentum", []string{"train", "--momentum", "5"}, 2,
			[]string{"macdist train: --momentum 5 outside [0, 1)"}, []string{"train: train:", "mac: mac:", "mac: "}, 1},
		{"stat decay of kfac", []string{"train", "--optimizer", "kfac", "--stat-decay", "1"}, 2,
			[]string{"macdist train: --stat-decay 1 outside [0, 1) (--optimizer kfac)"}, []string{"stat_decay"}, 1},
		{"beta2 of adamw", []string{"train", "--optimizer", "adamw", "--beta2", "-1"}, 2,
			[]string{"--beta2 -1 outside [0, 1)"}, nil, 1},
		{"unknown optimizer", []string{"train", "--optimizer", "adam"}, 2,
			[]string{`macdist train: --optimizer "adam" is not one of mac, sgd, adamw`}, []string{"train: mac:"}, 1},
		{"unknown optimizer under launch", []string{"launch", "--standalone", "--", "--optimizer", "adam"}, 2,
			[]string{`--optimizer "adam" is not one of`}, []string{"train: mac:"}, 1},
		{"cifar10 not there", []string{"train", "--data", "cifar10:" + empty, "--run-dir", filepath.Join(empty, "r")}, 1,
			[]string{"data_batch_1.bin", "test_batch.bin", "cifar-10-binary.tar.gz", "imagefolder:"}, []string{"no such file"}, 0},
		{"cifar100 not there", []string{"train", "--data", "cifar100:" + empty, "--run-dir", filepath.Join(empty, "r")}, 1,
			[]string{"train.bin", "cifar-100-binary.tar.gz"}, []string{"no such file"}, 0},
		{"batch over three ranks", []string{"launch", "--standalone", "--nproc-per-node", "3", "--", "--model", "mlp"}, 2,
			[]string{"--batch 128", "world size 3", "--batch 126 or 129"}, nil, 1},
		{"batch over 2 to 4 nodes", []string{"launch", "--nnodes", "2:4", "--join", "127.0.0.1:1", "--", "--model", "mlp", "--batch", "100"}, 2,
			[]string{"world size 3", "--batch 96 or 108"}, nil, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, errOut := runArgs(c.args...)
			if code != c.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, c.code, errOut)
			}
			for _, w := range c.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			for _, w := range c.notWant {
				if strings.Contains(errOut, w) {
					t.Errorf("stderr holds %q:\n%s", w, errOut)
				}
			}
			if n := strings.Count(strings.TrimSpace(errOut), "\n") + 1; c.lines > 0 && n > c.lines {
				t.Errorf("%d lines of stderr, want at most %d:\n%s", n, c.lines, errOut)
			}
		})
	}
}

// TestHelpTexts checks flag descriptions that were wrong or misprinted.
func TestHelpTexts(t *testing.T) {
	_, _, train := runArgs("train", "-h")
	if strings.Contains(train, "per rank") || !strings.Contains(train, "global batch") {
		t.Errorf("train -h describes --batch as:\n%s", grepLine(train, "-batch"))
	}
	_, _, launch := runArgs("launch", "-h")
	// The flag package takes a `quoted` word of the text as the value's
	// name: the type must show instead.
	if !regexp.MustCompile(`(?m)^\s+-ring-lanes int$`).MatchString(launch) {
		t.Errorf("launch -h prints --ring-lanes as:\n%s", grepLine(launch, "-ring-lanes"))
	}
}

func grepLine(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return "(no line with " + sub + ")"
}

// TestLaunchOutputLines checks the launcher's lines: every rank's log is
// marked with its rank, rank 0's too, and counts agree in number.
func TestLaunchOutputLines(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process")
	}
	dir := filepath.Join(t.TempDir(), "run")
	p := startMacdist(t, "standalone", append([]string{"launch", "--standalone", "--nproc-per-node", "1", "--"},
		trainArgs(dir, 96, 1)...)...)
	if err := p.wait(2 * time.Minute); err != nil {
		t.Fatalf("launch: %v", err)
	}
	out := p.output()
	for _, want := range []string{"world size 1, 1 node,", "[rank 0] training mlp", "[rank 0] done: 4 steps"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "1 nodes") {
		t.Errorf("output says \"1 nodes\":\n%s", out)
	}
}

// TestTrainOverwrite: a second train into a finished run's directory is
// refused, naming the ways out, and --overwrite is the flag that starts over.
func TestTrainOverwrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	args := []string{"train", "--model", "mlp", "--data", "synthetic:1x8x8:4:64:16", "--batch", "16", "--epochs", "1",
		"--optimizer", "sgd", "--run-dir", dir, "--progress", "none"}
	if code, _, errOut := runArgs(args...); code != 0 {
		t.Fatalf("first run: exit %d\n%s", code, errOut)
	}
	code, _, errOut := runArgs(args...)
	if code == 0 || !strings.Contains(errOut, "--overwrite") || !strings.Contains(errOut, "--resume") {
		t.Errorf("second run into the same directory: exit %d, want a refusal naming --resume and --overwrite:\n%s", code, errOut)
	}
	if code, _, errOut := runArgs(append(args, "--overwrite")...); code != 0 {
		t.Errorf("--overwrite: exit %d\n%s", code, errOut)
	}
}
