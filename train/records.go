package train

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// EpochSums are the running totals of an epoch's training steps.
type EpochSums struct {
	LossSum  float64 `json:"loss_sum"` // Σ sample loss over the samples counted
	Correct  int64   `json:"correct"`  // of the samples counted
	Samples  int64   `json:"samples"`  // samples counted: those of steps with a finite loss, the sampler's padding left out
	Seen     int64   `json:"seen"`     // every sample trained on, padding included, for img/s
	Seconds  float64 `json:"seconds"`  // wall time of the training steps, evaluation excluded
	NaNSkips int     `json:"nan_skips"`
}

// EpochRecord is the line written per epoch to stdout and
// RUN_DIR/metrics.jsonl. Accuracies are fractions in [0, 1]; Epoch counts
// from 1; LR is the last step's. The train and test numbers are means over
// samples, every sample of the set counted once whatever the world size:
// each rank sums loss and correct predictions over its own samples, the
// sums and counts are added across ranks, and the totals divided — a
// sample-weighted mean, not a mean of the ranks' means. The samples
// DistributedSampler repeats to give every rank as many are trained on but
// not counted. The train numbers are those of the model as it was at each
// step, in training mode (dropout, batch statistics, augmentation).
type EpochRecord struct {
	Epoch     int     `json:"epoch"`
	Step      int     `json:"step"`
	TrainLoss float64 `json:"train_loss"`
	TrainAcc  float64 `json:"train_acc"`
	TestLoss  float64 `json:"test_loss"`
	TestAcc   float64 `json:"test_acc"`
	LR        float64 `json:"lr"`
	EpochTime float64 `json:"epoch_time_s"`
	ImgPerS   float64 `json:"img_per_s"`
	EvalTime  float64 `json:"eval_time_s"`
	NaNSkips  int     `json:"nan_skips"`
	// TestLossEMA and TestAccEMA evaluate --model-ema's averaged weights.
	TestLossEMA float64 `json:"test_loss_ema,omitempty"`
	TestAccEMA  float64 `json:"test_acc_ema,omitempty"`
	// Partial marks the record of an epoch cut short by --max-steps; it is
	// not kept in the history, so a resumed run writes the full one.
	Partial bool `json:"partial,omitempty"`
}

func (r EpochRecord) line() []byte {
	js, err := json.Marshal(r)
	if err != nil {
		panic(err) // only finite floats and ints: cannot fail
	}
	return append(js, '\n')
}

// finiteOr0 keeps JSON encodable when a metric is NaN (an epoch whose every
// step was skipped).
func finiteOr0(v float64) float64 {
	if v != v || v > 1e308 || v < -1e308 {
		return 0
	}
	return v
}

const metricsFile = "metrics.jsonl"

// appendMetrics adds one line to RUN_DIR/metrics.jsonl.
func appendMetrics(runDir string, r EpochRecord) error {
	f, err := os.OpenFile(filepath.Join(runDir, metricsFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	if _, err := f.Write(r.line()); err != nil {
		f.Close()
		return fmt.Errorf("train: writing %s: %w", metricsFile, err)
	}
	return f.Close()
}

// rewriteMetrics replaces RUN_DIR/metrics.jsonl with the history: what a
// resumed run does, so that epochs redone after an interruption appear once.
func rewriteMetrics(runDir string, history []EpochRecord) error {
	var buf bytes.Buffer
	for _, r := range history {
		buf.Write(r.line())
	}
	return writeFileAtomic(filepath.Join(runDir, metricsFile), buf.Bytes())
}

// ReadMetrics reads a metrics.jsonl file.
func ReadMetrics(path string) ([]EpochRecord, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	var out []EpochRecord
	for i, ln := range bytes.Split(raw, []byte("\n")) {
		if len(bytes.TrimSpace(ln)) == 0 {
			continue
		}
		var r EpochRecord
		if err := json.Unmarshal(ln, &r); err != nil {
			return nil, fmt.Errorf("train: %s line %d: %w", path, i+1, err)
		}
		out = append(out, r)
	}
	return out, nil
}
