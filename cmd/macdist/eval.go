package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/macdist/macdist/train"
)

func runEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("eval", stderr)
	var c train.EvalConfig
	fs.StringVar(&c.Checkpoint, "checkpoint", "", "a checkpoint directory, or a run directory (its newest complete checkpoint)")
	fs.StringVar(&c.Data, "data", "", "dataset (default: the one the checkpoint was trained on)")
	fs.StringVar(&c.DatasetsDir, "datasets-dir", "", "where bare dataset names are looked for (default /usr/share/datasets)")
	fs.BoolVar(&c.Train, "train-split", false, "evaluate the training split (without augmentation) instead of the evaluation split")
	fs.IntVar(&c.Batch, "batch", 256, "batch size")
	fs.IntVar(&c.Subset, "subset", 0, "evaluate the first N samples only (0: all)")
	fs.IntVar(&c.Workers, "workers", 0, "data decoding goroutines (0: one per CPU)")
	fs.StringVar(&c.Device, "device", "cpu", "cpu, cuda or cuda:N")
	precisionVar(fs, &c.Precision)
	if err := parse(fs, args); err != nil {
		return err
	}
	if c.Checkpoint == "" {
		return usageErrorf("--checkpoint is required")
	}
	if c.Batch <= 0 || c.Subset < 0 || c.Workers < 0 {
		return usageErrorf("--batch must be positive, --subset and --workers not negative")
	}
	c.Skipped = func(dir string, err error) {
		fmt.Fprintf(stderr, "macdist eval: warning: skipping %s: %v\n", dir, err)
	}
	res, dir, err := train.Evaluate(ctx, c)
	if err != nil {
		return err
	}
	split := "test"
	if c.Train {
		split = "train"
	}
	line, err := json.Marshal(struct {
		Checkpoint string `json:"checkpoint"`
		Split      string `json:"split"`
		train.EvalResult
	}{dir, split, res})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", line)
	return err
}
