#!/usr/bin/env bash
# Runs kernels/cuda's tests, the conformance suite included, against an
# emulated GPU: fakecuda.cc (a libcuda.so.1 over host memory that runs the
# kernels of ../src/*.cu compiled for the host), fakecublas.cc (a plain
# column-major SGEMM) and fakecudnn.cc (convolutions as plain loops), once
# without cuDNN (the convolution tests only) and once with it. Needs g++ and Go, no GPU and no CUDA; takes about a
# minute on 2 cores. It checks the Go side (parameter packing, launch
# geometry, scratch space, the cuBLAS operand mapping, the allocator) and
# the kernels' logic; not the PTX, the JIT or real cuBLAS, which only
# scripts/gpu-check.sh on a GPU machine can.
#
#   kernels/cuda/emu/run.sh [go test flags]     (from anywhere)
#
# FMA=1 compiles the kernels with fused multiply-adds, as nvcc does.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
CXX=${CXX:-g++}
contract="-ffp-contract=off"
if [ "${FMA:-0}" = 1 ]; then contract="-mfma -ffp-contract=fast"; fi
# No _FORTIFY_SOURCE: the fibers switch stacks with longjmp, which its
# check refuses.
# The soname lets fakecudnn find the loaded fake driver with RTLD_NOLOAD.
# $contract is one or two flags.
# shellcheck disable=SC2086
"$CXX" -std=c++17 -O2 -U_FORTIFY_SOURCE $contract -fPIC -shared -Wall -Wl,-soname,libcuda.so.1 \
	-o "$out/libcuda.so.1" "$here/fakecuda.cc"
"$CXX" -std=c++17 -O2 -fPIC -shared -Wall -o "$out/libcublas.so.12" "$here/fakecublas.cc"
# Without cuDNN first: the fallback to im2col + cuBLAS, and its one warning.
mkdir "$out/with-cudnn"
"$CXX" -std=c++17 -O2 -fPIC -shared -Wall -o "$out/with-cudnn/libcudnn.so.9" "$here/fakecudnn.cc" -ldl
cd "$repo"
MACDIST_CUDA_LIBS="$out" MACDIST_TEST_CUDNN=absent go test -count=1 "$@" -run 'CUDNN|Conv' ./kernels/cuda/
MACDIST_CUDA_LIBS="$out:$out/with-cudnn" MACDIST_TEST_CUDNN=present MACDIST_TEST_FAKECUDNN=1 go test -count=1 "$@" ./kernels/cuda/
