package nccl

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/macdist/macdist/kernels/cuda"
)

// soname is the library looked for. NCCL has kept major version 2 since
// 2017; its ABI is stable across 2.x minor versions for what we call.
const soname = "libnccl.so.2"

// candidate is one place the library may be loaded from: a file, or the
// bare soname for the dynamic loader's own search.
type candidate struct {
	Path  string
	Where string // MACDIST_CUDA_LIBS, loader, cuda toolkit, python site-packages, system
}

// searchEnv is what the search reads from its surroundings, so that a test
// can give it a temporary tree.
type searchEnv struct {
	getenv func(string) string
	glob   func(string) ([]string, error)
	root   string // prefix of every absolute glob; "" in production
	// noLoader leaves out the bare soname, which the real loader might
	// resolve, so that a test sees only its own tree.
	noLoader bool
}

func osSearchEnv() searchEnv { return searchEnv{getenv: os.Getenv, glob: filepath.Glob} }

// plan lists where libnccl.so.2 is looked for, in the order kernels/cuda
// looks for cuBLAS: the folders of MACDIST_CUDA_LIBS (in the order given),
// the loader's search (LD_LIBRARY_PATH, RUNPATH, ld.so.cache: Debian's and
// NVIDIA's libnccl2 packages land there), CUDA toolkits, and the nvidia/*/lib
// folders of Python site-packages, where pip's nvidia-nccl-cu12 puts
// nvidia/nccl/lib and the CUDA 13 wheels nvidia/cu13/lib. Folder candidates
// are kept only when the file exists, so an error lists real attempts.
func (e searchEnv) plan() []candidate {
	var out []candidate
	seen := map[string]bool{}
	try := func(where, dir string) {
		p := filepath.Join(dir, soname)
		if seen[p] {
			return
		}
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			seen[p] = true
			out = append(out, candidate{Path: p, Where: where})
		}
	}
	for _, d := range strings.Split(e.getenv(cuda.EnvLibs), ":") {
		if d = strings.TrimSpace(d); d != "" {
			try(cuda.EnvLibs, d)
		}
	}
	if !e.noLoader {
		out = append(out, candidate{Path: soname, Where: "loader"})
	}
	for _, d := range e.globAll("/usr/local/cuda/lib64", "/usr/local/cuda-*/lib64", "/usr/local/cuda*/lib64") {
		try("cuda toolkit", d)
	}
	for _, d := range e.pythonDirs() {
		try("python site-packages", d)
	}
	// Where ld.so.cache may be stale or missing, as in some containers.
	for _, d := range e.globAll("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64") {
		try("system", d)
	}
	return out
}

// pythonDirs are the lib folders of NVIDIA's pip wheels in the
// site-packages of virtual environments (VIRTUAL_ENV, under /opt, where
// the lent GPU machines keep PyTorch), of the system's Pythons and of
// ~/.local. No Python is run.
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
		// nvidia/nccl/lib first: the wheel that is only NCCL, then the
		// others (nvidia/cu13/lib holds every CUDA 13 library).
		pats = append(pats, s+"/nvidia/nccl/lib", s+"/nvidia/*/lib", s+"/nvidia/*/lib64")
	}
	return e.globAll(pats...)
}

// globAll expands the patterns under e.root, in order, each pattern's
// matches highest version first (python3.12 before python3.9), without
// repeats.
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

// versionLess orders strings as text, but runs of digits by their value.
func versionLess(a, b string) bool {
	for a != "" && b != "" {
		i, j := digits(a), digits(b)
		if i > 0 && j > 0 {
			na, _ := strconv.ParseUint(strings.TrimLeft(a[:i], "0")+"0", 10, 64)
			nb, _ := strconv.ParseUint(strings.TrimLeft(b[:j], "0")+"0", 10, 64)
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

// digits returns the length of the run of digits s starts with.
func digits(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}
