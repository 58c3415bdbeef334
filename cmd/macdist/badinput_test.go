package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// runNoPanic is runArgs with a panic turned into a test failure that shows
// it, so that one bad case does not take the other cases down with it.
func runNoPanic(t *testing.T, args ...string) (code int, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("macdist %s panicked: %v\n%s", strings.Join(args, " "), p, debug.Stack())
			}
		}()
		code = run(context.Background(), args, &o, &e)
	}()
	return code, e.String()
}

// mnistLike writes an MNIST-style directory whose training images file is
// images and whose other files are empty: the images file is read first.
func mnistLike(t *testing.T, images []byte) (dir, imagesPath string) {
	t.Helper()
	dir = t.TempDir()
	for _, name := range []string{"train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	imagesPath = filepath.Join(dir, "train-images-idx3-ubyte")
	if err := os.WriteFile(imagesPath, images, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, imagesPath
}

// TestBadInputNoPanic runs train and eval, as a user would, on inputs that
// once panicked, and checks that each gets a clear error instead: exit
// status 1 and a message naming what is wrong.
func TestBadInputNoPanic(t *testing.T) {
	// A checkpoint for eval to load: one step of LeNet-5 on synthetic data
	// of Fashion-MNIST's shape.
	runDir := filepath.Join(t.TempDir(), "run")
	if code, errOut := runNoPanic(t, "train", "--data", "synthetic:1x28x28:10:64:16", "--max-steps", "1",
		"--run-dir", runDir, "--progress", "none"); code != 0 {
		t.Fatalf("training the checkpoint: exit %d\n%s", code, errOut)
	}

	// The header of issue 12, then a third dimension and a few bytes: the
	// first two dimensions' product overflows int64.
	overflow, overflowPath := mnistLike(t, []byte{0x00, 0x00, 0x08, 0x03, 0xea, 0xeb, 0xfb, 0xdc, 0xe0, 0x9b, 0x6f, 0xdf, 0, 0, 0, 28, 1, 2, 3})
	// A header that claims 10^8 bytes (100×1000×1000) in a 16-byte file:
	// refused from the file's size, before any allocation.
	claims, claimsPath := mnistLike(t, []byte{0, 0, 8, 3, 0, 0, 0, 100, 0, 0, 0x03, 0xe8, 0, 0, 0x03, 0xe8})

	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"train --device cuda", []string{"train", "--data", "synthetic:1x28x28:10:64:16", "--device", "cuda", "--run-dir", t.TempDir()}, []string{"--device cuda"}},
		{"train --device cuda:0", []string{"train", "--data", "synthetic:1x28x28:10:64:16", "--device", "cuda:0", "--run-dir", t.TempDir()}, []string{"--device cuda:0"}},
		{"train --device gpu", []string{"train", "--data", "synthetic:1x28x28:10:64:16", "--device", "gpu", "--run-dir", t.TempDir()}, []string{"--device gpu"}},
		{"eval --device cuda", []string{"eval", "--checkpoint", runDir, "--device", "cuda"}, []string{"--device cuda"}},
		{"train on an overflowing IDX header", []string{"train", "--data", "fashion-mnist:" + overflow, "--run-dir", t.TempDir()},
			[]string{overflowPath, "IDX dimensions"}},
		{"eval on an overflowing IDX header", []string{"eval", "--checkpoint", runDir, "--data", "fashion-mnist:" + overflow},
			[]string{overflowPath, "IDX dimensions"}},
		{"train on an IDX header larger than its file", []string{"train", "--data", "fashion-mnist:" + claims, "--run-dir", t.TempDir()},
			[]string{claimsPath, "[100 1000 1000]", "100000000 data bytes", "file has 0"}},
		{"eval on an IDX header larger than its file", []string{"eval", "--checkpoint", runDir, "--data", "fashion-mnist:" + claims},
			[]string{claimsPath, "[100 1000 1000]", "100000000 data bytes", "file has 0"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, errOut := runNoPanic(t, c.args...)
			if code != 1 {
				t.Errorf("exit %d, want 1; stderr:\n%s", code, errOut)
			}
			for _, w := range c.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
		})
	}
}
