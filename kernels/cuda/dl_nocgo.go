//go:build !cgo

package cuda

import (
	"unsafe"

	"github.com/macdist/macdist/internal/dynlib"
)

// Without cgo there is no dlopen: every library is missing, New fails with
// driverError's explanation, and nothing below is ever reached with a
// device.

var errNoCgo = dynlib.ErrNoCgo

func bindDriver(dynlib.Lib) error { return errNoCgo }
func bindCUBLAS(dynlib.Lib) error { return errNoCgo }

func cuInit() error                                  { return errNoCgo }
func cuDriverVersion() (int, error)                  { return 0, errNoCgo }
func cuDeviceCount() (int, error)                    { return 0, errNoCgo }
func cuDeviceGet(int) (cuDevice, error)              { return 0, errNoCgo }
func cuDeviceName(cuDevice) (string, error)          { return "", errNoCgo }
func cuDeviceAttribute(cuDevice, int) (int, error)   { return 0, errNoCgo }
func cuDeviceTotalMem(cuDevice) (int64, error)       { return 0, errNoCgo }
func cuPrimaryCtxRetain(cuDevice) (cuContext, error) { return nil, errNoCgo }
func cuPrimaryCtxRelease(cuDevice) error             { return errNoCgo }
func cuCtxSetCurrent(cuContext) error                { return errNoCgo }
func cAlloc(n int) unsafe.Pointer                    { return unsafe.Pointer(&make([]byte, n)[0]) }
func cFree(unsafe.Pointer)                           {}
func cuStreamCreate(cuContext) (cuStream, error)     { return nil, errNoCgo }
func cuStreamDestroy(cuContext, cuStream) error      { return errNoCgo }
func cuStreamSync(cuContext, cuStream) error         { return errNoCgo }
func cuMemAlloc(cuContext, int64) (uint64, error)    { return 0, errNoCgo }
func cuMemFree(cuContext, uint64) error              { return errNoCgo }
func cuMemInfo(cuContext) (int64, int64, error)      { return 0, 0, errNoCgo }
func moduleLoad(cuContext, string) (cuModule, error) { return nil, errNoCgo }
func moduleUnload(cuContext, cuModule) error         { return errNoCgo }
func moduleFunction(cuContext, cuModule, string) (cuFunction, error) {
	return nil, errNoCgo
}
func cublasCreate(cuContext) (cublasH, error)            { return nil, errNoCgo }
func cublasDestroy(cuContext, cublasH) error             { return errNoCgo }
func cublasSetStream(cuContext, cublasH, cuStream) error { return errNoCgo }
func cublasSetMathMode(cuContext, cublasH, int) error    { return errNoCgo }
func cublasVersion(cuContext, cublasH) (int, error)      { return 0, errNoCgo }
func cublasProperty(int) (int, error)                    { return 0, errNoCgo }

func htod(cuContext, cuStream, uint64, unsafe.Pointer, int64) error { return errNoCgo }
func dtoh(cuContext, cuStream, unsafe.Pointer, uint64, int64) error { return errNoCgo }
func dtod(cuContext, cuStream, uint64, uint64, int64) error         { return errNoCgo }
func memset32(cuContext, cuStream, uint64, uint32, int64) error     { return errNoCgo }

func launch(cuContext, cuStream, cuFunction, [3]uint32, [3]uint32, unsafe.Pointer, int) error {
	return errNoCgo
}

func sgemm(cuContext, cublasH, bool, bool, int, int, int, float32, uint64, int, uint64, int, float32, uint64, int) error {
	return errNoCgo
}

func sgemmStrided(cuContext, cublasH, bool, bool, int, int, int, float32,
	uint64, int, int64, uint64, int, int64, float32, uint64, int, int64, int) error {
	return errNoCgo
}

func bindCUDNN(dynlib.Lib) error            { return errNoCgo }
func cudnnVersion() int                     { return 0 }
func cudnnCreate() (cudnnH, error)          { return nil, errNoCgo }
func cudnnDestroy(cudnnH) error             { return errNoCgo }
func cudnnSetStream(cudnnH, cuStream) error { return errNoCgo }

type dnnPlan struct {
	algo [3]int
	ws   [3]int64
}

func newDNNPlan(cudnnH, convKey) (*dnnPlan, error)                              { return nil, errNoCgo }
func (*dnnPlan) free()                                                          {}
func (*dnnPlan) run(int, cudnnH, uint64, uint64, uint64, float32, uint64) error { return errNoCgo }
