package data

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// CIFAR binary format (the "binary version" on the CIFAR page): fixed-size
// records of label byte(s) followed by a 32×32 image as three 1024-byte
// planes, R then G then B — already CHW, so the bytes are kept as they are.

const cifarImage = 3 * 32 * 32

// cifarDir returns dir, or the subfolder the official archive extracts to
// when dir holds that instead of the files themselves.
func cifarDir(dir, sub, probe string) string {
	if _, err := os.Stat(filepath.Join(dir, probe)); err != nil {
		if _, err := os.Stat(filepath.Join(dir, sub, probe)); err == nil {
			return filepath.Join(dir, sub)
		}
	}
	return dir
}

// checkCIFAR names the files of files that dir lacks, before any is read.
func checkCIFAR(dir string, files []string) error {
	var missing []string
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, filepath.Base(f))
		}
	}
	if len(missing) > 0 {
		return missingf("data: %s lacks %s", dir, strings.Join(missing, ", "))
	}
	return nil
}

// readCIFAR concatenates the records of files. Each record is labelBytes
// label bytes then the image; the label used is the last label byte (the
// only one for CIFAR-10, the fine label for CIFAR-100).
func readCIFAR(name string, files []string, labelBytes, classes int) (*bytesDataset, error) {
	// Sized from the files as they are, so that a set of five or six
	// files fills one slice without regrowing 150 MB.
	var total int64
	for _, path := range files {
		st, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("data: %w", err)
		}
		total += st.Size()
	}
	n := total / int64(labelBytes+cifarImage)
	pix, labels := make([]uint8, 0, n*cifarImage), make([]uint8, 0, n)
	for _, path := range files {
		buf, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("data: %w", err)
		}
		if pix, labels, err = decodeCIFAR(path, name, buf, labelBytes, classes, pix, labels); err != nil {
			return nil, err
		}
	}
	return &bytesDataset{
		pix: pix, labels: labels, n: len(labels),
		c: 3, h: 32, w: 32, classes: classes,
	}, nil
}

// decodeCIFAR appends the images and labels of buf, the contents of the
// file path of a set called name, to pix and labels.
func decodeCIFAR(path, name string, buf []byte, labelBytes, classes int, pix, labels []uint8) ([]uint8, []uint8, error) {
	rec := labelBytes + cifarImage
	if len(buf) == 0 || len(buf)%rec != 0 {
		return pix, labels, fmt.Errorf("data: %s: %d bytes is not a whole number of %d-byte records (%d label byte(s) + 3×32×32 image): truncated or not %s binary",
			path, len(buf), rec, labelBytes, name)
	}
	for i := range len(buf) / rec {
		r := buf[i*rec : (i+1)*rec]
		l := r[labelBytes-1]
		if int(l) >= classes {
			return pix, labels, fmt.Errorf("data: %s: record %d has label %d outside [0, %d)", path, i, l, classes)
		}
		if labelBytes == 2 && r[0] >= 20 {
			return pix, labels, fmt.Errorf("data: %s: record %d has coarse label %d outside [0, 20)", path, i, r[0])
		}
		labels = append(labels, l)
		pix = append(pix, r[labelBytes:]...)
	}
	return pix, labels, nil
}

// openCIFAR10 reads data_batch_1..5.bin and test_batch.bin.
func openCIFAR10(dir string) (train, test *bytesDataset, err error) {
	dir = cifarDir(dir, "cifar-10-batches-bin", "test_batch.bin")
	var tf []string
	for i := 1; i <= 5; i++ {
		tf = append(tf, filepath.Join(dir, fmt.Sprintf("data_batch_%d.bin", i)))
	}
	if err := checkCIFAR(dir, append(tf, filepath.Join(dir, "test_batch.bin"))); err != nil {
		return nil, nil, err
	}
	if train, err = readCIFAR("CIFAR-10", tf, 1, 10); err != nil {
		return nil, nil, err
	}
	if test, err = readCIFAR("CIFAR-10", []string{filepath.Join(dir, "test_batch.bin")}, 1, 10); err != nil {
		return nil, nil, err
	}
	train.name = "cifar10 train (" + dir + ")"
	test.name = "cifar10 test (" + dir + ")"
	return train, test, nil
}

// openCIFAR100 reads train.bin and test.bin with the fine labels.
func openCIFAR100(dir string) (train, test *bytesDataset, err error) {
	dir = cifarDir(dir, "cifar-100-binary", "test.bin")
	if err := checkCIFAR(dir, []string{filepath.Join(dir, "train.bin"), filepath.Join(dir, "test.bin")}); err != nil {
		return nil, nil, err
	}
	if train, err = readCIFAR("CIFAR-100", []string{filepath.Join(dir, "train.bin")}, 2, 100); err != nil {
		return nil, nil, err
	}
	if test, err = readCIFAR("CIFAR-100", []string{filepath.Join(dir, "test.bin")}, 2, 100); err != nil {
		return nil, nil, err
	}
	train.name = "cifar100 train (" + dir + ")"
	test.name = "cifar100 test (" + dir + ")"
	return train, test, nil
}
