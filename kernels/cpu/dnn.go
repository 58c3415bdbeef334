package cpu

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"

	"github.com/macdist/macdist/kernels"
)

// dnnImpl names what computes a Device's convolutions.
type dnnImpl uint8

const (
	dnnNone   dnnImpl = iota // im2col and Gemm, in the nn layer
	dnnOneDNN                // oneDNN's primitives, through kernels.Convolver
)

func (d dnnImpl) String() string {
	if d == dnnOneDNN {
		return "onednn"
	}
	return "none"
}

var (
	dnnOpenOnce sync.Once
	dnnOpenErr  error
	dnnWarnOnce sync.Once
)

// loadOneDNN opens libdnnl.so.2 once per process.
func loadOneDNN() error {
	dnnOpenOnce.Do(func() { dnnOpenErr = dlopenOneDNN() })
	return dnnOpenErr
}

// defaultDNN is New's choice. It warns at most once per process.
func defaultDNN() dnnImpl {
	impl, warning := chooseDNN(os.Getenv("MACDIST_DNN"), loadOneDNN)
	if warning != "" {
		dnnWarnOnce.Do(func() { fmt.Fprintln(os.Stderr, warning) })
	}
	return impl
}

// chooseDNN picks the convolution path given the value of MACDIST_DNN and
// a way to load oneDNN, and says what to warn about, if anything.
func chooseDNN(env string, load func() error) (dnnImpl, string) {
	switch env {
	case "none":
		return dnnNone, ""
	case "onednn":
		if err := load(); err != nil {
			panic("cpu: MACDIST_DNN=onednn, but " + err.Error() + " (install Debian's libdnnl2, or unset MACDIST_DNN)")
		}
		return dnnOneDNN, ""
	}
	var note string
	if env != "" {
		note = fmt.Sprintf("macdist: ignoring MACDIST_DNN=%q (want onednn or none)", env)
	}
	if err := load(); err != nil {
		if note != "" {
			note += "; "
		}
		return dnnNone, note + fmt.Sprintf("macdist: %v; convolutions use im2col (slower). Install Debian's libdnnl2 to fix.", err)
	}
	return dnnOneDNN, note
}

// DNNName reports the convolution path New would choose: "onednn" or
// "none". Like New, it loads oneDNN if it has not been loaded yet, and may
// print New's warning.
func DNNName() string { return defaultDNN().String() }

// OneDNN reports oneDNN's version and the instruction set its kernels use
// on this CPU (dnnl_get_effective_cpu_isa), such as "2.6.3" and
// "avx512_core_vnni", or why it cannot be loaded.
func OneDNN() (version, isa string, err error) {
	if err := loadOneDNN(); err != nil {
		return "", "", err
	}
	return oneDNNVersion(), isaName(oneDNNISA()), nil
}

// isaAVX512Core is dnnl_cpu_isa_avx512_core. oneDNN's ISAs are bit sets,
// each holding the bits of those it extends, so every later AVX-512 ISA
// (VNNI, BF16, AMX) has these bits too.
const isaAVX512Core = 0x27

// hasAVX512Core reports whether oneDNN's ISA isa is avx512_core or later:
// the machines the blocked and nhwc layouts were measured on.
func hasAVX512Core(isa int) bool { return isa&isaAVX512Core == isaAVX512Core }

// isaName spells a dnnl_cpu_isa_t as oneDNN's documentation does.
func isaName(isa int) string {
	switch isa {
	case 0x1:
		return "sse41"
	case 0x3:
		return "avx"
	case 0x7:
		return "avx2"
	case 0x407:
		return "avx2_vnni"
	case 0xf:
		return "avx512_mic"
	case 0x1f:
		return "avx512_mic_4ops"
	case 0x27:
		return "avx512_core"
	case 0x67:
		return "avx512_core_vnni"
	case 0xe7:
		return "avx512_core_bf16"
	case 0x3e7:
		return "avx512_core_amx"
	}
	return "isa 0x" + strconv.FormatInt(int64(isa), 16)
}

