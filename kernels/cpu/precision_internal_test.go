package cpu

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// TestCheckBF16 decides bf16 for CPUs this machine is not: the ISA is
// injected, so the verdicts do not depend on where the test runs.
func TestCheckBF16(t *testing.T) {
	missing := errors.New("libdnnl.so.2 not found")
	for _, c := range []struct {
		dnn     dnnImpl
		isa     string
		err     error
		env     string
		wantErr []string // substrings; nil for success
	}{
		{dnnOneDNN, "avx512_core_amx", nil, "", nil},
		{dnnOneDNN, "avx512_core_bf16", nil, "", nil},
		{dnnOneDNN, "avx512_core_vnni", nil, "", []string{"no native bf16", "avx512_core_vnni", "--precision fp32", "MACDIST_BF16=emulate"}},
		{dnnOneDNN, "avx2", nil, "", []string{"no native bf16", "avx2", "--precision fp32"}},
		{dnnOneDNN, "avx512_core_vnni", nil, "emulate", nil},
		{dnnOneDNN, "avx512_core_vnni", nil, "yes", []string{"no native bf16"}},
		{dnnNone, "", missing, "emulate", []string{"needs oneDNN", "libdnnl.so.2 not found", "--precision fp32"}},
		{dnnNone, "avx512_core_amx", nil, "", []string{"im2col", "--precision fp32"}},
	} {
		err := checkBF16(c.dnn, c.isa, c.err, c.env)
		if (err == nil) != (c.wantErr == nil) {
			t.Errorf("checkBF16(%v, %q, %v, %q) = %v", c.dnn, c.isa, c.err, c.env, err)
			continue
		}
		for _, s := range c.wantErr {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("checkBF16(%v, %q, %v, %q) = %q, want it to say %q", c.dnn, c.isa, c.err, c.env, err, s)
			}
		}
	}
}

func TestRoundBF16(t *testing.T) {
	for _, c := range []struct{ in, want float32 }{
		{1, 1},
		{0, 0},
		{-2.5, -2.5},
		{1 + 1.0/256, 1},                    // a tie: to the even 1
		{1 + 3.0/256, 1 + 4.0/256},          // a tie: to the even 1+2^-6
		{1 + 1.0/256 + 1.0/4096, 1.0078125}, // above the tie: up
		{float32(math.Pi), 3.140625},
		{math.MaxFloat32, float32(math.Inf(1))}, // rounds past the largest bf16
		{float32(math.Inf(-1)), float32(math.Inf(-1))},
	} {
		if got := roundBF16(c.in); got != c.want {
			t.Errorf("roundBF16(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	// A NaN whose payload lies only in the low 16 bits must not become Inf.
	if got := roundBF16(math.Float32frombits(0x7f800001)); !math.IsNaN(float64(got)) {
		t.Errorf("roundBF16(NaN) = %v", got)
	}
}
