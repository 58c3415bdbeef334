//go:build !cgo

package nccl

import (
	"unsafe"

	"github.com/macdist/macdist/internal/dynlib"
)

// Without cgo there is no dlopen: the library is always missing, and
// nothing below is reached with a communicator.

var errNoCgo = dynlib.ErrNoCgo

func bindNCCL(dynlib.Lib) error   { return errNoCgo }
func bindEvents(dynlib.Lib) error { return errNoCgo }
func ncclVersion() (int, error)   { return 0, errNoCgo }
func ncclUniqueID() ([IDBytes]byte, error) {
	return [IDBytes]byte{}, errNoCgo
}
func commInit(int, [IDBytes]byte, int, bool) (comm, result)   { return nil, resultSystemError }
func asyncError(comm) (result, result)                        { return resultSystemError, resultSystemError }
func commAbort(comm) result                                   { return resultSystemError }
func commDestroy(comm) result                                 { return resultSystemError }
func allReduce(uint64, int, int, comm, unsafe.Pointer) result { return resultSystemError }
func broadcast(uint64, int, int, comm, unsafe.Pointer) result { return resultSystemError }
func errorString(result) string                               { return "" }
func lastError(comm) string                                   { return "" }
func eventCreate() (event, error)                             { return nil, errNoCgo }
func eventRecord(event, unsafe.Pointer) error                 { return errNoCgo }
func eventQuery(event) (bool, error)                          { return false, errNoCgo }
func eventDestroy(event) error                                { return errNoCgo }
