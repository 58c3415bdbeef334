package cpu

import (
	"fmt"
	"math"

	"github.com/macdist/macdist/kernels"
)

type rowOp uint8

const (
	opSoftmax rowOp = iota
	opSoftmaxBackward
	opLogSoftmax
	opCrossEntropy
	opLayerNorm
	opLayerNormBackward
)

// rowTask is every kernel that works on the rows of a rows×cols matrix
// independently; run handles rows [lo, hi).
type rowTask struct {
	op        rowOp
	cols      int
	y, x, z   []float32 // output, input, second input
	mean      []float32 // LayerNorm
	rstd      []float32
	gamma     []float32
	beta      []float32
	eps       float32
	smoothing float32
	labels    []int32
	loss      []float64 // CrossEntropy: per row; 1 in correct[r] when arg-max is right
	correct   []float64
}

func (t *rowTask) run(lo, hi int) {
	n := t.cols
	if haveSIMD {
		switch t.op {
		case opSoftmax:
			simdSoftmaxRows(t.y[lo*n:hi*n], t.x[lo*n:hi*n], hi-lo, n)
			return
		case opLayerNorm:
			simdLayerNormRows(t.y[lo*n:hi*n], t.mean[lo:hi], t.rstd[lo:hi], t.x[lo*n:hi*n], t.gamma, t.beta, hi-lo, n, t.eps)
			return
		case opLayerNormBackward:
			simdLayerNormBackRows(t.y[lo*n:hi*n], t.z[lo*n:hi*n], t.x[lo*n:hi*n], t.mean[lo:hi], t.rstd[lo:hi], t.gamma, hi-lo, n)
			return
		}
	}
	for r := lo; r < hi; r++ {
		switch t.op {
		case opSoftmax:
			softmaxRow(t.y[r*n:(r+1)*n], t.x[r*n:(r+1)*n])
		case opSoftmaxBackward:
			softmaxBackwardRow(t.y[r*n:(r+1)*n], t.x[r*n:(r+1)*n], t.z[r*n:(r+1)*n])
		case opLogSoftmax:
			logSoftmaxRow(t.y[r*n:(r+1)*n], t.x[r*n:(r+1)*n])
		case opCrossEntropy:
			t.loss[r], t.correct[r] = crossEntropyRow(t.y[r*n:(r+1)*n], t.x[r*n:(r+1)*n], int(t.labels[r]), t.smoothing, float64(len(t.labels)))
		case opLayerNorm:
			t.mean[r], t.rstd[r] = layerNormRow(t.y[r*n:(r+1)*n], t.x[r*n:(r+1)*n], t.gamma, t.beta, t.eps)
		case opLayerNormBackward:
			layerNormBackwardRow(t.y[r*n:(r+1)*n], t.z[r*n:(r+1)*n], t.x[r*n:(r+1)*n], t.mean[r], t.rstd[r], t.gamma)
		}
	}
}

// rowMax returns the maximum of x and the index of its first occurrence.
// A NaN wins, so that it reaches the loss instead of hiding.
func rowMax(x []float32) (float32, int) {
	m, at := x[0], 0
	for j, v := range x {
		if v > m || (v != v && m == m) {
			m, at = v, j
		}
	}
	return m, at
}

// logSumExp returns log Σ exp(x_j − m) for m the maximum of x.
func logSumExp(x []float32, m float32) float64 {
	var s float64
	mm := float64(m)
	for _, v := range x {
		s += math.Exp(float64(v) - mm)
	}
	return math.Log(s)
}

// softmaxRow works in float32 but for the sum, as the SIMD version does,
// which gives the same bits.
func softmaxRow(y, x []float32) {
	m, _ := rowMax(x)
	y = y[:len(x)]
	var s [8]float64
	for j, v := range x {
		e := exp32(v - m)
		s[j&7] += float64(e)
		y[j] = e
	}
	inv := float32(1 / lanesTotal(&s))
	for j := range y {
		y[j] *= inv
	}
}

