package data

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// IDX is the format of LeCun's MNIST files: two zero bytes, a type code
// (0x08: unsigned byte), the number of dimensions, each dimension as a
// big-endian uint32, then the data row-major. Files may be gzip-compressed;
// the compression is recognised from the content, not the name.

const idxUbyte = 0x08

// maxIDXBytes bounds what a header may ask for, so that a corrupt header is
// reported instead of attempted.
const maxIDXBytes = 1 << 34

// preallocLimit is the largest payload allocated on the header's word.
const preallocLimit = 256 << 20

// readIDX reads the IDX file at path, which must hold unsigned bytes in ndim
// dimensions, and returns the dimensions and the data.
func readIDX(path string, ndim int) (dims []int, payload []byte, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("data: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<16)
	var r io.Reader = br
	if head, _ := br.Peek(2); len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("data: %s: gzip: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("data: %s: "+format, append([]any{path}, args...)...)
	}
	var magic [4]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil {
		return nil, nil, bad("truncated IDX header: %v", readErr(err))
	}
	want := [4]byte{0, 0, idxUbyte, byte(ndim)}
	if magic != want {
		return nil, nil, bad("bad IDX magic %#08x, want %#08x (unsigned bytes in %d dimensions)",
			binary.BigEndian.Uint32(magic[:]), binary.BigEndian.Uint32(want[:]), ndim)
	}
	raw := make([]byte, 4*ndim)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, nil, bad("truncated IDX header (dimensions): %v", readErr(err))
	}
	dims = make([]int, ndim)
	size := int64(1)
	for i := range dims {
		dims[i] = int(binary.BigEndian.Uint32(raw[4*i:]))
		if dims[i] == 0 {
			return nil, nil, bad("IDX dimension %d is 0 (dims %v)", i, dims[:i+1])
		}
		size *= int64(dims[i])
		if size > maxIDXBytes {
			return nil, nil, bad("implausible IDX dimensions %v", dims[:i+1])
		}
	}
	// A header is trusted for the allocation only up to preallocLimit; past
	// that the data must exist before memory is spent on it, so a corrupt
	// header costs an error, not gigabytes.
	if size <= preallocLimit {
		payload = make([]byte, size)
		n, err := io.ReadFull(r, payload)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return nil, nil, bad("reading IDX data: %v", err)
		}
		payload = payload[:n]
	} else if payload, err = io.ReadAll(io.LimitReader(r, size)); err != nil {
		return nil, nil, bad("reading IDX data: %v", readErr(err))
	}
	if int64(len(payload)) < size {
		return nil, nil, bad("truncated: dimensions %v need %d data bytes, file has %d", dims, size, len(payload))
	}
	// Reading on to the end also makes gzip verify its checksum.
	var one [1]byte
	if n, err := io.ReadFull(r, one[:]); n > 0 {
		return nil, nil, bad("trailing data after the %d bytes that dimensions %v describe", size, dims)
	} else if err != nil && err != io.EOF {
		return nil, nil, bad("after the data: %v", readErr(err))
	}
	return dims, payload, nil
}

func readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("unexpected end of file")
	}
	return err
}

// findIDX finds stem (e.g. "train-images-idx3-ubyte") in dir under the names
// the data is distributed with: the stem, the dotted variant
// ("train-images.idx3-ubyte") some mirrors use, each raw or with ".gz".
func findIDX(dir, stem string) (string, error) {
	dotted := strings.Replace(stem, "-idx", ".idx", 1)
	var tried []string
	for _, name := range []string{stem, stem + ".gz", dotted, dotted + ".gz"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		tried = append(tried, name)
	}
	return "", missingf("data: %s has none of %s", dir, strings.Join(tried, ", "))
}

// openIDXSplit reads the image and label files of one split ("train" or
// "t10k") of an MNIST-style directory and checks that they agree.
func openIDXSplit(name, dir, split string, classes int) (*bytesDataset, error) {
	imgPath, err := findIDX(dir, split+"-images-idx3-ubyte")
	if err != nil {
		return nil, err
	}
	lblPath, err := findIDX(dir, split+"-labels-idx1-ubyte")
	if err != nil {
		return nil, err
	}
	idims, pix, err := readIDX(imgPath, 3)
	if err != nil {
		return nil, err
	}
	ldims, labels, err := readIDX(lblPath, 1)
	if err != nil {
		return nil, err
	}
	if ldims[0] != idims[0] {
		return nil, fmt.Errorf("data: %s has %d labels but %s has %d images", lblPath, ldims[0], imgPath, idims[0])
	}
	for i, l := range labels {
		if int(l) >= classes {
			return nil, fmt.Errorf("data: %s: label %d of sample %d outside [0, %d)", lblPath, l, i, classes)
		}
	}
	return &bytesDataset{
		name:    fmt.Sprintf("%s %s (%s)", name, split, dir),
		pix:     pix,
		labels:  labels,
		n:       idims[0],
		c:       1,
		h:       idims[1],
		w:       idims[2],
		classes: classes,
	}, nil
}
