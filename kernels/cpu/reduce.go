package cpu

import (
	"fmt"

	"github.com/macdist/macdist/kernels"
)

type reduceOp uint8

const (
	opAddBias reduceOp = iota
	opAddBiasRows
	opReduceSum
	opReduceSumRows
	opReduceSumMid
	opReduceSumMidCols
	opExpand
	opExpandRows
)

// reduceTask is the kernels on x viewed as outer × mid × inner.
type reduceTask struct {
	op                reduceOp
	outer, mid, inner int
	dst, x            []float32
	alpha, beta       float32
	part              []float64 // ReduceSum's block sums
}

// reduceRows is the number of rows of a block of ReduceSum: each block's
// column sums go to scratch, and the blocks' sums are added in order
// afterwards. The blocks are fixed, so the result does not depend on
// GOMAXPROCS, and they let a sum over many rows of few columns (a bias
// gradient) use every core.
const reduceRows = 256

// colSums writes into acc the float64 sums of the columns of the rows×cols
// matrix x whose rows are ld apart, one row after another.
func colSums(acc []float64, x []float32, rows, cols, ld int) {
	if haveSIMD {
		simdColSums(acc, x, rows, cols, ld)
		return
	}
	colSumsGo(acc, x, rows, cols, ld)
}

func colSumsGo(acc []float64, x []float32, rows, cols, ld int) {
	acc = acc[:cols]
	clear(acc)
	for r := 0; r < rows; r++ {
		row := x[r*ld:][:cols]
		for i, v := range row {
			acc[i] += float64(v)
		}
	}
}

func (t *reduceTask) run(lo, hi int) {
	mid, inner := t.mid, t.inner
	switch t.op {
	case opAddBias: // over outer·mid rows of inner elements
		if haveSIMD {
			simdAddBias(t.x[lo*inner:hi*inner], t.dst, lo, hi-lo, mid, inner)
			return
		}
		for r := lo; r < hi; r++ {
			b := t.dst[r%mid]
			row := t.x[r*inner : (r+1)*inner]
			for i := range row {
				row[i] += b
			}
		}
	case opAddBiasRows: // inner == 1: over outer rows of mid elements
		if haveSIMD {
			simdAddBiasRows(t.x[lo*mid:hi*mid], t.dst[:mid], hi-lo, mid)
			return
		}
		for o := lo; o < hi; o++ {
			row := t.x[o*mid : (o+1)*mid]
			for j, b := range t.dst[:len(row)] {
				row[j] += b
			}
		}
	case opExpandRows: // inner == 1: over outer rows of mid elements
		for o := lo; o < hi; o++ {
			row := t.dst[o*mid : (o+1)*mid]
			v := t.alpha * t.x[o]
			if t.beta == 0 {
				for j := range row {
					row[j] = v
				}
			} else {
				for j := range row {
					row[j] = v + t.beta*row[j]
				}
			}
		}
	case opExpand: // over outer·mid rows
		for r := lo; r < hi; r++ {
			o := r / mid
			src := t.x[o*inner : (o+1)*inner]
			row := t.dst[r*inner : (r+1)*inner]
			row = row[:len(src)]
			alpha, beta := t.alpha, t.beta
			if beta == 0 {
				for i, v := range src {
					row[i] = alpha * v
				}
			} else {
				for i, v := range src {
					row[i] = alpha*v + beta*row[i]
				}
			}
		}
	case opReduceSumRows: // inner == 1: over outer rows of mid elements
		for o := lo; o < hi; o++ {
			s := sum64(t.x[o*mid : (o+1)*mid])
			t.dst[o] = combine(t.alpha, s, t.beta, t.dst[o])
		}
	case opReduceSum: // over outer × blocks of reduceRows rows
		blocks := (mid + reduceRows - 1) / reduceRows
		for w := lo; w < hi; w++ {
			o, b := w/blocks, w%blocks
			j0, j1 := b*reduceRows, min((b+1)*reduceRows, mid)
			colSums(t.part[w*inner:(w+1)*inner], t.x[(o*mid+j0)*inner:], j1-j0, inner, inner)
		}
	case opReduceSumMidCols: // inner == 1: over blocks of midCols of the mid columns
		for w := lo; w < hi; w++ {
			j0, j1 := w*midCols, min((w+1)*midCols, mid)
			colSums(t.part[j0:j1], t.x[j0:], t.outer, j1-j0, mid)
			for j := j0; j < j1; j++ {
				t.dst[j] = combine(t.alpha, t.part[j], t.beta, t.dst[j])
			}
		}
	case opReduceSumMid: // over mid channels
		for j := lo; j < hi; j++ {
			s := sumPlanes(t.x[j*inner:], t.outer, inner, mid*inner)
			t.dst[j] = combine(t.alpha, s, t.beta, t.dst[j])
		}
	}
}

