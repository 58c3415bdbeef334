// Command stsample writes a small safetensors file with the Go writer, for
// testdata/gen/check_safetensors_torch.py to load with PyTorch: the proof that
// what macdist writes (checkpoints, exported weights) opens in PyTorch's tools.
//
// The values follow formulas that the script recomputes; change both together.
//
//	go run ./internal/tools/stsample OUT.safetensors
package main

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"

	"github.com/macdist/macdist/safetensors"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: stsample OUT.safetensors")
		os.Exit(2)
	}
	if err := safetensors.WriteFile(os.Args[1], sample(), map[string]string{"format": "pt", "producer": "macdist"}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func sample() []safetensors.Tensor {
	// A torch.nn.Linear(4, 3) state_dict: the script loads it with strict=True.
	w := make([]float32, 12)
	for i := range w {
		w[i] = float32(i)*0.25 - 1
	}
	b := []float32{0.5, -0.5, 2}

	f64 := make([]byte, 8*4)
	for i, v := range []float64{math.Pi, -math.E, 1e-300, 1e300} {
		binary.LittleEndian.PutUint64(f64[8*i:], math.Float64bits(v))
	}
	// 1, -2, 65504 (the largest half), 2^-24 (the smallest subnormal).
	f16 := make([]byte, 2*4)
	for i, h := range []uint16{0x3c00, 0xc000, 0x7bff, 0x0001} {
		binary.LittleEndian.PutUint16(f16[2*i:], h)
	}
	return []safetensors.Tensor{
		safetensors.Float32("weight", []int{3, 4}, w),
		safetensors.Float32("bias", []int{3}, b),
		{Name: "extra.f64", DType: safetensors.F64, Shape: []int{2, 2}, Data: f64},
		safetensors.Int64("extra.i64", []int{5}, []int64{0, -1, 1 << 40, math.MaxInt64, math.MinInt64}),
		{Name: "extra.f16", DType: safetensors.F16, Shape: []int{4}, Data: f16},
		{Name: "extra.u8", DType: safetensors.U8, Shape: []int{2, 3}, Data: []byte{0, 1, 2, 127, 128, 255}},
		safetensors.Float32("extra.scalar", []int{}, []float32{-7.5}),
	}
}
