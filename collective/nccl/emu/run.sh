#!/usr/bin/env bash
# Runs collective/nccl's tests, the GPU ones included, against an emulated
# GPU and NCCL: kernels/cuda/emu's libcuda.so.1 (with fakeevents.c's event
# calls added) and libcublas.so.12, and fakenccl.c as libnccl.so.2. Needs
# gcc, g++ and Go; no GPU, no CUDA, no NCCL. It checks the Go side (the
# dlopen shim's ABI: the config layout, the id passed by value; the
# non-blocking set-up and collectives, abort on timeout, Close, the
# Bucketer on top), not NCCL itself, which scripts/gpu-check.sh runs.
#
#   collective/nccl/emu/run.sh [go test flags] [packages]   (from anywhere)
#
# With no packages it tests ./collective/nccl/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
emu=$repo/kernels/cuda/emu
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
CC=${CC:-gcc}
CXX=${CXX:-g++}
"$CC" -O2 -fPIC -Wall -c -o "$out/fakeevents.o" "$here/fakeevents.c"
# As kernels/cuda/emu/run.sh builds it (no _FORTIFY_SOURCE: its fibers
# longjmp between stacks).
"$CXX" -std=c++17 -O2 -U_FORTIFY_SOURCE -ffp-contract=off -fPIC -shared -Wall -Wl,-soname,libcuda.so.1 \
	-o "$out/libcuda.so.1" "$emu/fakecuda.cc" "$out/fakeevents.o"
"$CXX" -std=c++17 -O2 -fPIC -shared -Wall -o "$out/libcublas.so.12" "$emu/fakecublas.cc"
"$CC" -O2 -fPIC -shared -Wall -pthread -Wl,-soname,libnccl.so.2 -o "$out/libnccl.so.2" "$here/fakenccl.c"
cd "$repo"
args=() pkgs=()
for a in "$@"; do
	case $a in ./*) pkgs+=("$a") ;; *) args+=("$a") ;; esac
done
[ ${#pkgs[@]} -gt 0 ] || pkgs=(./collective/nccl/)
MACDIST_CUDA_LIBS="$out" go test -count=1 "${args[@]}" "${pkgs[@]}"
