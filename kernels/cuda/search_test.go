package cuda

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// touch creates an empty file (and its folders) under root.
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

// testEnv is a search rooted in a temporary tree, with the given
// environment and without the real loader's search.
func testEnv(root string, env map[string]string) searchEnv {
	return searchEnv{
		getenv:   func(k string) string { return env[k] },
		glob:     filepath.Glob,
		root:     root,
		noLoader: true,
	}
}

func paths(cs []candidate) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Path+" ("+c.Where+")")
	}
	return out
}

func TestSearchOrder(t *testing.T) {
	root := t.TempDir()
	envA := touch(t, root, "envA/libcublas.so.12")
	touch(t, root, "envB/libcublas.so.13")
	touch(t, root, "envB/libcublas.so.12")
	cuda12 := touch(t, root, "usr/local/cuda-12.4/lib64/libcublas.so.12")
	cuda9 := touch(t, root, "usr/local/cuda-9.2/lib64/libcublas.so.11")
	torch := touch(t, root, "opt/torch/.venv/lib/python3.12/site-packages/nvidia/cublas/lib/libcublas.so.12")
	cu13 := touch(t, root, "opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib/libcublas.so.13")
	sys := touch(t, root, "usr/lib/python3/dist-packages/nvidia/cublas/lib/libcublas.so.11")
	py39 := touch(t, root, "usr/local/lib/python3.9/dist-packages/nvidia/cublas/lib/libcublas.so.12")
	py311 := touch(t, root, "usr/local/lib/python3.11/site-packages/nvidia/cublas/lib/libcublas.so.12")
	touch(t, root, "usr/local/cuda-12.4/lib64/stubs/libcuda.so.1") // never a driver

	e := testEnv(root, map[string]string{EnvLibs: filepath.Join(root, "envA") + ":: " + filepath.Join(root, "envB") + " "})
	got := paths(e.plan("libcublas.so.13", "libcublas.so.12", "libcublas.so.11"))
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
	e.noLoader = false
	got = paths(e.plan("libcublas.so.12", "libcublas.so.11"))
	if len(got) < 4 || got[2] != "libcublas.so.12 (loader)" || got[3] != "libcublas.so.11 (loader)" {
		t.Errorf("loader candidates not after MACDIST_CUDA_LIBS: %v", got)
	}

	// The driver is looked for in MACDIST_CUDA_LIBS and system folders,
	// never in toolkits (stubs) or wheels.
	drvEnv := touch(t, root, "drv/libcuda.so.1")
	drvSys := touch(t, root, "usr/lib64/libcuda.so.1")
	drvMount := touch(t, root, "usr/local/nvidia/lib64/libcuda.so.1")
	e = testEnv(root, map[string]string{EnvLibs: filepath.Join(root, "drv")})
	got = paths(e.plan(driverLib))
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
	fake := touch(t, root, "libs/libcublas.so.12")
	e := testEnv(root, map[string]string{EnvLibs: filepath.Join(root, "libs")})
	l := loadCUBLASFrom(e, []string{"libcublas.so.12", "libcublas.so.11"})
	if l.Err == nil {
		t.Fatalf("loading a text file as cuBLAS succeeded: %+v", l)
	}
	if len(l.Tried) != 1 || l.Tried[0].Path != fake || l.Tried[0].Where != EnvLibs {
		t.Fatalf("Tried = %+v, want just %s from %s", l.Tried, fake, EnvLibs)
	}
	if haveCgo && !strings.Contains(l.Tried[0].Err, "dlopen") {
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
	l := loadDriverFrom(testEnv(root, map[string]string{EnvLibs: empty}))
	if l.Err == nil {
		t.Fatal("found a driver in an empty tree")
	}
	want := []string{"libcuda.so.1", "NVIDIA driver", EnvLibs}
	if !haveCgo {
		want = []string{"libcuda.so.1", "without cgo"}
	}
	for _, s := range want {
		if !strings.Contains(l.Err.Error(), s) {
			t.Errorf("error does not mention %q: %v", s, l.Err)
		}
	}

	// A file that is not a library is tried, reported and passed over.
	fake := touch(t, root, "bad/libcuda.so.1")
	l = loadDriverFrom(testEnv(root, map[string]string{EnvLibs: filepath.Dir(fake)}))
	if l.Err == nil || len(l.Tried) != 1 || l.Tried[0].Path != fake || l.Tried[0].Err == "" {
		t.Errorf("fake driver: Err=%v Tried=%+v", l.Err, l.Tried)
	}
	if haveCgo && !strings.Contains(l.Err.Error(), fake) {
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

func TestVersionLess(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		less bool
	}{
		{"python3.9", "python3.12", true},
		{"python3.12", "python3.9", false},
		{"cuda-12.4", "cuda-13.0", true},
		{"cuda-12.10", "cuda-12.9", false},
		{"a", "a", false},
		{"a", "ab", true},
		{"v007", "v7", false},
	} {
		if got := versionLess(tc.a, tc.b); got != tc.less {
			t.Errorf("versionLess(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
}
