package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/macdist/macdist/kernels/cpu"
)

// TestBenchDNN checks that bench's JSON says how convolutions ran, on
// each path --dnn chooses.
func TestBenchDNN(t *testing.T) {
	_, isa, dnnErr := cpu.OneDNN()
	for _, c := range []struct {
		dnn, mode string
	}{{"none", "im2col"}, {"onednn", "onednn"}} {
		if c.dnn == "onednn" && dnnErr != nil {
			t.Logf("no oneDNN here (%v): --dnn onednn not run", dnnErr)
			continue
		}
		code, out, errOut := runArgs("bench", "--model", "lenet5", "--batch", "2", "--steps", "1", "--warmup", "0", "--dnn", c.dnn)
		if code != 0 {
			t.Fatalf("--dnn %s: exit %d, stderr %q", c.dnn, code, errOut)
		}
		var got struct {
			Mode   string `json:"mode"`
			DNNISA string `json:"dnn_isa"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%v in %q", err, out)
		}
		wantISA := ""
		if c.mode == "onednn" {
			wantISA = isa
		}
		if got.Mode != c.mode || got.DNNISA != wantISA {
			t.Errorf("--dnn %s: mode %q, dnn_isa %q; want %q and %q", c.dnn, got.Mode, got.DNNISA, c.mode, wantISA)
		}
	}
	code, _, errOut := runArgs("bench", "--model", "lenet5", "--dnn", "cudnn")
	if code != 2 || !strings.Contains(errOut, "cudnn") {
		t.Errorf("--dnn cudnn: exit %d, stderr %q; want 2 naming it", code, errOut)
	}
}

func TestOneDNNLine(t *testing.T) {
	if s := oneDNNLine("none"); !strings.Contains(s, "im2col") || !strings.Contains(s, "MACDIST_DNN=none") {
		t.Errorf("oneDNNLine(none) = %q", s)
	}
	s := oneDNNLine("")
	version, isa, err := cpu.OneDNN()
	want := []string{"oneDNN " + version, isa}
	if err != nil {
		want = []string{"im2col", "apt-get install libdnnl2"}
	}
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Errorf("oneDNNLine() = %q, want it to contain %q", s, w)
		}
	}
}
