package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/macdist/macdist/data"
)

// runShard writes an ImageFolder tree as tar shards that --data shards:DIR
// streams.
func runShard(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("shard", stderr)
	src := fs.String("data", "", "imagefolder:PATH, the tree (directory or .tar[.gz]) to shard")
	out := fs.String("out", "", "directory to write the shards and index.json into")
	size := fs.String("shard-size", "1GB", "size a shard is closed at (B, KB, MB, GB; KiB, MiB, GiB)")
	maxSide := fs.Int("max-side", 0, "re-encode images whose longer side exceeds N to that side as JPEG (0: copy the bytes)")
	quality := fs.Int("quality", 90, "JPEG quality of re-encoded images (1..100)")
	seed := fs.Uint64("seed", 0, "seed of the order samples are written in")
	verbose := fs.Bool("v", false, "print each shard as it is closed")
	if err := parse(fs, args); err != nil {
		return err
	}
	path, ok := strings.CutPrefix(*src, "imagefolder:")
	if !ok || path == "" || *out == "" {
		return usageErrorf("--data imagefolder:PATH and --out DIR are required")
	}
	n, err := parseBytes(*size)
	if err != nil {
		return usageErrorf("--shard-size: %v", err)
	}
	if *maxSide < 0 || *quality < 1 || *quality > 100 {
		return usageErrorf("--max-side must not be negative and --quality must be in 1..100")
	}
	o := data.ShardOptions{ShardBytes: n, MaxSide: *maxSide, Quality: *quality, Seed: *seed}
	if *verbose {
		o.Progress = func(file string, samples int) { fmt.Fprintf(stderr, "%s: %d samples\n", file, samples) }
	}
	ix, err := data.WriteShards(path, *out, o)
	if err != nil {
		return err
	}
	count := func(s []data.ShardEntry) (n int) {
		for _, e := range s {
			n += e.Samples
		}
		return n
	}
	line, err := json.Marshal(map[string]any{
		"out": *out, "classes": len(ix.Classes), "train_samples": count(ix.Train), "train_shards": len(ix.Train),
		ix.EvalSplit + "_samples": count(ix.Eval), ix.EvalSplit + "_shards": len(ix.Eval), "reencoded": ix.Reencoded,
	})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", line)
	return err
}

// parseBytes reads a size such as 1GB, 512MiB or 1000000.
func parseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"B", 1}}
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range units {
		if rest, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 || v*float64(mult) > 1<<50 {
		return 0, fmt.Errorf("%q is not a positive size", s)
	}
	return int64(v * float64(mult)), nil
}
