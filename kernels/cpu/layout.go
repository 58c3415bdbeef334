package cpu

import (
	"fmt"
	"math"
	"os"

	"github.com/macdist/macdist/kernels"
)

// chooseLayout is the activation layout of a Device on the convolution
// path dnn, given MACDIST_LAYOUT ("nchw", "blocked16" or "nhwc"; empty
// for the default). oneDNN computes its convolutions in nChw16c on CPUs
// with AVX-512 (and in nChw8c on AVX2 ones, where Blocked16 would be
// reordered like NCHW, so the default there is NCHW).
func chooseLayout(dnn dnnImpl, env string, isa int) (kernels.Layout, error) {
	switch env {
	case "nchw":
		return kernels.NCHW, nil
	case "blocked16", "nhwc":
		if dnn != dnnOneDNN {
			return kernels.NCHW, fmt.Errorf("cpu: MACDIST_LAYOUT=%s needs oneDNN, and convolutions take im2col", env)
		}
		if env == "nhwc" {
			return kernels.NHWC, nil
		}
		return kernels.Blocked16, nil
	case "":
		if dnn == dnnOneDNN && hasAVX512Core(isa) {
			return kernels.Blocked16, nil
		}
		return kernels.NCHW, nil
	}
	return kernels.NCHW, fmt.Errorf("cpu: MACDIST_LAYOUT=%q, want nchw, blocked16 or nhwc", env)
}

func defaultLayout(dnn dnnImpl) (kernels.Layout, error) {
	isa := 0
	if dnn == dnnOneDNN {
		isa = oneDNNISA()
	}
	return chooseLayout(dnn, os.Getenv("MACDIST_LAYOUT"), isa)
}

// SetActivationLayout makes l the layout d keeps activations in (see
// kernels.Layouter): NCHW, or Blocked16 or NHWC on the oneDNN path. It
// is meant to be called before d is used: by the trainer, which picks a
// layout per model, and by tests and benchmarks that compare them.
func (d *Device) SetActivationLayout(l kernels.Layout) error {
	if l != kernels.NCHW && (l != kernels.Blocked16 && l != kernels.NHWC || d.dnn != dnnOneDNN) {
		return fmt.Errorf("cpu: layout %v on the %v convolution path", l, d.dnn)
	}
	d.layout = l
	return nil
}

// Layout is the layout d keeps activations in where it can (see
// ActivationLayout): NCHW, Blocked16 or NHWC.
func (d *Device) Layout() kernels.Layout { return d.layout }

// ActivationLayout is Blocked16 for a multiple of 16 channels where d
// keeps that layout, NHWC for any number where d keeps NHWC (oneDNN
// convolves it natively whatever the channels), NCHW otherwise.
func (d *Device) ActivationLayout(c int) kernels.Layout {
	switch {
	case c <= 0:
	case d.layout == kernels.Blocked16 && c%16 == 0, d.layout == kernels.NHWC:
		return d.layout
	}
	return kernels.NCHW
}

// checkLayout panics unless d handles l for c channels.
func (d *Device) checkLayout(op string, l kernels.Layout, c int) {
	switch {
	case l == kernels.NCHW, l == kernels.NHWC:
	case l == kernels.Blocked16 && c%16 == 0:
	default:
		panic(fmt.Sprintf("cpu: %s: layout %v for %d channels", op, l, c))
	}
}

// Relayout copies the n×c×hw activation src, laid out as from, into dst,
// laid out as to: one CopyStrided.
func (d *Device) Relayout(dst kernels.Buffer, to kernels.Layout, src kernels.Buffer, from kernels.Layout, n, c, hw int) {
	d.checkLayout("Relayout", to, c)
	d.checkLayout("Relayout", from, c)
	if from == to { // a plain copy, without making views
		d.CopyStrided(dst, 0, [4]int{0, 0, 0, 1}, src, 0, [4]int{0, 0, 0, 1}, [4]int{1, 1, 1, n * c * hw})
		return
	}
	// Both as [n][c/b][hw][b], b channels a block: 16 where one side is
	// Blocked16, all c between NCHW and NHWC.
	b := c
	if from == kernels.Blocked16 || to == kernels.Blocked16 {
		b = 16
	}
	strides := func(l kernels.Layout) [4]int {
		switch l {
		case kernels.Blocked16:
			return [4]int{c * hw, 16 * hw, 16, 1}
		case kernels.NHWC:
			return [4]int{c * hw, b, c, 1}
		}
		return [4]int{c * hw, b * hw, 1, hw}
	}
	d.CopyStrided(dst, 0, strides(to), src, 0, strides(from), [4]int{n, c / b, hw, b})
}

