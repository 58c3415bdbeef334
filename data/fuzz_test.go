package data

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image/color"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// The fuzz targets feed bytes from outside to each parser of the package
// and check, besides not panicking, that a success satisfies what the
// format promises and that an error names its input. `go test` replays the
// seeds (f.Add and testdata/fuzz/); scripts/fuzz.sh runs them as fuzzers.

// FuzzIDX decodes IDX streams, raw or gzip-compressed: the input as it is
// and, with compress, gzipped first, so that the fuzzer explores IDX
// headers behind gzip too.
func FuzzIDX(f *testing.F) {
	img := idxBytes([]int{3, 2, 2}, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})
	lab := idxBytes([]int{3}, []byte{0, 1, 2})
	f.Add(img, true, false)
	f.Add(lab, false, false)
	f.Add(img, true, true)
	f.Add(gzipBytes(f, lab), false, false)
	// Issue 12: dimensions whose product overflows int64.
	f.Add([]byte{0x00, 0x00, 0x08, 0x03, 0xea, 0xeb, 0xfb, 0xdc, 0xe0, 0x9b, 0x6f, 0xdf, 0, 0, 0, 28}, true, false)
	f.Fuzz(func(t *testing.T, in []byte, images, compress bool) {
		ndim := 1
		if images {
			ndim = 3
		}
		stored := in
		if compress {
			stored = gzipBytes(t, in)
		}
		dims, payload, err := decodeIDX("in.idx", bytes.NewReader(stored), int64(len(stored)), ndim)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "data: in.idx: ") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		if len(dims) != ndim {
			t.Fatalf("%d dimensions, want %d", len(dims), ndim)
		}
		n := 1
		for _, d := range dims {
			if d <= 0 {
				t.Fatalf("dimensions %v", dims)
			}
			n *= d
		}
		if n != len(payload) {
			t.Fatalf("dimensions %v hold %d bytes, payload has %d", dims, n, len(payload))
		}
		// What decodes re-encodes to the input: nothing was skipped or
		// invented.
		if src := bytesOrGunzip(t, in, compress); !bytes.Equal(idxBytes(dims, payload), src) {
			t.Fatalf("dimensions %v and %d bytes do not re-encode to the input", dims, len(payload))
		}
	})
}

// bytesOrGunzip is the IDX stream that in holds: in itself unless it was
// already gzip (then decoded), for FuzzIDX's round trip.
func bytesOrGunzip(t *testing.T, in []byte, compressed bool) []byte {
	if compressed || len(in) < 2 || in[0] != 0x1f || in[1] != 0x8b {
		return in
	}
	var out bytes.Buffer
	zr, err := gzip.NewReader(bytes.NewReader(in))
	if err != nil {
		t.Fatalf("decoded as gzip but does not reopen: %v", err)
	}
	if _, err := out.ReadFrom(zr); err != nil {
		t.Fatalf("decoded as gzip but does not reread: %v", err)
	}
	return out.Bytes()
}

// TestIDXHeaderAllocation checks that a header claiming far more than its
// file holds is refused before memory is spent on it: by the file's size
// for a raw file, by deflate's largest ratio for a gzipped one.
func TestIDXHeaderAllocation(t *testing.T) {
	claim := []int{100, 1000, 1000} // 10⁸ bytes
	raw := idxBytes(claim, nil)
	for _, tc := range []struct {
		name string
		file []byte
		want string
	}{
		{"raw", raw, "dimensions [100 1000 1000] need 100000000 data bytes, file has 0"},
		{"gzip", gzipBytes(t, raw), "dimensions [100 1000 1000] need 100000000 data bytes, more than a"},
		{"overflow", []byte{0x00, 0x00, 0x08, 0x03, 0xea, 0xeb, 0xfb, 0xdc, 0xe0, 0x9b, 0x6f, 0xdf, 0, 0, 0, 28}, "implausible IDX dimensions [3941333980 3768283103]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "train-images-idx3-ubyte")
			writeFile(t, path, tc.file)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, _, err := readIDX(path, 3)
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %s and saying %q", err, path, tc.want)
			}
			// The reader's buffers (64 KiB, gzip's window) and the error are
			// all that may be allocated.
			if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
				t.Errorf("allocated %d bytes to refuse a %d-byte file", got, len(tc.file))
			}
		})
	}
}

