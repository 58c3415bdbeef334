// Package backend opens the compute device a command line names: "cpu",
// "cuda" or "cuda:N". It sits above kernels/cpu, kernels/cuda and nn, not
// inside kernels/, because it also sizes nn's per-device workspace: a GPU
// wants far larger im2col chunks than a CPU (see nn.MaxWorkspace), and the
// place that opens a device is the one place that knows which it is.
package backend

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/kernels/cuda"
	"github.com/macdist/macdist/nn"
)

// Options tune the device Open returns.
type Options struct {
	// BLAS picks the CPU device's BLAS: "openblas", "gonum", or "" for
	// kernels/cpu's default. Ignored for GPUs.
	BLAS string
	// AllowTF32 lets cuBLAS use TF32 tensor cores (see cuda.Options).
	// Ignored for the CPU.
	AllowTF32 bool
	// WorkspaceBytes bounds a GPU's shared scratch buffer (nn.Workspace),
	// in bytes; 0 sizes it from the GPU's memory (GPUWorkspaceBytes).
	WorkspaceBytes int64
}

// Spec is a parsed device name.
type Spec struct {
	Kind    string // "cpu" or "cuda"
	Ordinal int    // the GPU, for cuda
}

func (s Spec) String() string {
	if s.Kind == "cuda" {
		return "cuda:" + strconv.Itoa(s.Ordinal)
	}
	return s.Kind
}

// Parse reads "cpu" (or ""), "cuda" (GPU 0) or "cuda:N".
func Parse(spec string) (Spec, error) {
	switch {
	case spec == "" || spec == "cpu":
		return Spec{Kind: "cpu"}, nil
	case spec == "cuda":
		return Spec{Kind: "cuda"}, nil
	case strings.HasPrefix(spec, "cuda:"):
		n, err := strconv.Atoi(spec[len("cuda:"):])
		if err != nil || n < 0 {
			return Spec{}, fmt.Errorf("backend: device %q: want cuda:N with N a GPU number", spec)
		}
		return Spec{Kind: "cuda", Ordinal: n}, nil
	}
	return Spec{}, fmt.Errorf("backend: unknown device %q (want cpu, cuda or cuda:N)", spec)
}

// Open opens the device spec names with the default Options.
func Open(spec string) (kernels.Device, error) { return OpenWith(spec, Options{}) }

// OpenWith opens the device spec names. A GPU that cannot be opened (no
// driver, no GPU, no cuBLAS) is an error naming the missing library and
// how to provide it, never a crash. Release the device with Close.
func OpenWith(spec string, opt Options) (kernels.Device, error) {
	s, err := Parse(spec)
	if err != nil {
		return nil, err
	}
	if s.Kind == "cpu" {
		// A library the environment insists on is asked for by name, so
		// that its absence is this error rather than kernels/cpu's panic.
		blas, dnn := opt.BLAS, ""
		if blas == "" && os.Getenv("MACDIST_BLAS") == "openblas" {
			blas = "openblas"
		}
		if os.Getenv("MACDIST_DNN") == "onednn" {
			dnn = "onednn"
		}
		d, err := cpu.Open(blas, dnn)
		if err != nil {
			return nil, fmt.Errorf("backend: %w (MACDIST_BLAS=%q, MACDIST_DNN=%q; Debian: apt-get install libopenblas0 libdnnl2)", err, os.Getenv("MACDIST_BLAS"), os.Getenv("MACDIST_DNN"))
		}
		return d, nil
	}
	d, err := cuda.NewWithOptions(s.Ordinal, cuda.Options{AllowTF32: opt.AllowTF32})
	if err != nil {
		return nil, fmt.Errorf("backend: device %s: %w", s, err)
	}
	bytes := opt.WorkspaceBytes
	if bytes <= 0 {
		_, total, err := d.DeviceMemory()
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("backend: device %s: %w", s, err)
		}
		bytes = GPUWorkspaceBytes(total)
	}
	nn.Workspace(d).SetLimit(int(bytes / 4))
	return d, nil
}

// GPUWorkspaceBytes is the workspace bound for a GPU with total bytes of
// memory: a sixteenth of it, between 256 MiB and 2 GiB. Conv2d unfolds as
// many images at a time as the bound allows, and a GPU's batched GEMMs
// want them all: ResNet-50's largest unfolding at 224 px is 7.2 MiB per
// image, so a batch of 128 fits in 1 GiB and one GEMM per layer; a bound
// of a sixteenth leaves the activations of such a batch (tens of GiB on an
// 80 GiB GPU) their room.
func GPUWorkspaceBytes(total int64) int64 {
	const lo, hi = 256 << 20, 2 << 30
	return min(max(total/16, lo), hi)
}

// Close releases a device Open returned: a GPU's memory, stream and
// handles; nothing for the CPU.
func Close(dev kernels.Device) error {
	if c, ok := dev.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}
