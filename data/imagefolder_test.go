package data

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// folderFiles is a small ImageFolder tree (slash paths → bytes) with the
// order torchvision gives it: classes sorted by byte value (upper case
// first), files by folder then name, sub-folders after their parent's files.
func folderFiles(t testing.TB) (files map[string][]byte, order []string, colors map[string]color.NRGBA) {
	colors = map[string]color.NRGBA{
		"train/Zebra/z.png":         {10, 20, 30, 255},
		"train/bird/a.png":          {200, 100, 50, 255},
		"train/bird/c.png":          {0, 255, 128, 255},
		"train/bird/sub/b.png":      {1, 2, 3, 255},
		"train/bird/sub-x/d.PNG":    {4, 5, 6, 255},
		"train/bird/sub/deep/e.png": {7, 8, 9, 128}, // alpha is dropped, not composited
		"train/dog/1.png":           {90, 90, 90, 255},
		"val/bird/v.png":            {50, 60, 70, 255},
		"val/dog/w.png":             {80, 70, 60, 255},
	}
	files = map[string][]byte{}
	for name, c := range colors {
		w, h := 20+len(name)%7, 16+len(name)%5 // assorted sizes, shorter side ≥ 16
		files[name] = uniformPNG(t, w, h, c)
	}
	files["train/Zebra/z.png"] = uniformPNG(t, 20, 16, colors["train/Zebra/z.png"])
	files["train/cat/x.jpg"] = gradientJPEG(t, 40, 30)
	files["train/cat/notes.txt"] = []byte("not an image")
	files["val/cat/y.jpeg"] = gradientJPEG(t, 24, 24)
	order = []string{
		"train/Zebra/z.png",
		// sorted(os.walk()) orders folders as strings: sub < sub-x < sub/deep.
		"train/bird/a.png", "train/bird/c.png", "train/bird/sub/b.png", "train/bird/sub-x/d.PNG", "train/bird/sub/deep/e.png",
		"train/cat/x.jpg",
		"train/dog/1.png",
	}
	return files, order, colors
}

func writeTree(t testing.TB, root string, files map[string][]byte) {
	for name, b := range files {
		writeFile(t, filepath.Join(root, filepath.FromSlash(name)), b)
	}
}

