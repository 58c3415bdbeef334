package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/macdist/macdist/train"
)

func runExport(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("export", stderr)
	ckpt := fs.String("checkpoint", "", "a checkpoint directory, or a run directory (its newest complete checkpoint)")
	out := fs.String("out", "", "the safetensors file to write (PyTorch state_dict names; torch's load_state_dict takes it)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *ckpt == "" || *out == "" {
		return usageErrorf("--checkpoint and --out are required")
	}
	res, err := train.Export(*ckpt, *out, func(dir string, err error) {
		fmt.Fprintf(stderr, "macdist export: warning: skipping %s: %v\n", dir, err)
	})
	if err != nil {
		return err
	}
	line, err := json.Marshal(res)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", line)
	return err
}
