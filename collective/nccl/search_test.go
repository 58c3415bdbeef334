package nccl

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/macdist/macdist/kernels/cuda"
)

func touch(t *testing.T, root, rel string) string {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("not a shared library"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func testEnv(root string, env map[string]string) searchEnv {
	return searchEnv{getenv: func(k string) string { return env[k] }, glob: filepath.Glob, root: root, noLoader: true}
}

func where(cs []candidate) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Path+" ("+c.Where+")")
	}
	return out
}

func TestSearchOrder(t *testing.T) {
	root := t.TempDir()
	envA := touch(t, root, "envA/libnccl.so.2")
	envB := touch(t, root, "envB/libnccl.so.2")
	cuda13 := touch(t, root, "usr/local/cuda-13.0/lib64/libnccl.so.2")
	cuda9 := touch(t, root, "usr/local/cuda-9.2/lib64/libnccl.so.2")
	site := "opt/torch/.venv/lib/python3.12/site-packages/nvidia/"
	cu13 := touch(t, root, site+"cu13/lib/libnccl.so.2")
	ncclWheel := touch(t, root, site+"nccl/lib/libnccl.so.2")
	touch(t, root, site+"cublas/lib/libcublas.so.13") // no NCCL there
	py39 := touch(t, root, "usr/local/lib/python3.9/dist-packages/nvidia/nccl/lib/libnccl.so.2")
	py311 := touch(t, root, "usr/local/lib/python3.11/site-packages/nvidia/nccl/lib/libnccl.so.2")
	venv := touch(t, root, "home/u/venv/lib/python3.10/site-packages/nvidia/nccl/lib/libnccl.so.2")
	sys := touch(t, root, "usr/lib/x86_64-linux-gnu/libnccl.so.2")

	e := testEnv(root, map[string]string{
		cuda.EnvLibs: filepath.Join(root, "envB") + ":: " + filepath.Join(root, "envA") + " :" + filepath.Join(root, "nowhere"),
		// Globbed under the test's root, like every absolute pattern.
		"VIRTUAL_ENV": "/home/u/venv",
	})
	got := where(e.plan())
	want := []string{
		envB + " (MACDIST_CUDA_LIBS)",
		envA + " (MACDIST_CUDA_LIBS)",
		cuda13 + " (cuda toolkit)",
		cuda9 + " (cuda toolkit)",
		venv + " (python site-packages)",
		ncclWheel + " (python site-packages)",
		cu13 + " (python site-packages)",
		py311 + " (python site-packages)",
		py39 + " (python site-packages)",
		sys + " (system)",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("search:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}

	// The loader's search comes right after MACDIST_CUDA_LIBS.
	e.noLoader = false
	got = where(e.plan())
	if len(got) < 3 || got[2] != "libnccl.so.2 (loader)" {
		t.Errorf("with the loader, the third place is %q, want libnccl.so.2 (loader)", got[2])
	}
}

func TestMissingLibrary(t *testing.T) {
	root := t.TempDir()
	l := openFrom(testEnv(root, nil).plan())
	if l.Err == nil {
		t.Fatal("an empty tree gave a library")
	}
	for _, want := range []string{"libnccl.so.2 not found", "pip install nvidia-nccl-cu13", cuda.EnvLibs, "nothing to try"} {
		if haveCgo && !strings.Contains(l.Err.Error(), want) {
			t.Errorf("error %q does not say %q", l.Err, want)
		}
	}

	// A file that is not a library is tried, and the error says why it
	// was not taken.
	bad := touch(t, root, "usr/local/cuda-12.4/lib64/libnccl.so.2")
	l = openFrom(testEnv(root, nil).plan())
	if l.Err == nil || haveCgo && !strings.Contains(l.Err.Error(), bad+" (cuda toolkit): ") {
		t.Errorf("error %v does not name the file that failed to load, %s", l.Err, bad)
	}
	if len(l.Tried) != 1 || l.Tried[0].Err == "" {
		t.Errorf("tried %+v, want the one file with its error", l.Tried)
	}
}

func TestVersionText(t *testing.T) {
	for code, want := range map[int]string{22809: "2.28.9", 21400: "2.14.0", 2804: "2.8.4", 23007: "2.30.7", 0: ""} {
		if got := VersionText(code); got != want {
			t.Errorf("VersionText(%d) = %q, want %q", code, got, want)
		}
	}
}

// TestProbe runs the real search: on a machine without NCCL the report
// says what is missing and how to get it; with NCCL, where and which.
func TestProbe(t *testing.T) {
	r := Probe()
	t.Log(r)
	if r.Err != nil {
		if !strings.Contains(r.Err.Error(), soname) {
			t.Errorf("Probe's error %q does not name %s", r.Err, soname)
		}
		if _, err := NewUniqueID(); err == nil || !errors.Is(err, r.Err) && err.Error() != r.Err.Error() {
			t.Errorf("NewUniqueID without NCCL: %v, want Probe's error", err)
		}
		return
	}
	if r.Version == "" || r.Library.Path == "" {
		t.Errorf("NCCL loaded but the report %+v lacks its version or path", r)
	}
}
