// emu.h lets the kernels of ../src/*.cu compile as host C++, for the
// emulated driver in fakecuda.cc. Each GPU thread of a block is a fiber
// (ucontext) on one OS thread; the blocks of a grid run one after another,
// so a function-static __shared__ variable is exactly one block's shared
// memory. __syncthreads and the warp shuffles are barriers among the
// fibers. This checks the kernels' logic (indexing, reductions, barriers
// reached by every thread) without a GPU; it says nothing about speed,
// the PTX JIT, or memory-model subtleties of real hardware.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>

struct dim3 {
	unsigned int x = 1, y = 1, z = 1;
};

namespace emu {

struct Fiber;

// The fiber running, and the block's geometry.
extern Fiber *cur;
extern dim3 blockIdx_, blockDim_, gridDim_;

const dim3 &thread_idx();
void syncthreads();
uint64_t shfl_down(uint64_t v, int offset);

}  // namespace emu

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

#define threadIdx (emu::thread_idx())
#define blockIdx (emu::blockIdx_)
#define blockDim (emu::blockDim_)
#define gridDim (emu::gridDim_)

inline void __syncthreads() { emu::syncthreads(); }

template <class T>
inline T __shfl_down_sync(unsigned int, T v, int offset) {
	static_assert(sizeof(T) <= 8, "shuffle of a value wider than 8 bytes");
	uint64_t bits = 0;
	memcpy(&bits, &v, sizeof(T));
	bits = emu::shfl_down(bits, offset);
	T r;
	memcpy(&r, &bits, sizeof(T));
	return r;
}

inline float __int_as_float(int i) {
	float f;
	memcpy(&f, &i, 4);
	return f;
}

// The explicitly rounded operations, kept out of line so that the host
// compiler cannot fuse them into multiply-adds even with FMA=1.
__attribute__((noinline)) inline float __fmul_rn(float a, float b) { return a * b; }
__attribute__((noinline)) inline float __fadd_rn(float a, float b) { return a + b; }
__attribute__((noinline)) inline float __fsub_rn(float a, float b) { return a - b; }
__attribute__((noinline)) inline float __fdiv_rn(float a, float b) { return a / b; }

using std::max;
using std::min;
