package cpu

import "github.com/macdist/macdist/kernels"

// permuteTask runs the lines [lo, hi) of a CopyStrided: line l is the index
// (i0, i1, i2) of the first three axes, flattened; the fourth axis is the
// line's elements.
type permuteTask struct {
	dst, src   []float32
	dOff, sOff int
	ds, ss     [4]int
	shape      [4]int
}

func (t *permuteTask) run(lo, hi int) {
	n1, n2, n3 := t.shape[1], t.shape[2], t.shape[3]
	for l := lo; l < hi; l++ {
		i0, rem := l/(n1*n2), l%(n1*n2)
		i1, i2 := rem/n2, rem%n2
		d := t.dOff + i0*t.ds[0] + i1*t.ds[1] + i2*t.ds[2]
		s := t.sOff + i0*t.ss[0] + i1*t.ss[1] + i2*t.ss[2]
		if t.ds[3] == 1 && t.ss[3] == 1 {
			copy(t.dst[d:d+n3], t.src[s:s+n3])
			continue
		}
		for k := 0; k < n3; k++ {
			t.dst[d+k*t.ds[3]] = t.src[s+k*t.ss[3]]
		}
	}
}

// CopyStrided copies a strided 4-D block of src into a strided block of dst.
func (d *Device) CopyStrided(dst kernels.Buffer, dstOff int, dstStride [4]int, src kernels.Buffer, srcOff int, srcStride [4]int, shape [4]int) {
	const op = "CopyStrided"
	y, x := d.slice(dst, op, "dst"), d.slice(src, op, "src")
	if !kernels.CheckStrided("cpu", len(y), dstOff, dstStride, len(x), srcOff, srcStride, shape) {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.perm = permuteTask{dst: y, src: x, dOff: dstOff, sOff: srcOff, ds: dstStride, ss: srcStride, shape: shape}
	d.parallel(&d.perm, shape[0]*shape[1]*shape[2], max(1, grainCheap/shape[3]))
	d.perm = permuteTask{}
}

var _ kernels.Permuter = (*Device)(nil)
