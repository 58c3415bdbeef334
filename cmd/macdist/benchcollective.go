package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/macdist/macdist/collective"
)

// runBenchCollective is `macdist bench collective`: the TCP ring's
// all-reduce bandwidth on loopback for each size, next to one TCP stream's,
// in nccl-tests' terms (algbw = bytes/time, busbw = algbw·2(R−1)/R).
func runBenchCollective(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench collective", stderr)
	ranks := fs.String("ranks", "2,3,4", "comma-separated rank counts")
	size := fs.Int("size", 0, "bytes per rank (0: 4 KiB to 256 MiB in steps of 4×)")
	if err := parse(fs, args); err != nil {
		return err
	}
	var rs []int
	for _, f := range strings.Split(*ranks, ",") {
		r, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || r < 1 {
			return usageErrorf("--ranks: %q is not a positive integer", f)
		}
		rs = append(rs, r)
	}
	sizes := collective.BenchSizes()
	if *size < 0 {
		return usageErrorf("--size must not be negative")
	}
	if *size > 0 {
		sizes = []int{*size}
	}
	enc := json.NewEncoder(stdout)
	for _, s := range sizes {
		st, err := collective.BenchStream(ctx, s)
		if err != nil {
			return err
		}
		if err := enc.Encode(map[string]any{"bench": "stream", "bytes": s, "gbps": st.BW / 1e9}); err != nil {
			return err
		}
	}
	for _, r := range rs {
		res, err := collective.BenchRing(ctx, r, sizes)
		if err != nil {
			return fmt.Errorf("bench collective: %d ranks: %w", r, err)
		}
		for _, x := range res {
			if err := enc.Encode(map[string]any{"bench": "allreduce", "ranks": x.Ranks, "bytes": x.Bytes,
				"seconds": x.Seconds, "algbw_gbps": x.AlgBW / 1e9, "busbw_gbps": x.BusBW / 1e9}); err != nil {
				return err
			}
		}
	}
	return nil
}
