package cuda

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/macdist/macdist/kernels"
)

func nan64() float64 { return math.NaN() }

func checkRows(op string, rows, cols int) {
	if rows < 0 || cols < 0 {
		panic(fmt.Sprintf("cuda: %s: negative shape %d×%d", op, rows, cols))
	}
}

// rowsOp queues a one-block-per-row kernel taking (y, x, cols).
func (d *Device) rowsOp(f kernel, op string, y, x kernels.Buffer, rows, cols int) {
	yb, xb := d.buf(y, op, "y"), d.buf(x, op, "x")
	checkRows(op, rows, cols)
	needLen(op, "y", yb.n, rows*cols)
	needLen(op, "x", xb.n, rows*cols)
	if rows == 0 || cols == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.k(f).ptr(yb).ptr(xb).i32(cols).runRows(rows, cols)
}

// Softmax computes the softmax of each row of x.
func (d *Device) Softmax(y, x kernels.Buffer, rows, cols int) {
	d.rowsOp(kSoftmax, "Softmax", y, x, rows, cols)
}

// LogSoftmax computes the log-softmax of each row of x.
func (d *Device) LogSoftmax(y, x kernels.Buffer, rows, cols int) {
	d.rowsOp(kLogSoftmax, "LogSoftmax", y, x, rows, cols)
}

// SoftmaxBackward computes dx = y ⊙ (dy − Σ_row dy⊙y).
func (d *Device) SoftmaxBackward(dx, dy, y kernels.Buffer, rows, cols int) {
	const op = "SoftmaxBackward"
	dxb, dyb, yb := d.buf(dx, op, "dx"), d.buf(dy, op, "dy"), d.buf(y, op, "y")
	checkRows(op, rows, cols)
	needLen(op, "dx", dxb.n, rows*cols)
	needLen(op, "dy", dyb.n, rows*cols)
	needLen(op, "y", yb.n, rows*cols)
	if rows == 0 || cols == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.k(kSoftmaxBackward).ptr(dxb).ptr(dyb).ptr(yb).i32(cols).runRows(rows, cols)
}

