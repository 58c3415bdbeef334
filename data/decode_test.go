package data

import (
	"encoding/json"
	"errors"
	"image"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// jpegFixtures is testdata/fixtures/jpeg/pipeline.json, written by
// testdata/gen/gen_jpeg.py with torchvision 0.14 + PIL 9.4 (libjpeg-turbo
// 2.1.5).
type jpegFixtures struct {
	Size, Resize int
	Crops        map[string][]struct {
		Box  [4]int
		Flip bool
	}
	Geometry []struct {
		W, H  int
		Draws []float64
		Box   [4]int
	}
}

const jpegFixtureDir = "../testdata/fixtures/jpeg"

func loadJPEGFixtures(t testing.TB) *jpegFixtures {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(jpegFixtureDir, "pipeline.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f jpegFixtures
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	return &f
}

// needTurbo skips a test of libjpeg-turbo where it is not installed; the
// Go decoder's tests run everywhere.
func needTurbo(t testing.TB) {
	t.Helper()
	if err := loadTurboJPEG(); err != nil {
		t.Skipf("libjpeg-turbo: %v (apt-get install libturbojpeg0 to run this test)", err)
	}
}

// replay plays back recorded uniform draws: Float64 returns the next one,
// IntN(n) maps it as torch.randint does in the fixture, ⌊u·n⌋.
type replay struct {
	u []float64
	k int
}

func (r *replay) Float64() float64 { r.k++; return r.u[r.k-1] }
func (r *replay) IntN(n int) int   { return int(math.Floor(r.Float64() * float64(n))) }

// TestCropGeometryMatchesTorchvision feeds RandomResizedCrop the draws
// torchvision's get_params was given and wants the same boxes, fallback
// included (the 1000×60 and 60×1000 images fail their ten tries often).
func TestCropGeometryMatchesTorchvision(t *testing.T) {
	f := loadJPEGFixtures(t)
	if len(f.Geometry) < 100 {
		t.Fatalf("%d geometry cases", len(f.Geometry))
	}
	fallbacks := 0
	for k, c := range f.Geometry {
		r := &replay{u: c.Draws}
		got := randomResizedCropRect(r, c.W, c.H)
		want := image.Rect(c.Box[0], c.Box[1], c.Box[2], c.Box[3])
		if got != want {
			t.Errorf("case %d (%d×%d): box %v, torchvision %v", k, c.W, c.H, got, want)
		}
		if r.k == 20 { // ten failed tries of two draws each: the fallback
			fallbacks++
		}
	}
	if fallbacks == 0 {
		t.Error("no case reached the fallback")
	}
}

func TestPickScale(t *testing.T) {
	fs := []scaleFactor{{1, 8}, {1, 4}, {3, 8}, {1, 2}, {5, 8}, {3, 4}, {7, 8}, {1, 1}}
	for _, tc := range []struct {
		w, h, minW, minH int
		want             scaleFactor
	}{
		{500, 375, 224, 224, scaleFactor{5, 8}}, // 375·5/8 = 234 ≥ 224; 1/2 gives 187
		{448, 448, 224, 224, scaleFactor{1, 2}}, // exactly enough
		{449, 447, 224, 224, scaleFactor{5, 8}},
		{1792, 1800, 224, 224, scaleFactor{1, 8}},
		{100, 80, 224, 224, scaleFactor{1, 1}},  // upsampling: full size
		{500, 375, 341, 256, scaleFactor{3, 4}}, // Resize(256) of 500×375: 375·3/4 = 281 ≥ 256
	} {
		if got := pickScale(fs, tc.w, tc.h, tc.minW, tc.minH); got != tc.want {
			t.Errorf("pickScale(%d×%d ≥ %d×%d) = %d/%d, want %d/%d", tc.w, tc.h, tc.minW, tc.minH, got.num, got.denom, tc.want.num, tc.want.denom)
		}
	}
	if loadTurboJPEG() == nil {
		if got := turboFactors; len(got) != 8 || got[0] != (scaleFactor{1, 8}) || got[7] != unitScale {
			t.Errorf("libjpeg-turbo's reductions: %v", got)
		}
	}
}

func TestChooseJPEG(t *testing.T) {
	present := func() error { return nil }
	absent := func() error { return errors.New("libturbojpeg.so.0 not found") }
	for _, tc := range []struct {
		env     string
		load    func() error
		want    jpegBackend
		warn    string // substring; "" means no warning
		wantErr string
	}{
		{"", present, jpegTurbo, "", ""},
		{"", absent, jpegGo, "decoding JPEGs with Go's image/jpeg", ""},
		{"go", present, jpegGo, "", ""},
		{"go", absent, jpegGo, "", ""},
		{"turbo", present, jpegTurbo, "", ""},
		{"turbo", absent, jpegGo, "", "MACDIST_JPEG=turbo, but libturbojpeg.so.0 not found"},
		{"pil", present, jpegTurbo, `ignoring MACDIST_JPEG="pil"`, ""},
	} {
		got, warn, err := chooseJPEG(tc.env, tc.load)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("MACDIST_JPEG=%q: error %v, want %q", tc.env, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("MACDIST_JPEG=%q: %v, %v; want %v", tc.env, got, err, tc.want)
		}
		if (tc.warn == "") != (warn == "") || !strings.Contains(warn, tc.warn) {
			t.Errorf("MACDIST_JPEG=%q: warning %q, want %q", tc.env, warn, tc.warn)
		}
	}
}

// fixtureFolder opens the fixture JPEGs as an ImageFolder (train = val =
// the four images) at the fixture's sizes, unnormalised (p/255), with the
// decoder MACDIST_JPEG names.
func fixtureFolder(t testing.TB, f *jpegFixtures, env string) (names []string, train, val *ImageFolder) {
	t.Helper()
	t.Setenv("MACDIST_JPEG", env)
	root := t.TempDir()
	names = []string{"c420", "c444", "grey", "odd"}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(jpegFixtureDir, n+".jpg"))
		if err != nil {
			t.Fatal(err)
		}
		for _, split := range []string{"train", "val"} {
			writeFile(t, filepath.Join(root, split, "c", n+".jpg"), b)
		}
	}
	tr, te, err := Open("imagefolder:"+root, Options{ImageSize: f.Size, ResizeSize: f.Resize, NoNormalize: true})
	if err != nil {
		t.Fatal(err)
	}
	return names, tr.(*ImageFolder), te.(*ImageFolder)
}

