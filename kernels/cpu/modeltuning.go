package cpu

import (
	"os"

	"github.com/macdist/macdist/kernels"
)

// tuning is a layout and an algorithm for a model's convolutions.
type tuning struct {
	layout kernels.Layout
	alg    ConvAlgorithm
}

// modelTunings is the activation layout each model of nn/models trains
// fastest in on the oneDNN path with AVX-512, and the convolution
// algorithm, measured with
//
//	MACDIST_LAYOUT_AB=model,size,batch,steps go test ./nn/models -run LayoutAB -v
//
// which alternates training steps in NCHW, nChw16c and nhwc with oneDNN's
// direct convolutions and in nChw16c with its own choice (ConvAuto:
// Winograd for the 3×3 stride-1 ones, which its Winograd kernels take only
// in nChw16c), in one process (README.md, "CPU benchmarks"). A model
// missing here keeps the Device's defaults, Blocked16 and ConvDirect (the
// ViT, DeiT and Swin models' only convolution, the patch embedding, is
// NCHW whatever the Device keeps); a model of the same convolutions as a
// measured one gets its tuning.
//
// Medians of the per-round ratio of a step to NCHW's, NCHW : nChw16c :
// nhwc : nChw16c with Winograd, on a 2-core Ice Lake (AVX-512, no AMX),
// load 1–2, 2026-12-03 (before Winograd, the nhwc-or-nChw16c choice was
// made the same way at load 4–6 and picked nhwc for the ResNets and WRN):
var modelTunings = map[string]tuning{
	// resnet20,32,128,12: 1 : 0.715 : 0.719 : 0.690; 20 rounds:
	// 1 : 0.770 : 0.783 : 0.690. The CIFAR ResNets all have ResNet-20's
	// convolutions, only more of them.
	"resnet20":  {kernels.Blocked16, ConvAuto},
	"resnet32":  {kernels.Blocked16, ConvAuto},
	"resnet56":  {kernels.Blocked16, ConvAuto},
	"resnet110": {kernels.Blocked16, ConvAuto},
	// resnet18,224,16,5: 1 : 0.955 : 0.903 : 0.618; ResNet-34 has its
	// blocks.
	"resnet18": {kernels.Blocked16, ConvAuto},
	"resnet34": {kernels.Blocked16, ConvAuto},
	// resnet50,224,16,5: 1 : 0.908 : 0.891 : 0.681; 6 rounds:
	// 1 : 0.906 : 0.899 : 0.763. ResNet-101 and -152 have its
	// bottlenecks.
	"resnet50":  {kernels.Blocked16, ConvAuto},
	"resnet101": {kernels.Blocked16, ConvAuto},
	"resnet152": {kernels.Blocked16, ConvAuto},
	// lenet5,28,128,30: 1 : 1.066 : 1.386 (before Winograd, which takes
	// no 5×5 convolution). Six and sixteen channels on 28 px: oneDNN's
	// blocked and nhwc kernels gain nothing there, and NHWC's pooling
	// and reorders cost.
	"lenet5": {kernels.NCHW, ConvDirect},
	// wrn28-10,32,32,3: 1 : 0.923 : 0.837 : 0.401.
	"wrn28-10": {kernels.Blocked16, ConvAuto},
}

// TuneForModel makes d keep the activation layout, and convolve by the
// algorithm, measured fastest for the named model (an nn/models name),
// where d runs oneDNN on an AVX-512 CPU, the kind of machine they were
// measured on; MACDIST_LAYOUT and MACDIST_CONV_ALGO, where set, choose
// instead. Otherwise, or for a model not measured, d keeps its own. It is
// meant to be called before d computes anything, by the trainer and the
// benchmark that know the model; neither changes results beyond rounding
// (TestDeviceLayoutMatchesNCHW, TestConvAutoMatchesDirect).
func (d *Device) TuneForModel(model string) {
	t, ok := modelTunings[model]
	if !ok || d.dnn != dnnOneDNN || !hasAVX512Core(oneDNNISA()) {
		return
	}
	if os.Getenv("MACDIST_LAYOUT") == "" {
		d.layout = t.layout
	}
	if os.Getenv("MACDIST_CONV_ALGO") == "" {
		d.convAlg = t.alg
	}
}
