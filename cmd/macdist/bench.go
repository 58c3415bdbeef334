package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/macdist/macdist/internal/benchmark"
	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/mac"
	"github.com/macdist/macdist/nn"
	"github.com/macdist/macdist/nn/models"
)

// benchOutput is the JSON line `macdist bench` prints; bench/torch_ref.py
// prints the same keys, so that bench/compare.sh can put them side by side.
type benchOutput struct {
	Framework string `json:"framework"`
	Model     string `json:"model"`
	benchmark.Result
	BLAS string `json:"blas"`
	// Mode is how convolutions run: "onednn" or "im2col" (PyTorch's
	// lines say "nchw", "channels_last" or "channels_last_bf16").
	Mode string `json:"mode"`
	// DNNISA is the instruction set oneDNN's kernels use ("" on im2col).
	DNNISA string `json:"dnn_isa"`
	// Precision is "fp32" or "bf16"; BF16Native whether this CPU
	// computes bf16 in hardware (a bf16 line without it is emulated).
	Precision  string `json:"precision"`
	BF16Native bool   `json:"bf16_native"`
	// Layout is the activation layout on the oneDNN path: "nchw",
	// "nChw16c" or "nhwc" (the model's, unless MACDIST_LAYOUT chooses).
	Layout string `json:"layout,omitempty"`
	// ConvAlgorithm is what oneDNN is asked to convolve by: "direct" or
	// "auto" (Winograd where oneDNN judges it faster; the model's, unless
	// MACDIST_CONV_ALGO chooses).
	ConvAlgorithm string `json:"conv_algorithm,omitempty"`
	Device        string `json:"device"`
	Threads       int    `json:"threads"`
	Params        int    `json:"params"`
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "collective" {
		return runBenchCollective(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "data" {
		return runBenchData(ctx, args[1:], stdout, stderr)
	}
	fs := newFlagSet("bench", stderr)
	model := fs.String("model", "", "model to build: "+strings.Join(models.Names(), ", "))
	batch := fs.Int("batch", 128, "images per step")
	steps := fs.Int("steps", 20, "timed steps")
	warmup := fs.Int("warmup", 3, "untimed steps before the timed ones")
	imageSize := fs.Int("image-size", 0, "input height and width in pixels (0: the model's default)")
	depth := fs.Int("depth", 0, "layers or blocks, where the model has the option (0: its default)")
	classes := fs.Int("classes", 0, "classifier outputs (0: the model's default)")
	optimizer := fs.String("optimizer", "", "include an optimizer step: "+strings.Join(mac.Methods, ", ")+" (with its default hyperparameters; empty: forward, loss and backward only)")
	blas := fs.String("blas", "", `BLAS for the CPU device: "openblas", "gonum", or "" for the default (OpenBLAS when it loads; MACDIST_BLAS overrides)`)
	dnn := fs.String("dnn", "", `convolutions: "onednn", "none" (im2col), or "" for the default (oneDNN when libdnnl.so.2 loads; MACDIST_DNN overrides)`)
	lockstep := fs.Bool("lockstep", false, "pace the timed steps from standard input, for bench/lockstep.py: print \"ready\" after the warmup, then run one step per line read and print \"step_ms T\" after it")
	precision := "fp32"
	precisionVar(fs, &precision)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *model == "" {
		return usageErrorf("--model is required (one of %s)", strings.Join(models.Names(), ", "))
	}
	if _, err := models.Default(*model); err != nil {
		return usageErrorf("%v", err)
	}
	if *batch <= 0 || *steps <= 0 || *warmup < 0 || *imageSize < 0 || *depth < 0 || *classes < 0 {
		return usageErrorf("--batch and --steps must be positive, --warmup, --image-size, --depth and --classes not negative")
	}
	dev, err := cpu.Open(*blas, *dnn)
	if err != nil {
		return usageErrorf("%v", err)
	}
	prec, _ := kernels.ParsePrecision(precision) // the flag checked it
	if err := dev.SetPrecision(prec); err != nil {
		return err // says what the CPU lacks; "macdist bench:" prefixes it
	}
	dev.TuneForModel(*model) // as the trainer does
	m, err := models.New(dev, *model, models.Config{ImageSize: *imageSize, Depth: *depth, Classes: *classes})
	if err != nil {
		return usageErrorf("%v", err)
	}
	nn.SkipFirstInputGrad(m) // as the trainer does

	var opt mac.Optimizer
	if *optimizer != "" {
		o, err := mac.DefaultOptions(*optimizer)
		if err != nil {
			return usageErrorf("%v", err)
		}
		if opt, err = mac.New(*optimizer, dev, m, o); err != nil {
			return usageErrorf("%v", err)
		}
	}
	var gate benchmark.Gate
	if *lockstep {
		gate = benchmark.LineGate(benchStdin, stdout)
	}
	res, err := benchmark.RunGated(ctx, dev, m, opt, *batch, *steps, *warmup, gate)
	if err != nil {
		return err
	}
	out := benchOutput{
		Framework: "macdist",
		Model:     *model,
		Result:    res,
		BLAS:      dev.BLAS(),
		Mode:      "im2col",
		Device:    dev.Name(),
		Threads:   runtime.GOMAXPROCS(0),
		Params:    m.NumParams(),
		Precision: prec.String(),
	}
	out.BF16Native, _, _ = cpu.BF16Support()
	if dev.DNN() == "onednn" {
		out.Mode = "onednn"
		out.Layout = dev.Layout().String()
		out.ConvAlgorithm = dev.ConvAlgorithm().String()
		if _, isa, err := cpu.OneDNN(); err == nil {
			out.DNNISA = isa
		}
	}
	line, err := json.Marshal(out)
	if err != nil {
		return fmt.Errorf("encoding the result: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "%s\n", line)
	return err
}

// benchStdin is where --lockstep reads its go-aheads (a variable for the
// tests).
var benchStdin io.Reader = os.Stdin
