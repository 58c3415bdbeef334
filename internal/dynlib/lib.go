package dynlib

import (
	"errors"
	"unsafe"
)

// Lib is a library opened by Open: dlopen's handle, which a package's cgo
// code passes to dlsym as a void *. Libraries are never closed; they stay
// loaded for the life of the process, as the CUDA runtime's do.
type Lib unsafe.Pointer

// Mode says how Open loads a library.
type Mode int

const (
	// Global makes the library's symbols available to libraries loaded
	// after it (RTLD_GLOBAL): how libcublas finds the libcublasLt loaded
	// beside it. Without it, RTLD_LOCAL.
	Global Mode = 1 << iota
	// NoLoad only returns a library already loaded into the process
	// (RTLD_NOLOAD), say by another package.
	NoLoad
)

// ErrNoCgo is Open's error in a build without cgo.
var ErrNoCgo = errors.New("built without cgo")