// chanBlocks is how the per-channel kernels see an activation laid out
// as Blocked16 or NHWC: blocks of up to 16 channels side by side, the
// next pixel's ps elements on, the next block's bstride on, the next
// image's c·hw on. Only NHWC's last block may be narrower than 16.
type chanBlocks struct{ cb, ps, bstride int }

func blocksOf(l kernels.Layout, c, hw int) chanBlocks {
	if l == kernels.NHWC {
		return chanBlocks{cb: (c + 15) / 16, ps: c, bstride: 16}
	}
	return chanBlocks{cb: c / 16, ps: 16, bstride: 16 * hw}
}

// The Blocked16 per-channel kernels work on units of one block of 16
// channels and a chunk of images, so that a layer of 16 channels still
// spreads over the cores. Reductions leave one partial sum per chunk
// and channel, added up afterwards in chunk order: how a batch is cut
// depends on its shape alone, never on the threads, so results repeat to
// the bit. (NHWC's units are whole chunks: see runRows.)

type bkOp uint8

const (
	bkSums     bkOp = iota // s = Σ x, q = Σ x²
	bkNorm                 // y = (x − mu)·a + b (+ z)
	bkGradSums             // s = Σ dy, q = Σ dy·(x − mu)·rs
	bkDx                   // y = scale·(dy − k1 − (x − mu)·rs·k2)
)

// bkUnitsWanted is about how many units a layer is cut into.
const bkUnitsWanted = 16

type bkTask struct {
	op                bkOp
	n, c, hw, chunk   int
	y, x, dy          []float32
	z                 []float32 // bkNorm: added to the norm before the ReLU, unless nil
	s, q              []float64 // [chunks][c] partial sums
	mu, a, b          []float32 // per channel; rs is a in bkGradSums and bkDx
	k1, k2, scale     []float32
	relu              bool      // bkNorm: max(y, 0); bkGradSums (y), bkDx (out): dy masked where the ReLU's output ≤ 0
	out               []float32 // bkDx: the ReLU's output
	chunks, cb, plane int
	rows              bool // NHWC: see runRows
}

// cut cuts n images of c channels, laid out as l, into chunks of chunk
// images (n ≥ 1). In NHWC a unit is a chunk, all its channels.
func (t *bkTask) cut(l kernels.Layout, n, c, hw int) {
	t.n, t.c, t.hw, t.cb, t.plane = n, c, hw, c/16, hw*16
	t.rows = l == kernels.NHWC
	if t.rows {
		t.cb, t.plane = 1, hw*c
	}
	want := max(1, (bkUnitsWanted+t.cb-1)/t.cb)
	t.chunk = (n + min(n, want) - 1) / min(n, want)
	t.chunks = (n + t.chunk - 1) / t.chunk
}

func (t *bkTask) run(lo, hi int) {
	if t.rows {
		t.runRows(lo, hi)
		return
	}
	istride := t.cb * t.plane
	for u := lo; u < hi; u++ {
		k, blk := u/t.cb, u%t.cb
		i0 := k * t.chunk
		nimg := min(t.chunk, t.n-i0)
		off := (i0*t.cb + blk) * t.plane
		ch := blk * 16
		end := off + (nimg-1)*istride + t.plane
		switch t.op {
		case bkSums:
			p := k*t.c + ch
			bkSumsRun(t.s[p:p+16], t.q[p:p+16], t.x[off:end], nimg, t.hw, istride)
		case bkNorm:
			var z []float32
			if t.z != nil {
				z = t.z[off:end]
			}
			bkNormRun(t.y[off:end], t.x[off:end], z, nimg, t.hw, istride, t.mu[ch:ch+16], t.a[ch:ch+16], t.b[ch:ch+16], t.relu)
		case bkGradSums:
			p := k*t.c + ch
			var y []float32
			if t.relu {
				y = t.y[off:end]
			}
			bkGradSumsRun(t.s[p:p+16], t.q[p:p+16], t.x[off:end], t.dy[off:end], y, nimg, t.hw, istride, t.mu[ch:ch+16], t.a[ch:ch+16])
		case bkDx:
			var y []float32
			if t.relu {
				y = t.out[off:end]
			}
			bkDxRun(t.y[off:end], t.dy[off:end], t.x[off:end], y, nimg, t.hw, istride,
				t.mu[ch:ch+16], t.a[ch:ch+16], t.k1[ch:ch+16], t.k2[ch:ch+16], t.scale[ch:ch+16])
		}
	}
}

