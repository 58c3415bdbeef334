package cuda

import (
	"fmt"
	"unsafe"

	"github.com/macdist/macdist/kernels"
)

func check3(op string, outer, mid, inner int) {
	if outer < 0 || mid < 0 || inner < 0 {
		panic(fmt.Sprintf("cuda: %s: negative shape %d×%d×%d", op, outer, mid, inner))
	}
}

// AddBias adds bias[j] to x[o, j, i].
func (d *Device) AddBias(x, bias kernels.Buffer, outer, inner int) {
	xb, bb := d.buf(x, "AddBias", "x"), d.buf(bias, "AddBias", "bias")
	mid := bb.n
	check3("AddBias", outer, mid, inner)
	n := outer * mid * inner
	needLen("AddBias", "x", xb.n, n)
	if n == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.k(kAddBias).ptr(xb).ptr(bb).i64(mid).i64(inner).i64(n).run1D(int64(n))
}

// colChunks is how many partial sums ReduceSum splits mid into when inner
// > 1: one when outer·inner columns already give the GPU enough threads,
// up to 64 when they are few and mid is long. It depends on the shape
// alone, so the rounding does too.
func colChunks(outer, mid, inner int) int {
	cols := outer * inner
	if cols >= 1<<14 || mid < 128 {
		return 1
	}
	return min(64, mid/64, max(1, (1<<16)/cols))
}

// ReduceSum computes dst[o, i] = alpha·Σ_j x[o, j, i] + beta·dst[o, i].
func (d *Device) ReduceSum(dst, x kernels.Buffer, outer, mid, inner int, alpha, beta float32) {
	yb, xb := d.buf(dst, "ReduceSum", "dst"), d.buf(x, "ReduceSum", "x")
	check3("ReduceSum", outer, mid, inner)
	needLen("ReduceSum", "dst", yb.n, outer*inner)
	needLen("ReduceSum", "x", xb.n, outer*mid*inner)
	if outer*inner == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if inner == 1 {
		d.k(kReduceRows).ptr(yb).ptr(xb).i64(mid).f32(alpha).f32(beta).runRows(outer, mid)
		return
	}
	chunks := colChunks(outer, mid, inner)
	chunkLen := (mid + chunks - 1) / chunks
	if chunkLen > 0 {
		chunks = (mid + chunkLen - 1) / chunkLen
	}
	chunks = max(chunks, 1)
	var part uint64
	if chunks > 1 {
		part = d.scratch(int64(outer) * int64(chunks) * int64(inner) * 8)
	}
	tiles := (inner + 31) / 32
	d.k(kReduceCols).ptr(yb).addr(part).ptr(xb).i64(mid).i64(inner).i64(tiles).i64(chunkLen).f32(alpha).f32(beta).
		run([3]uint32{uint32(outer * tiles), uint32(chunks), 1}, [3]uint32{32, 8, 1})
	if chunks > 1 {
		d.k(kReduceColsFinal).ptr(yb).addr(part).i64(inner).i64(chunks).i64(outer * inner).f32(alpha).f32(beta).
			run1D(int64(outer) * int64(inner))
	}
}

// midSplits is how many partial sums per channel the sums over n·hw
// (ReduceSumMid, BatchNorm) are split into: enough blocks to fill the GPU
// when channels are few, one per channel when they are many.
func midSplits(channels, perChannel int) int {
	s := min(64, max(1, perChannel/4096))
	if channels*s > 8192 {
		s = max(1, 8192/max(channels, 1))
	}
	return s
}

// ReduceSumMid computes dst[j] = alpha·Σ_{o,i} x[o, j, i] + beta·dst[j].
func (d *Device) ReduceSumMid(dst, x kernels.Buffer, outer, mid, inner int, alpha, beta float32) {
	yb, xb := d.buf(dst, "ReduceSumMid", "dst"), d.buf(x, "ReduceSumMid", "x")
	check3("ReduceSumMid", outer, mid, inner)
	needLen("ReduceSumMid", "dst", yb.n, mid)
	needLen("ReduceSumMid", "x", xb.n, outer*mid*inner)
	if mid == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	splits := midSplits(mid, outer*inner)
	var part uint64
	if splits > 1 {
		part = d.scratch(int64(mid) * int64(splits) * 8)
	}
	d.k(kReduceMid).ptr(yb).addr(part).ptr(xb).i64(outer).i64(mid).i64(inner).f32(alpha).f32(beta).
		run([3]uint32{uint32(mid), uint32(splits), 1}, [3]uint32{256, 1, 1})
	if splits > 1 {
		d.k(kReduceMidFinal).ptr(yb).addr(part).i64(splits).i64(mid).f32(alpha).f32(beta).run1D(int64(mid))
	}
}

// Expand computes dst[o, j, i] = alpha·src[o, i] + beta·dst[o, j, i].
func (d *Device) Expand(dst, src kernels.Buffer, outer, mid, inner int, alpha, beta float32) {
	yb, xb := d.buf(dst, "Expand", "dst"), d.buf(src, "Expand", "src")
	check3("Expand", outer, mid, inner)
	n := outer * mid * inner
	needLen("Expand", "dst", yb.n, n)
	needLen("Expand", "src", xb.n, outer*inner)
	if n == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.k(kExpand).ptr(yb).ptr(xb).i64(mid).i64(inner).f32(alpha).f32(beta).i64(n).run1D(int64(n))
}

// dotBlocks is the number of partial sums of Dot: a function of n alone,
// so that the result is too.
func dotBlocks(n int) int { return int(min(256, max(1, (int64(n)+1023)/1024))) }

// Dot returns Σ a⊙b, accumulated in float64; it waits for the device.
func (d *Device) Dot(a, b kernels.Buffer) float64 {
	ab, bb := d.buf(a, "Dot", "a"), d.buf(b, "Dot", "b")
	sameLen("Dot", ab.n, bb.n)
	if ab.n == 0 {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	g := dotBlocks(ab.n)
	part := d.scratch(int64(g) * 8)
	d.k(kDotPartial).addr(part).ptr(ab).ptr(bb).i64(ab.n).run([3]uint32{uint32(g), 1, 1}, [3]uint32{256, 1, 1})
	host := d.hostScratch(g)
	if err := dtoh(d.ctx, d.stream, unsafe.Pointer(&host[0]), part, int64(g)*8); err != nil {
		d.record("Dot", err)
		return nan64()
	}
	var s float64
	for _, v := range host {
		s += v
	}
	return s
}
