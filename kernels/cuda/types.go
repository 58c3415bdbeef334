package cuda

import "unsafe"

// Driver and cuBLAS handles as the Go side keeps them: opaque pointers into
// the driver's memory, which the garbage collector ignores.
type (
	cuContext  = unsafe.Pointer
	cuStream   = unsafe.Pointer
	cuModule   = unsafe.Pointer
	cuFunction = unsafe.Pointer
	cublasH    = unsafe.Pointer
	cudnnH     = unsafe.Pointer // cudnnHandle_t
	cuDevice   = int32
)