func bkSumsRun(s, q []float64, x []float32, nimg, hw, istride int) {
	if haveSIMD {
		simdBkSums(s, q, x, nimg, hw, istride)
		return
	}
	bkSumsGo(s, q, x, nimg, hw, istride)
}

// bkSumsGo adds each lane's values and squares in float64, image after
// image and pixel after pixel, as the SIMD version does.
func bkSumsGo(s, q []float64, x []float32, nimg, hw, istride int) {
	var a, b [16]float64
	for i := 0; i < nimg; i++ {
		p := x[i*istride:][:hw*16]
		for r := 0; r < len(p); r += 16 {
			for j, v := range p[r : r+16] {
				f := float64(v)
				a[j] += f
				b[j] += f * f
			}
		}
	}
	copy(s, a[:])
	copy(q, b[:])
}

func bkNormRun(y, x, z []float32, nimg, hw, istride int, mu, a, b []float32, relu bool) {
	if haveSIMD {
		simdBkNorm(y, x, z, nimg, hw, istride, mu, a, b, relu)
		return
	}
	bkNormGo(y, x, z, nimg, hw, istride, mu, a, b, relu)
}

// bkNormGo writes y = (x − mu)·a + b, plus s when s is given, then ReLU's
// values with relu.
func bkNormGo(y, x, s []float32, nimg, hw, istride int, mu, a, b []float32, relu bool) {
	mu, a, b = mu[:16], a[:16], b[:16]
	for i := 0; i < nimg; i++ {
		p, o := x[i*istride:][:hw*16], y[i*istride:][:hw*16]
		var q []float32
		if s != nil {
			q = s[i*istride:][:hw*16]
		}
		for r := 0; r < len(p); r += 16 {
			for j, v := range p[r : r+16] {
				z := (v-mu[j])*a[j] + b[j]
				if q != nil {
					z = float32(z) + q[r+j] // the norm rounded to float32 first, as Add sees it
				}
				if relu && !(z > 0) && z == z { // as ReLU: a NaN stays
					z = 0
				}
				o[r+j] = z
			}
		}
	}
}

func bkGradSumsRun(s, q []float64, x, dy, y []float32, nimg, hw, istride int, mu, rs []float32) {
	if haveSIMD {
		simdBkGradSums(s, q, x, dy, y, nimg, hw, istride, mu, rs)
		return
	}
	bkGradSumsGo(s, q, x, dy, y, nimg, hw, istride, mu, rs)
}

// bkGradSumsGo adds dy and dy·x̂ (x̂ in float32, as bnGradSums has it);
// with y, dy counts only where y > 0.
func bkGradSumsGo(s, q []float64, x, dy, y []float32, nimg, hw, istride int, mu, rs []float32) {
	var a, b [16]float64
	mu, rs = mu[:16], rs[:16]
	for i := 0; i < nimg; i++ {
		p, g := x[i*istride:][:hw*16], dy[i*istride:][:hw*16]
		var o []float32
		if y != nil {
			o = y[i*istride:][:hw*16]
		}
		for r := 0; r < len(p); r += 16 {
			for j, v := range p[r : r+16] {
				d := g[r+j]
				if o != nil && !(o[r+j] > 0) {
					d = 0
				}
				f := float64(d)
				a[j] += f
				b[j] += f * float64((v-mu[j])*rs[j])
			}
		}
	}
	copy(s, a[:])
	copy(q, b[:])
}

