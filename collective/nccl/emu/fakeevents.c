// fakeevents.c adds the driver's event calls that collective/nccl binds to
// kernels/cuda/emu's emulated libcuda.so.1, whose work is done by the time
// a call returns: every event is complete once recorded.
#include <stdlib.h>

typedef int CUresult;

static int token;

CUresult cuEventCreate(void **e, unsigned int flags) {
	if (e == NULL || flags != 2) return 1;  // CUDA_ERROR_INVALID_VALUE; we ask for CU_EVENT_DISABLE_TIMING
	*e = &token;
	return 0;
}

CUresult cuEventRecord(void *e, void *stream) {
	if (e != &token || stream == NULL) return 400;  // CUDA_ERROR_INVALID_HANDLE
	return 0;
}

CUresult cuEventQuery(void *e) { return e == &token ? 0 : 400; }

CUresult cuEventDestroy_v2(void *e) { return e == &token ? 0 : 400; }
