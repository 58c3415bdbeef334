package cuda

import (
	"strings"

	"github.com/macdist/macdist/internal/dynlib"
)

// EnvLibs names the environment variable that lists, colon-separated, the
// folders searched first for libcuda.so.1, libcublas and libcudnn.
const EnvLibs = "MACDIST_CUDA_LIBS"

// The sonames looked for. cuBLAS is tried newest first; one whose major
// version is above the driver's CUDA version is skipped, since it would
// load and then fail in cublasCreate.
const driverLib = "libcuda.so.1"

var cublasLibs = []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11"}

// plan returns where the libraries named by sonames (alternatives, best
// first) are looked for, in order: the folders of MACDIST_CUDA_LIBS, the
// loader's own search, then for cuBLAS the CUDA toolkits and Python wheels,
// and for the driver the usual system folders in case ld.so.cache is
// stale. These places are the outer loop, so that a folder named in
// MACDIST_CUDA_LIBS wins over a newer soname found elsewhere. Within
// MACDIST_CUDA_LIBS the folders go in the order given; within the other
// places the newest soname goes first, then the newest toolkit or Python.
// Folder candidates are kept only when the file exists, so that an error
// lists what was really tried.
func plan(e dynlib.Search, sonames ...string) []dynlib.Candidate {
	var out []dynlib.Candidate
	try := func(where, dir, so string) {
		if p, ok := dynlib.FileIn(dir, so); ok {
			out = append(out, dynlib.Candidate{Path: p, Where: where})
		}
	}
	for _, d := range e.EnvDirs(EnvLibs) {
		for _, so := range sonames {
			try(EnvLibs, d, so)
		}
	}
	if !e.NoLoader {
		for _, so := range sonames {
			out = append(out, dynlib.Candidate{Path: so, Where: "loader"})
		}
	}
	add := func(where string, dirs []string) {
		for _, so := range sonames {
			for _, d := range dirs {
				try(where, d, so)
			}
		}
	}
	if len(sonames) == 1 && sonames[0] == driverLib {
		// The driver is never taken from a toolkit or a wheel: those hold
		// only stubs, which load and then fail every call. Containers
		// often mount it under /usr/local/nvidia without telling ld.so.
		add("system", e.GlobAll("/usr/local/nvidia/lib64", "/usr/local/nvidia/lib",
			"/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib/aarch64-linux-gnu", "/usr/lib/wsl/lib"))
		return out
	}
	add("cuda toolkit", e.ToolkitDirs())
	// nvidia-cublas-cu12 installs nvidia/cublas/lib, the CUDA 13 wheels
	// nvidia/cu13/lib.
	add("python site-packages", e.PythonDirs("nvidia/*/lib", "nvidia/*/lib64"))
	return out
}

// cublasMajor returns the major version in a cuBLAS soname, such as 12
// for libcublas.so.12.
func cublasMajor(soname string) int {
	i := strings.LastIndexByte(soname, '.')
	n := 0
	for _, c := range soname[i+1:] {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// ltName is the soname of the cuBLASLt library that a cuBLAS soname needs,
// libcublasLt.so.12 for libcublas.so.12.
func ltName(soname string) string {
	return strings.Replace(soname, "libcublas.", "libcublasLt.", 1)
}
