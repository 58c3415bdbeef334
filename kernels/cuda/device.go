package cuda

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"unsafe"

	"github.com/macdist/macdist/kernels"
)

// Options tune a Device.
type Options struct {
	// AllowTF32 lets cuBLAS run float32 GEMMs on TF32 tensor cores
	// (CUBLAS_TF32_TENSOR_OP_MATH): several times faster on Ampere and
	// later, with 10-bit mantissas in the products. Off by default, so that
	// a GPU run matches the CPU device and PyTorch's float32 defaults to
	// float32 rounding.
	AllowTF32 bool
	// NoCUDNN computes convolutions with im2col + cuBLAS even where cuDNN
	// is installed (for comparisons; see ConvForward).
	NoCUDNN bool
}

// Device is a kernels.Device on one NVIDIA GPU: the device's primary
// context, one stream on which every method queues its work in call order,
// a cuBLAS handle bound to that stream, and a caching allocator.
//
// Methods may be called from several goroutines but serialise on the
// Device; a Device is meant to be driven by its model replica's goroutine.
// Work is asynchronous: a method returns once its work is queued, except
// Upload, Download, Dot and CrossEntropy, which wait for it. The first
// error of any queued work is kept and returned by Sync.
type Device struct {
	mu      sync.Mutex
	ordinal int
	dev     cuDevice
	ctx     cuContext
	stream  cuStream
	blas    cublasH
	mods    []cuModule
	fn      [numKernels]cuFunction
	alloc   *allocator
	l       launcher
	cargs   unsafe.Pointer // C memory behind l.args
	err     error          // the first error, returned by Sync
	closed  bool
	name    string
	tf32    bool
	dnn     dnnState

	// Device scratch space for partial sums and labels, grown as needed.
	// Every use is ordered on the stream, so one area serves every method.
	scratchPtr   uint64
	scratchClass int64
	host64       []float64 // host side of Dot and CrossEntropy results
}

// buffer is a Buffer of a Device: n float32s at ptr. A view points into
// its root's block and has class 0.
type buffer struct {
	dev   *Device
	ptr   uint64
	n     int
	class int64
	root  *buffer // nil for a buffer that owns its block
	freed bool
}

func (b *buffer) Len() int { return b.n }

// dead reports whether b's memory has been freed.
func (b *buffer) dead() bool {
	if b.root != nil {
		return b.root.freed
	}
	return b.freed
}

// devMem adapts the driver to the allocator.
type devMem struct{ ctx cuContext }

func (m devMem) malloc(bytes int64) (uint64, error) { return cuMemAlloc(m.ctx, bytes) }
func (m devMem) free(p uint64) error                { return cuMemFree(m.ctx, p) }

// New returns a Device on GPU ordinal (0 for the first) with the default
// Options. Without a usable driver, GPU or cuBLAS it returns an error that
// names what is missing and how to provide it; it never exits the process.
func New(ordinal int) (*Device, error) { return NewWithOptions(ordinal, Options{}) }

// NewWithOptions is New with options.
func NewWithOptions(ordinal int, opt Options) (*Device, error) {
	if err := initDriver(); err != nil {
		return nil, err
	}
	n, err := cuDeviceCount()
	if err != nil {
		return nil, fmt.Errorf("cuda: cuDeviceGetCount: %w", err)
	}
	if ordinal < 0 || ordinal >= n {
		return nil, fmt.Errorf("cuda: no GPU %d: the driver sees %d", ordinal, n)
	}
	if err := loadCUBLAS(); err != nil {
		return nil, err
	}
	d := &Device{ordinal: ordinal, tf32: opt.AllowTF32}
	if err := d.open(opt.NoCUDNN); err != nil {
		d.Close()
		return nil, fmt.Errorf("cuda: GPU %d: %w", ordinal, err)
	}
	return d, nil
}

