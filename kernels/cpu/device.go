package cpu

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/macdist/macdist/kernels"
)

// Device is a kernels.Device on host memory.
//
// A Device is meant to be driven by the one goroutine of its model replica,
// but its methods may be called from several goroutines at once: those that
// keep per-call state in the Device take turns. Each method returns when its
// work is done, so Sync has nothing to wait for.
type Device struct {
	blas blasImpl
	dnn  dnnImpl

	// mu guards the task values and scratch space below, which are kept
	// here rather than made per call so that a steady-state step allocates
	// nothing.
	mu      sync.Mutex
	left    atomic.Int32  // chunks of the current parallel call still running
	done    chan struct{} // the last chunk's token
	f64     []float64
	ew      ewTask
	rows    rowTask
	chans   chanTask
	red     reduceTask
	conv    convTask
	pool    poolTask
	lnGrad  lnParamTask
	dotPart dotTask
	gemm    gemmTask
	perm    permuteTask
	adamw   adamwTask
	sgd     sgdTask
	dnnst   dnnState
	bk      bkTask
	bkPoolT bkPoolTask
	bkF64   []float64
	bkF32   []float32

	layout  kernels.Layout // the activation layout besides NCHW, see ActivationLayout
	convAlg ConvAlgorithm  // what oneDNN is asked to convolve by
	gemmDNN bool           // large products go to oneDNN's sgemm (SetGemmOnDNN)

	prec kernels.Precision // of convolutions and MatMul, see SetPrecision
	bf16 bf16Stage
}

// buffer is the Buffer of a Device. A view shares data with its parent.
type buffer struct {
	data []float32
	dev  *Device
	view bool
}

func (b *buffer) Len() int { return len(b.data) }

// New returns a Device that uses OpenBLAS for Gemm when libopenblas.so.0
// can be loaded, and gonum's pure-Go BLAS otherwise, with one warning on
// standard error per process. Setting MACDIST_BLAS=gonum in the environment
// forces gonum; MACDIST_BLAS=openblas makes a missing OpenBLAS fatal.
//
// Likewise its convolutions go to oneDNN when libdnnl.so.2 can be loaded
// (see Convolves), and to im2col and Gemm otherwise, with one warning;
// MACDIST_DNN=none forces im2col and MACDIST_DNN=onednn makes a missing
// oneDNN fatal.
//
// On the oneDNN path with AVX-512, activations of a multiple of 16
// channels are kept in kernels.Blocked16 between the layers that know
// it (see kernels.Layouter), or in the layout measured fastest for a
// model (TuneForModel); MACDIST_LAYOUT=nchw|blocked16|nhwc chooses.
// oneDNN convolves by its direct algorithm, or by the one measured fastest
// for the model; MACDIST_CONV_ALGO=direct|auto chooses (see ConvAlgorithm).
// There, Gemm's large products go to oneDNN's sgemm too (SetGemmOnDNN).
func New() *Device {
	d := &Device{blas: defaultBLAS(), dnn: defaultDNN()}
	if err := d.configure(); err != nil {
		panic(err.Error())
	}
	return d
}

// configure gives d, its BLAS and convolution path chosen, the rest of
// New's choices: the activation layout, the convolution algorithm (each as
// the environment asks) and where large products go.
func (d *Device) configure() error {
	l, err := defaultLayout(d.dnn)
	if err != nil {
		return fmt.Errorf("%w (unset MACDIST_LAYOUT)", err)
	}
	d.layout = l
	if d.convAlg, err = defaultConvAlgorithm(d.dnn); err != nil {
		return fmt.Errorf("%w (unset MACDIST_CONV_ALGO)", err)
	}
	d.gemmDNN = d.dnn == dnnOneDNN && hasAVX512Core(oneDNNISA())
	return nil
}

// NewWithBLAS returns a Device whose Gemm uses the named BLAS: "openblas",
// "gonum", or "" for New's choice, and whose convolutions take New's
// path. It fails if OpenBLAS is asked for and cannot be loaded.
func NewWithBLAS(name string) (*Device, error) { return Open(name, "") }