// combine returns alpha·s + beta·d, not reading d when beta is 0.
func combine(alpha float32, s float64, beta, d float32) float32 {
	if beta == 0 {
		return float32(float64(alpha) * s)
	}
	return float32(float64(alpha)*s) + beta*d
}

// sum64 sums x in float64, four lanes at a time.
func sum64(x []float32) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += float64(x[i])
		s1 += float64(x[i+1])
		s2 += float64(x[i+2])
		s3 += float64(x[i+3])
	}
	for ; i < len(x); i++ {
		s0 += float64(x[i])
	}
	return (s0 + s1) + (s2 + s3)
}

func check3(op string, outer, mid, inner int) {
	if outer < 0 || mid < 0 || inner < 0 {
		panic(fmt.Sprintf("cpu: %s: negative shape %d×%d×%d", op, outer, mid, inner))
	}
}

func (d *Device) runReduce(n, grain int) {
	d.parallel(&d.red, n, max(1, grain))
	d.red = reduceTask{}
}

// AddBias adds bias[j] to x[o, j, i].
func (d *Device) AddBias(x, bias kernels.Buffer, outer, inner int) {
	xs, bs := d.slice(x, "AddBias", "x"), d.slice(bias, "AddBias", "bias")
	mid := len(bs)
	check3("AddBias", outer, mid, inner)
	needLen("AddBias", "x", len(xs), outer*mid*inner)
	if outer*mid*inner == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.red = reduceTask{op: opAddBias, outer: outer, mid: mid, inner: inner, dst: bs, x: xs}
	if inner == 1 {
		d.red.op = opAddBiasRows
		d.runReduce(outer, grainCheap/mid)
		return
	}
	d.runReduce(outer*mid, grainCheap/inner)
}

// ReduceSum computes dst[o, i] = alpha·Σ_j x[o, j, i] + beta·dst[o, i].
func (d *Device) ReduceSum(dst, x kernels.Buffer, outer, mid, inner int, alpha, beta float32) {
	ys, xs := d.slice(dst, "ReduceSum", "dst"), d.slice(x, "ReduceSum", "x")
	check3("ReduceSum", outer, mid, inner)
	needLen("ReduceSum", "dst", len(ys), outer*inner)
	needLen("ReduceSum", "x", len(xs), outer*mid*inner)
	if outer*inner == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.red = reduceTask{op: opReduceSum, outer: outer, mid: mid, inner: inner, dst: ys, x: xs, alpha: alpha, beta: beta}
	if inner == 1 {
		d.red.op = opReduceSumRows
		d.runReduce(outer, grainCheap/max(mid, 1))
		return
	}
	blocks := (mid + reduceRows - 1) / reduceRows
	if mid == 0 {
		for i := range ys[:outer*inner] {
			ys[i] = combine(alpha, 0, beta, ys[i])
		}
		d.red = reduceTask{}
		return
	}
	d.red.part = d.scratch64(outer * blocks * inner)
	d.parallel(&d.red, outer*blocks, max(1, grainCheap/max(reduceRows*inner, 1)))
	part := d.red.part
	for o := 0; o < outer; o++ {
		out := ys[o*inner : (o+1)*inner]
		for i := range out {
			s := part[(o*blocks)*inner+i]
			for b := 1; b < blocks; b++ {
				s += part[(o*blocks+b)*inner+i]
			}
			out[i] = combine(alpha, s, beta, out[i])
		}
	}
	d.red = reduceTask{}
}

