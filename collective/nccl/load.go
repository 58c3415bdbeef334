package nccl

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/macdist/macdist/internal/dynlib"
	"github.com/macdist/macdist/kernels/cuda"
)

var (
	libOnce sync.Once
	lib     dynlib.Library // how libnccl.so.2 was found
	libVer  int            // ncclGetVersion's code

	evOnce sync.Once
	evErr  error
)

// openFrom opens the first candidate that loads and has every symbol.
func openFrom(cands []dynlib.Candidate) dynlib.Library {
	l, _ := dynlib.OpenFirst(cands, bindNCCL, "ncclGetVersion", nil)
	if l.Err != nil {
		l.Err = missingError(l.Tried)
	}
	return l
}

// missingError says that NCCL is missing, what provides it and what was
// tried.
func missingError(tried []dynlib.Attempt) error {
	if !dynlib.Available {
		return errors.New("nccl: " + soname + " cannot be loaded: this binary was built without cgo (build with CGO_ENABLED=1 and a C compiler)")
	}
	return fmt.Errorf("nccl: %s not found: install it with pip (pip install nvidia-nccl-cu13 for CUDA 13, "+
		"nvidia-nccl-cu12 for CUDA 12; PyTorch's CUDA wheels bring it) or from NVIDIA's CUDA apt repository "+
		"(libnccl2), or set %s to the folder that holds it; tried: %s",
		soname, cuda.EnvLibs, dynlib.TriedText(tried))
}

// load opens libnccl.so.2 once per process.
func load() error {
	libOnce.Do(func() {
		lib = openFrom(plan(dynlib.Search{}))
		if lib.Err == nil {
			v, err := ncclVersion()
			if err != nil {
				lib.Err = fmt.Errorf("nccl: %s from %s: %w", soname, lib.Path, err)
				return
			}
			libVer = v
		}
	})
	return lib.Err
}

// loadEvents binds the driver's event calls from the libcuda.so.1 that
// kernels/cuda has loaded (a New Device proves it is), so that both use
// the same driver.
func loadEvents() error {
	evOnce.Do(func() {
		h, err := dynlib.Open("libcuda.so.1", dynlib.NoLoad)
		if err != nil {
			if p := cuda.Probe().Driver.Path; p != "" {
				h, err = dynlib.Open(p, 0)
			}
		}
		if err != nil {
			evErr = fmt.Errorf("nccl: the CUDA driver is not loaded: %w", err)
			return
		}
		if err := bindEvents(h); err != nil {
			evErr = fmt.Errorf("nccl: libcuda.so.1: %w", err)
		}
	})
	return evErr
}

// VersionText renders an NCCL version code: 2.28.9 for 22809 (the format
// since 2.9), 2.8.4 for 2804.
func VersionText(code int) string {
	if code <= 0 {
		return ""
	}
	if code < 10000 {
		return fmt.Sprintf("%d.%d.%d", code/1000, code%1000/100, code%100)
	}
	return fmt.Sprintf("%d.%d.%d", code/10000, code%10000/100, code%100)
}

// Report is what Probe found, for `macdist doctor`.
type Report struct {
	Library dynlib.Library
	Version string // such as 2.28.9; "" if not loaded
	Err     error  // why New would fail for want of the library, or nil
}

// Probe loads libnccl.so.2 (once per process, as New does) and reports
// where it came from and its version. It needs no GPU.
func Probe() Report {
	err := load()
	return Report{Library: lib, Version: VersionText(libVer), Err: err}
}

// String is a one-line account of the report.
func (r Report) String() string {
	if r.Err != nil {
		return fmt.Sprintf("NCCL: not loaded: %v", r.Err)
	}
	return fmt.Sprintf("NCCL: %s %s from %s (%s)", filepath.Base(r.Library.Name), r.Version, r.Library.Path, r.Library.Where)
}
