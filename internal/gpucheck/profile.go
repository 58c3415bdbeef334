package gpucheck

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/macdist/macdist/kernels"
)

// Profiler is a kernels.Device that passes every call to the Device it
// wraps and, while on, times each one: it waits for the device after every
// call, so each call's time is its launch plus its GPU work, and charges it
// to the method's name. Synchronising after every call takes away the
// overlap of launching and running, so the total exceeds a normal step;
// the shares are what it is for. Off, it only counts memory.
//
// Layers built on a Profiler use ForLayers() as their device; it hands out
// the wrapped device's buffers, so kernels/cuda's Pointer works on them.
type Profiler struct {
	kernels.Device
	on    bool
	stats map[string]*OpStat

	live, peak int64 // bytes of Alloc minus Free, and the most there was
	sizes      map[kernels.Buffer]int64
}

// OpStat is the time charged to one method.
type OpStat struct {
	Name  string
	Calls int
	Time  time.Duration
}

// NewProfiler wraps dev, off.
func NewProfiler(dev kernels.Device) *Profiler {
	return &Profiler{Device: dev, stats: map[string]*OpStat{}, sizes: map[kernels.Buffer]int64{}}
}

// Start clears the timings and turns timing on, after waiting for the
// device so that earlier work is not charged to the first call.
func (p *Profiler) Start() error {
	if err := p.Device.Sync(); err != nil {
		return err
	}
	clear(p.stats)
	p.on = true
	return nil
}

// Stop turns timing off.
func (p *Profiler) Stop() { p.on = false }

// Ops returns the timings, the longest first.
func (p *Profiler) Ops() []OpStat {
	out := make([]OpStat, 0, len(p.stats))
	for _, s := range p.stats {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time > out[j].Time })
	return out
}

// Table renders Ops as aligned text with each method's share.
func (p *Profiler) Table() string {
	ops := p.Ops()
	var total time.Duration
	for _, o := range ops {
		total += o.Time
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-20s %7s %10s %6s\n", "method", "calls", "ms", "share")
	for _, o := range ops {
		fmt.Fprintf(&b, "%-20s %7d %10.2f %5.1f%%\n", o.Name, o.Calls, o.Time.Seconds()*1000, 100*o.Time.Seconds()/total.Seconds())
	}
	fmt.Fprintf(&b, "%-20s %7s %10.2f\n", "total (synchronous)", "", total.Seconds()*1000)
	return b.String()
}

// Memory reports the bytes allocated through p and not freed, and the peak.
func (p *Profiler) Memory() (live, peak int64) { return p.live, p.peak }

// timed runs f and, while on, waits for the device and charges the time
// to name.
func (p *Profiler) timed(name string, f func()) {
	if !p.on {
		f()
		return
	}
	t0 := time.Now()
	f()
	p.Device.Sync()
	s := p.stats[name]
	if s == nil {
		s = &OpStat{Name: name}
		p.stats[name] = s
	}
	s.Calls++
	s.Time += time.Since(t0)
}

func (p *Profiler) Alloc(n int) kernels.Buffer {
	b := p.Device.Alloc(n)
	p.sizes[b] = 4 * int64(n)
	p.live += 4 * int64(n)
	p.peak = max(p.peak, p.live)
	return b
}

func (p *Profiler) Free(b kernels.Buffer) {
	p.live -= p.sizes[b]
	delete(p.sizes, b)
	p.Device.Free(b)
}

func (p *Profiler) Copy(dst, src kernels.Buffer) { p.timed("Copy", func() { p.Device.Copy(dst, src) }) }

func (p *Profiler) Copy2D(dst kernels.Buffer, dstOff, dstStride int, src kernels.Buffer, srcOff, srcStride int, rows, cols int) {
	p.timed("Copy2D", func() { p.Device.Copy2D(dst, dstOff, dstStride, src, srcOff, srcStride, rows, cols) })
}

func (p *Profiler) Fill(b kernels.Buffer, v float32) { p.timed("Fill", func() { p.Device.Fill(b, v) }) }

func (p *Profiler) Gemm(transA, transB bool, m, n, k int, alpha float32, a kernels.Buffer, lda int, b kernels.Buffer, ldb int, beta float32, c kernels.Buffer, ldc int) {
	p.timed("Gemm", func() { p.Device.Gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) })
}

func (p *Profiler) GemmStrided(transA, transB bool, m, n, k int, alpha float32,
	a kernels.Buffer, aOff, lda, strideA int, b kernels.Buffer, bOff, ldb, strideB int,
	beta float32, c kernels.Buffer, cOff, ldc, strideC int, batch int) {
	// Batched and single products behave very differently on a GPU.
	name := "GemmStrided"
	if batch == 1 {
		name = "GemmStrided(batch 1)"
	}
	p.timed(name, func() {
		p.Device.GemmStrided(transA, transB, m, n, k, alpha, a, aOff, lda, strideA, b, bOff, ldb, strideB, beta, c, cOff, ldc, strideC, batch)
	})
}