// Open returns a Device with the named BLAS ("openblas", "gonum") and
// convolution path ("onednn", "none" for im2col); "" leaves either to
// New's choice. It fails if a library asked for cannot be loaded.
func Open(blas, dnn string) (*Device, error) {
	d := &Device{}
	switch blas {
	case "":
		d.blas = defaultBLAS()
	case "gonum":
		d.blas = blasGonum
	case "openblas":
		if err := loadOpenBLAS(); err != nil {
			return nil, err
		}
		d.blas = blasOpenBLAS
	default:
		return nil, fmt.Errorf("cpu: unknown BLAS %q (want \"openblas\" or \"gonum\")", blas)
	}
	switch dnn {
	case "":
		d.dnn = defaultDNN()
	case "none":
		d.dnn = dnnNone
	case "onednn":
		if err := loadOneDNN(); err != nil {
			return nil, err
		}
		d.dnn = dnnOneDNN
	default:
		return nil, fmt.Errorf("cpu: unknown convolution path %q (want \"onednn\" or \"none\")", dnn)
	}
	if err := d.configure(); err != nil {
		return nil, err
	}
	return d, nil
}

// Name describes the device, its BLAS and its convolutions, such as
// "cpu/openblas (OpenBLAS 0.3.21, Zen, 2 threads), oneDNN 2.6.3
// avx512_core_vnni (nChw16c, algorithm auto; its sgemm for large
// products)" or "cpu/gonum".
func (d *Device) Name() string {
	s := d.blasName()
	if d.dnn == dnnOneDNN {
		s += ", oneDNN " + oneDNNVersion() + " " + isaName(oneDNNISA()) + " (" + d.layout.String() +
			", algorithm " + d.convAlg.String()
		if d.gemmDNN {
			s += "; its sgemm for large products"
		}
		s += ")"
	}
	return s
}

func (d *Device) blasName() string {
	if d.blas != blasOpenBLAS {
		return "cpu/gonum"
	}
	// The configuration string begins "OpenBLAS 0.3.21 ..." and goes on
	// with build options that do not belong in a log line.
	f := strings.Fields(openBLASConfig())
	version := strings.Join(f[:min(2, len(f))], " ")
	s := "cpu/openblas (" + version
	if core := openBLASCore(); core != "" {
		s += ", " + core
	}
	// OpenBLAS itself runs on one thread (see singleThreaded); the
	// products are spread over GOMAXPROCS goroutines.
	return s + ", " + strconv.Itoa(runtime.GOMAXPROCS(0)) + " threads)"
}

// BLAS reports the BLAS that d's Gemm uses: "openblas" or "gonum".
func (d *Device) BLAS() string { return d.blas.String() }

// Data returns the memory of b, a buffer of a cpu Device. Writes through it
// are seen by the Device; it is for CPU-only code and tests.
func Data(b kernels.Buffer) []float32 {
	cb, ok := b.(*buffer)
	if !ok {
		panic(fmt.Sprintf("cpu: Data of a %T, not a cpu buffer", b))
	}
	return cb.data
}

// Wrap returns a buffer of d that uses s as its memory, without copying.
// Freeing it is a no-op.
func (d *Device) Wrap(s []float32) kernels.Buffer {
	return &buffer{data: s, dev: d, view: true}
}

// Alloc returns a zeroed buffer of n elements.
func (d *Device) Alloc(n int) kernels.Buffer {
	if n < 0 {
		panic("cpu: Alloc of " + strconv.Itoa(n) + " elements")
	}
	return &buffer{data: make([]float32, n), dev: d}
}

// Free drops d's reference to b's memory, so that a later use of b panics
// instead of reading stale data. Freeing a view is a no-op.
func (d *Device) Free(b kernels.Buffer) {
	cb := d.buf(b, "Free", "b")
	if !cb.view {
		cb.data = nil
	}
}

// View returns the elements [off, off+n) of b.
func (d *Device) View(b kernels.Buffer, off, n int) kernels.Buffer {
	s := d.buf(b, "View", "b").data
	if off < 0 || n < 0 || off+n > len(s) {
		panic(fmt.Sprintf("cpu: View [%d, %d+%d) of a buffer of %d elements", off, off, n, len(s)))
	}
	return &buffer{data: s[off : off+n : off+n], dev: d, view: true}
}

// Upload copies src into dst[0:len(src)].
func (d *Device) Upload(dst kernels.Buffer, src []float32) {
	s := d.slice(dst, "Upload", "dst")
	needLen("Upload", "dst", len(s), len(src))
	copy(s, src)
}

