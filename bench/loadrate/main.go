// Command loadrate reads one epoch of a dataset's training split through
// data.NewBatches (decode and augment, no training) and prints one JSON
// line with the images per second: the directory-versus-shards comparison
// of issue 14.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/macdist/macdist/data"
)

func main() {
	spec := flag.String("data", "", "dataset spec")
	batch := flag.Int("batch", 256, "batch size")
	workers := flag.Int("workers", 0, "decoding goroutines (0: GOMAXPROCS)")
	steps := flag.Int("steps", 0, "stop after this many batches (0: the epoch)")
	flag.Parse()
	tr, _, err := data.Open(*spec, data.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	b, err := data.NewBatches(tr, data.LoaderConfig{BatchSize: *batch, Shuffle: true, Seed: 1, Workers: *workers}, data.StreamConfig{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer b.Close()
	t0 := time.Now()
	if err := b.Start(context.Background(), 0); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	n, k := 0, 0
	for *steps == 0 || k < *steps {
		bt, err := b.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		n += bt.N
		k++
	}
	el := time.Since(t0).Seconds()
	line, _ := json.Marshal(map[string]any{"data": *spec, "images": n, "seconds": el, "img_per_s": float64(n) / el})
	fmt.Println(string(line))
}
