package cpu

import (
	"fmt"
	"math"

	"github.com/macdist/macdist/kernels"
)

type chanOp uint8

const (
	opBNTrain chanOp = iota
	opBNEval
	opBNBackward
)

// chanTask runs a batch-norm kernel over the channels [lo, hi) of x viewed
// as n × c × hw. Statistics are accumulated in float64: a channel of a
// large batch sums millions of values.
type chanTask struct {
	op              chanOp
	n, c, hw        int
	y, x, dy        []float32
	mean, rstd      []float32 // saved
	runMean, runVar []float32
	gamma, beta     []float32
	dgamma, dbeta   []float32
	momentum, eps   float32
}

func (t *chanTask) run(lo, hi int) {
	n, c, hw := t.n, t.c, t.hw
	m := float64(n * hw)
	stride := c * hw
	for ch := lo; ch < hi; ch++ {
		var g, b float32 = 1, 0
		if t.gamma != nil {
			g = t.gamma[ch]
		}
		x := t.x[ch*hw:]
		switch t.op {
		case opBNTrain:
			if t.beta != nil {
				b = t.beta[ch]
			}
			mu := sumPlanes(x, n, hw, stride) / m
			v := sqDevPlanes(x, n, hw, stride, mu) / m
			rs := 1 / math.Sqrt(v+float64(t.eps))
			t.mean[ch], t.rstd[ch] = float32(mu), float32(rs)
			mo := float64(t.momentum)
			t.runMean[ch] = float32((1-mo)*float64(t.runMean[ch]) + mo*mu)
			t.runVar[ch] = float32((1-mo)*float64(t.runVar[ch]) + mo*v*m/(m-1))
			bnNorm(t.y[ch*hw:], x, n, hw, stride, float32(mu), float32(rs)*g, b)
		case opBNEval:
			if t.beta != nil {
				b = t.beta[ch]
			}
			rs := 1 / math.Sqrt(float64(t.runVar[ch])+float64(t.eps))
			bnNorm(t.y[ch*hw:], x, n, hw, stride, t.runMean[ch], float32(rs)*g, b)
		case opBNBackward:
			mu, rs := t.mean[ch], t.rstd[ch]
			dy := t.dy[ch*hw:]
			sdy, sdyx := bnGradSums(x, dy, n, hw, stride, mu, rs)
			if t.dgamma != nil {
				t.dgamma[ch] += float32(sdyx)
			}
			if t.dbeta != nil {
				t.dbeta[ch] += float32(sdy)
			}
			// dx = γ·rstd·(dy − mean(dy) − x̂·mean(dy⊙x̂))
			bnDx(t.y[ch*hw:], dy, x, n, hw, stride, mu, rs, float32(sdy/m), float32(sdyx/m), g*rs)
		}
	}
}

// The per-channel loops below work on n planes of hw elements, plane i at
// offset i·stride: one channel of an n×c×hw tensor. The sums run in float64
// in eight lanes, lane k taking the elements k mod 8 of each plane, as the
// SIMD versions do, so that both give the same bits.

// lanesTotal combines eight lanes as an AVX2 horizontal sum does.
func lanesTotal(s *[8]float64) float64 {
	return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]))
}

// sumPlanes returns the sum of the planes' elements.
func sumPlanes(x []float32, n, hw, stride int) float64 {
	if haveSIMD {
		return simdSumPlanes(x, n, hw, stride)
	}
	return sumPlanesGo(x, n, hw, stride)
}

func sumPlanesGo(x []float32, n, hw, stride int) float64 {
	var s [8]float64
	for i := 0; i < n; i++ {
		p := x[i*stride:][:hw]
		for j, v := range p {
			s[j&7] += float64(v)
		}
	}
	return lanesTotal(&s)
}

// sqDevPlanes returns Σ (x − mu)² over the planes.
func sqDevPlanes(x []float32, n, hw, stride int, mu float64) float64 {
	if haveSIMD {
		return simdSqDevPlanes(x, n, hw, stride, mu)
	}
	return sqDevPlanesGo(x, n, hw, stride, mu)
}

func sqDevPlanesGo(x []float32, n, hw, stride int, mu float64) float64 {
	var s [8]float64
	for i := 0; i < n; i++ {
		p := x[i*stride:][:hw]
		for j, v := range p {
			d := float64(v) - mu
			s[j&7] += d * d
		}
	}
	return lanesTotal(&s)
}

// bnGradSums returns Σ dy and Σ dy·x̂ over the planes, x̂ = (x − mu)·rs.
func bnGradSums(x, dy []float32, n, hw, stride int, mu, rs float32) (sdy, sdyx float64) {
	if haveSIMD {
		return simdBNGradSums(x, dy, n, hw, stride, mu, rs)
	}
	return bnGradSumsGo(x, dy, n, hw, stride, mu, rs)
}

func bnGradSumsGo(x, dy []float32, n, hw, stride int, mu, rs float32) (sdy, sdyx float64) {
	var a, b [8]float64
	for i := 0; i < n; i++ {
		p, q := x[i*stride:][:hw], dy[i*stride:][:hw]
		for j, v := range p {
			g := float64(q[j])
			a[j&7] += g
			b[j&7] += g * float64((v-mu)*rs)
		}
	}
	return lanesTotal(&a), lanesTotal(&b)
}

// bnNorm writes y = (x − mu)·a + b over the planes.
func bnNorm(y, x []float32, n, hw, stride int, mu, a, b float32) {
	if haveSIMD {
		simdBNNorm(y, x, n, hw, stride, mu, a, b)
		return
	}
	bnNormGo(y, x, n, hw, stride, mu, a, b)
}