func bkDxRun(dx, dy, x, y []float32, nimg, hw, istride int, mu, rs, k1, k2, scale []float32) {
	if haveSIMD {
		simdBkDx(dx, dy, x, y, nimg, hw, istride, mu, rs, k1, k2, scale)
		return
	}
	bkDxGo(dx, dy, x, y, nimg, hw, istride, mu, rs, k1, k2, scale)
}

// bkDxGo writes dx; with y (the output of a ReLU after the norm), dy
// counts only where y > 0.
func bkDxGo(dx, dy, x, y []float32, nimg, hw, istride int, mu, rs, k1, k2, scale []float32) {
	mu, rs, k1, k2, scale = mu[:16], rs[:16], k1[:16], k2[:16], scale[:16]
	for i := 0; i < nimg; i++ {
		p, g, o := x[i*istride:][:hw*16], dy[i*istride:][:hw*16], dx[i*istride:][:hw*16]
		var m []float32
		if y != nil {
			m = y[i*istride:][:hw*16]
		}
		for r := 0; r < len(p); r += 16 {
			for j, v := range p[r : r+16] {
				d := g[r+j]
				if m != nil && !(m[r+j] > 0) {
					d = 0
				}
				o[r+j] = scale[j] * (d - k1[j] - (v-mu[j])*rs[j]*k2[j])
			}
		}
	}
}

// bkScratch returns d's scratch for the Blocked16 kernels: two float64
// partials of chunks·c and five float32 vectors of c, grown as needed.
func (d *Device) bkScratch(chunks, c int) (s, q []float64, v [5][]float32) {
	if need := 2*chunks*c + 5*c; len(d.bkF64) < need {
		d.bkF64 = make([]float64, need)
	}
	if len(d.bkF32) < 5*c {
		d.bkF32 = make([]float32, 5*c)
	}
	s, q = d.bkF64[:chunks*c], d.bkF64[chunks*c:2*chunks*c]
	for i := range v {
		v[i] = d.bkF32[i*c : (i+1)*c]
	}
	return s, q, v
}

// startBk makes task, cut for an n × c × hw tensor laid out as l, d's
// Blocked16 or NHWC task, with its partial sums in d's scratch, and
// returns it and the scratch's per-channel vectors; d.mu must be held.
func (d *Device) startBk(task bkTask, l kernels.Layout, n, c, hw int) (*bkTask, [5][]float32) {
	t := &d.bk
	*t = task
	t.cut(l, n, c, hw)
	var v [5][]float32
	t.s, t.q, v = d.bkScratch(t.chunks, c)
	return t, v
}

// runBk runs the units of d.bk; d.mu must be held.
func (d *Device) runBk() {
	t := &d.bk
	d.parallel(t, t.chunks*t.cb, max(1, grainCheap/max(1, t.chunk*t.plane)))
}

// bkTotals adds up channel ch's partial sums, chunk after chunk.
func bkTotals(s, q []float64, chunks, c, ch int) (float64, float64) {
	var a, b float64
	for k := 0; k < chunks; k++ {
		a += s[k*c+ch]
		b += q[k*c+ch]
	}
	return a, b
}

// BatchNormTrainIn is BatchNormTrain with x and y laid out as l. The
// Blocked16 and NHWC versions take the variance as E[x²] − mean², both
// sums in float64, in one pass over x.
func (d *Device) BatchNormTrainIn(l kernels.Layout, y, saveMean, saveRstd, runMean, runVar, x, gamma, beta kernels.Buffer, n, c, hw int, momentum, eps float32) {
	if l == kernels.NCHW {
		d.BatchNormTrain(y, saveMean, saveRstd, runMean, runVar, x, gamma, beta, n, c, hw, momentum, eps)
		return
	}
	d.bnTrainBlocked(l, y, saveMean, saveRstd, runMean, runVar, x, nil, gamma, beta, n, c, hw, momentum, eps, false)
}