func (p *Profiler) Im2col(col, x kernels.Buffer, g kernels.ConvGeom, img0, nimg int) {
	p.timed("Im2col", func() { p.Device.Im2col(col, x, g, img0, nimg) })
}

func (p *Profiler) Col2im(dx, col kernels.Buffer, g kernels.ConvGeom, img0, nimg int) {
	p.timed("Col2im", func() { p.Device.Col2im(dx, col, g, img0, nimg) })
}

func (p *Profiler) Axpby(y kernels.Buffer, alpha float32, x kernels.Buffer, beta float32) {
	p.timed("Axpby", func() { p.Device.Axpby(y, alpha, x, beta) })
}

func (p *Profiler) Scale(x kernels.Buffer, alpha float32) {
	p.timed("Scale", func() { p.Device.Scale(x, alpha) })
}
func (p *Profiler) Add(dst, a, b kernels.Buffer) { p.timed("Add", func() { p.Device.Add(dst, a, b) }) }
func (p *Profiler) Mul(dst, a, b kernels.Buffer) { p.timed("Mul", func() { p.Device.Mul(dst, a, b) }) }

func (p *Profiler) AddBias(x, bias kernels.Buffer, outer, inner int) {
	p.timed("AddBias", func() { p.Device.AddBias(x, bias, outer, inner) })
}

func (p *Profiler) ReduceSum(dst, x kernels.Buffer, outer, mid, inner int, alpha, beta float32) {
	p.timed("ReduceSum", func() { p.Device.ReduceSum(dst, x, outer, mid, inner, alpha, beta) })
}

func (p *Profiler) ReduceSumMid(dst, x kernels.Buffer, outer, mid, inner int, alpha, beta float32) {
	p.timed("ReduceSumMid", func() { p.Device.ReduceSumMid(dst, x, outer, mid, inner, alpha, beta) })
}

func (p *Profiler) Expand(dst, src kernels.Buffer, outer, mid, inner int, alpha, beta float32) {
	p.timed("Expand", func() { p.Device.Expand(dst, src, outer, mid, inner, alpha, beta) })
}

func (p *Profiler) Dot(a, b kernels.Buffer) (v float64) {
	p.timed("Dot", func() { v = p.Device.Dot(a, b) })
	return v
}

func (p *Profiler) ReLU(y, x kernels.Buffer) { p.timed("ReLU", func() { p.Device.ReLU(y, x) }) }

func (p *Profiler) ReLUBackward(dx, dy, y kernels.Buffer) {
	p.timed("ReLUBackward", func() { p.Device.ReLUBackward(dx, dy, y) })
}

func (p *Profiler) GELU(y, x kernels.Buffer, tanh bool) {
	p.timed("GELU", func() { p.Device.GELU(y, x, tanh) })
}

func (p *Profiler) GELUBackward(dx, dy, x kernels.Buffer, tanh bool) {
	p.timed("GELUBackward", func() { p.Device.GELUBackward(dx, dy, x, tanh) })
}

func (p *Profiler) Softmax(y, x kernels.Buffer, rows, cols int) {
	p.timed("Softmax", func() { p.Device.Softmax(y, x, rows, cols) })
}

func (p *Profiler) SoftmaxBackward(dx, dy, y kernels.Buffer, rows, cols int) {
	p.timed("SoftmaxBackward", func() { p.Device.SoftmaxBackward(dx, dy, y, rows, cols) })
}

func (p *Profiler) LogSoftmax(y, x kernels.Buffer, rows, cols int) {
	p.timed("LogSoftmax", func() { p.Device.LogSoftmax(y, x, rows, cols) })
}

func (p *Profiler) CrossEntropy(dlogits, logits kernels.Buffer, labels []int32, rows, cols int, smoothing float32) (loss float64, correct int) {
	p.timed("CrossEntropy", func() {
		loss, correct = p.Device.CrossEntropy(dlogits, logits, labels, rows, cols, smoothing)
	})
	return loss, correct
}

func (p *Profiler) LayerNorm(y, mean, rstd, x, gamma, beta kernels.Buffer, rows, cols int, eps float32) {
	p.timed("LayerNorm", func() { p.Device.LayerNorm(y, mean, rstd, x, gamma, beta, rows, cols, eps) })
}

func (p *Profiler) LayerNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma kernels.Buffer, rows, cols int) {
	p.timed("LayerNormBackward", func() { p.Device.LayerNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, rows, cols) })
}

