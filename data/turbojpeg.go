//go:build cgo

package data

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>

// The TurboJPEG 2.x entry points the decoder uses, declared from their public
// C signatures so that no headers or link-time library are needed (Debian's
// libturbojpeg0 ships no libturbojpeg.so symlink without the -dev package).
typedef void *tjhandle;
typedef struct { int num, denom; } tjscalingfactor;
typedef tjhandle (*init_fn)(void);
typedef int (*header_fn)(tjhandle, const unsigned char *, unsigned long, int *, int *, int *, int *);
typedef int (*decompress_fn)(tjhandle, const unsigned char *, unsigned long, unsigned char *, int, int, int, int, int);
typedef tjscalingfactor *(*factors_fn)(int *);
typedef char *(*errstr_fn)(tjhandle);
typedef int (*destroy_fn)(tjhandle);

static init_fn macdist_tj_init_p;
static header_fn macdist_tj_header_p;
static decompress_fn macdist_tj_decompress_p;
static factors_fn macdist_tj_factors_p;
static errstr_fn macdist_tj_errstr_p;
static destroy_fn macdist_tj_destroy_p;

// macdist_tj_open returns NULL on success and dlerror's message on failure.
static const char *macdist_tj_open(const char *name) {
	void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		return dlerror();
	}
	macdist_tj_init_p = (init_fn)dlsym(h, "tjInitDecompress");
	macdist_tj_header_p = (header_fn)dlsym(h, "tjDecompressHeader3");
	macdist_tj_decompress_p = (decompress_fn)dlsym(h, "tjDecompress2");
	macdist_tj_factors_p = (factors_fn)dlsym(h, "tjGetScalingFactors");
	macdist_tj_errstr_p = (errstr_fn)dlsym(h, "tjGetErrorStr2");
	macdist_tj_destroy_p = (destroy_fn)dlsym(h, "tjDestroy");
	if (!macdist_tj_init_p || !macdist_tj_header_p || !macdist_tj_decompress_p ||
	    !macdist_tj_factors_p || !macdist_tj_errstr_p || !macdist_tj_destroy_p) {
		macdist_tj_init_p = NULL;
		return "missing tjInitDecompress, tjDecompressHeader3, tjDecompress2, tjGetScalingFactors, tjGetErrorStr2 or tjDestroy";
	}
	return NULL;
}

static tjhandle macdist_tj_init(void) { return macdist_tj_init_p(); }
static int macdist_tj_destroy(tjhandle h) { return macdist_tj_destroy_p(h); }
static const char *macdist_tj_errstr(tjhandle h) { return macdist_tj_errstr_p(h); }
static tjscalingfactor *macdist_tj_factors(int *n) { return macdist_tj_factors_p(n); }

// macdist_tj_header fills dims = {width, height, subsampling, colorspace}.
static int macdist_tj_header(tjhandle h, const unsigned char *buf, unsigned long size, int *dims) {
	return macdist_tj_header_p(h, buf, size, &dims[0], &dims[1], &dims[2], &dims[3]);
}

enum { TJPF_RGB = 0 };

static int macdist_tj_decompress(tjhandle h, const unsigned char *buf, unsigned long size,
	unsigned char *dst, int width, int height) {
	return macdist_tj_decompress_p(h, buf, size, dst, width, width * 3, height, TJPF_RGB, 0);
}
*/
import "C"

import (
	"errors"
	"runtime"
	"strings"
	"unsafe"
)

// turboJPEGLib is a variable so that a build can point elsewhere with
// -ldflags=-X, and tests at a library that is not there.
var turboJPEGLib = "libturbojpeg.so.0"

func dlopenTurboJPEG() error {
	name := C.CString(turboJPEGLib)
	defer C.free(unsafe.Pointer(name))
	if msg := C.macdist_tj_open(name); msg != nil {
		detail := C.GoString(msg)
		if strings.Contains(detail, "No such file") {
			return errors.New(turboJPEGLib + " not found")
		}
		return errors.New(turboJPEGLib + ": " + detail)
	}
	return nil
}

// turboScalingFactors lists the DCT scales the library offers.
func turboScalingFactors() []scaleFactor {
	var n C.int
	p := C.macdist_tj_factors(&n)
	if p == nil || n <= 0 {
		return nil
	}
	fs := unsafe.Slice(p, int(n))
	out := make([]scaleFactor, 0, len(fs))
	for _, f := range fs {
		out = append(out, scaleFactor{num: int(f.num), denom: int(f.denom)})
	}
	return out
}

// turboDecoder is one worker's decompressor. A TurboJPEG handle holds
// per-image state and must not be used by two goroutines at once.
type turboDecoder struct {
	h    C.tjhandle
	dims [4]C.int // header's out-parameters, here so that they are not allocated per call
}

func newTurboDecoder() (*turboDecoder, error) {
	h := C.macdist_tj_init()
	if h == nil {
		return nil, errors.New("tjInitDecompress failed")
	}
	d := &turboDecoder{h: h}
	// Workers' scratch lives in a sync.Pool, which may drop it at any GC:
	// the handle goes with it.
	runtime.AddCleanup(d, func(h C.tjhandle) { C.macdist_tj_destroy(h) }, h)
	return d, nil
}

func (d *turboDecoder) err(what string) error {
	return errors.New(what + ": " + C.GoString(C.macdist_tj_errstr(d.h)))
}

// header returns the image size and whether its colour space is one that
// TurboJPEG converts to RGB (not CMYK or YCCK).
func (d *turboDecoder) header(src []byte) (w, h int, rgbOK bool, err error) {
	if len(src) == 0 {
		return 0, 0, false, errors.New("empty file")
	}
	dims := &d.dims
	if C.macdist_tj_header(d.h, (*C.uchar)(unsafe.Pointer(&src[0])), C.ulong(len(src)), &dims[0]) != 0 {
		return 0, 0, false, d.err("libjpeg-turbo header")
	}
	const tjcsCMYK, tjcsYCCK = 3, 4
	cs := dims[3]
	return int(dims[0]), int(dims[1]), cs != tjcsCMYK && cs != tjcsYCCK, nil
}

// decode decompresses src at the given output size (one of the scaled
// sizes) as interleaved RGB into dst, which holds w·h·3 bytes. Warnings
// (a truncated file, corrupt data) are errors: the library would otherwise
// return grey where the data ends.
func (d *turboDecoder) decode(src []byte, dst []uint8, w, h int) error {
	if C.macdist_tj_decompress(d.h, (*C.uchar)(unsafe.Pointer(&src[0])), C.ulong(len(src)),
		(*C.uchar)(unsafe.Pointer(&dst[0])), C.int(w), C.int(h)) != 0 {
		return d.err("libjpeg-turbo")
	}
	return nil
}
