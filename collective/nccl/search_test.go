package nccl

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/macdist/macdist/internal/dynlib"
	"github.com/macdist/macdist/internal/dynlib/dynlibtest"
	"github.com/macdist/macdist/kernels/cuda"
)

func TestSearchOrder(t *testing.T) {
	root := t.TempDir()
	envA := dynlibtest.Touch(t, root, "envA/libnccl.so.2")
	envB := dynlibtest.Touch(t, root, "envB/libnccl.so.2")
	cuda13 := dynlibtest.Touch(t, root, "usr/local/cuda-13.0/lib64/libnccl.so.2")
	cuda9 := dynlibtest.Touch(t, root, "usr/local/cuda-9.2/lib64/libnccl.so.2")
	site := "opt/torch/.venv/lib/python3.12/site-packages/nvidia/"
	cu13 := dynlibtest.Touch(t, root, site+"cu13/lib/libnccl.so.2")
	ncclWheel := dynlibtest.Touch(t, root, site+"nccl/lib/libnccl.so.2")
	dynlibtest.Touch(t, root, site+"cublas/lib/libcublas.so.13") // no NCCL there
	py39 := dynlibtest.Touch(t, root, "usr/local/lib/python3.9/dist-packages/nvidia/nccl/lib/libnccl.so.2")
	py311 := dynlibtest.Touch(t, root, "usr/local/lib/python3.11/site-packages/nvidia/nccl/lib/libnccl.so.2")
	venv := dynlibtest.Touch(t, root, "home/u/venv/lib/python3.10/site-packages/nvidia/nccl/lib/libnccl.so.2")
	sys := dynlibtest.Touch(t, root, "usr/lib/x86_64-linux-gnu/libnccl.so.2")

	e := dynlibtest.Search(root, map[string]string{
		cuda.EnvLibs: filepath.Join(root, "envB") + ":: " + filepath.Join(root, "envA") + " :" + filepath.Join(root, "nowhere"),
		// Globbed under the test's root, like every absolute pattern.
		"VIRTUAL_ENV": "/home/u/venv",
	})
	got := dynlibtest.Paths(plan(e))
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
	e.NoLoader = false
	got = dynlibtest.Paths(plan(e))
	if len(got) < 3 || got[2] != "libnccl.so.2 (loader)" {
		t.Errorf("with the loader, the third place is %q, want libnccl.so.2 (loader)", got[2])
	}
}

func TestMissingLibrary(t *testing.T) {
	root := t.TempDir()
	l := openFrom(plan(dynlibtest.Search(root, nil)))
	if l.Err == nil {
		t.Fatal("an empty tree gave a library")
	}
	for _, want := range []string{"libnccl.so.2 not found", "pip install nvidia-nccl-cu13", cuda.EnvLibs, "nothing to try"} {
		if dynlib.Available && !strings.Contains(l.Err.Error(), want) {
			t.Errorf("error %q does not say %q", l.Err, want)
		}
	}

	// A file that is not a library is tried, and the error says why it
	// was not taken.
	bad := dynlibtest.Touch(t, root, "usr/local/cuda-12.4/lib64/libnccl.so.2")
	l = openFrom(plan(dynlibtest.Search(root, nil)))
	if l.Err == nil || dynlib.Available && !strings.Contains(l.Err.Error(), bad+" (cuda toolkit): ") {
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
