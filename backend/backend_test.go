package backend

import (
	"strings"
	"testing"

	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/kernels/cuda"
	"github.com/macdist/macdist/nn"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		spec, want, err string
	}{
		{"", "cpu", ""},
		{"cpu", "cpu", ""},
		{"cuda", "cuda:0", ""},
		{"cuda:3", "cuda:3", ""},
		{"cuda:", "", "want cuda:N"},
		{"cuda:-1", "", "want cuda:N"},
		{"cuda:x", "", "want cuda:N"},
		{"gpu", "", "unknown device"},
		{"CPU", "", "unknown device"},
	} {
		s, err := Parse(c.spec)
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("Parse(%q) = %v, %v; want an error saying %q", c.spec, s, err, c.err)
			}
		case err != nil || s.String() != c.want:
			t.Errorf("Parse(%q) = %v, %v; want %s", c.spec, s, err, c.want)
		}
	}
}

func TestOpenCPU(t *testing.T) {
	d, err := OpenWith("cpu", Options{BLAS: "gonum"})
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := d.(*cpu.Device); !ok || c.BLAS() != "gonum" {
		t.Errorf("Open(cpu, gonum) = %T %s", d, d.Name())
	}
	if got := nn.Workspace(d).Limit(); got != nn.MaxWorkspace {
		t.Errorf("the CPU's workspace limit is %d, want nn.MaxWorkspace %d", got, nn.MaxWorkspace)
	}
	if err := Close(d); err != nil {
		t.Error(err)
	}
	if _, err := OpenWith("cpu", Options{BLAS: "mkl"}); err == nil {
		t.Error("an unknown BLAS was accepted")
	}
	if _, err := Open("tpu:0"); err == nil {
		t.Error("Open(tpu:0) succeeded")
	}
}

// TestOpenCUDA opens GPU 0 where there is one (or the emulated one), and
// elsewhere checks that the error names the missing library.
func TestOpenCUDA(t *testing.T) {
	d, err := Open("cuda")
	if err != nil {
		if _, probe := cuda.New(0); probe == nil {
			t.Fatalf("Open(cuda) failed where cuda.New(0) works: %v", err)
		}
		msg := err.Error()
		if !strings.Contains(msg, "device cuda:0") ||
			!strings.Contains(msg, "libcuda.so.1") && !strings.Contains(msg, "cuBLAS") && !strings.Contains(msg, "GPU") {
			t.Errorf("Open(cuda) without a GPU: %q does not name the device and what is missing", msg)
		}
		t.Logf("no GPU here, as expected: %v", err)
		return
	}
	defer Close(d)
	g := d.(*cuda.Device)
	_, total, err := g.DeviceMemory()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := nn.Workspace(d).Limit(), int(GPUWorkspaceBytes(total)/4); got != want {
		t.Errorf("GPU workspace limit %d elements, want %d", got, want)
	}
	if _, err := Open("cuda:99"); err == nil || !strings.Contains(err.Error(), "no GPU 99") {
		t.Errorf("Open(cuda:99): %v", err)
	}
}

func TestGPUWorkspaceBytes(t *testing.T) {
	for total, want := range map[int64]int64{
		0:         256 << 20,
		8 << 30:   512 << 20,
		16 << 30:  1 << 30,
		80 << 30:  2 << 30,
		141 << 30: 2 << 30,
	} {
		if got := GPUWorkspaceBytes(total); got != want {
			t.Errorf("GPUWorkspaceBytes(%d GiB) = %d MiB, want %d MiB", total>>30, got>>20, want>>20)
		}
	}
}
