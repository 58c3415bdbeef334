//go:build cgo

package dynlib

/*
#cgo LDFLAGS: -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>

static void *macdist_dlopen(const char *path, int flags, const char **err) {
	void *h = dlopen(path, flags);
	if (h == NULL) *err = dlerror();
	return h;
}

static const char *macdist_where(void *h, const char *name) {
	Dl_info info;
	void *p = dlsym(h, name);
	if (p == NULL || dladdr(p, &info) == 0) return NULL;
	return info.dli_fname;
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Available reports whether this build can open libraries (it has cgo).
const Available = true

// Open opens path, a file or a bare soname for the loader to find, with
// every symbol bound now (RTLD_NOW), so that a library missing a
// dependency fails here rather than at its first call.
func Open(path string, mode Mode) (Lib, error) {
	cs := C.CString(path)
	defer C.free(unsafe.Pointer(cs))
	flags := C.int(C.RTLD_NOW | C.RTLD_LOCAL)
	if mode&Global != 0 {
		flags = C.RTLD_NOW | C.RTLD_GLOBAL
	}
	if mode&NoLoad != 0 {
		flags |= C.RTLD_NOLOAD
	}
	var msg *C.char
	h := C.macdist_dlopen(cs, flags, &msg)
	if h == nil {
		return nil, fmt.Errorf("dlopen %s: %s", path, C.GoString(msg))
	}
	return Lib(h), nil
}

// Where returns the file that symbol of l was loaded from, or "" when l
// has no such symbol: what a user needs to know when several copies of a
// library are installed.
func Where(l Lib, symbol string) string {
	cs := C.CString(symbol)
	defer C.free(unsafe.Pointer(cs))
	return C.GoString(C.macdist_where(unsafe.Pointer(l), cs))
}
