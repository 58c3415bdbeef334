package train

import (
	"bytes"
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Series is one labelled curve set of PlotCurves: a run's epoch records.
type Series struct {
	Label   string
	Records []EpochRecord
}

// PlotCurves draws loss (left) and accuracy (right) per epoch, train
// dashed and test solid, one colour per series, and returns a PNG. Several
// series put runs side by side (the README's comparison of optimizers).
func PlotCurves(title string, series ...Series) ([]byte, error) {
	lossP, accP := plot.New(), plot.New()
	lossP.Title.Text, accP.Title.Text = "loss", "accuracy"
	if title != "" {
		lossP.Title.Text = title + ": loss"
		accP.Title.Text = title + ": accuracy"
	}
	for _, p := range []*plot.Plot{lossP, accP} {
		p.X.Label.Text = "epoch"
		p.Legend.Top = true
		p.Add(plotter.NewGrid())
	}
	accP.Legend.Left = false
	accP.Legend.Top = false
	for i, s := range series {
		col := palette[i%len(palette)]
		var trL, teL, trA, teA plotter.XYs
		for _, r := range s.Records {
			x := float64(r.Epoch)
			trL = append(trL, plotter.XY{X: x, Y: r.TrainLoss})
			teL = append(teL, plotter.XY{X: x, Y: r.TestLoss})
			trA = append(trA, plotter.XY{X: x, Y: r.TrainAcc})
			teA = append(teA, plotter.XY{X: x, Y: r.TestAcc})
		}
		if len(trL) == 0 {
			continue
		}
		for _, c := range []struct {
			p      *plot.Plot
			xy     plotter.XYs
			dashed bool
			what   string
		}{{lossP, trL, true, "train"}, {lossP, teL, false, "test"}, {accP, trA, true, "train"}, {accP, teA, false, "test"}} {
			l, pts, err := plotter.NewLinePoints(c.xy)
			if err != nil {
				return nil, fmt.Errorf("train: plotting %s: %w", s.Label, err)
			}
			l.Color, pts.Color = col, col
			pts.Radius = vg.Points(1.5)
			if c.dashed {
				l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			}
			c.p.Add(l, pts)
			label := c.what
			if s.Label != "" {
				label = s.Label + " " + c.what
			}
			c.p.Legend.Add(label, l)
		}
	}
	const w, h = 12 * vg.Inch, 4.5 * vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 2,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	plots := [][]*plot.Plot{{lossP, accP}}
	canvases := plot.Align(plots, tiles, dc)
	lossP.Draw(canvases[0][0])
	accP.Draw(canvases[0][1])
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("train: encoding curves: %w", err)
	}
	return buf.Bytes(), nil
}

var palette = []color.Color{
	color.RGBA{0x1f, 0x77, 0xb4, 0xff}, color.RGBA{0xd6, 0x27, 0x28, 0xff}, color.RGBA{0x2c, 0xa0, 0x2c, 0xff},
	color.RGBA{0xff, 0x7f, 0x0e, 0xff}, color.RGBA{0x94, 0x67, 0xbd, 0xff}, color.RGBA{0x8c, 0x56, 0x4b, 0xff},
	color.RGBA{0xe3, 0x77, 0xc2, 0xff}, color.RGBA{0x7f, 0x7f, 0x7f, 0xff},
}