// pngLevels reads a fixture PNG as CHW floats p/255.
func pngLevels(t testing.TB, name string) []float32 {
	t.Helper()
	fh, err := os.Open(filepath.Join(jpegFixtureDir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	img, err := png.Decode(fh)
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	n := b.Dx() * b.Dy()
	out := make([]float32, 3*n)
	for y := range b.Dy() {
		for x := range b.Dx() {
			r, g, bl, _ := img.At(x, y).RGBA()
			i := y*b.Dx() + x
			out[i], out[n+i], out[2*n+i] = float32(r>>8)/255, float32(g>>8)/255, float32(bl>>8)/255
		}
	}
	return out
}

// levelDiff is the largest and the mean absolute difference of two p/255
// images, in levels of 255.
func levelDiff(a, b []float32) (maxd, mean float64) {
	for i := range a {
		d := math.Abs(float64(a[i]-b[i])) * 255
		maxd = max(maxd, d)
		mean += d
	}
	return maxd, mean / float64(len(a))
}

// TestJPEGMatchesTorchvision measures how far our pixels are from
// torchvision + PIL's on the fixture JPEGs, with the same boxes, for each
// decoder: libjpeg-turbo at full size (PIL's decode exactly, so only the
// resampling's rounding differs: PIL rounds to 8 bits after each pass, we
// once), libjpeg-turbo at the DCT scale the crop allows (what training
// uses: a reduced IDCT instead of PIL's averaging of full-size pixels), and
// Go's image/jpeg (a different IDCT and chroma upsampling).
func TestJPEGMatchesTorchvision(t *testing.T) {
	f := loadJPEGFixtures(t)
	type bound struct{ max, mean float64 }
	// Measured on the fixtures (max / mean levels): libjpeg-turbo at full
	// size 1 / 0.003, at the DCT scale 6 / 0.48, Go's decoder 4 / 0.19.
	// Per image (max, mean) and over all of them (mean):
	bounds := map[string]bound{"turbo-full": {1.01, 0.012}, "turbo": {8, 1}, "go": {6, 0.5}}
	overall := map[string]float64{"turbo-full": 0.005, "turbo": 0.6, "go": 0.3}
	for _, variant := range []string{"turbo-full", "turbo", "go"} {
		env := "turbo"
		if variant == "go" {
			env = "go"
		} else if loadTurboJPEG() != nil {
			t.Logf("%s: libjpeg-turbo not installed", variant)
			continue
		}
		names, train, val := fixtureFolder(t, f, env)
		if variant == "turbo-full" {
			train.scales, val.scales = []scaleFactor{unitScale}, []scaleFactor{unitScale}
		}
		if (train.scales != nil) != (env == "turbo") {
			t.Fatalf("MACDIST_JPEG=%s: scales %v", env, train.scales)
		}
		out := make([]float32, 3*f.Size*f.Size)
		var worst, sum float64
		n := 0
		check := func(what string, want []float32) {
			m, mean := levelDiff(out, want)
			if m > bounds[variant].max || mean > bounds[variant].mean {
				t.Errorf("%s %s: %.1f levels apart at most, %.2f on average; want ≤ %v", variant, what, m, mean, bounds[variant])
			}
			worst, sum, n = max(worst, m), sum+mean, n+1
		}
		s := new(resampler)
		for i, name := range names {
			if _, err := val.Get(i, out, nil); err != nil {
				t.Fatal(err)
			}
			check(name+" eval", pngLevels(t, name+"_eval.png"))
			enc, err := os.ReadFile(filepath.Join(jpegFixtureDir, name+".jpg"))
			if err != nil {
				t.Fatal(err)
			}
			for k, c := range f.Crops[name] {
				p := cropPlan{box: image.Rect(c.Box[0], c.Box[1], c.Box[2], c.Box[3]), fullW: f.Size, fullH: f.Size, flip: c.Flip}
				if variant == "go" {
					img, _, err := image.Decode(strings.NewReader(string(enc)))
					if err != nil {
						t.Fatal(err)
					}
					train.renderGo(s, img, p, out)
				} else {
					w, h, ok, err := s.turbo(enc)
					if err != nil || !ok {
						t.Fatal(err, ok)
					}
					if err := train.renderTurbo(s, enc, w, h, p, out, nil); err != nil {
						t.Fatal(err)
					}
				}
				check(name+" crop "+string(rune('0'+k)), pngLevels(t, name+"_crop"+string(rune('0'+k))+".png"))
			}
		}
		if sum/float64(n) > overall[variant] {
			t.Errorf("%s: %.2f levels apart on average, want ≤ %v", variant, sum/float64(n), overall[variant])
		}
		t.Logf("%-10s vs torchvision+PIL: at most %.1f levels of 255, %.4f on average over %d images", variant, worst, sum/float64(n), n)
	}
}

// TestDCTScaleAgainstFullDecode compares training crops decoded at the DCT
// scale the crop allows with the same crops from a full-size decode: the
// reduced IDCT averages 2–8 pixels per output pixel where PIL's filter
// would weigh them with a triangle, which moves a pixel by a few levels.
func TestDCTScaleAgainstFullDecode(t *testing.T) {
	needTurbo(t)
	f := loadJPEGFixtures(t)
	names, train, val := fixtureFolder(t, f, "turbo")
	full := &ImageFolder{size: train.size, resize: train.resize, luts: train.luts, scales: []scaleFactor{unitScale}}
	a, b := make([]float32, 3*f.Size*f.Size), make([]float32, 3*f.Size*f.Size)
	s := new(resampler)
	var worst, sum float64
	n, reduced := 0, 0
	for i, name := range names {
		enc, err := os.ReadFile(filepath.Join(jpegFixtureDir, name+".jpg"))
		if err != nil {
			t.Fatal(err)
		}
		w, h, _, err := s.turbo(enc)
		if err != nil {
			t.Fatal(err)
		}
		for k := range 40 {
			var p cropPlan
			if k == 0 {
				p, _ = val.plan(w, h, nil)
			} else {
				p, _ = train.plan(w, h, AugmentRand(1, 0, 100*i+k))
			}
			if pickScale(train.scales, p.box.Dx(), p.box.Dy(), p.fullW, p.fullH) != unitScale {
				reduced++
			}
			if err := train.renderTurbo(s, enc, w, h, p, a, nil); err != nil {
				t.Fatal(err)
			}
			if err := full.renderTurbo(s, enc, w, h, p, b, nil); err != nil {
				t.Fatal(err)
			}
			m, mean := levelDiff(a, b)
			if m > 10 || mean > 1.2 {
				t.Errorf("%s crop %d %v: scaled decode %.1f levels from the full one at most, %.2f on average", name, k, p.box, m, mean)
			}
			worst, sum, n = max(worst, m), sum+mean, n+1
		}
	}
	if reduced < n/3 {
		t.Errorf("only %d of %d crops were decoded at a reduced scale", reduced, n)
	}
	if sum/float64(n) > 0.6 {
		t.Errorf("scaled decodes are %.2f levels from full ones on average", sum/float64(n))
	}
	t.Logf("%d of %d crops decoded reduced; at most %.1f levels of 255 from the full decode, %.2f on average", reduced, n, worst, sum/float64(n))
}

// TestBadJPEG: a truncated or corrupt JPEG is an error naming the file,
// with either decoder, never a panic or a grey image.
func TestBadJPEG(t *testing.T) {
	good, err := os.ReadFile(filepath.Join(jpegFixtureDir, "c420.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	corrupt := append([]byte(nil), good...)
	for i := len(corrupt) / 2; i < len(corrupt)/2+400; i++ {
		corrupt[i] = 0xff // markers where entropy-coded data should be
	}
	bad := map[string][]byte{
		"truncated.jpg": good[:len(good)*6/10],
		"header.jpg":    good[:300],
		"corrupt.jpg":   corrupt,
		"soi.jpg":       {0xff, 0xd8, 0xff, 0xe0, 0, 2},
		"empty.jpg":     {},
	}
	for _, env := range []string{"turbo", "go"} {
		if env == "turbo" && loadTurboJPEG() != nil {
			continue
		}
		t.Run(env, func(t *testing.T) {
			t.Setenv("MACDIST_JPEG", env)
			root := t.TempDir()
			writeFile(t, filepath.Join(root, "train", "a", "good.jpg"), good)
			writeFile(t, filepath.Join(root, "val", "a", "good.jpg"), good)
			for name, b := range bad {
				writeFile(t, filepath.Join(root, "train", "a", name), b)
			}
			tr, _, err := Open("imagefolder:"+root, Options{ImageSize: 64})
			if err != nil {
				t.Fatal(err)
			}
			d := tr.(*ImageFolder)
			dst := make([]float32, 3*64*64)
			failed := 0
			for i := range d.Len() {
				for _, rng := range []*rand.Rand{nil, AugmentRand(1, 0, i)} {
					_, err := d.Get(i, dst, rng)
					base := filepath.Base(d.File(i))
					if base == "good.jpg" {
						if err != nil {
							t.Errorf("good.jpg: %v", err)
						}
						continue
					}
					var se *SampleError
					if !errors.As(err, &se) || se.File != d.File(i) || !strings.Contains(err.Error(), base) {
						t.Errorf("%s: error %v, want one naming the file", base, err)
						continue
					}
					failed++
				}
			}
			if failed != 2*len(bad) {
				t.Errorf("%d failures, want %d", failed, 2*len(bad))
			}
		})
	}
}

// TestJPEGDecoderChoice: MACDIST_JPEG=go decodes with Go even where
// libjpeg-turbo is installed (the path a machine without it takes), and
// MACDIST_JPEG=turbo uses libjpeg-turbo's scales or fails to open.
func TestJPEGDecoderChoice(t *testing.T) {
	f := loadJPEGFixtures(t)
	_, train, _ := fixtureFolder(t, f, "go")
	if train.scales != nil {
		t.Errorf("MACDIST_JPEG=go: decoding with libjpeg-turbo")
	}
	t.Setenv("MACDIST_JPEG", "turbo")
	_, _, err := Open("imagefolder:"+jpegFixtureDir+"/..", Options{})
	if loadTurboJPEG() != nil {
		if err == nil || !strings.Contains(err.Error(), "MACDIST_JPEG=turbo") {
			t.Errorf("MACDIST_JPEG=turbo without libjpeg-turbo: %v", err)
		}
		return
	}
	_, train, _ = fixtureFolder(t, f, "turbo")
	if len(train.scales) == 0 {
		t.Error("MACDIST_JPEG=turbo: not decoding with libjpeg-turbo")
	}
	if d := JPEGDecoder(); !strings.Contains(d, "libjpeg-turbo") {
		t.Errorf("JPEGDecoder() = %q", d)
	}
}

// TestTurboSteadyStateAllocs: a worker's decode reuses its handle and
// buffers.
func TestTurboSteadyStateAllocs(t *testing.T) {
	needTurbo(t)
	f := loadJPEGFixtures(t)
	_, train, _ := fixtureFolder(t, f, "turbo")
	enc, err := os.ReadFile(filepath.Join(jpegFixtureDir, "c420.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	s := new(resampler)
	dst := make([]float32, 3*f.Size*f.Size)
	rng := AugmentRand(1, 0, 0)
	run := func() {
		w, h, _, err := s.turbo(enc)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := train.plan(w, h, rng)
		p.box = image.Rect(0, 0, w, h) // the largest buffers, so that warm-up sizes them
		if err := train.renderTurbo(s, enc, w, h, p, dst, nil); err != nil {
			t.Fatal(err)
		}
	}
	run()
	if a := testing.AllocsPerRun(20, run); a != 0 {
		t.Errorf("%v allocations per image", a)
	}
}
