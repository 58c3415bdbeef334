// Package dynlib finds and opens the shared libraries that macdist loads at
// run time instead of linking: the CUDA driver and cuBLAS (kernels/cuda)
// and NCCL (collective/nccl). Loading them with dlopen keeps one binary
// that builds without any GPU software and runs on machines without it.
//
// Search lists the places a library is usually installed: folders named in
// an environment variable, the dynamic loader's own search, CUDA toolkits
// under /usr/local, and the lib folders of NVIDIA's pip wheels in Python
// site-packages (where PyTorch's copies are). Each user decides the order
// and the sonames; a Search with a Root and a Getenv lets tests give it a
// temporary tree instead of the machine's.
//
// Open and Where wrap dlopen and dladdr. A package binds the symbols it
// needs in its own cgo code, from the Lib that Open returns. Built without
// cgo, Open always fails with ErrNoCgo.
package dynlib
