package cuda

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/macdist/macdist/internal/dynlib"
	"github.com/macdist/macdist/kernels"
)

// cudnnLibs are the cuDNN sonames tried, newest first. Both majors have
// the legacy convolution API bound here with the same ABI.
var cudnnLibs = []string{"libcudnn.so.9", "libcudnn.so.8"}

// cudnnParts are the libraries libcudnn.so.N opens itself, by soname, on
// first use: loaded beforehand, globally and in dependency order, from the
// folder libcudnn came from when that folder is not on the loader's path
// (a pip wheel's nvidia/cudnn/lib). Those missing are skipped: the set
// differs between versions, and cuDNN names what it lacks when it fails.
var cudnnParts = map[string][]string{
	"9": {"libcudnn_graph.so.9", "libcudnn_engines_precompiled.so.9", "libcudnn_engines_runtime_compiled.so.9",
		"libcudnn_heuristic.so.9", "libcudnn_ops.so.9", "libcudnn_cnn.so.9", "libcudnn_adv.so.9"},
	"8": {"libcudnn_ops_infer.so.8", "libcudnn_ops_train.so.8", "libcudnn_cnn_infer.so.8", "libcudnn_cnn_train.so.8"},
}

var (
	dnnLib  lib // libcudnn, loaded at most once
	dnnWarn sync.Once
)

// warnOut receives the one warning given when cuDNN is missing.
var warnOut io.Writer = os.Stderr

// cudnnError is the error for a missing cuDNN.
func cudnnError(tried []Attempt) error {
	return fmt.Errorf("cuda: cuDNN not found (looked for %s): install it with pip (pip install nvidia-cudnn-cu12; "+
		"PyTorch's CUDA wheels bring it) or from NVIDIA's packages (/usr/local/cuda/lib64), or set %s to the folder "+
		"holding libcudnn.so.N; tried: %s", strings.Join(cudnnLibs, ", "), EnvLibs, dynlib.TriedText(tried))
}

// loadCUDNNFrom opens the first cuDNN e's search finds.
func loadCUDNNFrom(e dynlib.Search) Library {
	pre := func(c dynlib.Candidate) error {
		if c.Loader() {
			return nil
		}
		base := filepath.Base(c.Path)
		for _, part := range cudnnParts[base[strings.LastIndexByte(base, '.')+1:]] {
			p := filepath.Join(filepath.Dir(c.Path), part)
			if _, err := os.Stat(p); err != nil {
				continue
			}
			if _, err := dynlib.Open(p, dynlib.Global); err != nil {
				return err
			}
		}
		return nil
	}
	l, _ := dynlib.OpenFirst(plan(e, cudnnLibs...), bindCUDNN, "cudnnCreate", pre)
	if l.Err != nil {
		l.Err = cudnnError(l.Tried)
	}
	return l
}

// loadCUDNN opens cuDNN once per process.
func loadCUDNN() error {
	dnnLib.once.Do(func() { dnnLib.Library = loadCUDNNFrom(dynlib.Search{}) })
	return dnnLib.Err
}

// cudnnVersionText formats cudnnGetVersion: 1000·major + 100·minor + patch
// up to cuDNN 8, 10000·major + 100·minor + patch from cuDNN 9 on.
func cudnnVersionText(v int) string {
	if v <= 0 {
		return "?"
	}
	if v < 9000 {
		return fmt.Sprintf("%d.%d.%d", v/1000, v%1000/100, v%100)
	}
	return fmt.Sprintf("%d.%d.%d", v/10000, v%10000/100, v%100)
}

// cuDNN math types (cudnnMathType_t): CUDNN_FMA_MATH keeps float32
// convolutions in float32, as Options.AllowTF32 false promises;
// CUDNN_DEFAULT_MATH lets cuDNN use TF32 tensor cores on Ampere and later.
const (
	dnnMathDefault = 0
	dnnMathFMA     = 3
)

// convKey identifies a convolution whose plan is cached: algorithms are
// chosen once per shape.
type convKey struct {
	g              kernels.ConvGeom
	n, out, groups int
	math           int
}

// dnnState is a Device's cuDNN handle and plans; nil handle without cuDNN.
type dnnState struct {
	h     cudnnH
	plans map[convKey]*dnnPlan
	err   error // why cuDNN is off on this Device, for Name and tests
}

