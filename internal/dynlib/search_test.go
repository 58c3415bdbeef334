package dynlib_test

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/macdist/macdist/internal/dynlib"
	"github.com/macdist/macdist/internal/dynlib/dynlibtest"
)

func TestSearchDirs(t *testing.T) {
	root := t.TempDir()
	for _, rel := range []string{
		"usr/local/cuda/lib64/x", "usr/local/cuda-9.2/lib64/x", "usr/local/cuda-12.10/lib64/x", "usr/local/cuda-12.4/lib64/x",
		"opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib/x",
		"opt/torch/.venv/lib/python3.12/site-packages/nvidia/nccl/lib/x",
		"usr/local/lib/python3.9/dist-packages/nvidia/cublas/lib/x",
		"usr/local/lib/python3.11/site-packages/nvidia/cublas/lib/x",
		"home/u/venv/lib/python3.10/site-packages/nvidia/cublas/lib/x",
		"home/u/.local/lib/python3.13/site-packages/nvidia/cublas/lib64/x",
	} {
		dynlibtest.Touch(t, root, rel)
	}
	env := map[string]string{"LIBS": " /a:: /b :", "VIRTUAL_ENV": "/home/u/venv", "HOME": "/home/u"}
	s := dynlib.Search{Getenv: func(k string) string { return env[k] }, Root: root}
	rel := func(dirs []string) []string {
		out := make([]string, len(dirs))
		for i, d := range dirs {
			out[i], _ = filepath.Rel(root, d)
		}
		return out
	}

	if got, want := s.EnvDirs("LIBS"), []string{"/a", "/b"}; !slices.Equal(got, want) {
		t.Errorf("EnvDirs = %q, want %q", got, want)
	}
	if got := s.EnvDirs("UNSET"); len(got) != 0 {
		t.Errorf("EnvDirs of an unset variable = %q", got)
	}
	// /usr/local/cuda first (the admin's choice), then newest first, each
	// folder once although two patterns match it.
	if got, want := rel(s.ToolkitDirs()), []string{"usr/local/cuda/lib64", "usr/local/cuda-12.10/lib64",
		"usr/local/cuda-12.4/lib64", "usr/local/cuda-9.2/lib64"}; !slices.Equal(got, want) {
		t.Errorf("ToolkitDirs = %q, want %q", got, want)
	}
	// The active virtual environment, /opt, the system's Pythons newest
	// first, ~/.local; within a site-packages the patterns in order.
	if got, want := rel(s.PythonDirs("nvidia/nccl/lib", "nvidia/*/lib", "nvidia/*/lib64")), []string{
		"home/u/venv/lib/python3.10/site-packages/nvidia/cublas/lib",
		"opt/torch/.venv/lib/python3.12/site-packages/nvidia/nccl/lib",
		"opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib",
		"usr/local/lib/python3.11/site-packages/nvidia/cublas/lib",
		"usr/local/lib/python3.9/dist-packages/nvidia/cublas/lib",
		"home/u/.local/lib/python3.13/site-packages/nvidia/cublas/lib64",
	}; !slices.Equal(got, want) {
		t.Errorf("PythonDirs =\n%q\nwant\n%q", got, want)
	}

	dir := filepath.Join(root, "usr/local/cuda/lib64")
	if p, ok := dynlib.FileIn(dir, "x"); !ok || p != filepath.Join(dir, "x") {
		t.Errorf("dynlib.FileIn(an existing file) = %q, %v", p, ok)
	}
	if _, ok := dynlib.FileIn(dir, "missing"); ok {
		t.Error("dynlib.FileIn found a missing file")
	}
	if _, ok := dynlib.FileIn(filepath.Dir(dir), "lib64"); ok {
		t.Error("dynlib.FileIn took a folder for a file")
	}
}

func TestCandidateLoader(t *testing.T) {
	if !(dynlib.Candidate{Path: "libnccl.so.2"}).Loader() || (dynlib.Candidate{Path: "/usr/lib/libnccl.so.2"}).Loader() {
		t.Error("Loader() does not tell a bare soname from a file")
	}
}
