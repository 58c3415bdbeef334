package cuda

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/macdist/macdist/internal/dynlib"
)

// Attempt is one place a library was tried, and why it was not taken
// (Err is empty for the one that was).
type Attempt = dynlib.Attempt

// Library describes how a shared library was found: the soname and file
// loaded and which part of the search (MACDIST_CUDA_LIBS, loader, cuda
// toolkit, python site-packages or system) found it, or why none loaded.
type Library = dynlib.Library

// lib is a library loaded at most once per process.
type lib struct {
	once sync.Once
	Library
}

var (
	drv    lib // libcuda.so.1
	cublas lib

	drvInitOnce sync.Once
	drvInitErr  error
	drvVersion  int // cuDriverGetVersion: 1000·major + 10·minor
)

// driverError is the error for a missing or unusable libcuda.so.1, with
// what fixes it.
func driverError(tried []Attempt) error {
	if !dynlib.Available {
		return errors.New("cuda: " + driverLib + " cannot be loaded: this binary was built without cgo (build with CGO_ENABLED=1 and a C compiler)")
	}
	return fmt.Errorf("cuda: %s not found: it comes with the NVIDIA driver (install the driver, e.g. the "+
		"libcuda1 or libnvidia-compute-* package; in a container, start it with the NVIDIA container toolkit, "+
		"docker run --gpus all), or set %s to the folder that holds it; tried: %s",
		driverLib, EnvLibs, dynlib.TriedText(tried))
}

// cublasError is the error for a missing cuBLAS.
func cublasError(sonames []string, tried []Attempt) error {
	return fmt.Errorf("cuda: cuBLAS not found (looked for %s): install it with pip (pip install nvidia-cublas-cu12 "+
		"for CUDA 12, nvidia-cublas for CUDA 13; PyTorch's CUDA wheels bring it) or with the CUDA toolkit "+
		"(/usr/local/cuda/lib64), or set %s to the folder holding libcublas.so.N and libcublasLt.so.N; tried: %s",
		strings.Join(sonames, ", "), EnvLibs, dynlib.TriedText(tried))
}

// loadDriverFrom opens libcuda.so.1 from the places e names.
func loadDriverFrom(e dynlib.Search) Library {
	l, _ := dynlib.OpenFirst(plan(e, driverLib), bindDriver, "cuInit", nil)
	if l.Err != nil {
		l.Err = driverError(l.Tried)
	}
	return l
}

// loadDriver opens libcuda.so.1 once per process.
func loadDriver() error {
	drv.once.Do(func() { drv.Library = loadDriverFrom(dynlib.Search{}) })
	return drv.Err
}

// initDriver loads the driver and runs cuInit, once per process.
func initDriver() error {
	if err := loadDriver(); err != nil {
		return err
	}
	drvInitOnce.Do(func() {
		// cuDriverGetVersion works before cuInit, so the version is known
		// (and reported) even where cuInit finds no GPU.
		v, err := cuDriverVersion()
		if err != nil {
			drvInitErr = fmt.Errorf("cuda: cuDriverGetVersion: %w", err)
			return
		}
		drvVersion = v
		if err := cuInit(); err != nil {
			drvInitErr = fmt.Errorf("cuda: cuInit: %w (is there an NVIDIA GPU, and does the driver see it? try nvidia-smi)", err)
		}
	})
	return drvInitErr
}

// cublasSonames returns the cuBLAS sonames worth trying with a driver of
// the given CUDA version (0 when unknown): a cuBLAS newer than the driver
// would load and then fail in cublasCreate.
func cublasSonames(driverVersion int) []string {
	var out []string
	for _, so := range cublasLibs {
		if driverVersion <= 0 || cublasMajor(so) <= driverVersion/1000 {
			out = append(out, so)
		}
	}
	return out
}

// loadCUBLASFrom opens the first cuBLAS that e's search finds among
// sonames. When it is a file, the libcublasLt of the same version in the
// same folder is loaded first, globally, because libcublas needs it and
// the folder may not be on the loader's path.
func loadCUBLASFrom(e dynlib.Search, sonames []string) Library {
	pre := func(c dynlib.Candidate) error {
		if c.Loader() {
			return nil
		}
		lt := filepath.Join(filepath.Dir(c.Path), ltName(filepath.Base(c.Path)))
		if _, err := os.Stat(lt); err != nil {
			return nil // perhaps found elsewhere through libcublas's RUNPATH
		}
		if _, err := dynlib.Open(lt, dynlib.Global); err != nil {
			return err
		}
		return nil
	}
	l, _ := dynlib.OpenFirst(plan(e, sonames...), bindCUBLAS, "cublasCreate_v2", pre)
	if l.Err != nil {
		l.Err = cublasError(sonames, l.Tried)
	}
	return l
}

// loadCUBLAS opens cuBLAS once per process, after the driver.
func loadCUBLAS() error {
	cublas.once.Do(func() {
		cublas.Library = loadCUBLASFrom(dynlib.Search{}, cublasSonames(drvVersion))
	})
	return cublas.Err
}