// open sets up what New promises; Close undoes whatever it got to.
func (d *Device) open(noDNN bool) error {
	var err error
	if d.dev, err = cuDeviceGet(d.ordinal); err != nil {
		return fmt.Errorf("cuDeviceGet: %w", err)
	}
	if d.ctx, err = cuPrimaryCtxRetain(d.dev); err != nil {
		return fmt.Errorf("cuDevicePrimaryCtxRetain: %w", err)
	}
	if d.stream, err = cuStreamCreate(d.ctx); err != nil {
		return fmt.Errorf("cuStreamCreate: %w", err)
	}
	d.alloc = newAllocator(devMem{d.ctx})
	d.cargs = cAlloc(argBytes)
	d.l = launcher{d: d, args: unsafe.Slice((*byte)(d.cargs), argBytes)}

	names, texts, err := ptxModules()
	if err != nil {
		return fmt.Errorf("PTX (embedded, or $%s): %w", EnvPTXDir, err)
	}
	for i, t := range texts {
		m, err := moduleLoad(d.ctx, t)
		if err != nil {
			return fmt.Errorf("cuModuleLoadDataEx(%s): %w", names[i], err)
		}
		d.mods = append(d.mods, m)
	}
	for k, name := range kernelNames {
		for _, m := range d.mods {
			if f, err := moduleFunction(d.ctx, m, name); err == nil {
				d.fn[k] = f
				break
			}
		}
		if d.fn[k] == nil {
			return fmt.Errorf("kernel %s is in none of the PTX modules %v", name, names)
		}
	}

	if d.blas, err = cublasCreate(d.ctx); err != nil {
		return fmt.Errorf("cublasCreate: %w", err)
	}
	if err := cublasSetStream(d.ctx, d.blas, d.stream); err != nil {
		return fmt.Errorf("cublasSetStream: %w", err)
	}
	mode := mathDefault
	if d.tf32 {
		mode = mathTF32
	}
	if err := cublasSetMathMode(d.ctx, d.blas, mode); err != nil {
		return fmt.Errorf("cublasSetMathMode(%d): %w", mode, err)
	}
	d.openDNN(noDNN)

	gpu, _ := cuDeviceName(d.dev)
	maj, _ := cuDeviceAttribute(d.dev, attrCCMajor)
	mnr, _ := cuDeviceAttribute(d.dev, attrCCMinor)
	bv, _ := cublasVersion(d.ctx, d.blas)
	d.name = fmt.Sprintf("cuda:%d (%s, sm_%d%d, CUDA driver %s, cuBLAS %s", d.ordinal, gpu, maj, mnr,
		cudaVersion(drvVersion), blasVersionText(bv))
	if d.dnn.h != nil {
		d.name += ", cuDNN " + cudnnVersionText(cudnnVersion())
	}
	if d.tf32 {
		d.name += ", TF32"
	}
	d.name += ")"
	return nil
}

// cuBLAS math modes (cublasMath_t) and device attributes (CUdevice_attribute).
const (
	mathDefault = 0 // CUBLAS_DEFAULT_MATH: float32 GEMMs in float32
	mathTF32    = 3 // CUBLAS_TF32_TENSOR_OP_MATH

	attrSMCount = 16
	attrCCMajor = 75
	attrCCMinor = 76
)

// cudaVersion formats a driver version, 13000 as "13.0".
func cudaVersion(v int) string { return fmt.Sprintf("%d.%d", v/1000, v%1000/10) }

// blasVersionText formats cublasGetVersion's CUBLAS_VERSION encoding,
// 10000·major + 100·minor + patch.
func blasVersionText(v int) string {
	if v <= 0 {
		return "?"
	}
	return fmt.Sprintf("%d.%d.%d", v/10000, v%10000/100, v%100)
}

// Close releases the Device's memory, modules, stream, cuBLAS handle and
// its hold on the primary context. Buffers of d must not be used after.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	keep := func(what string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	if d.stream != nil {
		keep("cuStreamSynchronize", cuStreamSync(d.ctx, d.stream))
	}
	if d.blas != nil {
		keep("cublasDestroy", cublasDestroy(d.ctx, d.blas))
	}
	keep("cudnnDestroy", d.closeDNN())
	if d.alloc != nil {
		if d.scratchPtr != 0 {
			d.alloc.put(d.scratchPtr, d.scratchClass)
		}
		keep("cuMemFree", d.alloc.release())
	}
	for _, m := range d.mods {
		keep("cuModuleUnload", moduleUnload(d.ctx, m))
	}
	if d.stream != nil {
		keep("cuStreamDestroy", cuStreamDestroy(d.ctx, d.stream))
	}
	if d.ctx != nil {
		keep("cuDevicePrimaryCtxRelease", cuPrimaryCtxRelease(d.dev))
	}
	if d.cargs != nil {
		cFree(d.cargs)
		d.cargs, d.l.args = nil, nil
	}
	if len(errs) > 0 {
		return fmt.Errorf("cuda: Close: %w", errors.Join(errs...))
	}
	return nil
}

// Name describes the GPU and the libraries in use.
func (d *Device) Name() string { return d.name }

// Ordinal is the GPU's index among those the driver sees.
func (d *Device) Ordinal() int { return d.ordinal }

// Stream returns the CUstream on which d queues its work, for libraries
// (NCCL) that must order their work with it.
func (d *Device) Stream() unsafe.Pointer { return d.stream }

// MakeCurrent makes d's context current on the calling OS thread, for
// libraries that use the CUDA runtime's notion of the current device. The
// caller should hold the thread with runtime.LockOSThread.
func (d *Device) MakeCurrent() error { return cuCtxSetCurrent(d.ctx) }

