package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/macdist/macdist/train"
)

// runPlot draws the curves of several runs into one PNG: what the README's
// comparison of optimizers shows.
func runPlot(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("plot", stderr)
	out := fs.String("out", "", "PNG file to write")
	title := fs.String("title", "", "title above the two panels")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: macdist plot --out FILE.png [--title TEXT] [LABEL=]RUN ...")
		fmt.Fprintln(stderr, "RUN is a run directory or its metrics.jsonl; LABEL names it in the legend (default: the directory's name).")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() == 0 {
		return usageErrorf("--out and at least one run are required")
	}
	var series []train.Series
	for _, a := range fs.Args() {
		label, path, ok := strings.Cut(a, "=")
		if !ok {
			path, label = a, ""
		}
		if fi, err := os.Stat(path); err == nil && fi.IsDir() {
			path = filepath.Join(path, "metrics.jsonl")
		}
		if label == "" {
			label = filepath.Base(filepath.Dir(path))
		}
		recs, err := train.ReadMetrics(path)
		if err != nil {
			return err
		}
		series = append(series, train.Series{Label: label, Records: recs})
	}
	png, err := train.PlotCurves(*title, series...)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, png, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", *out, err)
	}
	runs := "runs"
	if len(series) == 1 {
		runs = "run"
	}
	fmt.Fprintf(stdout, "%s: %d %s\n", *out, len(series), runs)
	return nil
}
