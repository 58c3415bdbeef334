package cuda

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/macdist/macdist/internal/dynlib"
	"github.com/macdist/macdist/internal/dynlib/dynlibtest"
)

func TestSearchOrder(t *testing.T) {
	root := t.TempDir()
	envA := dynlibtest.Touch(t, root, "envA/libcublas.so.12")
	dynlibtest.Touch(t, root, "envB/libcublas.so.13")
	dynlibtest.Touch(t, root, "envB/libcublas.so.12")
	cuda12 := dynlibtest.Touch(t, root, "usr/local/cuda-12.4/lib64/libcublas.so.12")
	cuda9 := dynlibtest.Touch(t, root, "usr/local/cuda-9.2/lib64/libcublas.so.11")
	torch := dynlibtest.Touch(t, root, "opt/torch/.venv/lib/python3.12/site-packages/nvidia/cublas/lib/libcublas.so.12")
	cu13 := dynlibtest.Touch(t, root, "opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib/libcublas.so.13")
	sys := dynlibtest.Touch(t, root, "usr/lib/python3/dist-packages/nvidia/cublas/lib/libcublas.so.11")
	py39 := dynlibtest.Touch(t, root, "usr/local/lib/python3.9/dist-packages/nvidia/cublas/lib/libcublas.so.12")
	py311 := dynlibtest.Touch(t, root, "usr/local/lib/python3.11/site-packages/nvidia/cublas/lib/libcublas.so.12")
	dynlibtest.Touch(t, root, "usr/local/cuda-12.4/lib64/stubs/libcuda.so.1") // never a driver

	e := dynlibtest.Search(root, map[string]string{EnvLibs: filepath.Join(root, "envA") + ":: " + filepath.Join(root, "envB") + " "})
	got := dynlibtest.Paths(plan(e, "libcublas.so.13", "libcublas.so.12", "libcublas.so.11"))
	want := []string{
		// MACDIST_CUDA_LIBS first, its folders in the order given, a
		// folder's sonames newest first; then toolkits and then wheels,
		// each newest soname first and then newest version first.
		envA + " (MACDIST_CUDA_LIBS)",
		filepath.Join(root, "envB/libcublas.so.13") + " (MACDIST_CUDA_LIBS)",
		filepath.Join(root, "envB/libcublas.so.12") + " (MACDIST_CUDA_LIBS)",
		cuda12 + " (cuda toolkit)",
		cuda9 + " (cuda toolkit)",
		cu13 + " (python site-packages)",
		torch + " (python site-packages)",
		py311 + " (python site-packages)",
		py39 + " (python site-packages)",
		sys + " (python site-packages)",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("cuBLAS search:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}

	// With the loader's search in, the bare sonames come right after
	// MACDIST_CUDA_LIBS, newest first.
	e.NoLoader = false
	got = dynlibtest.Paths(plan(e, "libcublas.so.12", "libcublas.so.11"))
	if len(got) < 4 || got[2] != "libcublas.so.12 (loader)" || got[3] != "libcublas.so.11 (loader)" {
		t.Errorf("loader candidates not after MACDIST_CUDA_LIBS: %v", got)
	}

	// The driver is looked for in MACDIST_CUDA_LIBS and system folders,
	// never in toolkits (stubs) or wheels.
	drvEnv := dynlibtest.Touch(t, root, "drv/libcuda.so.1")
	drvSys := dynlibtest.Touch(t, root, "usr/lib64/libcuda.so.1")
	drvMount := dynlibtest.Touch(t, root, "usr/local/nvidia/lib64/libcuda.so.1")
	e = dynlibtest.Search(root, map[string]string{EnvLibs: filepath.Join(root, "drv")})
	got = dynlibtest.Paths(plan(e, driverLib))
	want = []string{drvEnv + " (MACDIST_CUDA_LIBS)", drvMount + " (system)", drvSys + " (system)"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("driver search: got %v, want %v", got, want)
	}
}

// A fake libcublas.so.12 in MACDIST_CUDA_LIBS is what the search reports
// first, with dlopen's complaint about it; the load fails with an error
// that says what to install.
func TestFakeLibraryReported(t *testing.T) {
	root := t.TempDir()
	fake := dynlibtest.Touch(t, root, "libs/libcublas.so.12")
	e := dynlibtest.Search(root, map[string]string{EnvLibs: filepath.Join(root, "libs")})
	l := loadCUBLASFrom(e, []string{"libcublas.so.12", "libcublas.so.11"})
	if l.Err == nil {
		t.Fatalf("loading a text file as cuBLAS succeeded: %+v", l)
	}
	if len(l.Tried) != 1 || l.Tried[0].Path != fake || l.Tried[0].Where != EnvLibs {
		t.Fatalf("Tried = %+v, want just %s from %s", l.Tried, fake, EnvLibs)
	}
	if dynlib.Available && !strings.Contains(l.Tried[0].Err, "dlopen") {
		t.Errorf("attempt error %q does not come from dlopen", l.Tried[0].Err)
	}
	for _, s := range []string{"cuBLAS not found", "libcublas.so.12, libcublas.so.11", "pip install nvidia-cublas-cu12", EnvLibs, fake} {
		if !strings.Contains(l.Err.Error(), s) {
			t.Errorf("error does not mention %q: %v", s, l.Err)
		}
	}
}

// Without libcuda.so.1 the error names it, what provides it and the
// variable that points at it.
func TestMissingDriver(t *testing.T) {
	root := t.TempDir()
	empty := filepath.Join(root, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	l := loadDriverFrom(dynlibtest.Search(root, map[string]string{EnvLibs: empty}))
	if l.Err == nil {
		t.Fatal("found a driver in an empty tree")
	}
	want := []string{"libcuda.so.1", "NVIDIA driver", EnvLibs}
	if !dynlib.Available {
		want = []string{"libcuda.so.1", "without cgo"}
	}
	for _, s := range want {
		if !strings.Contains(l.Err.Error(), s) {
			t.Errorf("error does not mention %q: %v", s, l.Err)
		}
	}

	// A file that is not a library is tried, reported and passed over.
	fake := dynlibtest.Touch(t, root, "bad/libcuda.so.1")
	l = loadDriverFrom(dynlibtest.Search(root, map[string]string{EnvLibs: filepath.Dir(fake)}))
	if l.Err == nil || len(l.Tried) != 1 || l.Tried[0].Path != fake || l.Tried[0].Err == "" {
		t.Errorf("fake driver: Err=%v Tried=%+v", l.Err, l.Tried)
	}
	if dynlib.Available && !strings.Contains(l.Err.Error(), fake) {
		t.Errorf("error does not list the fake driver: %v", l.Err)
	}
}

// New on a machine without a usable GPU returns an error (and does not
// exit or crash); on one with a GPU there is nothing to check here.
func TestNewWithoutGPU(t *testing.T) {
	d, err := New(0)
	if err == nil {
		d.Close()
		t.Skip("a GPU is usable here")
	}
	if !strings.HasPrefix(err.Error(), "cuda: ") {
		t.Errorf("error without the package prefix: %v", err)
	}
	r := Probe()
	if r.Err == nil {
		t.Errorf("Probe reports a usable GPU, New failed with %v", err)
	}
	if !strings.Contains(r.String(), "unusable") {
		t.Errorf("Probe's report does not say it is unusable:\n%s", r)
	}
	t.Logf("New(0): %v\nProbe:\n%s", err, r)
}

func TestCublasSonames(t *testing.T) {
	for _, tc := range []struct {
		driver int
		want   []string
	}{
		{0, []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11"}},
		{13000, []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11"}},
		{12020, []string{"libcublas.so.12", "libcublas.so.11"}},
		{11080, []string{"libcublas.so.11"}},
		{10020, nil},
	} {
		if got := cublasSonames(tc.driver); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("cublasSonames(%d) = %v, want %v", tc.driver, got, tc.want)
		}
	}
	if got := ltName("libcublas.so.12"); got != "libcublasLt.so.12" {
		t.Errorf("ltName = %q", got)
	}
}
