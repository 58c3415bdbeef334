package cuda

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// EnvLibs names the environment variable that lists, colon-separated, the
// folders searched first for libcuda.so.1 and libcublas.
const EnvLibs = "MACDIST_CUDA_LIBS"

// The sonames looked for. cuBLAS is tried newest first; one whose major
// version is above the driver's CUDA version is skipped, since it would
// load and then fail in cublasCreate.
const driverLib = "libcuda.so.1"

var cublasLibs = []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11"}

// candidate is one place a library may be loaded from. Path is either a
// file (looked at with os.Stat before dlopen) or, for the loader's own
// search, the bare soname.
type candidate struct {
	Path  string
	Where string // "MACDIST_CUDA_LIBS", "loader", "cuda toolkit", "python site-packages", "system"
}

// loaderPath reports whether c is a bare soname left to the dynamic loader
// (LD_LIBRARY_PATH, the RUNPATH of the binary, ld.so.cache).
func (c candidate) loaderPath() bool { return !strings.Contains(c.Path, "/") }

// searchEnv is what the search reads from its surroundings, so that tests
// can give it a temporary tree.
type searchEnv struct {
	getenv func(string) string
	glob   func(string) ([]string, error)
	root   string // prefix of every absolute glob; "" in production
	// noLoader leaves out the bare sonames, which the real loader may
	// resolve, so that a test sees only its own tree.
	noLoader bool
}

func osSearchEnv() searchEnv {
	return searchEnv{getenv: os.Getenv, glob: filepath.Glob}
}

// envDirs returns the folders of MACDIST_CUDA_LIBS, in order, without
// empty entries.
func (e searchEnv) envDirs() []string {
	var dirs []string
	for _, d := range strings.Split(e.getenv(EnvLibs), ":") {
		if d = strings.TrimSpace(d); d != "" {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// globAll expands the patterns under e.root, in order, each pattern's
// matches highest version first (python3.12 before python3.9, cuda-13.0
// before cuda-12.4), without repeats.
func (e searchEnv) globAll(patterns ...string) []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range patterns {
		m, _ := e.glob(e.root + p)
		sort.Slice(m, func(i, j int) bool { return versionLess(m[j], m[i]) })
		for _, d := range m {
			if !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
		}
	}
	return out
}

// toolkitDirs are the lib64 folders of CUDA toolkits installed the usual
// way, /usr/local/cuda first (the symlink to the one chosen by the admin).
func (e searchEnv) toolkitDirs() []string {
	return e.globAll("/usr/local/cuda/lib64", "/usr/local/cuda-*/lib64", "/usr/local/cuda*/lib64")
}

// pythonDirs are the lib folders of NVIDIA's pip wheels (nvidia-cublas-cu12
// installs nvidia/cublas/lib, the CUDA 13 wheels nvidia/cu13/lib), in the
// site-packages of the system's Pythons and of virtual environments under
// /opt (where the lent GPU machines keep PyTorch). No Python is run.
func (e searchEnv) pythonDirs() []string {
	var sites []string
	if v := e.getenv("VIRTUAL_ENV"); v != "" {
		sites = append(sites, v+"/lib/python3*/site-packages")
	}
	sites = append(sites,
		"/opt/*/.venv/lib/python3*/site-packages",
		"/opt/*/venv/lib/python3*/site-packages",
		"/opt/*/lib/python3*/site-packages",
		"/usr/local/lib/python3*/site-packages",
		"/usr/local/lib/python3*/dist-packages",
		"/usr/lib/python3*/site-packages",
		"/usr/lib/python3/dist-packages",
	)
	if h := e.getenv("HOME"); h != "" {
		sites = append(sites, h+"/.local/lib/python3*/site-packages")
	}
	var pats []string
	for _, s := range sites {
		pats = append(pats, s+"/nvidia/*/lib", s+"/nvidia/*/lib64")
	}
	return e.globAll(pats...)
}

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
func (e searchEnv) plan(sonames ...string) []candidate {
	var out []candidate
	try := func(where, dir, so string) {
		p := filepath.Join(dir, so)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			out = append(out, candidate{Path: p, Where: where})
		}
	}
	for _, d := range e.envDirs() {
		for _, so := range sonames {
			try(EnvLibs, d, so)
		}
	}
	if !e.noLoader {
		for _, so := range sonames {
			out = append(out, candidate{Path: so, Where: "loader"})
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
		add("system", e.globAll("/usr/local/nvidia/lib64", "/usr/local/nvidia/lib",
			"/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib/aarch64-linux-gnu", "/usr/lib/wsl/lib"))
		return out
	}
	add("cuda toolkit", e.toolkitDirs())
	add("python site-packages", e.pythonDirs())
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

// versionLess orders strings as text, but runs of digits by their value,
// so that "python3.9" < "python3.12".
func versionLess(a, b string) bool {
	for a != "" && b != "" {
		if isDigit(a[0]) && isDigit(b[0]) {
			i, j := digits(a), digits(b)
			na, nb := strings.TrimLeft(a[:i], "0"), strings.TrimLeft(b[:j], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = a[i:], b[j:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// digits returns the length of the run of digits that s starts with.
func digits(s string) int {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}
