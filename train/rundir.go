package train

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// priorRun is what a run directory holds of an earlier run: what starting
// from scratch there would overwrite or, by pruning, delete.
type priorRun struct {
	records int      // lines of metrics.jsonl
	final   bool     // final/model.safetensors exists
	ckpts   []string // checkpoint directories holding a MANIFEST, oldest first
}

// findPriorRun looks in runDir (this rank's) for an earlier run. A
// checkpoint directory without a MANIFEST does not count: it is a writer
// stopped before its checkpoint was complete, which holds nothing a new run
// would lose. One with a MANIFEST counts even when it no longer verifies: a
// damaged file may yet be restored, and a new run's pruning would delete it.
func findPriorRun(runDir string) (priorRun, error) {
	var p priorRun
	raw, err := os.ReadFile(filepath.Join(runDir, metricsFile))
	switch {
	case err == nil:
		for _, ln := range bytes.Split(raw, []byte("\n")) {
			if len(bytes.TrimSpace(ln)) > 0 {
				p.records++
			}
		}
	case !errors.Is(err, os.ErrNotExist):
		return p, fmt.Errorf("train: looking for an earlier run: %w", err)
	}
	switch _, err := os.Stat(filepath.Join(runDir, FinalDir, modelFile)); {
	case err == nil:
		p.final = true
	case !errors.Is(err, os.ErrNotExist):
		return p, fmt.Errorf("train: looking for an earlier run: %w", err)
	}
	dirs, err := Checkpoints(filepath.Join(runDir, CheckpointsDir))
	if err != nil {
		return p, err
	}
	for _, d := range dirs {
		switch _, err := os.Stat(filepath.Join(d, manifestFile)); {
		case err == nil:
			p.ckpts = append(p.ckpts, d)
		case !errors.Is(err, os.ErrNotExist):
			return p, fmt.Errorf("train: looking for an earlier run: %w", err)
		}
	}
	return p, nil
}

func (p priorRun) empty() bool { return p.records == 0 && !p.final && len(p.ckpts) == 0 }

// String lists what the run left, as "metrics.jsonl with 10 records,
// final/model.safetensors, 3 checkpoints".
func (p priorRun) String() string {
	var parts []string
	if p.records > 0 {
		parts = append(parts, fmt.Sprintf("%s with %d %s", metricsFile, p.records, plural(p.records, "record")))
	}
	if p.final {
		parts = append(parts, filepath.Join(FinalDir, modelFile))
	}
	if n := len(p.ckpts); n > 0 {
		parts = append(parts, fmt.Sprintf("%d %s", n, plural(n, "checkpoint")))
	}
	return strings.Join(parts, ", ")
}

func plural(n int, s string) string {
	if n == 1 {
		return s
	}
	return s + "s"
}

// checkpointReport lists every checkpoint directory under root, newest
// first, one indented line each: complete (and its step), or why it is not
// a checkpoint a run can resume from.
func checkpointReport(root string) string {
	dirs, err := Checkpoints(root)
	if err != nil {
		return "\n  " + err.Error()
	}
	if len(dirs) == 0 {
		return "\n  (no checkpoint directory in " + root + ")"
	}
	var b strings.Builder
	for i := len(dirs) - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "\n  %s: %s", dirs[i], checkpointStatus(dirs[i]))
	}
	return b.String()
}

// checkpointStatus says whether dir is a complete checkpoint, or why not.
func checkpointStatus(dir string) string {
	if _, err := os.Stat(filepath.Join(dir, manifestFile)); errors.Is(err, os.ErrNotExist) {
		return "incomplete: no " + manifestFile + " (its writer stopped before the end)"
	}
	for _, name := range []string{modelFile, optimizerFile, stateFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); errors.Is(err, os.ErrNotExist) {
			return "incomplete: no " + name + " (deleted since: " + manifestFile + " lists it)"
		}
	}
	st, err := VerifyCheckpoint(dir)
	if err != nil {
		// VerifyCheckpoint's errors name the directory, which the line
		// already gives.
		msg := strings.TrimPrefix(err.Error(), "train: checkpoint")
		msg = strings.TrimPrefix(strings.TrimPrefix(msg, ":"), " "+dir)
		return strings.TrimLeft(msg, ": ")
	}
	return fmt.Sprintf("complete (step %d)", st.Step)
}

// overwriteHelp says how to start over, for the refusals.
const overwriteHelp = "--overwrite to start over in this directory (it deletes " + CheckpointsDir + "/, " + FinalDir + "/, " +
	metricsFile + " and " + CurvesFile + "), or choose another --run-dir"

// errPriorRun is the refusal of a fresh start in a directory that holds p.
func errPriorRun(runDir string, p priorRun) error {
	return fmt.Errorf("train: %s already holds a run (%s); nothing was changed. Its checkpoints:%s\npass --resume to continue it from its newest usable checkpoint, %s",
		runDir, p, checkpointReport(filepath.Join(runDir, CheckpointsDir)), overwriteHelp)
}

// errNoUsableCheckpoint is the refusal of a resume that found no usable
// checkpoint in a directory that holds p.
func errNoUsableCheckpoint(runDir string, p priorRun) error {
	return fmt.Errorf("train: cannot resume: %s holds a run (%s) but no usable checkpoint; nothing was changed. Its checkpoints:%s\nrestore a checkpoint and resume, or pass %s",
		runDir, p, checkpointReport(filepath.Join(runDir, CheckpointsDir)), overwriteHelp)
}

// checkNotBehind refuses a resume from the checkpoint in ckDir, with state
// st, when runDir records more finished epochs than the checkpoint does:
// the newer checkpoints were lost or damaged, and resuming would rewrite
// metrics.jsonl without the later epochs and, if the run stopped before
// redoing them (--max-steps, an interruption), replace final/ with older
// weights. An unreadable metrics.jsonl is no reason to refuse: resuming
// rebuilds it from the checkpoint.
func checkNotBehind(runDir, ckDir string, st RunState) error {
	recs, err := ReadMetrics(filepath.Join(runDir, metricsFile))
	if err != nil {
		return nil
	}
	done := 0
	for _, r := range recs {
		if !r.Partial {
			done++
		}
	}
	if done <= len(st.History) {
		return nil
	}
	return fmt.Errorf("train: cannot resume: the newest usable checkpoint, %s (step %d, %d %s done), is behind the run in %s (%s records %d finished epochs); resuming from it would replace the later records and final weights, and nothing was changed. Its checkpoints:%s\nrestore a newer checkpoint and resume, or pass --overwrite to resume from this one anyway (redoing the later epochs, exactly on the same device)",
		ckDir, st.Step, len(st.History), plural(len(st.History), "epoch"), runDir, metricsFile, done, checkpointReport(filepath.Join(runDir, CheckpointsDir)))
}

// clearRun deletes what an earlier run left in runDir — its checkpoints
// and, on the rank that writes them, its final weights, metrics.jsonl and
// curves.png — for Config.Overwrite. Other files are not touched.
func clearRun(runDir string, lead bool) error {
	paths := []string{filepath.Join(runDir, CheckpointsDir)}
	if lead {
		paths = append(paths, filepath.Join(runDir, FinalDir), filepath.Join(runDir, metricsFile), filepath.Join(runDir, CurvesFile))
	}
	for _, p := range paths {
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("train: --overwrite: %w", err)
		}
	}
	return nil
}
