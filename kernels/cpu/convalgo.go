package cpu

import (
	"fmt"
	"os"
)

// ConvAlgorithm is the algorithm a Device on the oneDNN path asks oneDNN
// to convolve by.
type ConvAlgorithm uint8

const (
	// ConvDirect is oneDNN's direct convolution (its 1×1 and gemm
	// kernels included): what PyTorch asks for.
	ConvDirect ConvAlgorithm = iota
	// ConvAuto leaves the choice to oneDNN, pass by pass where the
	// channels are many enough (convPassAlgorithms), which takes
	// Winograd's F(4×4, 3×3) for 3×3 stride-1 convolutions in nChw16c on
	// AVX-512 where its heuristics expect it to be faster, and the direct
	// kernels elsewhere (and for nhwc or bf16, which its Winograd
	// kernels do not take). Winograd's float32 results differ from the
	// direct ones by rounding: 1e-6 to 4e-6 of the largest output on
	// ResNet's shapes (TestConvAutoMatchesDirect).
	ConvAuto
)

func (a ConvAlgorithm) String() string {
	switch a {
	case ConvDirect:
		return "direct"
	case ConvAuto:
		return "auto"
	}
	return fmt.Sprintf("ConvAlgorithm(%d)", uint8(a))
}

// ParseConvAlgorithm parses "direct" or "auto".
func ParseConvAlgorithm(s string) (ConvAlgorithm, error) {
	switch s {
	case "direct":
		return ConvDirect, nil
	case "auto":
		return ConvAuto, nil
	}
	return ConvDirect, fmt.Errorf("cpu: convolution algorithm %q, want direct or auto", s)
}

// convPassAlgorithms is the algorithm each pass of a convolution with c
// input and out output channels a group asks oneDNN for, forward,
// backward-data and backward-weights, when the Device asks for alg.
// ConvAuto lets oneDNN take Winograd only where its inner products are
// wide enough to pay for the transforms: forward's sum runs over the input
// channels and backward-data's over the output channels, so each needs 32
// of them; backward-weights' sum runs over the batch's tiles and pays from
// 16 input channels. Measured pass by pass in nChw16c on avx512_core_vnni
// (TestConvAlgorithmAB, resnet20 at batch 128 and resnet50 at 16):
// Winograd took 1.4–1.9 times as long as direct for forward and
// backward-data with 16 channels and 6.3 times (forward) for a first layer
// of 3, while from 32 channels it took 0.4–0.75 times as long in every
// pass, and 0.7 times for backward-weights with 16.
func convPassAlgorithms(alg ConvAlgorithm, c, out int) [3]ConvAlgorithm {
	if alg != ConvAuto {
		return [3]ConvAlgorithm{alg, alg, alg}
	}
	pick := func(ok bool) ConvAlgorithm {
		if ok {
			return ConvAuto
		}
		return ConvDirect
	}
	return [3]ConvAlgorithm{pick(c >= 32), pick(out >= 32), pick(c >= 16)}
}

// defaultConvAlgorithm is MACDIST_CONV_ALGO's choice on the convolution
// path dnn: direct when it is unset, and on the im2col path, which has no
// other (and has said why oneDNN is not there).
func defaultConvAlgorithm(dnn dnnImpl) (ConvAlgorithm, error) {
	env := os.Getenv("MACDIST_CONV_ALGO")
	if env == "" {
		return ConvDirect, nil
	}
	a, err := ParseConvAlgorithm(env)
	if err != nil {
		return ConvDirect, fmt.Errorf("%v (MACDIST_CONV_ALGO=%s)", err, env)
	}
	if dnn != dnnOneDNN {
		return ConvDirect, nil
	}
	return a, nil
}

// SetConvAlgorithm makes d ask oneDNN for a in the convolutions it has
// not made yet. It is meant to be called before d is used, as
// SetActivationLayout is; im2col has only the direct algorithm.
func (d *Device) SetConvAlgorithm(a ConvAlgorithm) error {
	if a != ConvDirect && a != ConvAuto {
		return fmt.Errorf("cpu: unknown convolution algorithm %v", a)
	}
	if a != ConvDirect && d.dnn != dnnOneDNN {
		return fmt.Errorf("cpu: convolution algorithm %v on the %v convolution path", a, d.dnn)
	}
	d.convAlg = a
	return nil
}

// ConvAlgorithm is the algorithm d asks oneDNN for.
func (d *Device) ConvAlgorithm() ConvAlgorithm { return d.convAlg }