// bnTrainBlocked is BatchNormTrainIn for Blocked16 and NHWC; z, when not
// nil, is added to the norm before the ReLU of relu.
func (d *Device) bnTrainBlocked(l kernels.Layout, y, saveMean, saveRstd, runMean, runVar, x, z, gamma, beta kernels.Buffer, n, c, hw int, momentum, eps float32, relu bool) {
	const op = "BatchNormTrainIn"
	d.checkLayout(op, l, c)
	ys, xs := d.slice(y, op, "y"), d.slice(x, op, "x")
	var zs []float32
	if z != nil {
		zs = d.slice(z, op, "z")
		needLen(op, "z", len(zs), n*c*hw)
	}
	sm, sr := d.slice(saveMean, op, "saveMean"), d.slice(saveRstd, op, "saveRstd")
	rm, rv := d.slice(runMean, op, "runMean"), d.slice(runVar, op, "runVar")
	gs, bs := d.optSlice(gamma, op, "gamma"), d.optSlice(beta, op, "beta")
	checkBN(op, n, c, hw)
	if c > 0 && n*hw < 2 {
		panic(fmt.Sprintf("cpu: %s: needs more than one value per channel, got n=%d hw=%d", op, n, hw))
	}
	needLens(op, sized{"y", ys, n * c * hw}, sized{"x", xs, n * c * hw}, sized{"saveMean", sm, c}, sized{"saveRstd", sr, c},
		sized{"runMean", rm, c}, sized{"runVar", rv, c},
		sized{"gamma", gs, c}, sized{"beta", bs, c})
	if c == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	t, v := d.startBk(bkTask{op: bkSums, x: xs}, l, n, c, hw)
	d.runBk()
	m := float64(n * hw)
	mo := float64(momentum)
	mu, a, b := v[0], v[1], v[2]
	for ch := 0; ch < c; ch++ {
		sum, sq := bkTotals(t.s, t.q, t.chunks, c, ch)
		mean := sum / m
		vr := max(sq/m-mean*mean, 0)
		rs := 1 / math.Sqrt(vr+float64(eps))
		sm[ch], sr[ch] = float32(mean), float32(rs)
		rm[ch] = float32((1-mo)*float64(rm[ch]) + mo*mean)
		rv[ch] = float32((1-mo)*float64(rv[ch]) + mo*vr*m/(m-1))
		g, bb := float32(1), float32(0)
		if gs != nil {
			g = gs[ch]
		}
		if bs != nil {
			bb = bs[ch]
		}
		mu[ch], a[ch], b[ch] = float32(mean), float32(rs)*g, bb
	}
	t.op, t.y, t.z, t.mu, t.a, t.b, t.relu = bkNorm, ys, zs, mu, a, b, relu
	d.runBk()
	*t = bkTask{}
}

// BatchNormEvalIn is BatchNormEval with x and y laid out as l.
func (d *Device) BatchNormEvalIn(l kernels.Layout, y, x, runMean, runVar, gamma, beta kernels.Buffer, n, c, hw int, eps float32) {
	if l == kernels.NCHW {
		d.BatchNormEval(y, x, runMean, runVar, gamma, beta, n, c, hw, eps)
		return
	}
	const op = "BatchNormEvalIn"
	d.checkLayout(op, l, c)
	ys, xs := d.slice(y, op, "y"), d.slice(x, op, "x")
	rm, rv := d.slice(runMean, op, "runMean"), d.slice(runVar, op, "runVar")
	gs, bs := d.optSlice(gamma, op, "gamma"), d.optSlice(beta, op, "beta")
	checkBN(op, n, c, hw)
	needLens(op, sized{"y", ys, n * c * hw}, sized{"x", xs, n * c * hw}, sized{"runMean", rm, c}, sized{"runVar", rv, c}, sized{"gamma", gs, c}, sized{"beta", bs, c})
	if c == 0 || n*hw == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	t, v := d.startBk(bkTask{op: bkNorm, x: xs, y: ys}, l, n, c, hw)
	mu, a, b := v[0], v[1], v[2]
	for ch := 0; ch < c; ch++ {
		g, bb := float32(1), float32(0)
		if gs != nil {
			g = gs[ch]
		}
		if bs != nil {
			bb = bs[ch]
		}
		rs := 1 / math.Sqrt(float64(rv[ch])+float64(eps))
		mu[ch], a[ch], b[ch] = rm[ch], float32(rs)*g, bb
	}
	t.mu, t.a, t.b = mu, a, b
	d.runBk()
	*t = bkTask{}
}