func softmaxBackwardRow(dx, dy, y []float32) {
	var s float64
	for j, v := range dy {
		s += float64(v) * float64(y[j])
	}
	sf := float32(s)
	for j := range dx {
		dx[j] = y[j] * (dy[j] - sf)
	}
}

func logSoftmaxRow(y, x []float32) {
	m, _ := rowMax(x)
	shift := float64(m) + logSumExp(x, m)
	for j, v := range x {
		y[j] = float32(float64(v) - shift)
	}
}

// crossEntropyRow returns the label-smoothed loss of one row,
// (1−s)·(−log p_label) + s·mean_j(−log p_j), and writes its gradient divided
// by rows into dx: p − (1−s)·onehot − s/cols, each over rows.
func crossEntropyRow(dx, x []float32, label int, s float32, rows float64) (loss, correct float64) {
	m, arg := rowMax(x)
	mm := float64(m)
	xl := float64(x[label]) // read before dx, which may be x, is written
	// dx holds exp(x − m) until the sum is known.
	var sum, sumX float64
	for j, v := range x {
		e := math.Exp(float64(v) - mm)
		dx[j] = float32(e)
		sum += e
		sumX += float64(v)
	}
	shift := mm + math.Log(sum)
	n := float64(len(x))
	sm := float64(s)
	nll := shift - xl
	smooth := shift - sumX/n
	loss = (1-sm)*nll + sm*smooth
	if arg == label {
		correct = 1
	}
	scale := float32(1 / (sum * rows))
	off := float32(sm / n / rows)
	for j := range dx {
		dx[j] = dx[j]*scale - off
	}
	dx[label] -= float32((1 - sm) / rows)
	return loss, correct
}

// layerNormRow normalises one row, its statistics in float64, and returns
// its mean and 1/σ. The SIMD version gives the same bits.
func layerNormRow(y, x, gamma, beta []float32, eps float32) (mean, rstd float32) {
	n := float64(len(x))
	mu := sumPlanesGo(x, 1, len(x), len(x)) / n
	ss := sqDevPlanesGo(x, 1, len(x), len(x), mu)
	rs := 1 / math.Sqrt(ss/n+float64(eps))
	muf, rsf := float32(mu), float32(rs)
	for j, v := range x {
		h := (v - muf) * rsf
		if gamma != nil {
			h *= gamma[j]
		}
		if beta != nil {
			h += beta[j]
		}
		y[j] = h
	}
	return muf, rsf
}

// layerNormBackwardRow computes
// dx = rstd·(g − mean(g) − x̂·mean(g⊙x̂)) for g = dy⊙gamma.
func layerNormBackwardRow(dx, dy, x []float32, mean, rstd float32, gamma []float32) {
	var sg, sgx [8]float64
	for j, v := range x {
		g := dy[j]
		if gamma != nil {
			g *= gamma[j]
		}
		xh := (v - mean) * rstd
		sg[j&7] += float64(g)
		sgx[j&7] += float64(g) * float64(xh)
	}
	n := float64(len(x))
	mg, mgx := float32(lanesTotal(&sg)/n), float32(lanesTotal(&sgx)/n)
	for j, v := range x {
		g := dy[j]
		if gamma != nil {
			g *= gamma[j]
		}
		xh := (v - mean) * rstd
		dx[j] = rstd * (g - mg - xh*mgx)
	}
}

// rowGrain is the number of rows per chunk for rows of cols elements.
func rowGrain(cols, grain int) int { return max(1, grain/max(cols, 1)) }

func checkRows(op string, rows, cols int) {
	if rows < 0 || cols < 0 {
		panic(fmt.Sprintf("cpu: %s: negative shape %d×%d", op, rows, cols))
	}
}

func (d *Device) runRows(rows, grain int) {
	d.parallel(&d.rows, rows, rowGrain(d.rows.cols, grain))
	d.rows = rowTask{}
}