// Download copies src[0:len(dst)] into dst.
func (d *Device) Download(dst []float32, src kernels.Buffer) {
	s := d.slice(src, "Download", "src")
	needLen("Download", "src", len(s), len(dst))
	copy(dst, s)
}

// Copy copies src into dst.
func (d *Device) Copy(dst, src kernels.Buffer) {
	x, y := d.slice(src, "Copy", "src"), d.slice(dst, "Copy", "dst")
	sameLen("Copy", len(y), len(x))
	copy(y, x)
}

// Copy2D copies rows blocks of cols elements between strided rows.
func (d *Device) Copy2D(dst kernels.Buffer, dstOff, dstStride int, src kernels.Buffer, srcOff, srcStride int, rows, cols int) {
	y, x := d.slice(dst, "Copy2D", "dst"), d.slice(src, "Copy2D", "src")
	if rows < 0 || cols < 0 || dstOff < 0 || srcOff < 0 || dstStride < 0 || srcStride < 0 {
		panic(fmt.Sprintf("cpu: Copy2D with negative geometry: dstOff=%d dstStride=%d srcOff=%d srcStride=%d rows=%d cols=%d",
			dstOff, dstStride, srcOff, srcStride, rows, cols))
	}
	if rows == 0 || cols == 0 {
		return
	}
	needLen("Copy2D", "dst", len(y), dstOff+(rows-1)*dstStride+cols)
	needLen("Copy2D", "src", len(x), srcOff+(rows-1)*srcStride+cols)
	for r := 0; r < rows; r++ {
		copy(y[dstOff+r*dstStride:dstOff+r*dstStride+cols], x[srcOff+r*srcStride:srcOff+r*srcStride+cols])
	}
}

// Fill sets every element of b to v.
func (d *Device) Fill(b kernels.Buffer, v float32) {
	y := d.slice(b, "Fill", "b")
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ew = ewTask{op: opFill, y: y, alpha: v}
	d.runEW(len(y), grainCheap)
}

// Sync returns nil: every method of a cpu Device has finished its work by the
// time it returns.
func (d *Device) Sync() error { return nil }

// buf returns b as a buffer of d, or panics naming the op and argument.
func (d *Device) buf(b kernels.Buffer, op, arg string) *buffer {
	cb, ok := b.(*buffer)
	if !ok {
		if b == nil {
			panic("cpu: " + op + ": " + arg + " is nil")
		}
		panic(fmt.Sprintf("cpu: %s: %s is a %T, not a cpu buffer", op, arg, b))
	}
	if cb.dev != d {
		panic("cpu: " + op + ": " + arg + " belongs to another cpu Device")
	}
	return cb
}

// slice returns the memory of b, a buffer of d.
func (d *Device) slice(b kernels.Buffer, op, arg string) []float32 {
	return d.buf(b, op, arg).data
}

// optSlice is slice for arguments that may be nil.
func (d *Device) optSlice(b kernels.Buffer, op, arg string) []float32 {
	if b == nil {
		return nil
	}
	return d.buf(b, op, arg).data
}

// needLen panics unless a buffer of have elements holds need.
// The checks call it with plain ints, so that no arguments are boxed on the
// path that does not panic.
func needLen(op, arg string, have, need int) {
	if have < need {
		panic(fmt.Sprintf("cpu: %s: %s has %d elements, need %d", op, arg, have, need))
	}
}

// sized is an operand of a kernel and the elements the kernel needs of it.
type sized struct {
	name string
	s    []float32
	n    int
}

// needLens is needLen of every operand given; a nil slice is an optional
// operand left out.
func needLens(op string, ops ...sized) {
	for _, p := range ops {
		if p.s != nil {
			needLen(op, p.name, len(p.s), p.n)
		}
	}
}

// sameLen panics unless the lengths of two element-wise operands agree.
func sameLen(op string, a, b int) {
	if a != b {
		panic(fmt.Sprintf("cpu: %s: operands have %d and %d elements", op, a, b))
	}
}

// scratch64 returns n float64s of scratch space; d.mu must be held.
func (d *Device) scratch64(n int) []float64 {
	if cap(d.f64) < n {
		d.f64 = make([]float64, n)
	}
	return d.f64[:n]
}

func formatFloat(v float32) string { return strconv.FormatFloat(float64(v), 'g', -1, 32) }

var _ kernels.Device = (*Device)(nil)