// BatchNormBackwardIn is BatchNormBackward with dx, dy and x laid out as l.
func (d *Device) BatchNormBackwardIn(l kernels.Layout, dx, dgamma, dbeta, dy, x, saveMean, saveRstd, gamma kernels.Buffer, n, c, hw int) {
	if l == kernels.NCHW {
		d.BatchNormBackward(dx, dgamma, dbeta, dy, x, saveMean, saveRstd, gamma, n, c, hw)
		return
	}
	d.bnBackwardBlocked(l, dx, dgamma, dbeta, dy, x, nil, saveMean, saveRstd, gamma, n, c, hw)
}

// bnBackwardBlocked is BatchNormBackwardIn for Blocked16 and NHWC; with y
// (the output of a ReLU fused after the norm) dy counts only where y > 0.
func (d *Device) bnBackwardBlocked(l kernels.Layout, dx, dgamma, dbeta, dy, x, y, saveMean, saveRstd, gamma kernels.Buffer, n, c, hw int) {
	const op = "BatchNormBackwardIn"
	d.checkLayout(op, l, c)
	dxs, dys, xs := d.slice(dx, op, "dx"), d.slice(dy, op, "dy"), d.slice(x, op, "x")
	ys := d.optSlice(y, op, "y")
	sm, sr := d.slice(saveMean, op, "saveMean"), d.slice(saveRstd, op, "saveRstd")
	dgs, dbs, gs := d.optSlice(dgamma, op, "dgamma"), d.optSlice(dbeta, op, "dbeta"), d.optSlice(gamma, op, "gamma")
	checkBN(op, n, c, hw)
	needLens(op, sized{"dx", dxs, n * c * hw}, sized{"dy", dys, n * c * hw}, sized{"x", xs, n * c * hw}, sized{"y", ys, n * c * hw},
		sized{"saveMean", sm, c}, sized{"saveRstd", sr, c}, sized{"dgamma", dgs, c}, sized{"dbeta", dbs, c}, sized{"gamma", gs, c})
	if c == 0 || n*hw == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	t, v := d.startBk(bkTask{op: bkGradSums, x: xs, dy: dys, y: ys, mu: sm, a: sr, relu: ys != nil}, l, n, c, hw)
	d.runBk()
	m := float64(n * hw)
	k1, k2, scale := v[0], v[1], v[2]
	for ch := 0; ch < c; ch++ {
		sdy, sdyx := bkTotals(t.s, t.q, t.chunks, c, ch)
		if dgs != nil {
			dgs[ch] += float32(sdyx)
		}
		if dbs != nil {
			dbs[ch] += float32(sdy)
		}
		g := float32(1)
		if gs != nil {
			g = gs[ch]
		}
		k1[ch], k2[ch], scale[ch] = float32(sdy/m), float32(sdyx/m), g*sr[ch]
	}
	t.op, t.y, t.out, t.k1, t.k2, t.scale = bkDx, dxs, ys, k1, k2, scale
	d.runBk()
	*t = bkTask{}
}

// PlaneSumIn writes y[i, ch] = alpha·Σ_s x[i, ch, s] for x laid out as l.
func (d *Device) PlaneSumIn(l kernels.Layout, y, x kernels.Buffer, n, c, hw int, alpha float32) {
	if l == kernels.NCHW {
		d.ReduceSum(y, x, n*c, hw, 1, alpha, 0)
		return
	}
	const op = "PlaneSumIn"
	d.checkLayout(op, l, c)
	ys, xs := d.slice(y, op, "y"), d.slice(x, op, "x")
	needLen(op, "y", len(ys), n*c)
	needLen(op, "x", len(xs), n*c*hw)
	b := blocksOf(l, c, hw)
	for i := 0; i < n; i++ {
		for blk := 0; blk < b.cb; blk++ {
			w := min(16, c-blk*16)
			var acc [16]float64
			p := xs[i*c*hw+blk*b.bstride:]
			for r := 0; r < hw; r++ {
				for j, v := range p[r*b.ps:][:w] {
					acc[j] += float64(v)
				}
			}
			for j, v := range acc[:w] {
				ys[i*c+blk*16+j] = alpha * float32(v)
			}
		}
	}
}

