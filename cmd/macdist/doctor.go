package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/macdist/macdist/collective/nccl"
	"github.com/macdist/macdist/data"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/kernels/cuda"
)

// runDoctor prints what macdist found to compute with (OpenBLAS, the CUDA
// driver, cuBLAS, NCCL, the GPUs), their versions and where they came
// from, and for what is missing, how to provide it. It loads the libraries
// as the devices would and never fails for want of one, unless --require
// names it.
func runDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("doctor", stderr)
	require := fs.String("require", "", "comma-separated list of cpu-blas, cuda, nccl: exit with status 1 if any is unusable")
	if err := parse(fs, args); err != nil {
		return err
	}
	need := map[string]bool{}
	for _, r := range strings.Split(*require, ",") {
		switch r = strings.TrimSpace(r); r {
		case "":
		case "cpu-blas", "cuda", "nccl":
			need[r] = true
		default:
			return usageErrorf("--require %q: want cpu-blas, cuda or nccl", r)
		}
	}

	// missing is what should be fixed; unusable also holds what is simply
	// absent (GPUs on a machine without any), for --require.
	var missing []string
	unusable := map[string]bool{}
	fmt.Fprintln(stdout, "== CPU")
	blas := ""
	switch env := os.Getenv("MACDIST_BLAS"); {
	case env == "gonum":
		blas = "gonum (pure Go), as MACDIST_BLAS=gonum asks"
		fmt.Fprintln(stdout, "BLAS: "+blas)
	case cpu.BLASName() == "openblas":
		blas = cpu.New().Name()
		fmt.Fprintf(stdout, "BLAS: %s\n", blas)
	default:
		fmt.Fprintln(stdout, "BLAS: gonum (pure Go, several times slower): libopenblas.so.0 not found")
		fmt.Fprintln(stdout, "  fix: apt-get install libopenblas0 (Debian, Ubuntu), or put libopenblas.so.0 on LD_LIBRARY_PATH")
	}
	fmt.Fprintln(stdout, "JPEG: "+data.JPEGDecoder())
	if cpu.BLASName() != "openblas" {
		missing = append(missing, "cpu-blas")
		unusable["cpu-blas"] = true
	}
	fmt.Fprintln(stdout, oneDNNLine(os.Getenv("MACDIST_DNN")))
	fmt.Fprintln(stdout, bf16Line())

	fmt.Fprintln(stdout, "\n== CUDA")
	r := cuda.Probe()
	noDriver := r.Driver.Err != nil
	if noDriver {
		// The common case of a laptop or a CPU node: nothing is broken.
		fmt.Fprintln(stdout, "no NVIDIA driver (libcuda.so.1 not found): this machine has no GPU for macdist, which is fine for --device cpu")
		fmt.Fprintf(stdout, "  to train on GPUs here: %v\n", r.Err)
		unusable["cuda"] = true
	} else {
		fmt.Fprint(stdout, r.String())
		if r.Err != nil {
			missing = append(missing, "cuda")
			unusable["cuda"] = true
			fmt.Fprintf(stdout, "  --device cuda is unavailable; --device cpu works everywhere\n")
		}
	}

	fmt.Fprintln(stdout, "\n== NCCL (multi-GPU all-reduce)")
	n := nccl.Probe()
	if n.Err != nil {
		unusable["nccl"] = true
	}
	switch {
	case noDriver && n.Err != nil:
		fmt.Fprintln(stdout, "NCCL: not found, and not needed without GPUs (CPU replicas all-reduce over TCP)")
	default:
		fmt.Fprintln(stdout, n.String())
		if n.Err != nil {
			missing = append(missing, "nccl")
			fmt.Fprintln(stdout, "  without it, GPU replicas cannot all-reduce on the GPU (NCCL)")
		}
	}

	fmt.Fprintln(stdout, "\n== summary")
	devices := []string{"cpu"}
	if r.Err == nil {
		for _, g := range r.GPUs {
			devices = append(devices, fmt.Sprintf("cuda:%d (%s)", g.Ordinal, g.Name))
		}
	}
	fmt.Fprintf(stdout, "devices: %s\n", strings.Join(devices, ", "))
	if unusable["cpu-blas"] {
		fmt.Fprintln(stdout, "CPU training: works, slowly (no OpenBLAS: see above)")
	} else {
		fmt.Fprintf(stdout, "CPU training: ready (%s)\n", blas)
	}
	switch {
	case noDriver:
		fmt.Fprintln(stdout, "GPU training: no GPUs here (no NVIDIA driver)")
	case r.Err != nil:
		fmt.Fprintln(stdout, "GPU training: unavailable (see CUDA above)")
	default:
		fmt.Fprintf(stdout, "GPU training: ready (%d GPUs)\n", len(r.GPUs))
	}
	if len(missing) == 0 {
		fmt.Fprintln(stdout, "to fix: nothing")
	} else {
		fmt.Fprintf(stdout, "to fix: %s (see above)\n", strings.Join(missing, ", "))
	}
	var failed []string
	for _, m := range []string{"cpu-blas", "cuda", "nccl"} {
		if need[m] && unusable[m] {
			failed = append(failed, m)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("required but unusable: %s", strings.Join(failed, ", "))
	}
	return nil
}

// oneDNNLine says how the CPU device convolves: with oneDNN (its version
// and the instruction set it picked) or with im2col, and why.
func oneDNNLine(env string) string {
	if env == "none" {
		return "convolutions: im2col, as MACDIST_DNN=none asks"
	}
	version, isa, err := cpu.OneDNN()
	if err != nil {
		return fmt.Sprintf("convolutions: im2col (slower): %v\n  fix: apt-get install libdnnl2 (Debian, Ubuntu), or put libdnnl.so.2 on LD_LIBRARY_PATH", err)
	}
	return fmt.Sprintf("convolutions: oneDNN %s (CPU ISA %s)", version, isa)
}