// Softmax computes the softmax of each row of x.
func (d *Device) Softmax(y, x kernels.Buffer, rows, cols int) {
	ys, xs := d.slice(y, "Softmax", "y"), d.slice(x, "Softmax", "x")
	checkRows("Softmax", rows, cols)
	needLen("Softmax", "y", len(ys), rows*cols)
	needLen("Softmax", "x", len(xs), rows*cols)
	if cols == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rows = rowTask{op: opSoftmax, cols: cols, y: ys, x: xs}
	d.runRows(rows, grainMath)
}

// SoftmaxBackward computes dx = y ⊙ (dy − Σ_row dy⊙y).
func (d *Device) SoftmaxBackward(dx, dy, y kernels.Buffer, rows, cols int) {
	const op = "SoftmaxBackward"
	dxs, dys, ys := d.slice(dx, op, "dx"), d.slice(dy, op, "dy"), d.slice(y, op, "y")
	checkRows(op, rows, cols)
	needLen(op, "dx", len(dxs), rows*cols)
	needLen(op, "dy", len(dys), rows*cols)
	needLen(op, "y", len(ys), rows*cols)
	if cols == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rows = rowTask{op: opSoftmaxBackward, cols: cols, y: dxs, x: dys, z: ys}
	d.runRows(rows, grainCheap)
}

// LogSoftmax computes the log-softmax of each row of x.
func (d *Device) LogSoftmax(y, x kernels.Buffer, rows, cols int) {
	ys, xs := d.slice(y, "LogSoftmax", "y"), d.slice(x, "LogSoftmax", "x")
	checkRows("LogSoftmax", rows, cols)
	needLen("LogSoftmax", "y", len(ys), rows*cols)
	needLen("LogSoftmax", "x", len(xs), rows*cols)
	if cols == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rows = rowTask{op: opLogSoftmax, cols: cols, y: ys, x: xs}
	d.runRows(rows, grainMath)
}