// PlaneSpreadIn writes dx[i, ch, s] = alpha·dy[i, ch] for dx laid out as l.
func (d *Device) PlaneSpreadIn(l kernels.Layout, dx, dy kernels.Buffer, n, c, hw int, alpha float32) {
	if l == kernels.NCHW {
		d.Expand(dx, dy, n*c, hw, 1, alpha, 0)
		return
	}
	const op = "PlaneSpreadIn"
	d.checkLayout(op, l, c)
	dxs, dys := d.slice(dx, op, "dx"), d.slice(dy, op, "dy")
	needLen(op, "dx", len(dxs), n*c*hw)
	needLen(op, "dy", len(dys), n*c)
	b := blocksOf(l, c, hw)
	for i := 0; i < n; i++ {
		for blk := 0; blk < b.cb; blk++ {
			w := min(16, c-blk*16)
			var g [16]float32
			for j := range g[:w] {
				g[j] = alpha * dys[i*c+blk*16+j]
			}
			p := dxs[i*c*hw+blk*b.bstride:]
			for r := 0; r < hw; r++ {
				copy(p[r*b.ps:][:w], g[:w])
			}
		}
	}
}

var _ kernels.Layouter = (*Device)(nil)

// FusesReLU is true for Blocked16 and NHWC, whose batch-norm loops take
// a ReLU flag; NCHW's keep to the separate ReLU.
func (d *Device) FusesReLU(l kernels.Layout) bool { return l == kernels.Blocked16 || l == kernels.NHWC }

// BatchNormReLUTrainIn is BatchNormTrainIn and then ReLU, in one pass.
func (d *Device) BatchNormReLUTrainIn(l kernels.Layout, y, saveMean, saveRstd, runMean, runVar, x, gamma, beta kernels.Buffer, n, c, hw int, momentum, eps float32) {
	if !d.FusesReLU(l) {
		panic(fmt.Sprintf("cpu: BatchNormReLUTrainIn: layout %v (FusesReLU says no)", l))
	}
	d.bnTrainBlocked(l, y, saveMean, saveRstd, runMean, runVar, x, nil, gamma, beta, n, c, hw, momentum, eps, true)
}

// BatchNormAddReLUTrainIn is BatchNormTrainIn, then y = max(y + z, 0), in
// one pass: a residual block's last norm, the sum with its shortcut and
// the ReLU after it, with neither the norm's output nor the sum written
// out.
func (d *Device) BatchNormAddReLUTrainIn(l kernels.Layout, y, saveMean, saveRstd, runMean, runVar, x, z, gamma, beta kernels.Buffer, n, c, hw int, momentum, eps float32) {
	if !d.FusesReLU(l) {
		panic(fmt.Sprintf("cpu: BatchNormAddReLUTrainIn: layout %v (FusesReLU says no)", l))
	}
	d.slice(z, "BatchNormAddReLUTrainIn", "z") // z is required here
	d.bnTrainBlocked(l, y, saveMean, saveRstd, runMean, runVar, x, z, gamma, beta, n, c, hw, momentum, eps, true)
}

// BatchNormReLUBackwardIn is ReLUBackward and then BatchNormBackwardIn,
// the mask read in both of the latter's passes instead of written out.
func (d *Device) BatchNormReLUBackwardIn(l kernels.Layout, dx, dgamma, dbeta, dy, y, x, saveMean, saveRstd, gamma kernels.Buffer, n, c, hw int) {
	if !d.FusesReLU(l) {
		panic(fmt.Sprintf("cpu: BatchNormReLUBackwardIn: layout %v (FusesReLU says no)", l))
	}
	d.slice(y, "BatchNormReLUBackwardIn", "y") // y is required here
	d.bnBackwardBlocked(l, dx, dgamma, dbeta, dy, x, y, saveMean, saveRstd, gamma, n, c, hw)
}

var _ kernels.ReLUFuser = (*Device)(nil)

// bkPoolTask max-pools Blocked16 or NHWC activations, a unit being one
// image's block of 16 channels, so that backward's accumulations do not
// race.
type bkPoolTask struct {
	g        kernels.PoolGeom
	y, x, dx []float32 // dy travels in y for backward
	in, out  chanBlocks
}