// Pointer returns the device address of b's first element, for libraries
// (NCCL) that take device pointers. It panics if b is not a live buffer of
// a cuda Device.
func Pointer(b kernels.Buffer) uint64 {
	cb, ok := b.(*buffer)
	if !ok {
		panic(fmt.Sprintf("cuda: Pointer of a %T, not a cuda buffer", b))
	}
	if cb.dead() {
		panic("cuda: Pointer of a freed buffer")
	}
	return cb.ptr
}

// MemStats returns the allocator's counters.
func (d *Device) MemStats() MemStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	a := d.alloc
	return MemStats{InUse: a.inUse, Cached: a.cached, Peak: a.peak, Allocs: a.allocs}
}

// DeviceMemory reports the GPU's free and total memory as the driver sees
// it (the cache's blocks count as used).
func (d *Device) DeviceMemory() (free, total int64, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return cuMemInfo(d.ctx)
}

// EmptyCache gives the cached free blocks back to the driver.
func (d *Device) EmptyCache() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := cuStreamSync(d.ctx, d.stream); err != nil {
		d.record("cuStreamSynchronize", err)
		return err
	}
	return d.alloc.release()
}

// record keeps the first error of the Device for Sync.
func (d *Device) record(op string, err error) {
	if err != nil && d.err == nil {
		d.err = fmt.Errorf("cuda: %s: %w", op, err)
	}
}

// Sync waits for the queued work and returns the first error since the
// Device was made (errors are sticky: a CUDA context that faulted stays
// unusable).
func (d *Device) Sync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.record("cuStreamSynchronize", cuStreamSync(d.ctx, d.stream))
	return d.err
}