// cifarRecord is one CIFAR record: label bytes, then the 3×32×32 image.
func cifarRecord(labels []byte, seed byte) []byte {
	r := append([]byte{}, labels...)
	for k := range cifarImage {
		r = append(r, byte(k)+seed)
	}
	return r
}

// FuzzCIFAR decodes CIFAR-10 and CIFAR-100 binary files.
func FuzzCIFAR(f *testing.F) {
	f.Add(append(cifarRecord([]byte{3}, 0), cifarRecord([]byte{9}, 7)...), false)
	f.Add(cifarRecord([]byte{19, 99}, 1), true)
	f.Add(cifarRecord([]byte{10}, 0), false)
	f.Add(cifarRecord([]byte{3}, 0)[:100], false)
	f.Fuzz(func(t *testing.T, in []byte, hundred bool) {
		labelBytes, classes := 1, 10
		if hundred {
			labelBytes, classes = 2, 100
		}
		pix, labels, err := decodeCIFAR("in.bin", "CIFAR", in, labelBytes, classes, nil, nil)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "data: in.bin: ") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		rec := labelBytes + cifarImage
		if len(labels)*rec != len(in) || len(pix) != len(labels)*cifarImage {
			t.Fatalf("%d bytes gave %d labels and %d pixels", len(in), len(labels), len(pix))
		}
		for i, l := range labels {
			r := in[i*rec : (i+1)*rec]
			if int(l) >= classes || l != r[labelBytes-1] || !bytes.Equal(pix[i*cifarImage:(i+1)*cifarImage], r[labelBytes:]) {
				t.Fatalf("record %d decoded as label %d and other pixels", i, l)
			}
		}
	})
}

// fuzzPixels is the pixel limit the image targets decode under: the
// decoders' work grows with the pixels a header claims, and the fuzzer
// needs many inputs a second, not MaxImagePixels per input.
const fuzzPixels = 1 << 16

// FuzzImageSample decodes a JPEG or PNG as an ImageFolder sample, as
// training (random resized crop, crop-flip) and evaluation do.
func FuzzImageSample(f *testing.F) {
	f.Add(uniformPNG(f, 5, 3, color.NRGBA{200, 100, 50, 255}), uint8(4))
	f.Add(gradientJPEG(f, 9, 7), uint8(8))
	f.Add(gradientJPEG(f, 1, 40), uint8(2))
	f.Add(pngHeader(100000, 100000), uint8(4))
	f.Fuzz(func(t *testing.T, in []byte, size uint8) {
		size = size%16 + 1
		luts, err := makeLUTs(ImageNetStats, 3)
		if err != nil {
			t.Fatal(err)
		}
		dst := make([]float32, 3*int(size)*int(size))
		for _, aug := range []Augment{AugmentNone, AugmentDefault, AugmentCropFlip} {
			d := &ImageFolder{
				desc: "fuzz", src: &memSource{archive: "in.tar", names: []string{"x.png"}, blobs: [][]byte{in}},
				labels: []int32{0}, classes: []string{"a"}, size: int(size), resize: int(size) + 1,
				augment: aug, luts: luts, maxPixels: fuzzPixels,
			}
			var rng *rand.Rand
			if aug != AugmentNone {
				rng = rand.New(rand.NewPCG(uint64(len(in)), 1))
			}
			if _, err := d.Get(0, dst, rng); err != nil {
				var se *SampleError
				if !errors.As(err, &se) || se.File != "in.tar:x.png" {
					t.Fatalf("error %v does not name the sample", err)
				}
				return
			}
			for i, v := range dst {
				if math.IsNaN(float64(v)) || math.Abs(float64(v)) > 3 {
					t.Fatalf("value %d is %g, outside what ImageNet normalisation gives", i, v)
				}
			}
		}
	})
}

// pngHeader is the start of a PNG whose header claims w×h pixels: a
// decompression bomb's first 33 bytes.
func pngHeader(w, h uint32) []byte {
	b := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR")
	b = binary.BigEndian.AppendUint32(b, w)
	b = binary.BigEndian.AppendUint32(b, h)
	b = append(b, 8, 2, 0, 0, 0) // 8-bit RGB
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b[12:]))
}