func (t *bkPoolTask) run(lo, hi int) {
	g := t.g
	plane, oplane := g.C*g.H*g.W, g.C*g.OutH()*g.OutW()
	for u := lo; u < hi; u++ {
		i, blk := u/t.in.cb, u%t.in.cb
		w := min(16, g.C-blk*16)
		xo, yo := i*plane+blk*t.in.bstride, i*oplane+blk*t.out.bstride
		var dx []float32
		if t.dx != nil {
			dx = t.dx[xo:]
		}
		bkMaxPool(t.y[yo:], t.x[xo:], dx, g, t.in.ps, t.out.ps, w)
	}
}

// bkMaxPool is maxPoolPlane for w ≤ 16 channels side by side, the next
// pixel's ps elements on in x and ops in y: the same window maxima, ties
// to the first in row-major order, a NaN winning; a window inside the
// image starts at its first element (a window of −Inf keeps it, as in
// maxPoolInside), one that reaches into the padding at −Inf with no
// element (as in maxPoolPlane). With dx it adds y (holding dy) into dx
// at each maximum instead.
func bkMaxPool(y, x, dx []float32, g kernels.PoolGeom, ps, ops, w int) {
	ow := g.OutW()
	var best [16]float32
	var at [16]int
	for i := 0; i < g.OutH(); i++ {
		for j := 0; j < ow; j++ {
			hs, he, ws, we, _ := window(g, i, j)
			inside := g.PadH == 0 && g.PadW == 0
			for k := range best[:w] {
				if inside {
					best[k], at[k] = x[(hs*g.W+ws)*ps+k], (hs*g.W+ws)*ps+k
				} else {
					best[k], at[k] = float32(math.Inf(-1)), -1
				}
			}
			for h := hs; h < he; h++ {
				for c := ws; c < we; c++ {
					p := (h*g.W + c) * ps
					for k, v := range x[p : p+w] {
						if b := best[k]; v > b || (v != v && b == b) {
							best[k], at[k] = v, p+k
						}
					}
				}
			}
			o := (i*ow + j) * ops
			for k := range best[:w] {
				if dx == nil {
					y[o+k] = best[k]
				} else if at[k] >= 0 {
					dx[at[k]] += y[o+k]
				}
			}
		}
	}
}

// MaxPool2dIn is MaxPool2d with x and y laid out as l.
func (d *Device) MaxPool2dIn(l kernels.Layout, y, x kernels.Buffer, g kernels.PoolGeom, n int) {
	if l == kernels.NCHW {
		d.MaxPool2d(y, x, g, n)
		return
	}
	d.bkPool("MaxPool2dIn", l, y, x, nil, g, n)
}

// MaxPool2dBackwardIn is MaxPool2dBackward with dx, dy and x laid out as l.
func (d *Device) MaxPool2dBackwardIn(l kernels.Layout, dx, dy, x kernels.Buffer, g kernels.PoolGeom, n int) {
	if l == kernels.NCHW {
		d.MaxPool2dBackward(dx, dy, x, g, n)
		return
	}
	d.bkPool("MaxPool2dBackwardIn", l, dy, x, dx, g, n)
}

func (d *Device) bkPool(op string, l kernels.Layout, y, x, dx kernels.Buffer, g kernels.PoolGeom, n int) {
	d.checkLayout(op, l, g.C)
	ys, xs, dxs := d.slice(y, op, "y"), d.slice(x, op, "x"), d.optSlice(dx, op, "dx")
	if n < 0 || g.KH < 1 || g.KW < 1 || g.StrideH < 1 || g.StrideW < 1 || g.OutH() < 1 || g.OutW() < 1 {
		panic(fmt.Sprintf("cpu: %s: bad geometry %+v n=%d", op, g, n))
	}
	needLen(op, "y", len(ys), n*g.C*g.OutH()*g.OutW())
	needLen(op, "x", len(xs), n*g.C*g.H*g.W)
	if dxs != nil {
		needLen(op, "dx", len(dxs), n*g.C*g.H*g.W)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	in, out := blocksOf(l, g.C, g.H*g.W), blocksOf(l, g.C, g.OutH()*g.OutW())
	d.bkPoolT = bkPoolTask{g: g, y: ys, x: xs, dx: dxs, in: in, out: out}
	d.parallel(&d.bkPoolT, n*in.cb, max(1, grainCheap/max(1, g.H*g.W*16)))
	d.bkPoolT = bkPoolTask{}
}