func TestImageFolder(t *testing.T) {
	files, order, colors := folderFiles(t)
	dir := t.TempDir()
	writeTree(t, filepath.Join(dir, "tree"), files)
	nested := map[string][]byte{}
	dotted := map[string][]byte{}
	for n, b := range files {
		nested["mydata/"+n] = b
		dotted["./"+n] = b
	}
	writeTar(t, filepath.Join(dir, "nested.tar.gz"), nested, true)
	writeTar(t, filepath.Join(dir, "dotted.tar"), dotted, false)

	wantClasses := []string{"Zebra", "bird", "cat", "dog"}
	wantLabels := []int{0, 1, 1, 1, 1, 1, 2, 3}
	var ref [][]float32 // decoded training samples of the directory, to compare the archives with
	for _, tc := range []struct {
		name, path, member string
	}{
		{"directory", filepath.Join(dir, "tree"), ""},
		{"nested tar.gz", filepath.Join(dir, "nested.tar.gz"), "mydata/"},
		{"plain tar with ./", filepath.Join(dir, "dotted.tar"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, te, err := Open("imagefolder:"+tc.path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			train, test := tr.(*ImageFolder), te.(*ImageFolder)
			if got := train.ClassNames(); !slices.Equal(got, wantClasses) {
				t.Fatalf("classes %v, want %v", got, wantClasses)
			}
			if c, h, w := train.Shape(); c != 3 || h != 16 || w != 16 {
				t.Errorf("shape %d×%d×%d, want 3×16×16 (shorter side of the first image)", c, h, w)
			}
			if train.Len() != len(order) || test.Len() != 3 || test.Classes() != 4 {
				t.Fatalf("train %d, test %d (classes %d)", train.Len(), test.Len(), test.Classes())
			}
			for i, name := range order {
				want := name
				if tc.member != "" || tc.path != filepath.Join(dir, "tree") {
					want = tc.path + ":" + tc.member + name
				} else {
					want = filepath.Join(tc.path, filepath.FromSlash(name))
				}
				if got := train.File(i); got != want {
					t.Errorf("file %d = %s, want %s", i, got, want)
				}
				if train.Label(i) != wantLabels[i] {
					t.Errorf("label of %s = %d, want %d", name, train.Label(i), wantLabels[i])
				}
			}
			// Evaluation decoding of a uniform image is its colour, normalised.
			dst := make([]float32, 3*16*16)
			var got [][]float32
			for i, name := range order {
				y, err := train.Get(i, dst, nil)
				if err != nil || y != wantLabels[i] {
					t.Fatalf("Get(%d): %d, %v", i, y, err)
				}
				got = append(got, slices.Clone(dst))
				c, ok := colors[name]
				if !ok {
					continue
				}
				for ch, p := range []uint8{c.R, c.G, c.B} {
					want := (float32(p)/255 - ImageNetStats.Mean[ch]) / ImageNetStats.Std[ch]
					for k := ch * 256; k < (ch+1)*256; k++ {
						if dst[k] != want {
							t.Fatalf("%s channel %d pixel %d = %g, want %g", name, ch, k-ch*256, dst[k], want)
						}
					}
				}
			}
			if ref == nil {
				ref = got
			} else {
				for i := range got {
					if !slices.Equal(got[i], ref[i]) {
						t.Errorf("sample %d decodes differently from the directory", i)
					}
				}
			}
			if y, _ := test.Get(1, dst, nil); y != 2 {
				t.Errorf("val/cat/y.jpeg label %d, want 2", y)
			}
		})
	}
}

// TestImageFolderEvalGeometry: Resize(shorter side) then CenterCrop, on
// an image whose columns are distinguishable.
func TestImageFolderEvalGeometry(t *testing.T) {
	img := image.NewGray(image.Rect(0, 0, 6, 2)) // columns 0, 40, 80, 120, 160, 200
	for y := range 2 {
		for x := range 6 {
			img.SetGray(x, y, color.Gray{uint8(40 * x)})
		}
	}
	var b bytes.Buffer
	png.Encode(&b, img)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "train/a/0.png"), b.Bytes())
	writeFile(t, filepath.Join(dir, "test/a/0.png"), b.Bytes())
	for _, tc := range []struct {
		size, resize int
		want         []float32 // one row, grey
	}{
		// Values as PIL 9.4 gives for resize((w, h), BILINEAR) then the crop.
		{2, 2, []float32{80, 120}}, // Resize(2) keeps 6×2; crop offset round(2.0) = 2
		{2, 4, []float32{90, 110}}, // Resize(4): 12×4, crop at x=5: ¾·80+¼·120, ¼·80+¾·120
		{1, 1, []float32{100}},     // Resize(1): 3×1, crop x=1: taps 40,80,120,160 weighted ¼,¾,¾,¼ over 2
	} {
		tr, _, err := Open("imagefolder:"+dir, Options{ImageSize: tc.size, ResizeSize: tc.resize, NoNormalize: true})
		if err != nil {
			t.Fatal(err)
		}
		dst := make([]float32, 3*tc.size*tc.size)
		tr.Get(0, dst, nil)
		for x, want := range tc.want {
			if got := dst[x] * 255; got < want-1.01 || got > want+1.01 {
				t.Errorf("size %d resize %d: column %d = %g, want %g (row %v)", tc.size, tc.resize, x, got, want, dst[:tc.size])
			}
		}
	}
}

