package cpu

import (
	"os"

	"github.com/macdist/macdist/kernels"
)

// modelLayouts is the activation layout each model of nn/models trains
// fastest in on the oneDNN path with AVX-512, measured with
//
//	MACDIST_LAYOUT_AB=model,size,batch,steps go test ./nn/models -run LayoutAB -v
//
// which alternates training steps in NCHW, Blocked16 and NHWC in one
// process (README.md, "CPU benchmarks"). A model missing here keeps the
// Device's default, Blocked16 (the ViT, DeiT and Swin models' only
// convolution, the patch embedding, is NCHW whatever the Device keeps);
// a model of the same convolutions as a measured one gets its layout.
//
// Medians of the per-round ratio of a step to NCHW's, NCHW : nChw16c :
// nhwc, on a 2-core Ice Lake (AVX-512, no AMX) shared with other work
// (load 4–6), 2026-12-03:
var modelLayouts = map[string]kernels.Layout{
	// resnet20,32,128,15: 1 : 0.859 : 0.785, and 1 : 0.788 : 0.718 in 20
	// rounds. The CIFAR ResNets all have ResNet-20's convolutions, only
	// more of them.
	"resnet20":  kernels.NHWC,
	"resnet32":  kernels.NHWC,
	"resnet56":  kernels.NHWC,
	"resnet110": kernels.NHWC,
	// resnet18,224,16,5: 1 : 0.932 : 0.840; ResNet-34 has its blocks.
	"resnet18": kernels.NHWC,
	"resnet34": kernels.NHWC,
	// resnet50,224,16,5: 1 : 0.888 : 0.823; two more runs, 6 and 8
	// rounds: 1 : 0.908 : 0.964 and 1 : 0.889 : 0.897, a tie, but the
	// fastest nhwc step beat the fastest nChw16c one by 30% and 5%
	// there, and oneDNN's convolutions alone are 11% faster in nhwc
	// (TestConvLayoutAB). ResNet-101 and -152 have its bottlenecks.
	"resnet50":  kernels.NHWC,
	"resnet101": kernels.NHWC,
	"resnet152": kernels.NHWC,
	// lenet5,28,128,30: 1 : 1.066 : 1.386. Six and sixteen channels on
	// 28 px: oneDNN's blocked and nhwc kernels gain nothing there, and
	// NHWC's pooling and reorders cost.
	"lenet5": kernels.NCHW,
	// wrn28-10,32,32,3: 1 : 1.017 : 0.962 (fastest steps 8.4 s, 9.0 s,
	// 6.2 s).
	"wrn28-10": kernels.NHWC,
}

// UseModelLayout makes d keep the activation layout measured fastest for
// the named model (an nn/models name), where d runs oneDNN on an AVX-512
// CPU, the kind of machine it was measured on, and MACDIST_LAYOUT does not
// choose; otherwise, or for a model not measured, d keeps its layout. It
// is meant to be called before d computes anything, by the trainer and
// the benchmark that know the model; the layout does not change results
// beyond rounding (TestDeviceLayoutMatchesNCHW).
func (d *Device) UseModelLayout(model string) {
	l, ok := modelLayouts[model]
	if !ok || os.Getenv("MACDIST_LAYOUT") != "" || d.dnn != dnnOneDNN || !hasAVX512Core(oneDNNISA()) {
		return
	}
	d.layout = l
}