// openDNN binds a cuDNN handle to d's stream, unless cuDNN is off, missing
// or unusable: then convolutions fall back to im2col + cuBLAS, and a
// warning says so once per process (not per Device: a replica per GPU
// would repeat it).
func (d *Device) openDNN(off bool) {
	if off {
		d.dnn.err = fmt.Errorf("cuDNN off (Options.NoCUDNN)")
		return
	}
	err := loadCUDNN()
	if err == nil {
		var h cudnnH
		err = d.onCtx(func() error {
			var err error
			if h, err = cudnnCreate(); err != nil {
				return fmt.Errorf("cuda: cudnnCreate: %w", err)
			}
			if err := cudnnSetStream(h, d.stream); err != nil {
				cudnnDestroy(h)
				return fmt.Errorf("cuda: cudnnSetStream: %w", err)
			}
			return nil
		})
		if err == nil {
			d.dnn.h = h
			d.dnn.plans = map[convKey]*dnnPlan{}
			return
		}
	}
	d.dnn.err = err
	dnnWarn.Do(func() {
		fmt.Fprintf(warnOut, "macdist: warning: %v; convolutions on the GPU use im2col + cuBLAS instead (slower)\n", err)
	})
}

// closeDNN frees the plans and the handle.
func (d *Device) closeDNN() error {
	if d.dnn.h == nil {
		return nil
	}
	for k, p := range d.dnn.plans {
		if p != nil { // nil: a shape cuDNN had no plan for
			p.free()
		}
		delete(d.dnn.plans, k)
	}
	err := d.onCtx(func() error { return cudnnDestroy(d.dnn.h) })
	d.dnn.h = nil
	return err
}

// onCtx runs f on one OS thread with d's context current there: cuDNN,
// unlike the wrappers of dl.go, takes no context, and uses the thread's.
func (d *Device) onCtx(f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cuCtxSetCurrent(d.ctx); err != nil {
		return err
	}
	return f()
}

// CUDNN reports whether d computes convolutions with cuDNN (ConvForward
// and the backward methods return true), and if not, why.
func (d *Device) CUDNN() (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dnn.h != nil, d.dnn.err
}

// plan returns the cached plan of k, making it on first use; d.mu held. A
// shape cuDNN has no algorithm for is remembered as nil.
func (d *Device) plan(k convKey) *dnnPlan {
	if p, ok := d.dnn.plans[k]; ok {
		return p
	}
	var p *dnnPlan
	err := d.onCtx(func() error {
		var err error
		p, err = newDNNPlan(d.dnn.h, k)
		return err
	})
	if err != nil {
		fmt.Fprintf(warnOut, "macdist: warning: cuda: cuDNN cannot convolve %+v (N=%d, Out=%d, Groups=%d): %v; using im2col + cuBLAS for it\n",
			k.g, k.n, k.out, k.groups, err)
		p = nil
	}
	d.dnn.plans[k] = p
	return p
}

// dnnArgs panics on a geometry no convolution has, as Im2col does,
// and on buffers too short for it.
func (d *Device) dnnArgs(op string, g kernels.ConvGeom, n, out, groups int) convKey {
	checkConv(op, g, 0, n)
	if out < 1 || groups < 1 || g.C%groups != 0 || out%groups != 0 {
		panic(fmt.Sprintf("cuda: %s: Out %d and C %d must be positive multiples of Groups %d", op, out, g.C, groups))
	}
	m := dnnMathFMA
	if d.tf32 {
		m = dnnMathDefault
	}
	return convKey{g: g, n: n, out: out, groups: groups, math: m}
}

// conv runs direction dir of k; false if cuDNN cannot (then nothing was
// queued). d.mu held.
func (d *Device) conv(op string, dir int, k convKey, a, b *buffer, beta float32, out *buffer) bool {
	if d.dnn.h == nil || k.n == 0 {
		return d.dnn.h != nil
	}
	p := d.plan(k)
	if p == nil {
		return false
	}
	var ws uint64
	if p.ws[dir] > 0 {
		ws = d.scratch(p.ws[dir])
	}
	d.record(op, d.onCtx(func() error { return p.run(dir, d.dnn.h, a.ptr, b.ptr, ws, beta, out.ptr) }))
	return true
}

