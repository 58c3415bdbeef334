package nccl

import (
	"github.com/macdist/macdist/internal/dynlib"
	"github.com/macdist/macdist/kernels/cuda"
)

// soname is the library looked for. NCCL has kept major version 2 since
// 2017; its ABI is stable across 2.x minor versions for what we call.
const soname = "libnccl.so.2"

// plan lists where libnccl.so.2 is looked for, in the order kernels/cuda
// looks for cuBLAS: the folders of MACDIST_CUDA_LIBS (in the order given),
// the loader's search (LD_LIBRARY_PATH, RUNPATH, ld.so.cache: Debian's and
// NVIDIA's libnccl2 packages land there), CUDA toolkits, and the nvidia/*/lib
// folders of Python site-packages, where pip's nvidia-nccl-cu12 puts
// nvidia/nccl/lib and the CUDA 13 wheels nvidia/cu13/lib. Folder candidates
// are kept only when the file exists, so an error lists real attempts.
func plan(e dynlib.Search) []dynlib.Candidate {
	var out []dynlib.Candidate
	seen := map[string]bool{}
	try := func(where, dir string) {
		if p, ok := dynlib.FileIn(dir, soname); ok && !seen[p] {
			seen[p] = true
			out = append(out, dynlib.Candidate{Path: p, Where: where})
		}
	}
	for _, d := range e.EnvDirs(cuda.EnvLibs) {
		try(cuda.EnvLibs, d)
	}
	if !e.NoLoader {
		out = append(out, dynlib.Candidate{Path: soname, Where: "loader"})
	}
	for _, d := range e.ToolkitDirs() {
		try("cuda toolkit", d)
	}
	// nvidia/nccl/lib first: the wheel that is only NCCL, then the others
	// (nvidia/cu13/lib holds every CUDA 13 library).
	for _, d := range e.PythonDirs("nvidia/nccl/lib", "nvidia/*/lib", "nvidia/*/lib64") {
		try("python site-packages", d)
	}
	// Where ld.so.cache may be stale or missing, as in some containers.
	for _, d := range e.GlobAll("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64") {
		try("system", d)
	}
	return out
}
