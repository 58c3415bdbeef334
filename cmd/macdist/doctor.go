package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/macdist/macdist/collective/nccl"
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

	var missing []string
	fmt.Fprintln(stdout, "== CPU")
	blasOK := false
	switch env := os.Getenv("MACDIST_BLAS"); {
	case env == "gonum":
		fmt.Fprintln(stdout, "BLAS: gonum (pure Go), as MACDIST_BLAS=gonum asks")
	case cpu.BLASName() == "openblas":
		blasOK = true
		fmt.Fprintf(stdout, "BLAS: %s\n", cpu.New().Name())
	default:
		fmt.Fprintln(stdout, "BLAS: gonum (pure Go, several times slower): libopenblas.so.0 not found")
		fmt.Fprintln(stdout, "  fix: apt-get install libopenblas0 (Debian, Ubuntu), or put libopenblas.so.0 on LD_LIBRARY_PATH")
	}
	if !blasOK {
		missing = append(missing, "cpu-blas")
	}
	fmt.Fprintln(stdout, oneDNNLine(os.Getenv("MACDIST_DNN")))

	fmt.Fprintln(stdout, "\n== CUDA")
	r := cuda.Probe()
	fmt.Fprint(stdout, r.String())
	if r.Err != nil {
		missing = append(missing, "cuda")
		fmt.Fprintf(stdout, "  --device cuda is unavailable; --device cpu works everywhere\n")
	}

	fmt.Fprintln(stdout, "\n== NCCL (multi-GPU all-reduce)")
	n := nccl.Probe()
	fmt.Fprintln(stdout, n.String())
	if n.Err != nil {
		missing = append(missing, "nccl")
		fmt.Fprintln(stdout, "  without it, GPU replicas cannot all-reduce on the GPU (NCCL)")
	}

	fmt.Fprintln(stdout, "\n== summary")
	devices := []string{"cpu"}
	if r.Err == nil {
		for _, g := range r.GPUs {
			devices = append(devices, fmt.Sprintf("cuda:%d (%s)", g.Ordinal, g.Name))
		}
	}
	fmt.Fprintf(stdout, "devices: %s\n", strings.Join(devices, ", "))
	if len(missing) == 0 {
		fmt.Fprintln(stdout, "missing: nothing")
	} else {
		fmt.Fprintf(stdout, "missing: %s (see above for the fix)\n", strings.Join(missing, ", "))
	}
	var failed []string
	for _, m := range missing {
		if need[m] {
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
