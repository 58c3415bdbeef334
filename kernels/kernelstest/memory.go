package kernelstest

func testMemory(h *harness) {
	d := h.dev
	for _, n := range []int{0, 1, 7, 4099} {
		b := h.alloc(n)
		if b.Len() != n {
			h.t.Errorf("Alloc(%d).Len() = %d", n, b.Len())
		}
		h.checkExact(name("Alloc(%d)", n), h.get(b), make([]float64, n))
	}

	// Upload and Download of a prefix.
	v := h.rand(10)
	b := h.buf(v)
	h.checkExact("Upload/Download", h.get(b), widen(v))
	d.Upload(b, []float32{7, 8, 9})
	want := widen(v)
	want[0], want[1], want[2] = 7, 8, 9
	h.checkExact("Upload of a prefix", h.get(b), want)
	head := make([]float32, 4)
	d.Download(head, b)
	h.checkExact("Download of a prefix", head, want[:4])

	// Views share memory with their parent, and views of views too.
	w := d.View(b, 2, 6)
	if w.Len() != 6 {
		h.t.Errorf("View(b, 2, 6).Len() = %d", w.Len())
	}
	h.checkExact("View", h.get(w), want[2:8])
	d.Upload(w, []float32{-1, -2})
	want[2], want[3] = -1, -2
	h.checkExact("parent after Upload to a view", h.get(b), want)
	ww := d.View(w, 3, 2)
	d.Fill(ww, 5)
	want[5], want[6] = 5, 5
	h.checkExact("parent after Fill of a view of a view", h.get(b), want)
	h.checkExact("View of a view", h.get(ww), []float64{5, 5})
	h.checkExact("empty View", h.get(d.View(b, 10, 0)), nil)
	d.Free(ww) // a no-op: the parent stays usable
	d.Free(w)
	h.checkExact("parent after Free of its views", h.get(b), want)

	// Copy between views.
	c := h.buf(filled(10, 3))
	d.Copy(d.View(c, 1, 4), d.View(b, 5, 4))
	h.checkExact("Copy between views", h.get(c), []float64{3, want[5], want[6], want[7], want[8], 3, 3, 3, 3, 3})

	// Fill, including a NaN.
	f := h.alloc(5000)
	d.Fill(f, 1.5)
	h.checkExact("Fill", h.get(f), widen(filled(5000, 1.5)))
	d.Fill(f, nan32)
	h.checkExact("Fill(NaN)", h.get(f), widen(filled(5000, nan32)))

	// Copy2D: the way tensors are split and concatenated along an inner
	// axis; elements between the rows must be left alone.
	for _, tc := range []struct{ dstOff, dstStride, srcOff, srcStride, rows, cols int }{
		{0, 4, 0, 4, 3, 4},
		{3, 10, 2, 6, 5, 4},
		{1, 7, 0, 3, 4, 3},
		{0, 0, 0, 5, 1, 5}, // one row, strides unused
		{2, 5, 1, 9, 0, 3},
		{2, 5, 1, 9, 3, 0},
		{0, 64, 5, 33, 20, 33},
	} {
		dn, sn := 1, 1
		if tc.rows > 0 {
			dn = tc.dstOff + (tc.rows-1)*tc.dstStride + tc.cols + 2
			sn = tc.srcOff + (tc.rows-1)*tc.srcStride + tc.cols + 1
		}
		dv, sv := h.rand(dn), h.rand(sn)
		db, sb := h.buf(dv), h.buf(sv)
		d.Copy2D(db, tc.dstOff, tc.dstStride, sb, tc.srcOff, tc.srcStride, tc.rows, tc.cols)
		want := widen(dv)
		for r := 0; r < tc.rows; r++ {
			for j := 0; j < tc.cols; j++ {
				want[tc.dstOff+r*tc.dstStride+j] = float64(sv[tc.srcOff+r*tc.srcStride+j])
			}
		}
		h.checkExact(name("Copy2D%+v", tc), h.get(db), want)
	}

	if err := d.Sync(); err != nil {
		h.t.Errorf("Sync: %v", err)
	}
}
