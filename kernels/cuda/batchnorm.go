package cuda

import (
	"fmt"

	"github.com/macdist/macdist/kernels"
)

// bn_reduce modes (src/batchnorm.cu).
const (
	bnSum      = 0
	bnSqDev    = 1
	bnBackward = 2
)

func checkBN(op string, n, c, hw int) {
	if n < 0 || c < 0 || hw < 0 {
		panic(fmt.Sprintf("cuda: %s: negative shape n=%d c=%d hw=%d", op, n, c, hw))
	}
}

// bnReduce queues the per-channel partial sums of mode into part
// (c·splits·2 float64s).
func (d *Device) bnReduce(part uint64, mode int, x, dy *buffer, mean64 uint64, mean, rstd *buffer, n, c, hw, splits int) {
	d.k(kBNReduce).addr(part).i32(mode).ptr(x).ptr(dy).addr(mean64).ptr(mean).ptr(rstd).i32(n).i32(c).i64(hw).
		run([3]uint32{uint32(c), uint32(splits), 1}, [3]uint32{256, 1, 1})
}

// BatchNormTrain normalises x with each channel's batch statistics, saves
// the mean and 1/σ, and moves the running statistics.
func (d *Device) BatchNormTrain(y, saveMean, saveRstd, runMean, runVar, x, gamma, beta kernels.Buffer, n, c, hw int, momentum, eps float32) {
	const op = "BatchNormTrain"
	yb, xb := d.buf(y, op, "y"), d.buf(x, op, "x")
	smb, srb := d.buf(saveMean, op, "saveMean"), d.buf(saveRstd, op, "saveRstd")
	rmb, rvb := d.buf(runMean, op, "runMean"), d.buf(runVar, op, "runVar")
	gb, bb := d.optBuf(gamma, op, "gamma"), d.optBuf(beta, op, "beta")
	checkBN(op, n, c, hw)
	if c > 0 && n*hw < 2 {
		panic(fmt.Sprintf("cuda: BatchNormTrain: needs more than one value per channel, got n=%d hw=%d", n, hw))
	}
	needLen(op, "y", yb.n, n*c*hw)
	needLen(op, "x", xb.n, n*c*hw)
	needLen(op, "saveMean", smb.n, c)
	needLen(op, "saveRstd", srb.n, c)
	needLen(op, "runMean", rmb.n, c)
	needLen(op, "runVar", rvb.n, c)
	if gb != nil {
		needLen(op, "gamma", gb.n, c)
	}
	if bb != nil {
		needLen(op, "beta", bb.n, c)
	}
	if c == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	splits := midSplits(c, n*hw)
	// Scratch: the float64 means, then the partial sums.
	mean64 := d.scratch(int64(c)*8 + int64(c)*int64(splits)*16)
	part := mean64 + uint64(c)*8
	m := float64(n * hw)
	d.bnReduce(part, bnSum, xb, nil, 0, nil, nil, n, c, hw, splits)
	d.k(kBNMeanFinal).addr(mean64).addr(part).i32(c).i32(splits).f64(m).run1D(int64(c))
	d.bnReduce(part, bnSqDev, xb, nil, mean64, nil, nil, n, c, hw, splits)
	d.k(kBNVarFinal).ptr(smb).ptr(srb).ptr(rmb).ptr(rvb).addr(mean64).addr(part).i32(c).i32(splits).f64(m).
		f32(eps).f32(momentum).run1D(int64(c))
	total := n * c * hw
	d.k(kBNApply).ptr(yb).ptr(xb).ptr(smb).ptr(srb).ptr(nil).f32(eps).ptr(gb).ptr(bb).i32(c).i64(hw).i64(total).
		run1D(int64(total))
}

// BatchNormEval normalises x with the running statistics.
func (d *Device) BatchNormEval(y, x, runMean, runVar, gamma, beta kernels.Buffer, n, c, hw int, eps float32) {
	const op = "BatchNormEval"
	yb, xb := d.buf(y, op, "y"), d.buf(x, op, "x")
	rmb, rvb := d.buf(runMean, op, "runMean"), d.buf(runVar, op, "runVar")
	gb, bb := d.optBuf(gamma, op, "gamma"), d.optBuf(beta, op, "beta")
	checkBN(op, n, c, hw)
	needLen(op, "y", yb.n, n*c*hw)
	needLen(op, "x", xb.n, n*c*hw)
	needLen(op, "runMean", rmb.n, c)
	needLen(op, "runVar", rvb.n, c)
	if gb != nil {
		needLen(op, "gamma", gb.n, c)
	}
	if bb != nil {
		needLen(op, "beta", bb.n, c)
	}
	total := n * c * hw
	if total == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.k(kBNApply).ptr(yb).ptr(xb).ptr(rmb).ptr(nil).ptr(rvb).f32(eps).ptr(gb).ptr(bb).i32(c).i64(hw).i64(total).
		run1D(int64(total))
}

// BatchNormBackward computes dx for training-mode batch norm and
// accumulates dgamma and dbeta.
func (d *Device) BatchNormBackward(dx, dgamma, dbeta, dy, x, saveMean, saveRstd, gamma kernels.Buffer, n, c, hw int) {
	const op = "BatchNormBackward"
	dxb, dyb, xb := d.buf(dx, op, "dx"), d.buf(dy, op, "dy"), d.buf(x, op, "x")
	smb, srb := d.buf(saveMean, op, "saveMean"), d.buf(saveRstd, op, "saveRstd")
	dgb, dbb, gb := d.optBuf(dgamma, op, "dgamma"), d.optBuf(dbeta, op, "dbeta"), d.optBuf(gamma, op, "gamma")
	checkBN(op, n, c, hw)
	needLen(op, "dx", dxb.n, n*c*hw)
	needLen(op, "dy", dyb.n, n*c*hw)
	needLen(op, "x", xb.n, n*c*hw)
	needLen(op, "saveMean", smb.n, c)
	needLen(op, "saveRstd", srb.n, c)
	for _, p := range [...]struct {
		name string
		b    *buffer
	}{{"dgamma", dgb}, {"dbeta", dbb}, {"gamma", gb}} {
		if p.b != nil {
			needLen(op, p.name, p.b.n, c)
		}
	}
	if n*hw == 0 || c == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	splits := midSplits(c, n*hw)
	// Scratch: the partial sums, then k1 and k2 per channel as float32.
	partBytes := int64(c) * int64(splits) * 16
	part := d.scratch(partBytes + int64(c)*8)
	coef := part + uint64(partBytes)
	d.bnReduce(part, bnBackward, xb, dyb, 0, smb, srb, n, c, hw, splits)
	d.k(kBNBackwardFinal).ptr(dgb).ptr(dbb).addr(coef).addr(part).i32(c).i32(splits).f64(float64(n * hw)).run1D(int64(c))
	total := n * c * hw
	d.k(kBNBackwardApply).ptr(dxb).ptr(dyb).ptr(xb).ptr(smb).ptr(srb).ptr(gb).addr(coef).i32(c).i64(hw).i64(total).
		run1D(int64(total))
}
