package data

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkFashionMNISTLoader: batches of 128 through the prefetching loader
// (shuffled, normalised), with all cores decoding.
func BenchmarkFashionMNISTLoader(b *testing.B) {
	if _, err := os.Stat(fashionDir); err != nil {
		b.Skipf("%s missing: %v", fashionDir, err)
	}
	train, _, err := Open("fashion-mnist", Options{})
	if err != nil {
		b.Fatal(err)
	}
	l, err := NewLoader(train, LoaderConfig{BatchSize: 128, Shuffle: true, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	epoch := 0
	l.Start(context.Background(), epoch)
	b.ReportAllocs()
	b.ResetTimer()
	imgs := 0
	for range b.N {
		batch, err := l.Next()
		if err == io.EOF {
			epoch++
			l.Start(context.Background(), epoch)
			batch, err = l.Next()
		}
		if err != nil {
			b.Fatal(err)
		}
		imgs += batch.N
	}
	b.ReportMetric(float64(imgs)/b.Elapsed().Seconds(), "img/s")
}

// jpegFolder writes an ImageFolder tar of n w×h JPEGs and opens it.
func jpegFolder(b *testing.B, n, w, h, size int) Dataset {
	files := map[string][]byte{}
	for i := range n {
		files[fmt.Sprintf("train/c%d/%d.jpg", i%2, i)] = gradientJPEG(b, w+i, h)
	}
	files["val/c0/0.jpg"] = gradientJPEG(b, w, h)
	p := filepath.Join(b.TempDir(), "set.tar")
	writeTar(b, p, files, false)
	tr, _, err := Open("imagefolder:"+p, Options{ImageSize: size})
	if err != nil {
		b.Fatal(err)
	}
	return tr
}

// BenchmarkJPEGRandomResizedCrop is one core's decode + RandomResizedCrop
// + flip + normalise: an ImageNet-sized JPEG to 224×224, and a CIFAR-sized
// one at its own 32×32.
func BenchmarkJPEGRandomResizedCrop(b *testing.B) {
	for _, tc := range []struct {
		name       string
		w, h, size int
	}{
		{"500x375to224", 500, 375, 224},
		{"32x32to32", 32, 32, 32},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ds := jpegFolder(b, 8, tc.w, tc.h, tc.size)
			dst := make([]float32, 3*tc.size*tc.size)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := ds.Get(i%8, dst, AugmentRand(1, 0, i)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "img/s")
		})
	}
}

// BenchmarkResample is the crop-resize-flip-normalise alone, on the region
// sizes training meets after a DCT-scaled decode (the crop between 1 and 2
// times the output side) and on evaluation's Resize(256) + CenterCrop(224).
func BenchmarkResample(b *testing.B) {
	luts, err := makeLUTs(ImageNetStats, 3)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name                 string
		w, h                 int
		bx, by, bw, bh       float64
		fullW, fullH, off, o int
	}{
		{"train330x290", 400, 300, 30.5, 5, 330, 290, 224, 224, 0, 224},
		{"train230x420", 250, 440, 10, 12, 230, 420, 224, 224, 0, 224},
		{"eval500x375", 500, 375, 0, 0, 500, 375, 341, 256, 58, 224},
	} {
		b.Run(tc.name, func(b *testing.B) {
			src := make([]uint8, tc.w*tc.h*3)
			for i := range src {
				src[i] = uint8(i*7 + i/997)
			}
			dst := make([]float32, 3*tc.o*tc.o)
			var s resampler
			b.ReportAllocs()
			cpu0 := processCPUSeconds()
			for i := range b.N {
				offY := 0
				if tc.off > 0 {
					offY = 16
				}
				s.resampleBox(dst, src, tc.w, tc.h, tc.bx, tc.by, tc.bw, tc.bh, tc.fullW, tc.fullH, tc.off, offY, tc.o, tc.o, i%2 == 1, luts)
			}
			// CPU time, unlike ns/op, holds on a machine shared with other work.
			b.ReportMetric((processCPUSeconds()-cpu0)*1e6/float64(b.N), "cpu-µs/op")
		})
	}
}
