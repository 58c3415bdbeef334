package kernelstest

import "github.com/macdist/macdist/kernels"

// testPanics checks that a few programmer errors are caught where they are
// made, rather than reading or writing past a buffer.
func testPanics(h *harness) {
	d := h.dev
	a, b, c := h.alloc(12), h.alloc(12), h.alloc(11)
	h.mustPanic("Gemm with C too short", func() { d.Gemm(false, false, 3, 4, 4, 1, a, 4, b, 4, 0, c, 4) })
	h.mustPanic("Gemm with lda < k", func() { d.Gemm(false, false, 3, 4, 4, 1, a, 3, b, 4, 0, h.alloc(12), 4) })
	h.mustPanic("GemmStrided past the end of A", func() {
		d.GemmStrided(false, false, 2, 2, 2, 1, a, 0, 2, 4, b, 0, 2, 0, 0, h.alloc(16), 0, 2, 4, 4)
	})
	h.mustPanic("Upload longer than the buffer", func() { d.Upload(c, make([]float32, 12)) })
	h.mustPanic("View past the end", func() { d.View(c, 5, 7) })
	h.mustPanic("Copy2D past the end", func() { d.Copy2D(a, 0, 5, b, 0, 4, 3, 4) })
	g := kernels.ConvGeom{C: 1, H: 4, W: 4, KH: 3, KW: 3, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1}
	h.mustPanic("Im2col with col too short", func() { d.Im2col(h.alloc(35), h.alloc(16), g, 0, 1) })
	h.mustPanic("Softmax with x too short", func() { d.Softmax(a, c, 3, 4) })
	h.mustPanic("CrossEntropy with a label out of range", func() {
		d.CrossEntropy(a, b, []int32{0, 4, 1}, 3, 4, 0)
	})
}