// CrossEntropy returns the mean label-smoothed cross-entropy of the rows of
// logits and the number of rows whose first arg-max is the label, and writes
// the loss's gradient into dlogits.
func (d *Device) CrossEntropy(dlogits, logits kernels.Buffer, labels []int32, rows, cols int, smoothing float32) (loss float64, correct int) {
	const op = "CrossEntropy"
	gs, xs := d.slice(dlogits, op, "dlogits"), d.slice(logits, op, "logits")
	checkRows(op, rows, cols)
	needLen(op, "dlogits", len(gs), rows*cols)
	needLen(op, "logits", len(xs), rows*cols)
	if len(labels) != rows {
		panic(fmt.Sprintf("cpu: CrossEntropy: %d labels for %d rows", len(labels), rows))
	}
	for r, l := range labels {
		if l < 0 || int(l) >= cols {
			panic(fmt.Sprintf("cpu: CrossEntropy: label %d of row %d is not in [0, %d)", l, r, cols))
		}
	}
	if rows == 0 {
		return 0, 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	part := d.scratch64(2 * rows)
	d.rows = rowTask{op: opCrossEntropy, cols: cols, y: gs, x: xs, labels: labels,
		smoothing: smoothing, loss: part[:rows], correct: part[rows:]}
	d.runRows(rows, grainMath)
	// Summed in row order, so that the loss does not depend on GOMAXPROCS.
	var c float64
	for r := 0; r < rows; r++ {
		loss += part[r]
		c += part[rows+r]
	}
	return loss / float64(rows), int(c)
}

// LayerNorm normalises each row of x and saves its mean and 1/σ.
func (d *Device) LayerNorm(y, mean, rstd, x, gamma, beta kernels.Buffer, rows, cols int, eps float32) {
	const op = "LayerNorm"
	ys, ms, rs, xs := d.slice(y, op, "y"), d.slice(mean, op, "mean"), d.slice(rstd, op, "rstd"), d.slice(x, op, "x")
	gs, bs := d.optSlice(gamma, op, "gamma"), d.optSlice(beta, op, "beta")
	checkRows(op, rows, cols)
	needLen(op, "y", len(ys), rows*cols)
	needLen(op, "x", len(xs), rows*cols)
	needLen(op, "mean", len(ms), rows)
	needLen(op, "rstd", len(rs), rows)
	if gs != nil {
		needLen(op, "gamma", len(gs), cols)
	}
	if bs != nil {
		needLen(op, "beta", len(bs), cols)
	}
	if cols == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rows = rowTask{op: opLayerNorm, cols: cols, y: ys, x: xs, mean: ms, rstd: rs, gamma: gs, beta: bs, eps: eps}
	d.runRows(rows, grainCheap/4)
}

// lnParamTask accumulates LayerNorm's dgamma and dbeta for columns [lo, hi).
type lnParamTask struct {
	rows, cols    int
	dgamma, dbeta []float32
	dy, x         []float32
	mean, rstd    []float32
	accG, accB    []float64
}

func (t *lnParamTask) run(lo, hi int) {
	n := t.cols
	accG, accB := t.accG[lo:hi], t.accB[lo:hi]
	clear(accG)
	clear(accB)
	if haveSIMD {
		var g, b []float64
		if t.dgamma != nil {
			g = accG
		}
		if t.dbeta != nil {
			b = accB
		}
		simdLNParam(g, b, t.dy[lo:], t.x[lo:], t.mean, t.rstd, t.rows, hi-lo, n)
	}
	for r := 0; r < t.rows && !haveSIMD; r++ {
		dy := t.dy[r*n+lo : r*n+hi]
		if t.dgamma != nil {
			x := t.x[r*n+lo : r*n+hi]
			m, rs := t.mean[r], t.rstd[r]
			for j, v := range x {
				accG[j] += float64(dy[j]) * float64((v-m)*rs)
			}
		}
		if t.dbeta != nil {
			for j, g := range dy {
				accB[j] += float64(g)
			}
		}
	}
	if t.dgamma != nil {
		for j, v := range accG {
			t.dgamma[lo+j] += float32(v)
		}
	}
	if t.dbeta != nil {
		for j, v := range accB {
			t.dbeta[lo+j] += float32(v)
		}
	}
}

// LayerNormBackward computes dx and accumulates dgamma and dbeta.
func (d *Device) LayerNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma kernels.Buffer, rows, cols int) {
	const op = "LayerNormBackward"
	dxs, dys, xs := d.slice(dx, op, "dx"), d.slice(dy, op, "dy"), d.slice(x, op, "x")
	ms, rs := d.slice(mean, op, "mean"), d.slice(rstd, op, "rstd")
	dgs, dbs, gs := d.optSlice(dgamma, op, "dgamma"), d.optSlice(dbeta, op, "dbeta"), d.optSlice(gamma, op, "gamma")
	checkRows(op, rows, cols)
	needLen(op, "dx", len(dxs), rows*cols)
	needLen(op, "dy", len(dys), rows*cols)
	needLen(op, "x", len(xs), rows*cols)
	needLen(op, "mean", len(ms), rows)
	needLen(op, "rstd", len(rs), rows)
	needLens(op, sized{"dgamma", dgs, cols}, sized{"dbeta", dbs, cols}, sized{"gamma", gs, cols})
	if cols == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if dgs != nil || dbs != nil {
		acc := d.scratch64(2 * cols)
		d.lnGrad = lnParamTask{rows: rows, cols: cols, dgamma: dgs, dbeta: dbs, dy: dys, x: xs,
			mean: ms, rstd: rs, accG: acc[:cols], accB: acc[cols:]}
		d.parallel(&d.lnGrad, cols, max(16, grainCheap/max(rows, 1)))
		d.lnGrad = lnParamTask{}
	}
	d.rows = rowTask{op: opLayerNormBackward, cols: cols, y: dxs, z: dys, x: xs, mean: ms, rstd: rs, gamma: gs}
	d.runRows(rows, grainCheap/4)
}
