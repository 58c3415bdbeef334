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