// ReduceSumMid computes dst[j] = alpha·Σ_{o,i} x[o, j, i] + beta·dst[j].
func (d *Device) ReduceSumMid(dst, x kernels.Buffer, outer, mid, inner int, alpha, beta float32) {
	ys, xs := d.slice(dst, "ReduceSumMid", "dst"), d.slice(x, "ReduceSumMid", "x")
	check3("ReduceSumMid", outer, mid, inner)
	needLen("ReduceSumMid", "dst", len(ys), mid)
	needLen("ReduceSumMid", "x", len(xs), outer*mid*inner)
	if mid == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.red = reduceTask{op: opReduceSumMid, outer: outer, mid: mid, inner: inner, dst: ys, x: xs, alpha: alpha, beta: beta}
	if inner == 1 && outer > 1 {
		// Sums down the columns of an outer×mid matrix (the mean image
		// of a batch, for MAC's convolution taps): read row after row,
		// where a plane at a time would stride over the whole matrix
		// for every column. The same sums, in the same order.
		d.red.op = opReduceSumMidCols
		d.red.part = d.scratch64(mid)
		d.runReduce((mid+midCols-1)/midCols, max(1, grainCheap/(midCols*outer)))
		return
	}
	d.runReduce(mid, grainCheap/max(outer*inner, 1))
}

// midCols is the columns of one unit of ReduceSumMid's column sums: a
// stretch of each row a few cache lines long.
const midCols = 256

// Expand computes dst[o, j, i] = alpha·src[o, i] + beta·dst[o, j, i].
func (d *Device) Expand(dst, src kernels.Buffer, outer, mid, inner int, alpha, beta float32) {
	ys, xs := d.slice(dst, "Expand", "dst"), d.slice(src, "Expand", "src")
	check3("Expand", outer, mid, inner)
	needLen("Expand", "dst", len(ys), outer*mid*inner)
	needLen("Expand", "src", len(xs), outer*inner)
	if outer*mid*inner == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.red = reduceTask{op: opExpand, outer: outer, mid: mid, inner: inner, dst: ys, x: xs, alpha: alpha, beta: beta}
	if inner == 1 {
		d.red.op = opExpandRows
		d.runReduce(outer, grainCheap/mid)
		return
	}
	d.runReduce(outer*mid, grainCheap/inner)
}

// dotTask computes the partial sums of Dot over blocks of dotBlock elements.
// The blocks are fixed, not one per goroutine, so that the result does not
// depend on GOMAXPROCS.
type dotTask struct {
	a, b []float32
	part []float64
}

const dotBlock = 1 << 14

func (t *dotTask) run(lo, hi int) {
	for p := lo; p < hi; p++ {
		i0, i1 := p*dotBlock, min((p+1)*dotBlock, len(t.a))
		t.part[p] = dot64(t.a[i0:i1], t.b[i0:i1])
	}
}

func dot64(a, b []float32) float64 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += float64(a[i]) * float64(b[i])
		s1 += float64(a[i+1]) * float64(b[i+1])
		s2 += float64(a[i+2]) * float64(b[i+2])
		s3 += float64(a[i+3]) * float64(b[i+3])
	}
	for ; i < len(a); i++ {
		s0 += float64(a[i]) * float64(b[i])
	}
	return (s0 + s1) + (s2 + s3)
}

// Dot returns Σ a⊙b, accumulated in float64.
func (d *Device) Dot(a, b kernels.Buffer) float64 {
	as, bs := d.slice(a, "Dot", "a"), d.slice(b, "Dot", "b")
	sameLen("Dot", len(as), len(bs))
	if len(as) <= dotBlock {
		return dot64(as, bs)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	parts := (len(as) + dotBlock - 1) / dotBlock
	d.dotPart = dotTask{a: as, b: bs, part: d.scratch64(parts)}
	d.parallel(&d.dotPart, parts, 2)
	var s float64
	for _, v := range d.dotPart.part {
		s += v
	}
	d.dotPart = dotTask{}
	return s
}