func (p *Profiler) BatchNormTrain(y, saveMean, saveRstd, runMean, runVar, x, gamma, beta kernels.Buffer, n, c, hw int, momentum, eps float32) {
	p.timed("BatchNormTrain", func() {
		p.Device.BatchNormTrain(y, saveMean, saveRstd, runMean, runVar, x, gamma, beta, n, c, hw, momentum, eps)
	})
}

func (p *Profiler) BatchNormEval(y, x, runMean, runVar, gamma, beta kernels.Buffer, n, c, hw int, eps float32) {
	p.timed("BatchNormEval", func() { p.Device.BatchNormEval(y, x, runMean, runVar, gamma, beta, n, c, hw, eps) })
}

func (p *Profiler) BatchNormBackward(dx, dgamma, dbeta, dy, x, saveMean, saveRstd, gamma kernels.Buffer, n, c, hw int) {
	p.timed("BatchNormBackward", func() {
		p.Device.BatchNormBackward(dx, dgamma, dbeta, dy, x, saveMean, saveRstd, gamma, n, c, hw)
	})
}

func (p *Profiler) MaxPool2d(y, x kernels.Buffer, g kernels.PoolGeom, n int) {
	p.timed("MaxPool2d", func() { p.Device.MaxPool2d(y, x, g, n) })
}

func (p *Profiler) MaxPool2dBackward(dx, dy, x kernels.Buffer, g kernels.PoolGeom, n int) {
	p.timed("MaxPool2dBackward", func() { p.Device.MaxPool2dBackward(dx, dy, x, g, n) })
}

func (p *Profiler) AvgPool2d(y, x kernels.Buffer, g kernels.PoolGeom, n int) {
	p.timed("AvgPool2d", func() { p.Device.AvgPool2d(y, x, g, n) })
}

func (p *Profiler) AvgPool2dBackward(dx, dy kernels.Buffer, g kernels.PoolGeom, n int) {
	p.timed("AvgPool2dBackward", func() { p.Device.AvgPool2dBackward(dx, dy, g, n) })
}

func (p *Profiler) DropoutMask(mask kernels.Buffer, prob float32, seed uint64) {
	p.timed("DropoutMask", func() { p.Device.DropoutMask(mask, prob, seed) })
}

func (p *Profiler) AdamW(pp, g, m, v kernels.Buffer, lr, beta1, beta2, eps, weightDecay float32, step int) {
	p.timed("AdamW", func() { p.Device.AdamW(pp, g, m, v, lr, beta1, beta2, eps, weightDecay, step) })
}

var _ kernels.Device = (*Profiler)(nil)

// ForLayers returns the device to build layers on: p with the optional
// methods of the wrapped device that layers look for (kernels.Permuter,
// kernels.Convolver, kernels.LaunchBound), so that the layers take the
// same path as on the bare device. Without them a GPU's convolutions would
// be unfolded and multiplied instead of going to cuDNN, and the layers
// would split their work as for a CPU: a profile of another program.
func (p *Profiler) ForLayers() kernels.Device {
	l := layerProfiler{Profiler: p}
	l.cv, _ = p.Device.(kernels.Convolver)
	if pm, ok := p.Device.(kernels.Permuter); ok {
		return permProfiler{l, pm}
	}
	return l
}

// layerProfiler is a Profiler that is a Convolver and LaunchBound as the
// wrapped device is: Convolves says no where the device has no
// Convolver, which sends the layers to im2col as on the device itself.
type layerProfiler struct {
	*Profiler
	cv kernels.Convolver
}

func (l layerProfiler) LaunchBound() bool { return kernels.IsLaunchBound(l.Profiler.Device) }

func (l layerProfiler) Convolves(g kernels.ConvGeom, out, groups, n int, bias bool) bool {
	return l.cv != nil && l.cv.Convolves(g, out, groups, n, bias)
}

func (l layerProfiler) ConvForward(y, x, w, bias kernels.Buffer, g kernels.ConvGeom, out, groups, n int) {
	l.timed("ConvForward", func() { l.cv.ConvForward(y, x, w, bias, g, out, groups, n) })
}

func (l layerProfiler) ConvBackward(dx, dw, db, x, dy, w kernels.Buffer, g kernels.ConvGeom, out, groups, n int) {
	l.timed("ConvBackward", func() { l.cv.ConvBackward(dx, dw, db, x, dy, w, g, out, groups, n) })
}

type permProfiler struct {
	layerProfiler
	pm kernels.Permuter
}

func (p permProfiler) CopyStrided(dst kernels.Buffer, dstOff int, dstStride [4]int, src kernels.Buffer, srcOff int, srcStride [4]int, shape [4]int) {
	p.timed("CopyStrided", func() { p.pm.CopyStrided(dst, dstOff, dstStride, src, srcOff, srcStride, shape) })
}

var (
	_ kernels.Convolver   = layerProfiler{}
	_ kernels.LaunchBound = layerProfiler{}
	_ kernels.Permuter    = permProfiler{}
)