// Alloc returns a zeroed buffer of n elements.
func (d *Device) Alloc(n int) kernels.Buffer {
	if n < 0 {
		panic("cuda: Alloc of " + strconv.Itoa(n) + " elements")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	p, class, err := d.alloc.get(int64(n) * 4)
	if err != nil {
		panic(fmt.Sprintf("cuda: Alloc of %d elements (%d bytes) on GPU %d: %v", n, int64(n)*4, d.ordinal, err))
	}
	if n > 0 {
		d.record("cuMemsetD32Async", memset32(d.ctx, d.stream, p, 0, int64(n)))
	}
	return &buffer{dev: d, ptr: p, n: n, class: class}
}

// Free returns b's block to the cache; later uses of b panic. Freeing a
// view is a no-op.
func (d *Device) Free(b kernels.Buffer) {
	cb := d.buf(b, "Free", "b")
	if cb.root != nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	cb.freed = true
	d.alloc.put(cb.ptr, cb.class)
}

// View returns elements [off, off+n) of b.
func (d *Device) View(b kernels.Buffer, off, n int) kernels.Buffer {
	cb := d.buf(b, "View", "b")
	if off < 0 || n < 0 || off+n > cb.n {
		panic(fmt.Sprintf("cuda: View [%d, %d+%d) of a buffer of %d elements", off, off, n, cb.n))
	}
	root := cb
	if cb.root != nil {
		root = cb.root
	}
	return &buffer{dev: d, ptr: cb.ptr + uint64(off)*4, n: n, root: root}
}

// Upload copies src into dst[0:len(src)] and waits for the copy.
func (d *Device) Upload(dst kernels.Buffer, src []float32) {
	b := d.buf(dst, "Upload", "dst")
	needLen("Upload", "dst", b.n, len(src))
	if len(src) == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.record("Upload", htod(d.ctx, d.stream, b.ptr, unsafe.Pointer(&src[0]), int64(len(src))*4))
}

// Download copies src[0:len(dst)] into dst, after the work queued before
// it. If the copy fails, dst is filled with NaN and the error kept for Sync.
func (d *Device) Download(dst []float32, src kernels.Buffer) {
	b := d.buf(src, "Download", "src")
	needLen("Download", "src", b.n, len(dst))
	if len(dst) == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := dtoh(d.ctx, d.stream, unsafe.Pointer(&dst[0]), b.ptr, int64(len(dst))*4); err != nil {
		d.record("Download", err)
		nan := float32(math.NaN())
		for i := range dst {
			dst[i] = nan
		}
	}
}

// Copy copies src into dst.
func (d *Device) Copy(dst, src kernels.Buffer) {
	y, x := d.buf(dst, "Copy", "dst"), d.buf(src, "Copy", "src")
	sameLen("Copy", y.n, x.n)
	if y.n == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.record("Copy", dtod(d.ctx, d.stream, y.ptr, x.ptr, int64(y.n)*4))
}

// Copy2D copies rows blocks of cols elements between strided rows. The
// rows of dst must not overlap those of src.
func (d *Device) Copy2D(dst kernels.Buffer, dstOff, dstStride int, src kernels.Buffer, srcOff, srcStride int, rows, cols int) {
	y, x := d.buf(dst, "Copy2D", "dst"), d.buf(src, "Copy2D", "src")
	if rows < 0 || cols < 0 || dstOff < 0 || srcOff < 0 || dstStride < 0 || srcStride < 0 {
		panic(fmt.Sprintf("cuda: Copy2D with negative geometry: dstOff=%d dstStride=%d srcOff=%d srcStride=%d rows=%d cols=%d",
			dstOff, dstStride, srcOff, srcStride, rows, cols))
	}
	if rows == 0 || cols == 0 {
		return
	}
	needLen("Copy2D", "dst", y.n, dstOff+(rows-1)*dstStride+cols)
	needLen("Copy2D", "src", x.n, srcOff+(rows-1)*srcStride+cols)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.k(kCopy2D).ptr(y).i64(dstOff).i64(dstStride).ptr(x).i64(srcOff).i64(srcStride).i64(rows).i64(cols).
		run1D(int64(rows) * int64(cols))
}

// CopyStrided copies a strided 4-D block in one launch (kernels.Permuter).
func (d *Device) CopyStrided(dst kernels.Buffer, dstOff int, dstStride [4]int, src kernels.Buffer, srcOff int, srcStride [4]int, shape [4]int) {
	y, x := d.buf(dst, "CopyStrided", "dst"), d.buf(src, "CopyStrided", "src")
	if !kernels.CheckStrided("cuda", y.n, dstOff, dstStride, x.n, srcOff, srcStride, shape) {
		return
	}
	total := int64(shape[0]) * int64(shape[1]) * int64(shape[2]) * int64(shape[3])
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.k(kCopyStrided).ptr(y).i64(dstOff)
	for _, s := range dstStride {
		l = l.i64(s)
	}
	l = l.ptr(x).i64(srcOff)
	for _, s := range srcStride {
		l = l.i64(s)
	}
	l.i64(shape[1]).i64(shape[2]).i64(shape[3]).i64(int(total)).run1D(total)
}

var _ kernels.Permuter = (*Device)(nil)

// LaunchBound is true: every method is at least one kernel launch.
func (d *Device) LaunchBound() bool { return true }

// Fill sets every element of b to v (its bit pattern, NaNs included).
func (d *Device) Fill(b kernels.Buffer, v float32) {
	cb := d.buf(b, "Fill", "b")
	if cb.n == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.record("Fill", memset32(d.ctx, d.stream, cb.ptr, math.Float32bits(v), int64(cb.n)))
}

// scratch returns bytes bytes of device scratch space; d.mu must be held.
// The space is reused by the next method, which the stream orders after
// every use of it by this one.
func (d *Device) scratch(bytes int64) uint64 {
	if sizeClass(bytes) <= d.scratchClass {
		return d.scratchPtr
	}
	if d.scratchPtr != 0 {
		d.alloc.put(d.scratchPtr, d.scratchClass)
	}
	p, class, err := d.alloc.get(bytes)
	if err != nil {
		panic(fmt.Sprintf("cuda: %d bytes of scratch space on GPU %d: %v", bytes, d.ordinal, err))
	}
	d.scratchPtr, d.scratchClass = p, class
	return p
}

// hostScratch returns n float64s of host memory; d.mu must be held.
func (d *Device) hostScratch(n int) []float64 {
	if cap(d.host64) < n {
		d.host64 = make([]float64, n)
	}
	return d.host64[:n]
}

// buf returns b as a live buffer of d, or panics naming the op and argument.
func (d *Device) buf(b kernels.Buffer, op, arg string) *buffer {
	cb, ok := b.(*buffer)
	if !ok {
		if b == nil {
			panic("cuda: " + op + ": " + arg + " is nil")
		}
		panic(fmt.Sprintf("cuda: %s: %s is a %T, not a cuda buffer", op, arg, b))
	}
	if cb.dev != d {
		panic("cuda: " + op + ": " + arg + " belongs to another cuda Device")
	}
	if d.closed {
		panic("cuda: " + op + " on a closed Device")
	}
	if cb.dead() {
		panic("cuda: " + op + ": " + arg + " was freed")
	}
	return cb
}

// optBuf is buf for arguments that may be nil.
func (d *Device) optBuf(b kernels.Buffer, op, arg string) *buffer {
	if b == nil {
		return nil
	}
	return d.buf(b, op, arg)
}

// needLen panics unless a buffer of have elements holds need.
func needLen(op, arg string, have, need int) {
	if have < need {
		panic(fmt.Sprintf("cuda: %s: %s has %d elements, need %d", op, arg, have, need))
	}
}

// sameLen panics unless the lengths of two element-wise operands agree.
func sameLen(op string, a, b int) {
	if a != b {
		panic(fmt.Sprintf("cuda: %s: operands have %d and %d elements", op, a, b))
	}
}

var _ kernels.Device = (*Device)(nil)
