package cuda

import (
	"fmt"
	"strings"

	"github.com/macdist/macdist/internal/dynlib"
)

// GPU describes one device the driver sees.
type GPU struct {
	Ordinal     int
	Name        string
	Capability  string // compute capability, such as "9.0"
	SMs         int
	MemoryBytes int64
}

// Report is what Probe found: where the libraries came from, their
// versions and the GPUs. It is meant for `macdist doctor` and for logs.
type Report struct {
	Driver        Library
	CUBLAS        Library
	DriverVersion int    // the CUDA version the driver supports, 1000·major + 10·minor; 0 if unknown
	CUBLASVersion string // major.minor.patch; "" if unknown
	CUDNN         Library
	CUDNNVersion  string // major.minor.patch; "" if cuDNN is missing (convolutions then use im2col + cuBLAS)
	GPUs          []GPU
	Err           error // why New would fail, or nil
}

// Probe loads the driver and cuBLAS (once per process, as New does) and
// reports what it found. It never fails: what is missing is in the
// report, with the same explanation New would give.
func Probe() *Report {
	r := &Report{}
	err := initDriver()
	r.Driver = drv.Library
	r.DriverVersion = drvVersion
	if r.Driver.Err != nil {
		r.Err = err
		return r
	}
	if err != nil {
		// No GPU, but the libraries can still be reported.
		r.Err = err
	} else if n, err := cuDeviceCount(); err != nil {
		r.Err = fmt.Errorf("cuda: cuDeviceGetCount: %w", err)
	} else {
		for i := 0; i < n; i++ {
			g := GPU{Ordinal: i}
			if dev, err := cuDeviceGet(i); err == nil {
				g.Name, _ = cuDeviceName(dev)
				maj, _ := cuDeviceAttribute(dev, attrCCMajor)
				mnr, _ := cuDeviceAttribute(dev, attrCCMinor)
				g.Capability = fmt.Sprintf("%d.%d", maj, mnr)
				g.SMs, _ = cuDeviceAttribute(dev, attrSMCount)
				g.MemoryBytes, _ = cuDeviceTotalMem(dev)
			}
			r.GPUs = append(r.GPUs, g)
		}
		if n == 0 {
			r.Err = fmt.Errorf("cuda: the driver sees no GPU")
		}
	}
	if err := loadCUBLAS(); err != nil {
		if r.Err == nil {
			r.Err = err
		}
	} else {
		maj, err1 := cublasProperty(0)
		mnr, err2 := cublasProperty(1)
		pat, err3 := cublasProperty(2)
		if err1 == nil && err2 == nil && err3 == nil {
			r.CUBLASVersion = fmt.Sprintf("%d.%d.%d", maj, mnr, pat)
		}
	}
	r.CUBLAS = cublas.Library
	if loadCUDNN() == nil {
		r.CUDNNVersion = cudnnVersionText(cudnnVersion())
	}
	r.CUDNN = dnnLib.Library
	return r
}

// String is a multi-line, human-readable account of the report.
func (r *Report) String() string {
	var b strings.Builder
	lib := func(what string, l Library) {
		if l.Err == nil && l.Path != "" {
			fmt.Fprintf(&b, "%s: %s from %s (%s)\n", what, l.Name, l.Path, l.Where)
		} else if len(l.Tried) > 0 {
			fmt.Fprintf(&b, "%s: not loaded; tried %s\n", what, dynlib.TriedText(l.Tried))
		} else {
			fmt.Fprintf(&b, "%s: not searched\n", what)
		}
	}
	lib("CUDA driver", r.Driver)
	if r.DriverVersion > 0 {
		fmt.Fprintf(&b, "driver supports CUDA %s\n", cudaVersion(r.DriverVersion))
	}
	for _, g := range r.GPUs {
		fmt.Fprintf(&b, "GPU %d: %s, compute capability %s, %d SMs, %.1f GiB\n",
			g.Ordinal, g.Name, g.Capability, g.SMs, float64(g.MemoryBytes)/(1<<30))
	}
	lib("cuBLAS", r.CUBLAS)
	if r.CUBLASVersion != "" {
		fmt.Fprintf(&b, "cuBLAS version %s\n", r.CUBLASVersion)
	}
	lib("cuDNN (optional: without it convolutions use im2col + cuBLAS)", r.CUDNN)
	if r.CUDNNVersion != "" {
		fmt.Fprintf(&b, "cuDNN version %s\n", r.CUDNNVersion)
	}
	if r.Err != nil {
		fmt.Fprintf(&b, "unusable: %v\n", r.Err)
	} else {
		b.WriteString("usable\n")
	}
	return b.String()
}
