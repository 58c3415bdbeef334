package data

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const fashionDir = DefaultDatasetsDir + "/fashion-mnist"

// TestFashionMNISTReal reads Debian's Fashion-MNIST (dataset-fashion-mnist,
// which `make setup` and CI install) and checks facts about the real data.
func TestFashionMNISTReal(t *testing.T) {
	if _, err := os.Stat(fashionDir); err != nil {
		t.Skipf("%s missing (apt-get install dataset-fashion-mnist): %v", fashionDir, err)
	}
	if testing.Short() {
		// Nothing concurrent here, and under -race (which make test runs
		// with -short) inflating 30 MB takes most of a minute.
		t.Skip("decompressing all of Fashion-MNIST; skipped with -short")
	}
	train, test, err := Open("fashion-mnist", Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		d         Dataset
		n, first  int
		wantClass int
	}{
		{"train", train, 60000, 9, 10}, // sample 0 of both splits is an ankle boot
		{"test", test, 10000, 9, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.d.Len(); got != tc.n {
				t.Errorf("Len = %d, want %d", got, tc.n)
			}
			if c, h, w := tc.d.Shape(); c != 1 || h != 28 || w != 28 {
				t.Errorf("Shape = %d×%d×%d, want 1×28×28", c, h, w)
			}
			if k := tc.d.Classes(); k != tc.wantClass {
				t.Errorf("Classes = %d", k)
			}
			dst := make([]float32, 28*28)
			y, err := tc.d.Get(0, dst, nil)
			if err != nil || y != tc.first {
				t.Errorf("Get(0) label %d, %v; want %d", y, err, tc.first)
			}
			// Normalised with Fashion-MNIST's constants.
			raw := tc.d.(*bytesDataset).pix[:28*28]
			for i, p := range raw {
				want := (float32(p)/255 - 0.2860) / 0.3530
				if dst[i] != want {
					t.Fatalf("pixel %d: %g, want %g", i, dst[i], want)
				}
			}
		})
	}
	var sum float64
	pix := train.(*bytesDataset).pix
	for _, p := range pix {
		sum += float64(p)
	}
	if mean := sum / float64(len(pix)) / 255; math.Abs(mean-0.2860) > 5e-4 {
		t.Errorf("mean training pixel %.5f, want ≈ 0.2860", mean)
	}
}

// mnistDir writes a small MNIST-style directory: n images h×w whose pixel
// (i, k) is (7i+k) mod 256, labels i mod 10.
func mnistDir(t *testing.T, n, h, w int, gz bool, dotted bool) string {
	dir := t.TempDir()
	for _, split := range []string{"train", "t10k"} {
		pix := make([]byte, n*h*w)
		for i := range n {
			for k := range h * w {
				pix[i*h*w+k] = byte(7*i + k)
			}
		}
		lbl := make([]byte, n)
		for i := range lbl {
			lbl[i] = byte(i % 10)
		}
		img, lab := idxBytes([]int{n, h, w}, pix), idxBytes([]int{n}, lbl)
		iname, lname := split+"-images-idx3-ubyte", split+"-labels-idx1-ubyte"
		if dotted {
			iname, lname = split+"-images.idx3-ubyte", split+"-labels.idx1-ubyte"
		}
		if gz {
			img, lab = gzipBytes(t, img), gzipBytes(t, lab)
			iname, lname = iname+".gz", lname+".gz"
		}
		writeFile(t, filepath.Join(dir, iname), img)
		writeFile(t, filepath.Join(dir, lname), lab)
	}
	return dir
}

func TestIDXFiles(t *testing.T) {
	for _, tc := range []struct {
		name       string
		gz, dotted bool
		spec       string
	}{
		{"raw", false, false, "mnist:"},
		{"gz", true, false, "fashion-mnist:"},
		{"dotted-raw", false, true, "mnist:"},
		{"dotted-gz", true, true, "mnist:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := mnistDir(t, 13, 3, 4, tc.gz, tc.dotted)
			train, test, err := Open(tc.spec+dir, Options{NoNormalize: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range []Dataset{train, test} {
				if d.Len() != 13 {
					t.Fatalf("Len %d, want 13", d.Len())
				}
				if c, h, w := d.Shape(); c != 1 || h != 3 || w != 4 {
					t.Fatalf("Shape %d×%d×%d", c, h, w)
				}
				dst := make([]float32, 12)
				y, err := d.Get(11, dst, nil)
				if err != nil || y != 1 {
					t.Fatalf("label %d, %v; want 1", y, err)
				}
				for k, v := range dst {
					if want := float32(byte(7*11+k)) / 255; v != want {
						t.Fatalf("pixel %d = %g, want %g", k, v, want)
					}
				}
			}
		})
	}
}

func TestIDXCorrupt(t *testing.T) {
	good := func(n int) ([]byte, []byte) {
		return idxBytes([]int{n, 2, 2}, make([]byte, n*4)), idxBytes([]int{n}, make([]byte, n))
	}
	img, lab := good(5)
	badMagic := append([]byte{}, img...)
	badMagic[3] = 1
	mismatch, _ := good(6)
	_, more := good(6)
	badLabel := idxBytes([]int{5}, []byte{0, 1, 2, 10, 4})
	gzImg := gzipBytes(t, img)
	for _, tc := range []struct {
		name     string
		img, lab []byte
		imgName  string // default train-images-idx3-ubyte
		blame    string // file the error must name
		want     string
	}{
		{"bad magic", badMagic, lab, "", "train-images", "bad IDX magic"},
		{"labels as images", lab, lab, "", "train-images", "bad IDX magic"},
		{"truncated header", img[:6], lab, "", "train-images", "truncated IDX header"},
		{"truncated data", img[:len(img)-3], lab, "", "train-images", "truncated: dimensions [5 2 2] need 20 data bytes, file has 17"},
		{"trailing data", append(append([]byte{}, img...), 0), lab, "", "train-images", "trailing data"},
		{"truncated gz data", gzipBytes(t, img[:len(img)-1]), lab, "train-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz", "truncated"},
		{"cut gz stream", gzImg[:len(gzImg)-6], lab, "train-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz", "unexpected end of file"},
		{"more images than labels", mismatch, lab, "", "train-labels", "5 labels but"},
		{"more labels than images", img, more, "", "train-labels", "6 labels but"},
		{"label range", img, badLabel, "", "train-labels", "label 10 of sample 3"},
		{"zero dim", idxBytes([]int{5, 0, 2}, nil), lab, "", "train-images", "dimension 1 is 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			name := tc.imgName
			if name == "" {
				name = "train-images-idx3-ubyte"
			}
			writeFile(t, filepath.Join(dir, name), tc.img)
			writeFile(t, filepath.Join(dir, "train-labels-idx1-ubyte"), tc.lab)
			ti, tl := good(2)
			writeFile(t, filepath.Join(dir, "t10k-images-idx3-ubyte"), ti)
			writeFile(t, filepath.Join(dir, "t10k-labels-idx1-ubyte"), tl)
			_, _, err := Open("mnist:"+dir, Options{})
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, filepath.Join(dir, tc.blame)) || !strings.Contains(msg, tc.want) {
				t.Errorf("error %q\nwant it to name %s and say %q", msg, tc.blame, tc.want)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		dir := t.TempDir()
		_, _, err := Open("fashion-mnist:"+dir, Options{})
		if err == nil || !strings.Contains(err.Error(), "train-images-idx3-ubyte.gz") || !strings.Contains(err.Error(), dir) {
			t.Errorf("error %v, want it to list the names tried in %s", err, dir)
		}
	})
}