func TestTinyImageNetLayout(t *testing.T) {
	files := map[string][]byte{
		"tiny/wnids.txt":                   []byte("n02\nn01\n"),
		"tiny/train/n01/images/n01_0.JPEG": gradientJPEG(t, 64, 64),
		"tiny/train/n01/n01_boxes.txt":     []byte("n01_0.JPEG\t0\t0\t10\t10\n"),
		"tiny/train/n02/images/n02_0.JPEG": gradientJPEG(t, 64, 64),
		"tiny/train/n02/images/n02_1.JPEG": gradientJPEG(t, 64, 64),
		"tiny/val/images/val_0.JPEG":       gradientJPEG(t, 64, 64),
		"tiny/val/images/val_1.JPEG":       gradientJPEG(t, 64, 64),
		"tiny/val/val_annotations.txt":     []byte("val_0.JPEG\tn02\t0\t0\t5\t5\nval_1.JPEG\tn01\t1\t1\t6\t6\n"),
		"tiny/test/images/test_0.JPEG":     gradientJPEG(t, 64, 64),
	}
	dir := t.TempDir()
	writeTar(t, filepath.Join(dir, "tiny.tar.gz"), files, true)
	writeTree(t, filepath.Join(dir, "x"), files)
	for _, p := range []string{filepath.Join(dir, "tiny.tar.gz"), filepath.Join(dir, "x")} { // a directory with the tree one folder down
		tr, te, err := Open("imagefolder:"+p, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if c, h, w := tr.Shape(); tr.Len() != 3 || tr.Classes() != 2 || h != 64 || w != 64 || c != 3 {
			t.Fatalf("%s: train %d samples %d classes %d×%d", p, tr.Len(), tr.Classes(), h, w)
		}
		if te.Len() != 2 || te.(*ImageFolder).Label(0) != 1 || te.(*ImageFolder).Label(1) != 0 {
			t.Fatalf("%s: val %d samples, labels %d %d; want 2, 1 0", p, te.Len(), te.(*ImageFolder).Label(0), te.(*ImageFolder).Label(1))
		}
	}
}

func TestImageFolderErrors(t *testing.T) {
	png1 := uniformPNG(t, 8, 8, color.NRGBA{1, 2, 3, 255})
	for _, tc := range []struct {
		name  string
		files map[string][]byte
		tar   bool
		want  string
	}{
		{"no train", map[string][]byte{"val/a/x.png": png1}, false, "no train/CLASS/IMAGE files"},
		{"no val", map[string][]byte{"train/a/x.png": png1}, false, "no evaluation images"},
		{"val class unknown", map[string][]byte{"train/a/x.png": png1, "val/b/y.png": png1}, false, `class folder "b", which train/ does not have`},
		{"empty class", map[string][]byte{"train/a/x.png": png1, "train/b/x.txt": nil, "val/a/y.png": png1}, false, "train/b has no image files"},
		{"two roots", map[string][]byte{"p/train/a/x.png": png1, "q/train/a/x.png": png1, "p/val/a/x.png": png1}, true, "both p/train/ and q/train/"},
		{"annotation names a missing file", map[string][]byte{"train/a/x.png": png1, "val/val_annotations.txt": []byte("v.png a\n")}, false, "val/images/v.png is missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "tree")
			if tc.tar {
				p = filepath.Join(dir, "tree.tar.gz")
				writeTar(t, p, tc.files, true)
			} else {
				writeTree(t, p, tc.files)
				os.MkdirAll(p, 0o755)
			}
			_, _, err := Open("imagefolder:"+p, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Errorf("error %v, want it to name %s and say %q", err, p, tc.want)
			}
		})
	}
	t.Run("truncated archive", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "a.tar.gz")
		writeTar(t, p, map[string][]byte{"train/a/x.png": png1, "val/a/x.png": png1}, true)
		b, _ := os.ReadFile(p)
		os.WriteFile(p, b[:len(b)/2], 0o644)
		if _, _, err := Open("imagefolder:"+p, Options{}); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("error %v, want one naming %s", err, p)
		}
	})
}

