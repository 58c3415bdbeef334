package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/macdist/macdist/data"
)

func TestShard(t *testing.T) {
	root := t.TempDir()
	for i := range 12 {
		split := "train"
		if i >= 9 {
			split = "val"
		}
		img := image.NewNRGBA(image.Rect(0, 0, 5, 5))
		img.Set(1, 1, color.NRGBA{uint8(i), 0, 0, 255})
		var b bytes.Buffer
		if err := png.Encode(&b, img); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, split, fmt.Sprintf("k%d", i%2), fmt.Sprintf("%d.png", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "s")
	code, stdout, stderr := runArgs("shard", "--data", "imagefolder:"+root, "--out", out, "--shard-size", "3KB")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("%v in %q", err, stdout)
	}
	if got["train_samples"] != 9.0 || got["val_samples"] != 3.0 || got["train_shards"].(float64) < 2 {
		t.Errorf("output %s: want 9 train samples in several shards, 3 val", stdout)
	}
	if _, err := data.ReadShardIndex(out); err != nil {
		t.Error(err)
	}
	for _, args := range [][]string{
		{"shard", "--out", out},
		{"shard", "--data", "cifar10:" + root, "--out", out},
		{"shard", "--data", "imagefolder:" + root, "--out", out, "--shard-size", "-1"},
		{"shard", "--data", "imagefolder:" + root, "--out", out, "--quality", "101"},
	} {
		if code, _, stderr := runArgs(args...); code != 2 || !strings.Contains(stderr, "macdist shard:") {
			t.Errorf("%q: exit %d, stderr %q; want a usage error", args, code, stderr)
		}
	}
}

func TestParseBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{{"1GB", 1e9}, {"512MiB", 512 << 20}, {"100", 100}, {"1.5kb", 1500}, {"2G", 2e9}, {"x", 0}, {"0", 0}, {"-3MB", 0}, {"GB", 0}} {
		got, err := parseBytes(tc.in)
		if (err != nil) != (tc.want == 0) || got != tc.want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}
