package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/macdist/macdist/data"
)

// benchDataOutput is the JSON line `macdist bench data` prints;
// bench/torch_data.py prints the same keys for torchvision + PIL.
type benchDataOutput struct {
	Framework  string  `json:"framework"`
	Data       string  `json:"data"` // the dataset's form: imagefolder, shards, …
	Decoder    string  `json:"decoder"`
	Transforms string  `json:"transforms"`
	ImageSize  int     `json:"image_size"`
	Workers    int     `json:"workers"`
	Cores      int     `json:"cores"`
	Batch      int     `json:"batch"`
	Images     int     `json:"images"`
	Seconds    float64 `json:"seconds"`
	PerSec     float64 `json:"images_per_s"`
	PerCore    float64 `json:"images_per_s_per_core"`
	CPUSeconds float64 `json:"cpu_s"`
	PerCPUSec  float64 `json:"images_per_cpu_s"`
	// Shares of the workers' time per image; null where not measured.
	Read   *float64 `json:"read_share"`
	Decode *float64 `json:"decode_share"`
	Resize *float64 `json:"resize_share"`
}

func runBenchData(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench data", stderr)
	spec := fs.String("data", "", "dataset to decode, e.g. imagefolder:PATH or shards:DIR (its train split is timed)")
	workers := fs.Int("workers", runtime.GOMAXPROCS(0), "decoding goroutines")
	imageSize := fs.Int("image-size", 224, "output side in pixels")
	batch := fs.Int("batch", 64, "images per batch")
	eval := fs.Bool("eval", false, "time the evaluation transforms (Resize + CenterCrop) instead of the training ones (RandomResizedCrop + flip)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *spec == "" {
		return usageErrorf("--data is required, e.g. --data imagefolder:PATH")
	}
	if *workers <= 0 || *imageSize <= 0 || *batch <= 0 {
		return usageErrorf("--workers, --image-size and --batch must be positive")
	}
	train, _, err := data.Open(*spec, data.Options{ImageSize: *imageSize})
	if err != nil {
		return err
	}
	res, err := data.BenchLoader(ctx, train, data.LoaderBenchConfig{Workers: *workers, Batch: *batch, Eval: *eval})
	if err != nil {
		return err
	}
	out := benchDataOutput{
		Framework: "macdist", Data: strings.SplitN(*spec, ":", 2)[0], Decoder: "-", Transforms: "train", ImageSize: *imageSize,
		Workers: *workers, Cores: data.Cores(*workers), Batch: *batch,
		Images: res.Images, Seconds: res.Seconds, CPUSeconds: res.CPUSeconds,
	}
	if *eval {
		out.Transforms = "eval"
	}
	if res.Decoder != "" {
		out.Decoder = res.Decoder
		st := res.Stages
		if total := st.Read + st.Decode + st.Resize; total > 0 {
			share := func(d float64) *float64 { v := d / float64(total); return &v }
			out.Read, out.Decode, out.Resize = share(float64(st.Read)), share(float64(st.Decode)), share(float64(st.Resize))
		}
	}
	if res.Seconds > 0 {
		out.PerSec = float64(res.Images) / res.Seconds
		out.PerCore = out.PerSec / float64(out.Cores)
	}
	if res.CPUSeconds > 0 {
		out.PerCPUSec = float64(res.Images) / res.CPUSeconds
	}
	line, err := json.Marshal(out)
	if err != nil {
		return fmt.Errorf("encoding the result: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "%s\n", line)
	return err
}
