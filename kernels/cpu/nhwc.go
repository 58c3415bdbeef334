package cpu

// The NHWC batch-norm loops. An NHWC activation is n·hw rows of c
// channels, and they go through it row after row, each row contiguous,
// the per-channel sums or coefficients a vector of c beside it: reading
// sixteen channels of each pixel, as Blocked16's loops do, would stride
// c floats from pixel to pixel, past what the prefetchers follow (twice
// the time of Blocked16's on ResNet-50). A unit is a chunk of images, its
// partial sums one vector of c, added up in chunk order as Blocked16's;
// the chunks depend on the shape alone, so results repeat whatever the
// threads.

// nhwcSumsRun sets s and q to the sums of the rows of x (rows of len(s)
// channels) and of their squares, in float64.
func nhwcSumsRun(s, q []float64, x []float32) {
	if haveSIMD {
		simdNHWCSums(s, q, x)
		return
	}
	nhwcSumsGo(s, q, x)
}

func nhwcSumsGo(s, q []float64, x []float32) {
	c := len(s)
	q = q[:c]
	clear(s)
	clear(q)
	for r := 0; r < len(x); r += c {
		for j, v := range x[r : r+c] {
			f := float64(v)
			s[j] += f
			q[j] += f * f
		}
	}
}

// nhwcNormRun writes y = (x − mu)·a + b row by row, then max(y, 0) with
// relu (a NaN stays, as in ReLU).
func nhwcNormRun(y, x, s, mu, a, b []float32, relu bool) {
	if haveSIMD {
		simdNHWCNorm(y, x, s, mu, a, b, relu)
		return
	}
	nhwcNormGo(y, x, s, mu, a, b, relu)
}

// nhwcNormGo is bkNormGo for NHWC rows.
func nhwcNormGo(y, x, s, mu, a, b []float32, relu bool) {
	c := len(mu)
	a, b = a[:c], b[:c]
	for r := 0; r < len(x); r += c {
		o := y[r : r+c]
		for j, v := range x[r : r+c] {
			z := (v-mu[j])*a[j] + b[j]
			if s != nil {
				z = float32(z) + s[r+j]
			}
			if relu && !(z > 0) && z == z {
				z = 0
			}
			o[j] = z
		}
	}
}

// nhwcGradSumsRun sets s and q to the sums of dy and of dy·x̂ (x̂ =
// (x − mu)·rs in float32), dy counting only where y > 0 when y is given.
func nhwcGradSumsRun(s, q []float64, x, dy, y, mu, rs []float32) {
	if haveSIMD {
		simdNHWCGradSums(s, q, x, dy, y, mu, rs)
		return
	}
	nhwcGradSumsGo(s, q, x, dy, y, mu, rs)
}

func nhwcGradSumsGo(s, q []float64, x, dy, y, mu, rs []float32) {
	c := len(s)
	q, mu, rs = q[:c], mu[:c], rs[:c]
	clear(s)
	clear(q)
	for r := 0; r < len(x); r += c {
		g := dy[r : r+c]
		var o []float32
		if y != nil {
			o = y[r : r+c]
		}
		for j, v := range x[r : r+c] {
			d := g[j]
			if o != nil && !(o[j] > 0) {
				d = 0
			}
			f := float64(d)
			s[j] += f
			q[j] += f * float64((v-mu[j])*rs[j])
		}
	}
}

// nhwcDxRun writes dx = scale·(dy − k1 − (x − mu)·rs·k2), dy counting
// only where y > 0 when y is given.
func nhwcDxRun(dx, dy, x, y, mu, rs, k1, k2, scale []float32) {
	if haveSIMD {
		simdNHWCDx(dx, dy, x, y, mu, rs, k1, k2, scale)
		return
	}
	nhwcDxGo(dx, dy, x, y, mu, rs, k1, k2, scale)
}

func nhwcDxGo(dx, dy, x, y, mu, rs, k1, k2, scale []float32) {
	c := len(mu)
	rs, k1, k2, scale = rs[:c], k1[:c], k2[:c], scale[:c]
	for r := 0; r < len(x); r += c {
		g, o := dy[r:r+c], dx[r:r+c]
		var m []float32
		if y != nil {
			m = y[r : r+c]
		}
		for j, v := range x[r : r+c] {
			d := g[j]
			if m != nil && !(m[j] > 0) {
				d = 0
			}
			o[j] = scale[j] * (d - k1[j] - (v-mu[j])*rs[j]*k2[j])
		}
	}
}

// runRows is bkTask.run for NHWC: unit u is chunk u, its rows contiguous.
func (t *bkTask) runRows(lo, hi int) {
	c, row := t.c, t.hw*t.c
	for k := lo; k < hi; k++ {
		i0 := k * t.chunk
		a, e := i0*row, min(i0+t.chunk, t.n)*row
		switch t.op {
		case bkSums:
			nhwcSumsRun(t.s[k*c:(k+1)*c], t.q[k*c:(k+1)*c], t.x[a:e])
		case bkNorm:
			var z []float32
			if t.z != nil {
				z = t.z[a:e]
			}
			nhwcNormRun(t.y[a:e], t.x[a:e], z, t.mu[:c], t.a[:c], t.b[:c], t.relu)
		case bkGradSums:
			var y []float32
			if t.relu {
				y = t.y[a:e]
			}
			nhwcGradSumsRun(t.s[k*c:(k+1)*c], t.q[k*c:(k+1)*c], t.x[a:e], t.dy[a:e], y, t.mu[:c], t.a[:c])
		case bkDx:
			var y []float32
			if t.relu {
				y = t.out[a:e]
			}
			nhwcDxRun(t.y[a:e], t.dy[a:e], t.x[a:e], y, t.mu[:c], t.a[:c], t.k1[:c], t.k2[:c], t.scale[:c])
		}
	}
}