// TestImageBomb checks that an image whose header claims more than
// MaxImagePixels is refused before it is decoded, with an error that says
// how large it claims to be.
func TestImageBomb(t *testing.T) {
	luts, err := makeLUTs(ImageNetStats, 3)
	if err != nil {
		t.Fatal(err)
	}
	d := &ImageFolder{
		desc: "bomb", src: &memSource{archive: "bomb.tar", names: []string{"train/a/x.png"}, blobs: [][]byte{pngHeader(50000, 50000)}},
		labels: []int32{0}, classes: []string{"a"}, size: 4, resize: 4, luts: luts,
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = d.Get(0, make([]float32, 3*4*4), nil)
	runtime.ReadMemStats(&after)
	want := fmt.Sprintf("png of 50000×50000 = 2500000000 pixels: more than the %d", MaxImagePixels)
	if err == nil || !strings.Contains(err.Error(), "bomb.tar:train/a/x.png") || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want one naming the file and saying %q", err, want)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Errorf("allocated %d bytes to refuse a 33-byte header", got)
	}
}

// FuzzTar lists an ImageFolder archive (tar, or tar.gz) and opens it as
// train and evaluation sets, then decodes their first samples.
func FuzzTar(f *testing.F) {
	dir := f.TempDir()
	png := uniformPNG(f, 4, 4, color.NRGBA{1, 2, 3, 255})
	for i, files := range []map[string][]byte{
		{"train/cat/1.png": png, "train/dog/2.png": png, "val/cat/3.png": png},
		{"top/train/a/x.jpg": gradientJPEG(f, 8, 8), "top/test/a/y.png": png},
		{"train/n01/1.JPEG": png, "val/images/v.JPEG": png, "val/val_annotations.txt": []byte("v.JPEG\tn01\t0 0 1 1\n")},
	} {
		for _, gz := range []bool{false, true} {
			p := filepath.Join(dir, fmt.Sprintf("%d-%v.tar", i, gz))
			writeTar(f, p, files, gz)
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		tr, err := readTar("in.tar", bytes.NewReader(in))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "data: in.tar: ") {
				t.Fatalf("error %q does not name the archive", err)
			}
			return
		}
		for _, name := range tr.files {
			if _, ok := tr.blobs[name]; !ok {
				t.Fatalf("file %q listed without its bytes", name)
			}
		}
		train, test, err := openTree(tr, Options{ImageSize: 4})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "data: ") {
				t.Fatalf("error %q", err)
			}
			return
		}
		for _, d := range []*ImageFolder{train, test} {
			if d.Len() == 0 || d.Classes() == 0 {
				t.Fatalf("%s: opened with %d samples of %d classes", d, d.Len(), d.Classes())
			}
			d.maxPixels = fuzzPixels
			dst := make([]float32, 3*4*4)
			for i := range min(d.Len(), 3) {
				y, err := d.Get(i, dst, rand.New(rand.NewPCG(1, 2)))
				if err == nil && (y < 0 || y >= d.Classes()) {
					t.Fatalf("%s: sample %d has label %d of %d classes", d, i, y, d.Classes())
				}
			}
		}
	})
}

// TestImageFileTooLarge checks that an image file larger than
// maxImageFile is refused from its size, not read into memory.
func TestImageFileTooLarge(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "val", "a", "y.png"), uniformPNG(t, 4, 4, color.NRGBA{1, 2, 3, 255}))
	big := filepath.Join(root, "train", "a", "x.png")
	writeFile(t, big, nil)
	if err := os.Truncate(big, maxImageFile+1); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	train, _, err := Open("imagefolder:"+root, Options{ImageSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = train.Get(0, make([]float32, 3*4*4), nil)
	runtime.ReadMemStats(&after)
	want := fmt.Sprintf("%d bytes is more than an image file may have", maxImageFile+1)
	if err == nil || !strings.Contains(err.Error(), big) || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want one naming %s and saying %q", err, big, want)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Errorf("allocated %d bytes to refuse it", got)
	}
}

// TestIDXFromPipe reads an IDX file from a named pipe, whose size is not
// known beforehand: the data is read as it comes instead of being checked
// against a size.
func TestIDXFromPipe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "train-images-idx3-ubyte")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("no named pipes here: %v", err)
	}
	want := []byte{1, 2, 3, 4, 5, 6}
	go func() {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return // the reader's error says it
		}
		f.Write(idxBytes([]int{1, 2, 3}, want))
		f.Close()
	}()
	dims, payload, err := readIDX(path, 3)
	if err != nil || fmt.Sprint(dims) != "[1 2 3]" || !bytes.Equal(payload, want) {
		t.Fatalf("readIDX = %v, %v, %v; want [1 2 3], %v", dims, payload, err, want)
	}
}
