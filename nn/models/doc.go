// Package models is macdist's model zoo: the networks the trainer and its
// benchmarks use, built from package nn's layers with the state_dict names of
// their PyTorch originals, so that checkpoints and fixtures line up key for
// key.
//
//	mlp             flatten, fc1, relu, fc2, relu, fc3 (hidden width Config.Width)
//	lenet5          LeNet-5 with ReLU and max pooling (conv1 pads by 2)
//	resnet20 … 110  He et al.'s CIFAR ResNets (6n+2 layers) as akamaster's
//	                implementation, with torchvision's BasicBlock: 1×1
//	                convolution + BatchNorm shortcuts, named downsample.0/.1
//	resnet18 … 152  torchvision's ResNets 18, 34, 50, 101 and 152 (v1.5
//	                bottlenecks)
//	wrn28-10        Zagoruyko & Komodakis' Wide ResNet, as xternalz's
//	                WideResNet-pytorch names it; DropRate defaults to 0 as
//	                there (the paper's CIFAR runs used 0.3)
//	vit-tiny        DeiT-Tiny: timm's VisionTransformer, 192 wide, 12 deep,
//	                3 heads, 16 px patches, 224 px images
//	vit-tiny-cifar  the same at 32 px with 4 px patches
//	deit-small      timm's deit_small_patch16_224: 384 wide, 12 deep, 6 heads
//	deit-base       timm's deit_base_patch16_224: 768 wide, 12 deep, 12 heads
//	swin-tiny       torchvision's swin_t (timm's swin_tiny_patch4_window7_224):
//	                4 px patches, 96 wide, stages of 2, 2, 6, 2 blocks with
//	                3, 6, 12, 24 heads, shifted 7 × 7 windows, patch merging;
//	                the image size must keep every stage's map a multiple of
//	                the window (no padding)
//
// Every model takes its input channels, image size and number of classes
// from Config; the depth, widths, dropout and stochastic depth rates are
// options where the original has them. Weights start as in the original
// code (torchvision's, akamaster's, xternalz's and timm's initialisations),
// drawn from Config.Seed. Stochastic depth (Config.DropPath) defaults to 0 everywhere:
// torchvision's swin_t builds with 0.2 and the DeiT and Swin recipes train
// with 0.1 and 0.2, which a caller sets.
//
// testdata/gen/gen_models.py holds the PyTorch definitions the tests compare
// with, layer for layer (torchvision's own classes where it has the model).
package models