// CrossEntropy returns the mean label-smoothed cross-entropy of the rows of
// logits and the number of rows whose first arg-max is the label, and
// writes the gradient into dlogits. The labels go to the device through a
// scratch buffer; the per-row losses come back and are added in row order,
// as kernels/cpu adds them. It waits for the device.
func (d *Device) CrossEntropy(dlogits, logits kernels.Buffer, labels []int32, rows, cols int, smoothing float32) (loss float64, correct int) {
	const op = "CrossEntropy"
	gb, xb := d.buf(dlogits, op, "dlogits"), d.buf(logits, op, "logits")
	checkRows(op, rows, cols)
	needLen(op, "dlogits", gb.n, rows*cols)
	needLen(op, "logits", xb.n, rows*cols)
	if len(labels) != rows {
		panic(fmt.Sprintf("cuda: CrossEntropy: %d labels for %d rows", len(labels), rows))
	}
	for r, l := range labels {
		if l < 0 || int(l) >= cols {
			panic(fmt.Sprintf("cuda: CrossEntropy: label %d of row %d is not in [0, %d)", l, r, cols))
		}
	}
	if rows == 0 {
		return 0, 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// Scratch: 2·rows float64 results, then the labels.
	outBytes := int64(rows) * 16
	base := d.scratch(outBytes + int64(rows)*4)
	lab := base + uint64(outBytes)
	if err := htod(d.ctx, d.stream, lab, unsafe.Pointer(&labels[0]), int64(rows)*4); err != nil {
		d.record("CrossEntropy labels", err)
		return nan64(), 0
	}
	d.k(kCrossEntropy).ptr(gb).addr(base).ptr(xb).addr(lab).i32(rows).i32(cols).f32(smoothing).runRows(rows, cols)
	host := d.hostScratch(2 * rows)
	if err := dtoh(d.ctx, d.stream, unsafe.Pointer(&host[0]), base, outBytes); err != nil {
		d.record("CrossEntropy", err)
		return nan64(), 0
	}
	var c float64
	for r := 0; r < rows; r++ {
		loss += host[r]
		c += host[rows+r]
	}
	return loss / float64(rows), int(c)
}

// LayerNorm normalises each row of x and saves its mean and 1/σ.
func (d *Device) LayerNorm(y, mean, rstd, x, gamma, beta kernels.Buffer, rows, cols int, eps float32) {
	const op = "LayerNorm"
	yb, mb, rb, xb := d.buf(y, op, "y"), d.buf(mean, op, "mean"), d.buf(rstd, op, "rstd"), d.buf(x, op, "x")
	gb, bb := d.optBuf(gamma, op, "gamma"), d.optBuf(beta, op, "beta")
	checkRows(op, rows, cols)
	needLen(op, "y", yb.n, rows*cols)
	needLen(op, "x", xb.n, rows*cols)
	needLen(op, "mean", mb.n, rows)
	needLen(op, "rstd", rb.n, rows)
	if gb != nil {
		needLen(op, "gamma", gb.n, cols)
	}
	if bb != nil {
		needLen(op, "beta", bb.n, cols)
	}
	if rows == 0 || cols == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.k(kLayerNorm).ptr(yb).ptr(mb).ptr(rb).ptr(xb).ptr(gb).ptr(bb).i32(cols).f32(eps).runRows(rows, cols)
}

// lnChunks is how many partial sums over rows LayerNormBackward's
// parameter gradients are split into; a function of rows alone.
func lnChunks(rows int) int { return min(64, max(1, (rows+63)/64)) }

// LayerNormBackward computes dx and accumulates dgamma and dbeta.
func (d *Device) LayerNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma kernels.Buffer, rows, cols int) {
	const op = "LayerNormBackward"
	dxb, dyb, xb := d.buf(dx, op, "dx"), d.buf(dy, op, "dy"), d.buf(x, op, "x")
	mb, rb := d.buf(mean, op, "mean"), d.buf(rstd, op, "rstd")
	dgb, dbb, gb := d.optBuf(dgamma, op, "dgamma"), d.optBuf(dbeta, op, "dbeta"), d.optBuf(gamma, op, "gamma")
	checkRows(op, rows, cols)
	needLen(op, "dx", dxb.n, rows*cols)
	needLen(op, "dy", dyb.n, rows*cols)
	needLen(op, "x", xb.n, rows*cols)
	needLen(op, "mean", mb.n, rows)
	needLen(op, "rstd", rb.n, rows)
	for _, p := range [...]struct {
		name string
		b    *buffer
	}{{"dgamma", dgb}, {"dbeta", dbb}, {"gamma", gb}} {
		if p.b != nil {
			needLen(op, p.name, p.b.n, cols)
		}
	}
	if rows == 0 || cols == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// The parameter gradients read dy before dx is written, since dx may
	// be dy.
	if dgb != nil || dbb != nil {
		chunks := lnChunks(rows)
		chunkLen := (rows + chunks - 1) / chunks
		chunks = (rows + chunkLen - 1) / chunkLen
		part := d.scratch(2 * int64(chunks) * int64(cols) * 8)
		d.k(kLNParam).addr(part).ptr(dyb).ptr(xb).ptr(mb).ptr(rb).i32(rows).i32(cols).i32(chunkLen).
			run([3]uint32{uint32((cols + 31) / 32), uint32(chunks), 1}, [3]uint32{32, 8, 1})
		d.k(kLNParamFinal).ptr(dgb).ptr(dbb).addr(part).i32(cols).i32(chunks).run1D(int64(cols))
	}
	d.k(kLayerNormBackward).ptr(dxb).ptr(dyb).ptr(xb).ptr(mb).ptr(rb).ptr(gb).i32(cols).runRows(rows, cols)
}