// TestImageFolderCorruptSample: a bad file fails its own sample, naming it,
// both from Get and through the Loader.
func TestImageFolderCorruptSample(t *testing.T) {
	png1 := uniformPNG(t, 8, 8, color.NRGBA{1, 2, 3, 255})
	files := map[string][]byte{
		"train/a/0.png": png1, "train/a/1.jpg": []byte("\xff\xd8 truncated jpeg"), "train/a/2.png": png1,
		"train/b/0.png": png1[:len(png1)/2], "val/a/0.png": png1,
	}
	dir := t.TempDir()
	writeTree(t, filepath.Join(dir, "t"), files)
	writeTar(t, filepath.Join(dir, "t.tar"), files, false)
	for _, p := range []string{filepath.Join(dir, "t"), filepath.Join(dir, "t.tar")} {
		tr, _, err := Open("imagefolder:"+p, Options{ImageSize: 8})
		if err != nil {
			t.Fatal(err)
		}
		dst := make([]float32, 3*8*8)
		for _, bad := range []int{1, 3} {
			_, err := tr.Get(bad, dst, AugmentRand(0, 0, bad))
			var se *SampleError
			if !errors.As(err, &se) || se.Index != bad || se.File != tr.(*ImageFolder).File(bad) || !strings.Contains(se.File, p) {
				t.Fatalf("%s sample %d: error %v", p, bad, err)
			}
		}
		l := newLoader(t, tr, LoaderConfig{BatchSize: 2, Workers: 2})
		l.Start(context.Background(), 0)
		_, err = l.Next()
		var se *SampleError
		if !errors.As(err, &se) || se.Index != 1 || !strings.Contains(err.Error(), "1.jpg") {
			t.Fatalf("loader error %v, want sample 1 (1.jpg)", err)
		}
	}
}

// TestImageFolderAugment: training samples are random-resized crops, the
// same for the same generator, different for another, and flips happen.
func TestImageFolderAugment(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "train/a/0.jpg"), gradientJPEG(t, 120, 90))
	writeFile(t, filepath.Join(dir, "val/a/0.jpg"), gradientJPEG(t, 120, 90))
	tr, te, err := Open("imagefolder:"+dir, Options{ImageSize: 32})
	if err != nil {
		t.Fatal(err)
	}
	a, b, e := make([]float32, 3*32*32), make([]float32, 3*32*32), make([]float32, 3*32*32)
	tr.Get(0, a, AugmentRand(1, 0, 0))
	tr.Get(0, b, AugmentRand(1, 0, 0))
	if !slices.Equal(a, b) {
		t.Fatal("same generator, different crops")
	}
	distinct := 0
	for ep := 1; ep < 10; ep++ {
		tr.Get(0, b, AugmentRand(1, ep, 0))
		if !slices.Equal(a, b) {
			distinct++
		}
	}
	if distinct < 8 {
		t.Errorf("%d of 9 epochs gave a new crop", distinct)
	}
	// Evaluation ignores the generator.
	te.Get(0, a, nil)
	te.Get(0, e, AugmentRand(1, 0, 0))
	if !slices.Equal(a, e) {
		t.Error("the evaluation set augmented")
	}
	// AugmentNone makes training decode like evaluation.
	tr2, _, _ := Open("imagefolder:"+dir, Options{ImageSize: 32, Augment: AugmentNone})
	tr2.Get(0, b, AugmentRand(1, 0, 0))
	if !slices.Equal(a, b) {
		t.Error("AugmentNone still augments")
	}
}