// CUDNNForward sets y [n, out, OutH, OutW] to the convolution (PyTorch's
// conv2d: cross-correlation, no bias) of x [n, C, H, W] with w
// [out, C/groups, KH, KW], and reports true, when d has cuDNN and cuDNN an
// algorithm for the shape. Otherwise it reports false having done nothing,
// and the caller computes it another way (Im2col and GemmStrided).
func (d *Device) CUDNNForward(y, x, w kernels.Buffer, g kernels.ConvGeom, n, out, groups int) bool {
	xb, wb, yb, k := d.convArgs("ConvForward", [3]string{"x", "w", "y"}, x, w, y, g, n, out, groups)
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conv("cudnnConvolutionForward", 0, k, xb, wb, 0, yb)
}

// CUDNNBackwardData sets dx [n, C, H, W] to the gradient of CUDNNForward's
// x given dy [n, out, OutH, OutW] and w; it reports as CUDNNForward does.
func (d *Device) CUDNNBackwardData(dx, dy, w kernels.Buffer, g kernels.ConvGeom, n, out, groups int) bool {
	xb, wb, yb, k := d.convArgs("ConvBackwardData", [3]string{"dx", "w", "dy"}, dx, w, dy, g, n, out, groups)
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conv("cudnnConvolutionBackwardData", 1, k, wb, yb, 0, xb)
}

// CUDNNBackwardFilter adds to dw [out, C/groups, KH, KW] the gradient of
// CUDNNForward's w given x and dy (it accumulates, as layers' gradients
// do); it reports as CUDNNForward does.
func (d *Device) CUDNNBackwardFilter(dw, x, dy kernels.Buffer, g kernels.ConvGeom, n, out, groups int) bool {
	xb, wb, yb, k := d.convArgs("ConvBackwardFilter", [3]string{"x", "dw", "dy"}, x, dw, dy, g, n, out, groups)
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conv("cudnnConvolutionBackwardFilter", 2, k, xb, yb, 1, wb)
}

// convArgs checks the three tensors of one convolution direction — the
// input side [n, C, H, W], the filter [out, C/groups, KH, KW] and the output
// side [n, out, OutH, OutW], named as the caller names them — and returns
// them with the plan's key; it panics as Im2col does.
func (d *Device) convArgs(op string, names [3]string, x, w, y kernels.Buffer, g kernels.ConvGeom, n, out, groups int) (xb, wb, yb *buffer, k convKey) {
	xb, wb, yb = d.buf(x, op, names[0]), d.buf(w, op, names[1]), d.buf(y, op, names[2])
	k = d.dnnArgs(op, g, n, out, groups)
	needLen(op, names[0], xb.n, n*g.C*g.H*g.W)
	needLen(op, names[1], wb.n, out*g.C/groups*g.KH*g.KW)
	needLen(op, names[2], yb.n, n*out*g.OutH()*g.OutW())
	return xb, wb, yb, k
}

// Convolves reports whether cuDNN convolves this shape (kernels.Convolver),
// making its plan on first use: with cuDNN, Conv2d hands whole convolutions
// to it instead of unfolding them for cuBLAS.
func (d *Device) Convolves(g kernels.ConvGeom, out, groups, n int, bias bool) bool {
	if n == 0 {
		return false
	}
	k := d.dnnArgs("Convolves", g, n, out, groups)
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dnn.h != nil && d.plan(k) != nil
}

// ConvForward is kernels.Convolver's: y = conv(x, w) + bias (bias may be
// nil), for a shape Convolves accepted.
func (d *Device) ConvForward(y, x, w, bias kernels.Buffer, g kernels.ConvGeom, out, groups, n int) {
	if !d.CUDNNForward(y, x, w, g, n, out, groups) {
		panic(fmt.Sprintf("cuda: ConvForward of %+v out=%d groups=%d n=%d, a shape Convolves refused", g, out, groups, n))
	}
	if bias != nil {
		d.AddBias(y, bias, n, g.OutH()*g.OutW())
	}
}

// ConvBackward is kernels.Convolver's: dx overwritten, dw and db (unless
// nil) accumulated, for a shape Convolves accepted.
func (d *Device) ConvBackward(dx, dw, db, x, dy, w kernels.Buffer, g kernels.ConvGeom, out, groups, n int) {
	if db != nil {
		d.ReduceSumMid(db, dy, n, out, g.OutH()*g.OutW(), 1, 1)
	}
	if !d.CUDNNBackwardFilter(dw, x, dy, g, n, out, groups) || dx != nil && !d.CUDNNBackwardData(dx, dy, w, g, n, out, groups) {
		panic(fmt.Sprintf("cuda: ConvBackward of %+v out=%d groups=%d n=%d, a shape Convolves refused", g, out, groups, n))
	}
}

var _ kernels.Convolver = (*Device)(nil)