// NewWithDNN returns a Device whose convolutions take the named path:
// "onednn", "none" (im2col), or "" for New's choice; its BLAS is New's.
// It fails if oneDNN is asked for and cannot be loaded.
func NewWithDNN(name string) (*Device, error) { return Open("", name) }

// DNN reports d's convolution path: "onednn" or "none".
func (d *Device) DNN() string { return d.dnn.String() }

// convKey is one convolution shape, as oneDNN's primitives are made for it.
type convKey struct {
	g              kernels.ConvGeom
	out, groups, n int
	bias           bool
	threads        int
	xl, yl         kernels.Layout // of x and dx, of y and dy
	prec           kernels.Precision
	alg            ConvAlgorithm
}

// dnnState is a Device's oneDNN primitives, one set per shape (nil for a
// shape oneDNN refused), and the memory they share.
type dnnState struct {
	arena dnnArena
	convs map[convKey]*dnnConv
}

func (d *Device) convKey(g kernels.ConvGeom, out, groups, n int, bias bool, xl, yl kernels.Layout) convKey {
	return convKey{g: g, out: out, groups: groups, n: n, bias: bias, threads: runtime.GOMAXPROCS(0), xl: xl, yl: yl, prec: d.prec, alg: d.convAlg}
}

// Convolves reports whether d convolves this shape with oneDNN, making
// and caching its primitives the first time it is asked. A shape oneDNN
// refuses is reported once on standard error and left to im2col.
func (d *Device) Convolves(g kernels.ConvGeom, out, groups, n int, bias bool) bool {
	if d.dnn != dnnOneDNN || n < 1 || out < 1 || groups < 1 || g.C%groups != 0 || out%groups != 0 {
		return false
	}
	if g.C < 1 || g.H < 1 || g.W < 1 || g.KH < 1 || g.KW < 1 || g.StrideH < 1 || g.StrideW < 1 ||
		g.PadH < 0 || g.PadW < 0 || g.DilH < 1 || g.DilW < 1 || g.OutH() < 1 || g.OutW() < 1 {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	cv, err := d.dnnConv(d.convKey(g, out, groups, n, bias, kernels.NCHW, kernels.NCHW))
	if err != nil && err != errRefused {
		fmt.Fprintf(os.Stderr, "macdist: %v for the convolution %+v out=%d groups=%d n=%d; using im2col for it\n",
			err, g, out, groups, n)
	}
	return cv != nil
}

// dnnConv returns the primitives of k, made on first use, or why oneDNN
// refused them; d.mu must be held. The primitives are made for the
// threads of the moment (GOMAXPROCS), so a shape is made again if that
// changes (testing.AllocsPerRun sets it to 1).
func (d *Device) dnnConv(k convKey) (*dnnConv, error) {
	if d.dnnst.convs == nil {
		d.dnnst.arena = newDNNArena()
		d.dnnst.convs = map[convKey]*dnnConv{}
	}
	if cv, ok := d.dnnst.convs[k]; ok {
		if cv == nil {
			return nil, errRefused
		}
		return cv, nil
	}
	g := k.g
	q := [16]int64{int64(k.n), int64(g.C), int64(g.H), int64(g.W), int64(k.out), int64(k.groups),
		int64(g.KH), int64(g.KW), int64(g.StrideH), int64(g.StrideW), int64(g.PadH), int64(g.PadW),
		int64(g.DilH), int64(g.DilW), int64(g.OutH()), int64(g.OutW())}
	cv, err := newDNNConv(d.dnnst.arena, q, k.bias, k.threads, k.xl, k.yl, k.prec,
		convPassAlgorithms(k.alg, g.C/k.groups, k.out/k.groups))
	if err != nil && k.prec != kernels.FP32 {
		// As autocast does for an op it has no bf16 kernel for, the
		// shape runs in float32 rather than not on oneDNN at all.
		fmt.Fprintf(os.Stderr, "macdist: %v for the %v convolution %+v out=%d groups=%d n=%d; it runs in fp32\n",
			err, k.prec, g, k.out, k.groups, k.n)
		f := k
		f.prec = kernels.FP32
		cv, err = d.dnnConv(f)
	}
	d.dnnst.convs[k] = cv
	return cv, err
}

var errRefused = errors.New("oneDNN refused the shape before")

// mustDNNConv returns the primitives for a call of op; d.mu must be held.
// The primitives of other layouts than NCHW are made on their first call:
// a layout changes the reorders at the ports, not what oneDNN accepts.
// Any layout the Device knows is taken, whichever it keeps.
func (d *Device) mustDNNConv(op string, g kernels.ConvGeom, out, groups, n int, bias bool, xl, yl kernels.Layout) *dnnConv {
	d.checkLayout(op, xl, g.C)
	d.checkLayout(op, yl, out)
	cv, err := d.dnnConv(d.convKey(g, out, groups, n, bias, xl, yl))
	if err != nil {
		panic(fmt.Sprintf("cpu: %s of %+v out=%d groups=%d n=%d bias=%v, %v to %v: %v (did Convolves accept it?)",
			op, g, out, groups, n, bias, xl, yl, err))
	}
	return cv
}

// convLens checks the lengths of a convolution's tensors.
func convLens(op string, g kernels.ConvGeom, out, groups, n int, x, w, y, b []float32) {
	needLen(op, "x", len(x), n*g.C*g.H*g.W)
	needLen(op, "w", len(w), out*(g.C/groups)*g.KH*g.KW)
	needLen(op, "y", len(y), n*out*g.OutH()*g.OutW())
	if b != nil {
		needLen(op, "bias", len(b), out)
	}
}

// ConvForward computes y = conv(x, w) + bias with oneDNN.
func (d *Device) ConvForward(y, x, w, bias kernels.Buffer, g kernels.ConvGeom, out, groups, n int) {
	d.ConvForwardIn(kernels.NCHW, kernels.NCHW, y, x, w, bias, g, out, groups, n)
}

// ConvForwardIn is ConvForward with x laid out as xl and y as yl.
func (d *Device) ConvForwardIn(xl, yl kernels.Layout, y, x, w, bias kernels.Buffer, g kernels.ConvGeom, out, groups, n int) {
	ys, xs, ws := d.slice(y, "ConvForward", "y"), d.slice(x, "ConvForward", "x"), d.slice(w, "ConvForward", "w")
	bs := d.optSlice(bias, "ConvForward", "bias")
	convLens("ConvForward", g, out, groups, n, xs, ws, ys, bs)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mustDNNConv("ConvForward", g, out, groups, n, bias != nil, xl, yl).forward(xs, ws, bs, ys, runtime.GOMAXPROCS(0))
}

// ConvBackward computes dx and accumulates dw and db with oneDNN.
func (d *Device) ConvBackward(dx, dw, db, x, dy, w kernels.Buffer, g kernels.ConvGeom, out, groups, n int) {
	d.ConvBackwardIn(kernels.NCHW, kernels.NCHW, dx, dw, db, x, dy, w, g, out, groups, n)
}

// ConvBackwardIn is ConvBackward with x and dx laid out as xl, dy as yl.
func (d *Device) ConvBackwardIn(xl, yl kernels.Layout, dx, dw, db, x, dy, w kernels.Buffer, g kernels.ConvGeom, out, groups, n int) {
	dxs, dws, dbs := d.optSlice(dx, "ConvBackward", "dx"), d.slice(dw, "ConvBackward", "dw"), d.optSlice(db, "ConvBackward", "db")
	xs, dys, ws := d.slice(x, "ConvBackward", "x"), d.slice(dy, "ConvBackward", "dy"), d.slice(w, "ConvBackward", "w")
	convLens("ConvBackward", g, out, groups, n, xs, ws, dys, dbs)
	if dxs != nil {
		needLen("ConvBackward", "dx", len(dxs), n*g.C*g.H*g.W)
	}
	needLen("ConvBackward", "dw", len(dws), out*(g.C/groups)*g.KH*g.KW)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mustDNNConv("ConvBackward", g, out, groups, n, db != nil, xl, yl).backward(xs, dys, ws, dxs, dws, dbs, runtime.GOMAXPROCS(0))
}

var _ kernels.Convolver = (*Device)(nil)