// TestCIFAR10JPEGArchive reads the shared CIFAR-10 JPEG archive when the
// checkout has it beside it (CI does); the product never depends on it.
func TestCIFAR10JPEGArchive(t *testing.T) {
	p := filepath.Join("..", "..", "shared", "datasets", "cifar10-jpeg.tar.gz")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s not present: %v", p, err)
	}
	if testing.Short() {
		t.Skip("reading 60 000 JPEGs; skipped with -short")
	}
	tr, te, err := Open("imagefolder:"+p, Options{Augment: AugmentDefault})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"}
	if got := tr.(*ImageFolder).ClassNames(); !slices.Equal(got, want) {
		t.Errorf("classes %v", got)
	}
	if c, h, w := tr.Shape(); tr.Len() != 50000 || te.Len() != 10000 || c != 3 || h != 32 || w != 32 {
		t.Fatalf("train %d test %d shape %d×%d×%d", tr.Len(), te.Len(), c, h, w)
	}
	if f := te.(*ImageFolder).File(0); !strings.HasSuffix(f, ":cifar10-jpeg/test/airplane/0000.jpg") {
		t.Errorf("first test file %s", f)
	}
	l := newLoader(t, tr, LoaderConfig{BatchSize: 256, Shuffle: true, Seed: 1})
	l.Start(context.Background(), 0)
	var sum float64
	var n int
	for range 4 {
		b, err := l.Next()
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range b.X {
			sum += float64(v)
		}
		n += len(b.X)
	}
	// Normalised with ImageNet statistics, CIFAR's mean comes out near 0.
	if m := sum / float64(n); m < -0.5 || m > 0.5 {
		t.Errorf("mean normalised value %.3f", m)
	}
	if _, err := l.Next(); err == io.EOF {
		t.Error("epoch ended early")
	}
}

// TestImageFolderCropFlipMatchesCIFAR stores the same 32×32 images as CIFAR
// binary records and as PNGs in an ImageFolder tree: with crop-flip and
// CIFAR's statistics both must give the same tensors for the same
// generator, since they implement the same torchvision recipe.
func TestImageFolderCropFlipMatchesCIFAR(t *testing.T) {
	const n = 6
	recs := cifarRecords(n, func(int) []byte { return []byte{0} })
	cifarDir, folder := t.TempDir(), t.TempDir()
	for _, f := range []string{"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"} {
		writeFile(t, filepath.Join(cifarDir, f), recs)
	}
	for i := range n {
		img := image.NewNRGBA(image.Rect(0, 0, 32, 32))
		rec := recs[i*(1+cifarImage)+1:]
		for p := range 32 * 32 {
			img.Pix[4*p], img.Pix[4*p+1], img.Pix[4*p+2], img.Pix[4*p+3] = rec[p], rec[1024+p], rec[2048+p], 255
		}
		var b bytes.Buffer
		if err := png.Encode(&b, img); err != nil {
			t.Fatal(err)
		}
		for _, split := range []string{"train", "test"} {
			writeFile(t, filepath.Join(folder, split, "a", fmt.Sprintf("%03d.png", i)), b.Bytes())
		}
	}
	stats, _, err := ParseStats("cifar10")
	if err != nil {
		t.Fatal(err)
	}
	cTr, cTe, err := Open("cifar10:"+cifarDir, Options{Augment: AugmentCropFlip})
	if err != nil {
		t.Fatal(err)
	}
	fTr, fTe, err := Open("imagefolder:"+folder, Options{Augment: AugmentCropFlip, Mean: stats.Mean, Std: stats.Std})
	if err != nil {
		t.Fatal(err)
	}
	a, b := make([]float32, 3*32*32), make([]float32, 3*32*32)
	shifted := 0
	for ep := range 4 {
		for i := range n {
			cTr.Get(i, a, AugmentRand(7, ep, i))
			fTr.Get(i, b, AugmentRand(7, ep, i))
			if d := maxAbsDiff(a, b); d > 1e-6 {
				t.Fatalf("epoch %d sample %d: imagefolder crop-flip differs from CIFAR's by %g", ep, i, d)
			}
			cTe.Get(i, b, nil)
			if !slices.Equal(a, b) {
				shifted++
			}
		}
	}
	if shifted < 4*n/2 {
		t.Errorf("only %d of %d samples were shifted or flipped", shifted, 4*n)
	}
	for i := range n {
		cTe.Get(i, a, nil)
		fTe.Get(i, b, AugmentRand(7, 0, i))
		if d := maxAbsDiff(a, b); d > 1e-6 {
			t.Fatalf("test sample %d: %g apart", i, d)
		}
	}
}

func maxAbsDiff(a, b []float32) float64 {
	var m float64
	for i := range a {
		m = max(m, math.Abs(float64(a[i]-b[i])))
	}
	return m
}