func bnNormGo(y, x []float32, n, hw, stride int, mu, a, b float32) {
	for i := 0; i < n; i++ {
		p, q := x[i*stride:][:hw], y[i*stride:][:hw]
		for k, v := range p {
			q[k] = (v-mu)*a + b
		}
	}
}

// bnDx writes dx = scale·(dy − k1 − (x − mu)·rs·k2) over the planes.
func bnDx(dx, dy, x []float32, n, hw, stride int, mu, rs, k1, k2, scale float32) {
	if haveSIMD {
		simdBNDx(dx, dy, x, n, hw, stride, mu, rs, k1, k2, scale)
		return
	}
	bnDxGo(dx, dy, x, n, hw, stride, mu, rs, k1, k2, scale)
}

func bnDxGo(dx, dy, x []float32, n, hw, stride int, mu, rs, k1, k2, scale float32) {
	for i := 0; i < n; i++ {
		p, g, d := x[i*stride:][:hw], dy[i*stride:][:hw], dx[i*stride:][:hw]
		for k, v := range p {
			d[k] = scale * (g[k] - k1 - (v-mu)*rs*k2)
		}
	}
}

func checkBN(op string, n, c, hw int) {
	if n < 0 || c < 0 || hw < 0 {
		panic(fmt.Sprintf("cpu: %s: negative shape n=%d c=%d hw=%d", op, n, c, hw))
	}
}

func (d *Device) runChans(t chanTask) {
	d.chans = t
	d.parallel(&d.chans, t.c, max(1, grainCheap/max(1, t.n*t.hw)))
	d.chans = chanTask{}
}

// BatchNormTrain normalises x with each channel's batch statistics, saves the
// mean and 1/σ, and moves the running statistics.
func (d *Device) BatchNormTrain(y, saveMean, saveRstd, runMean, runVar, x, gamma, beta kernels.Buffer, n, c, hw int, momentum, eps float32) {
	const op = "BatchNormTrain"
	ys, xs := d.slice(y, op, "y"), d.slice(x, op, "x")
	sm, sr := d.slice(saveMean, op, "saveMean"), d.slice(saveRstd, op, "saveRstd")
	rm, rv := d.slice(runMean, op, "runMean"), d.slice(runVar, op, "runVar")
	gs, bs := d.optSlice(gamma, op, "gamma"), d.optSlice(beta, op, "beta")
	checkBN(op, n, c, hw)
	if c > 0 && n*hw < 2 {
		panic(fmt.Sprintf("cpu: BatchNormTrain: needs more than one value per channel, got n=%d hw=%d", n, hw))
	}
	needLen(op, "y", len(ys), n*c*hw)
	needLen(op, "x", len(xs), n*c*hw)
	needLen(op, "saveMean", len(sm), c)
	needLen(op, "saveRstd", len(sr), c)
	needLen(op, "runMean", len(rm), c)
	needLen(op, "runVar", len(rv), c)
	if gs != nil {
		needLen(op, "gamma", len(gs), c)
	}
	if bs != nil {
		needLen(op, "beta", len(bs), c)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.runChans(chanTask{op: opBNTrain, n: n, c: c, hw: hw, y: ys, x: xs, mean: sm, rstd: sr,
		runMean: rm, runVar: rv, gamma: gs, beta: bs, momentum: momentum, eps: eps})
}

// BatchNormEval normalises x with the running statistics.
func (d *Device) BatchNormEval(y, x, runMean, runVar, gamma, beta kernels.Buffer, n, c, hw int, eps float32) {
	const op = "BatchNormEval"
	ys, xs := d.slice(y, op, "y"), d.slice(x, op, "x")
	rm, rv := d.slice(runMean, op, "runMean"), d.slice(runVar, op, "runVar")
	gs, bs := d.optSlice(gamma, op, "gamma"), d.optSlice(beta, op, "beta")
	checkBN(op, n, c, hw)
	needLen(op, "y", len(ys), n*c*hw)
	needLen(op, "x", len(xs), n*c*hw)
	needLen(op, "runMean", len(rm), c)
	needLen(op, "runVar", len(rv), c)
	if gs != nil {
		needLen(op, "gamma", len(gs), c)
	}
	if bs != nil {
		needLen(op, "beta", len(bs), c)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.runChans(chanTask{op: opBNEval, n: n, c: c, hw: hw, y: ys, x: xs,
		runMean: rm, runVar: rv, gamma: gs, beta: bs, eps: eps})
}

// BatchNormBackward computes dx for training-mode batch norm and accumulates
// dgamma and dbeta.
func (d *Device) BatchNormBackward(dx, dgamma, dbeta, dy, x, saveMean, saveRstd, gamma kernels.Buffer, n, c, hw int) {
	const op = "BatchNormBackward"
	dxs, dys, xs := d.slice(dx, op, "dx"), d.slice(dy, op, "dy"), d.slice(x, op, "x")
	sm, sr := d.slice(saveMean, op, "saveMean"), d.slice(saveRstd, op, "saveRstd")
	dgs, dbs, gs := d.optSlice(dgamma, op, "dgamma"), d.optSlice(dbeta, op, "dbeta"), d.optSlice(gamma, op, "gamma")
	checkBN(op, n, c, hw)
	needLen(op, "dx", len(dxs), n*c*hw)
	needLen(op, "dy", len(dys), n*c*hw)
	needLen(op, "x", len(xs), n*c*hw)
	needLen(op, "saveMean", len(sm), c)
	needLen(op, "saveRstd", len(sr), c)
	needLens(op, sized{"dgamma", dgs, c}, sized{"dbeta", dbs, c}, sized{"gamma", gs, c})
	if n*hw == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.runChans(chanTask{op: opBNBackward, n: n, c: c, hw: hw, y: dxs, x: xs, dy: dys, mean: sm, rstd: sr,
		gamma: gs, dgamma: dgs, dbeta: dbs})
}
