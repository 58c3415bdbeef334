package cpu_test

import (
	"runtime"
	"testing"

	"github.com/macdist/macdist/internal/allocs"
	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
)

// TestNoAllocs checks that kernels allocate nothing in steady state, on
// sizes large enough to be split across goroutines.
func TestNoAllocs(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Log("GOMAXPROCS < 2: the parallel paths are not exercised")
	}
	d, err := cpu.NewWithBLAS("openblas")
	if err != nil {
		d, _ = cpu.NewWithBLAS("gonum")
	}
	const n = 1 << 17
	x, y, z := d.Alloc(n), d.Alloc(n), d.Alloc(n)
	d.Fill(x, 0.5)
	d.Fill(y, 0.25)
	am, av := d.Alloc(n), d.Alloc(n) // AdamW's moments
	mean, rstd := d.Alloc(n/256), d.Alloc(n/256)
	gamma, beta := d.Alloc(256), d.Alloc(256)
	d.Fill(gamma, 1)
	labels := make([]int32, 512)
	cg := kernels.ConvGeom{C: 8, H: 16, W: 16, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1, DilH: 1, DilW: 1}
	col := d.Alloc(4 * cg.ColRows() * cg.ColCols())
	img := d.Alloc(4 * cg.C * cg.H * cg.W)
	pg := kernels.PoolGeom{C: 8, H: 16, W: 16, KH: 2, KW: 2, StrideH: 2, StrideW: 2}
	pooled := d.Alloc(4 * 8 * 8 * 8)
	sm, sr, rm, rv := d.Alloc(64), d.Alloc(64), d.Alloc(64), d.Alloc(64)
	d.Fill(rv, 1)
	ops := []struct {
		name string
		f    func()
	}{
		{"Fill", func() { d.Fill(z, 1) }},
		{"Copy", func() { d.Copy(z, x) }},
		{"Axpby", func() { d.Axpby(y, 0.5, x, 0.9) }},
		{"Add", func() { d.Add(z, x, y) }},
		{"AddReLU", func() { d.AddReLU(z, x, y) }},
		{"ReLU", func() { d.ReLU(z, x) }},
		{"GELU", func() { d.GELU(z, x, false) }},
		{"DropoutMask", func() { d.DropoutMask(z, 0.1, 7) }},
		{"Dot", func() { d.Dot(x, y) }},
		{"AdamW", func() { d.AdamW(z, x, am, av, 1e-3, 0.9, 0.999, 1e-8, 0.01, 3) }},
		{"AddBias", func() { d.AddBias(z, gamma, 8, 64) }},
		{"ReduceSum", func() { d.ReduceSum(z, x, 8, 64, 256, 1, 0) }},
		{"ReduceSumMid", func() { d.ReduceSumMid(gamma, x, 8, 256, 64, 1, 1) }},
		{"Softmax", func() { d.Softmax(z, x, 512, 256) }},
		{"CrossEntropy", func() { d.CrossEntropy(z, x, labels, 512, 256, 0.1) }},
		{"LayerNorm", func() { d.LayerNorm(z, mean, rstd, x, gamma, beta, 512, 256, 1e-5) }},
		{"LayerNormBackward", func() { d.LayerNormBackward(z, gamma, beta, y, x, mean, rstd, gamma, 512, 256) }},
		{"BatchNormTrain", func() { d.BatchNormTrain(z, sm, sr, rm, rv, x, nil, nil, 32, 64, 64, 0.1, 1e-5) }},
		{"BatchNormBackward", func() { d.BatchNormBackward(z, nil, nil, y, x, sm, sr, nil, 32, 64, 64) }},
		{"Im2col", func() { d.Im2col(col, img, cg, 0, 4) }},
		{"Col2im", func() { d.Col2im(img, col, cg, 0, 4) }},
		{"MaxPool2d", func() { d.MaxPool2d(pooled, img, pg, 4) }},
		{"AvgPool2dBackward", func() { d.AvgPool2dBackward(img, pooled, pg, 4) }},
		{"Gemm", func() { d.Gemm(false, true, 64, 64, 64, 1, x, 64, y, 64, 0, z, 64) }},
		{"GemmStrided", func() { d.GemmStrided(false, false, 16, 16, 16, 1, x, 0, 16, 256, y, 0, 16, 256, 0, z, 0, 16, 256, 32) }},
	}
	if d.Convolves(cg, 8, 2, 4, true) { // made here: the first call builds the primitives
		cw, cb, cdw := d.Alloc(8*4*9), d.Alloc(8), d.Alloc(8*4*9)
		cy, cdx := d.Alloc(4*8*16*16), d.Alloc(4*cg.C*cg.H*cg.W)
		ops = append(ops, []struct {
			name string
			f    func()
		}{
			{"ConvForward", func() { d.ConvForward(cy, img, cw, cb, cg, 8, 2, 4) }},
			{"ConvBackward", func() { d.ConvBackward(cdx, cdw, cb, img, cy, cw, cg, 8, 2, 4) }},
		}...)
	} else {
		t.Logf("not on the oneDNN path (%s): its convolutions are not checked", d.DNN())
	}
	if d.SetActivationLayout(kernels.Blocked16) == nil {
		const bl = kernels.Blocked16
		bg := kernels.ConvGeom{C: 16, H: 8, W: 8, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1, DilH: 1, DilW: 1}
		bx, by, bdx := d.Alloc(4*16*64), d.Alloc(4*16*64), d.Alloc(4*16*64)
		bw, bdw := d.Alloc(16*16*9), d.Alloc(16*16*9)
		bpg := kernels.PoolGeom{C: 64, H: 8, W: 8, KH: 3, KW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1}
		d.Convolves(bg, 16, 1, 4, false)
		d.ConvForwardIn(bl, bl, by, bx, bw, nil, bg, 16, 1, 4) // makes the blocked primitives
		ops = append(ops, []struct {
			name string
			f    func()
		}{
			{"ConvForwardIn", func() { d.ConvForwardIn(bl, bl, by, bx, bw, nil, bg, 16, 1, 4) }},
			{"ConvBackwardIn", func() { d.ConvBackwardIn(bl, bl, bdx, bdw, nil, bx, by, bw, bg, 16, 1, 4) }},
			{"Relayout", func() { d.Relayout(z, bl, x, kernels.NCHW, 32, 64, 64) }},
			{"BatchNormTrainIn", func() { d.BatchNormTrainIn(bl, z, sm, sr, rm, rv, x, nil, nil, 32, 64, 64, 0.1, 1e-5) }},
			{"BatchNormEvalIn", func() { d.BatchNormEvalIn(bl, z, x, rm, rv, nil, nil, 32, 64, 64, 1e-5) }},
			{"BatchNormBackwardIn", func() { d.BatchNormBackwardIn(bl, z, nil, nil, y, x, sm, sr, nil, 32, 64, 64) }},
			{"BatchNormReLUTrainIn", func() { d.BatchNormReLUTrainIn(bl, z, sm, sr, rm, rv, x, nil, nil, 32, 64, 64, 0.1, 1e-5) }},
			{"BatchNormReLUBackwardIn", func() { d.BatchNormReLUBackwardIn(bl, z, nil, nil, y, x, x, sm, sr, nil, 32, 64, 64) }},
			{"PlaneSumIn", func() { d.PlaneSumIn(bl, z, x, 32, 64, 64, 1) }},
			{"MaxPool2dIn", func() { d.MaxPool2dIn(bl, z, x, bpg, 32) }},
			{"MaxPool2dBackwardIn", func() { d.MaxPool2dBackwardIn(bl, x, y, x, bpg, 32) }},
			{"PlaneSpreadIn", func() { d.PlaneSpreadIn(bl, z, y, 32, 64, 64, 1) }},
		}...)
	}
	if d.SetActivationLayout(kernels.NHWC) == nil {
		const nl = kernels.NHWC
		// 40 channels: a narrow last block, which the Go loops take.
		ng := kernels.ConvGeom{C: 40, H: 8, W: 8, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1, DilH: 1, DilW: 1}
		nx, ny, ndx := d.Alloc(4*40*64), d.Alloc(4*40*64), d.Alloc(4*40*64)
		nw, ndw := d.Alloc(40*40*9), d.Alloc(40*40*9)
		npg := kernels.PoolGeom{C: 40, H: 8, W: 8, KH: 3, KW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1}
		nsm, nsr, nrm, nrv := d.Alloc(40), d.Alloc(40), d.Alloc(40), d.Alloc(40)
		d.Fill(nrv, 1)
		d.Convolves(ng, 40, 1, 4, false)
		d.ConvForwardIn(nl, nl, ny, nx, nw, nil, ng, 40, 1, 4) // makes the nhwc primitives
		ops = append(ops, []struct {
			name string
			f    func()
		}{
			{"ConvForwardIn nhwc", func() { d.ConvForwardIn(nl, nl, ny, nx, nw, nil, ng, 40, 1, 4) }},
			{"ConvBackwardIn nhwc", func() { d.ConvBackwardIn(nl, nl, ndx, ndw, nil, nx, ny, nw, ng, 40, 1, 4) }},
			{"Relayout nhwc", func() { d.Relayout(z, nl, x, kernels.NCHW, 32, 64, 64) }},
			{"BatchNormTrainIn nhwc", func() { d.BatchNormTrainIn(nl, z, sm, sr, rm, rv, x, nil, nil, 32, 64, 64, 0.1, 1e-5) }},
			{"BatchNormEvalIn nhwc", func() { d.BatchNormEvalIn(nl, z, x, rm, rv, nil, nil, 32, 64, 64, 1e-5) }},
			{"BatchNormBackwardIn nhwc", func() { d.BatchNormBackwardIn(nl, z, nil, nil, y, x, sm, sr, nil, 32, 64, 64) }},
			{"BatchNormReLUTrainIn nhwc c=40", func() { d.BatchNormReLUTrainIn(nl, ny, nsm, nsr, nrm, nrv, nx, nil, nil, 4, 40, 64, 0.1, 1e-5) }},
			{"BatchNormReLUBackwardIn nhwc c=40", func() { d.BatchNormReLUBackwardIn(nl, ndx, nil, nil, ny, ny, nx, nsm, nsr, nil, 4, 40, 64) }},
			{"PlaneSumIn nhwc", func() { d.PlaneSumIn(nl, z, x, 32, 64, 64, 1) }},
			{"PlaneSpreadIn nhwc", func() { d.PlaneSpreadIn(nl, z, y, 32, 64, 64, 1) }},
			{"MaxPool2dIn nhwc", func() { d.MaxPool2dIn(nl, z, nx, npg, 4) }},
			{"MaxPool2dBackwardIn nhwc", func() { d.MaxPool2dBackwardIn(nl, ndx, z, nx, npg, 4) }},
		}...)
	}
	for _, op := range ops {
		if d.BLAS() != "openblas" && (op.name == "Gemm" || op.name == "GemmStrided") {
			continue // gonum's Sgemm starts goroutines of its own
		}
		if a := allocs.Steady(20, op.f); a != 0 {
			t.Errorf("%s: %v allocations per call", op.name, a)
		}
	}
}
