package kernelstest

import "github.com/macdist/macdist/kernels"

// copyStridedCases are transposes, reversals, broadcasts and plain copies,
// with offsets, in the layouts the layers use: a batched transpose (patch
// embedding), a convolution weight transposed with its kernel reversed, and
// a large block to be split across threads.
var copyStridedCases = []struct {
	name              string
	shape             [4]int
	dstOff, srcOff    int
	dstStride, srcStr [4]int
	dstLen, srcLen    int
}{
	{"copy", [4]int{1, 1, 2, 5}, 1, 2, [4]int{0, 0, 6, 1}, [4]int{0, 0, 5, 1}, 14, 12},
	{"batched transpose", [4]int{1, 3, 4, 5}, 0, 0, [4]int{0, 20, 1, 4}, [4]int{0, 20, 5, 1}, 60, 60},
	{"transpose, kernel reversed", [4]int{2, 3, 4, 9}, 0, 8, [4]int{108, 36, 9, 1}, [4]int{108, 9, 27, -1}, 216, 216},
	{"reverse every axis", [4]int{2, 3, 2, 2}, 0, 23, [4]int{12, 4, 2, 1}, [4]int{-12, -4, -2, -1}, 24, 24},
	{"broadcast", [4]int{3, 1, 1, 7}, 2, 1, [4]int{8, 0, 0, 1}, [4]int{0, 0, 0, 1}, 26, 9},
	{"large transpose", [4]int{1, 8, 96, 130}, 0, 0, [4]int{0, 96 * 130, 1, 96}, [4]int{0, 96 * 130, 130, 1}, 8 * 96 * 130, 8 * 96 * 130},
	{"empty", [4]int{2, 0, 3, 3}, 0, 0, [4]int{9, 9, 3, 1}, [4]int{9, 9, 3, 1}, 1, 1},
}

func testCopyStrided(h *harness) {
	p, ok := h.dev.(kernels.Permuter)
	if !ok {
		h.t.Skip("the device is not a kernels.Permuter")
	}
	for _, c := range copyStridedCases {
		src := h.rand(c.srcLen)
		dst0 := h.rand(c.dstLen) // elements outside the block must be left alone
		dst := h.buf(dst0)
		p.CopyStrided(dst, c.dstOff, c.dstStride, h.buf(src), c.srcOff, c.srcStr, c.shape)
		want := widen(dst0)
		for i0 := 0; i0 < c.shape[0]; i0++ {
			for i1 := 0; i1 < c.shape[1]; i1++ {
				for i2 := 0; i2 < c.shape[2]; i2++ {
					for i3 := 0; i3 < c.shape[3]; i3++ {
						i := [4]int{i0, i1, i2, i3}
						d, s := c.dstOff, c.srcOff
						for k := range i {
							d += i[k] * c.dstStride[k]
							s += i[k] * c.srcStr[k]
						}
						want[d] = float64(src[s])
					}
				}
			}
		}
		h.checkExact(name("CopyStrided(%s)", c.name), h.get(dst), want)
	}

	// A block that reaches past either end of a buffer is an error.
	a := h.alloc(12)
	h.mustPanic("CopyStrided past the end of dst", func() {
		p.CopyStrided(a, 1, [4]int{0, 0, 4, 1}, h.alloc(12), 0, [4]int{0, 0, 4, 1}, [4]int{1, 1, 3, 4})
	})
	h.mustPanic("CopyStrided before the start of src", func() {
		p.CopyStrided(a, 0, [4]int{0, 0, 4, 1}, h.alloc(12), 2, [4]int{0, 0, 4, -1}, [4]int{1, 1, 3, 4})
	})
}
