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
	lanes := fs.String("lanes", "1", "comma-separated lane counts (connections per neighbour, launch's --ring-lanes)")
	size := fs.Int("size", 0, "bytes per rank (0: 4 KiB to 256 MiB in steps of 4×)")
	if err := parse(fs, args); err != nil {
		return err
	}
	rs, err := positiveList("--ranks", *ranks)
	if err != nil {
		return err
	}
	ls, err := positiveList("--lanes", *lanes)
	if err != nil {
		return err
	}
	for _, l := range ls {
		if l > collective.MaxLanes {
			return usageErrorf("--lanes: %d is more than %d", l, collective.MaxLanes)
		}
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
		for _, l := range ls {
			res, err := collective.BenchRing(ctx, r, l, sizes)
			if err != nil {
				return fmt.Errorf("bench collective: %d ranks, %d lanes: %w", r, l, err)
			}
			for _, x := range res {
				if err := enc.Encode(map[string]any{"bench": "allreduce", "ranks": x.Ranks, "lanes": x.Lanes, "bytes": x.Bytes,
					"seconds": x.Seconds, "algbw_gbps": x.AlgBW / 1e9, "busbw_gbps": x.BusBW / 1e9}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// positiveList reads a comma-separated list of positive integers.
func positiveList(flag, s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, usageErrorf("%s: %q is not a positive integer", flag, f)
		}
		out = append(out, n)
	}
	return out, nil
}
