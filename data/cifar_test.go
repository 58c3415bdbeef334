package data

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// cifarRecords makes n records whose label bytes are labels(i) and whose
// image byte k is (i + 3k) mod 256.
func cifarRecords(n int, labels func(i int) []byte) []byte {
	var out []byte
	for i := range n {
		out = append(out, labels(i)...)
		for k := range cifarImage {
			out = append(out, byte(i+3*k))
		}
	}
	return out
}

func TestCIFAR(t *testing.T) {
	l10 := func(i int) []byte { return []byte{byte(i % 10)} }
	l100 := func(i int) []byte { return []byte{byte(i % 20), byte((i * 7) % 100)} }
	for _, tc := range []struct {
		name    string
		spec    string
		sub     string
		files   map[string][]byte
		ntrain  int
		classes int
		label   func(i int) int // of training sample i
	}{
		{
			name: "cifar10", spec: "cifar10", ntrain: 15, classes: 10,
			files: map[string][]byte{
				"data_batch_1.bin": cifarRecords(3, l10), "data_batch_2.bin": cifarRecords(3, l10),
				"data_batch_3.bin": cifarRecords(3, l10), "data_batch_4.bin": cifarRecords(3, l10),
				"data_batch_5.bin": cifarRecords(3, l10), "test_batch.bin": cifarRecords(4, l10),
			},
			label: func(i int) int { return (i % 3) % 10 },
		},
		{
			name: "cifar10 official folder", spec: "cifar10", sub: "cifar-10-batches-bin", ntrain: 10, classes: 10,
			files: map[string][]byte{
				"data_batch_1.bin": cifarRecords(2, l10), "data_batch_2.bin": cifarRecords(2, l10),
				"data_batch_3.bin": cifarRecords(2, l10), "data_batch_4.bin": cifarRecords(2, l10),
				"data_batch_5.bin": cifarRecords(2, l10), "test_batch.bin": cifarRecords(4, l10),
			},
			label: func(i int) int { return i % 2 },
		},
		{
			name: "cifar100", spec: "cifar100", ntrain: 21, classes: 100,
			files: map[string][]byte{"train.bin": cifarRecords(21, l100), "test.bin": cifarRecords(4, l100)},
			label: func(i int) int { return (i * 7) % 100 },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for n, b := range tc.files {
				writeFile(t, filepath.Join(dir, tc.sub, n), b)
			}
			train, test, err := Open(tc.spec+":"+dir, Options{NoNormalize: true, Augment: AugmentNone})
			if err != nil {
				t.Fatal(err)
			}
			if train.Len() != tc.ntrain || test.Len() != 4 || train.Classes() != tc.classes {
				t.Fatalf("Len %d/%d classes %d, want %d/4 %d", train.Len(), test.Len(), train.Classes(), tc.ntrain, tc.classes)
			}
			dst := make([]float32, cifarImage)
			for i := range tc.ntrain {
				y, err := train.Get(i, dst, nil)
				if err != nil || y != tc.label(i) {
					t.Fatalf("sample %d: label %d, %v; want %d", i, y, err, tc.label(i))
				}
			}
			// Sample index within the last file: records restart at 0 in each file.
			last := tc.ntrain - 1
			per := tc.ntrain
			if tc.spec == "cifar10" {
				per = tc.ntrain / 5
			}
			j := last % per
			train.Get(last, dst, nil)
			for _, k := range []int{0, 1, 1024, 2047, 3071} { // R, G, B planes stay CHW
				if want := float32(byte(j+3*k)) / 255; dst[k] != want {
					t.Errorf("sample %d byte %d = %g, want %g", last, k, dst[k], want)
				}
			}
		})
	}
}

func TestCIFARCorrupt(t *testing.T) {
	l10 := func(i int) []byte { return []byte{byte(i % 10)} }
	full := func() map[string][]byte {
		m := map[string][]byte{"test_batch.bin": cifarRecords(2, l10)}
		for i := 1; i <= 5; i++ {
			m[fmt.Sprintf("data_batch_%d.bin", i)] = cifarRecords(2, l10)
		}
		return m
	}
	for _, tc := range []struct {
		name  string
		spec  string
		edit  func(m map[string][]byte)
		blame string
		want  string
	}{
		{"truncated", "cifar10", func(m map[string][]byte) { b := m["data_batch_3.bin"]; m["data_batch_3.bin"] = b[:len(b)-1] }, "data_batch_3.bin", "6145 bytes is not a whole number of 3073-byte records"},
		{"empty", "cifar10", func(m map[string][]byte) { m["test_batch.bin"] = nil }, "test_batch.bin", "0 bytes"},
		{"missing", "cifar10", func(m map[string][]byte) { delete(m, "data_batch_5.bin") }, "", "lacks data_batch_5.bin"},
		{"label", "cifar10", func(m map[string][]byte) { m["data_batch_2.bin"][3073] = 10 }, "data_batch_2.bin", "record 1 has label 10"},
		{"cifar10 read as 100", "cifar100", func(m map[string][]byte) {
			m["train.bin"] = cifarRecords(3, l10)
			m["test.bin"] = cifarRecords(3, l10)
		}, "train.bin", "not a whole number of 3074-byte records"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			m := full()
			tc.edit(m)
			for n, b := range m {
				writeFile(t, filepath.Join(dir, n), b)
			}
			_, _, err := Open(tc.spec+":"+dir, Options{})
			if err == nil {
				t.Fatal("no error")
			}
			if msg := err.Error(); !strings.Contains(msg, filepath.Join(dir, tc.blame)) || !strings.Contains(msg, tc.want) {
				t.Errorf("error %q\nwant it to name %s and say %q", msg, tc.blame, tc.want)
			}
			if missing := tc.name == "missing"; errors.Is(err, ErrMissing) != missing {
				t.Errorf("errors.Is(%q, ErrMissing) = %v, want %v", err, !missing, missing)
			}
		})
	}
}
