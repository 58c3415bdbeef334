package cuda

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/macdist/macdist/internal/dynlib"
	"github.com/macdist/macdist/internal/dynlib/dynlibtest"
)

// cuDNN is looked for where cuBLAS is: MACDIST_CUDA_LIBS, the toolkits and
// the Python wheels (nvidia/cudnn/lib), version 9 before 8.
func TestCUDNNSearch(t *testing.T) {
	root := t.TempDir()
	env := dynlibtest.Touch(t, root, "env/libcudnn.so.8")
	tk := dynlibtest.Touch(t, root, "usr/local/cuda-12.4/lib64/libcudnn.so.9")
	wheel9 := dynlibtest.Touch(t, root, "opt/venv/lib/python3.12/site-packages/nvidia/cudnn/lib/libcudnn.so.9")
	wheel8 := dynlibtest.Touch(t, root, "opt/venv/lib/python3.12/site-packages/nvidia/cudnn/lib/libcudnn.so.8")
	e := dynlibtest.Search(root, map[string]string{EnvLibs: filepath.Dir(env)})
	got := dynlibtest.Paths(plan(e, cudnnLibs...))
	want := []string{env + " (MACDIST_CUDA_LIBS)", tk + " (cuda toolkit)", wheel9 + " (python site-packages)",
		wheel8 + " (python site-packages)"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("cuDNN search:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
}

// A file that is not a library is tried and reported; the error says what
// to install. A sub-library beside it that is not a library either makes
// the attempt fail before libcudnn itself is opened.
func TestCUDNNMissing(t *testing.T) {
	root := t.TempDir()
	fake := dynlibtest.Touch(t, root, "libs/libcudnn.so.9")
	e := dynlibtest.Search(root, map[string]string{EnvLibs: filepath.Dir(fake)})
	l := loadCUDNNFrom(e)
	if l.Err == nil {
		t.Fatalf("a text file loaded as cuDNN: %+v", l)
	}
	if len(l.Tried) != 1 || l.Tried[0].Path != fake {
		t.Fatalf("Tried = %+v, want just %s", l.Tried, fake)
	}
	for _, s := range []string{"cuDNN not found", "libcudnn.so.9, libcudnn.so.8", "pip install nvidia-cudnn-cu12", EnvLibs, fake} {
		if !strings.Contains(l.Err.Error(), s) {
			t.Errorf("error does not mention %q: %v", s, l.Err)
		}
	}
	part := dynlibtest.Touch(t, root, "libs/libcudnn_ops.so.9")
	l = loadCUDNNFrom(e)
	if dynlib.Available && (len(l.Tried) != 1 || !strings.Contains(l.Tried[0].Err, part)) {
		t.Errorf("the broken sub-library %s is not what the attempt reports: %+v", part, l.Tried)
	}
}

func TestCUDNNVersionText(t *testing.T) {
	for v, want := range map[int]string{0: "?", 8907: "8.9.7", 90100: "9.1.0", 91002: "9.10.2"} {
		if got := cudnnVersionText(v); got != want {
			t.Errorf("cudnnVersionText(%d) = %q, want %q", v, got, want)
		}
	}
}
