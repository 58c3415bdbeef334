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

// maxDeflateRatio is the most that deflate expands its input: 258 bytes
// from one symbol of a little over two bits. A gzip stream of n bytes cannot
// hold more than maxDeflateRatio·n, so a header asking for more is refused
// without reading on.
const maxDeflateRatio = 1032

// readIDX reads the IDX file at path, which must hold unsigned bytes in ndim
// dimensions, and returns the dimensions and the data.
func readIDX(path string, ndim int) (dims []int, payload []byte, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("data: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("data: %w", err)
	}
	size := st.Size()
	if !st.Mode().IsRegular() {
		size = -1 // a pipe: its size is not known
	}
	return decodeIDX(path, f, size, ndim)
}

// decodeIDX reads an IDX stream of size bytes (as stored: compressed or
// not; -1 when unknown) from r; name is what errors call it. Every
// allocation is bounded by size: a header asking for more data than the
// stream can hold is refused before anything is allocated for it.
func decodeIDX(name string, r io.Reader, size int64, ndim int) (dims []int, payload []byte, err error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("data: %s: "+format, append([]any{name}, args...)...)
	}
	if ndim < 1 || ndim > 255 {
		panic(fmt.Sprintf("data: decodeIDX of %d dimensions", ndim)) // the callers' constant
	}
	br := bufio.NewReaderSize(r, 1<<16)
	r = br
	gz := false
	if head, _ := br.Peek(2); len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, bad("gzip: %v", readErr(err))
		}
		defer zr.Close()
		r, gz = zr, true
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
	need := int64(1)
	for i := range dims {
		dims[i] = int(binary.BigEndian.Uint32(raw[4*i:]))
		if dims[i] == 0 {
			return nil, nil, bad("IDX dimension %d is 0 (dims %v)", i, dims[:i+1])
		}
		// Checked before multiplying: dimensions are below 2³², and so is
		// maxIDXBytes/need, so the product cannot wrap around.
		if int64(dims[i]) > maxIDXBytes/need {
			return nil, nil, bad("implausible IDX dimensions %v: more than %d data bytes", dims[:i+1], int64(maxIDXBytes))
		}
		need *= int64(dims[i])
	}
	header := int64(4 + 4*ndim)
	switch {
	case size < 0:
	case !gz && need > size-header:
		return nil, nil, bad("truncated: dimensions %v need %d data bytes, file has %d", dims, need, max(size-header, 0))
	case gz && need+header > maxDeflateRatio*size:
		return nil, nil, bad("dimensions %v need %d data bytes, more than a %d-byte gzip file can hold", dims, need, size)
	}
	// Past preallocLimit, or when the size is not known, the data must exist
	// before memory is spent on it: reading grows the slice as the bytes come.
	if need <= preallocLimit && size >= 0 {
		payload = make([]byte, need)
		n, err := io.ReadFull(r, payload)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return nil, nil, bad("reading IDX data: %v", err)
		}
		payload = payload[:n]
	} else if payload, err = io.ReadAll(io.LimitReader(r, need)); err != nil {
		return nil, nil, bad("reading IDX data: %v", readErr(err))
	}
	if int64(len(payload)) < need {
		return nil, nil, bad("truncated: dimensions %v need %d data bytes, file has %d", dims, need, len(payload))
	}
	// Reading on to the end also makes gzip verify its checksum.
	var one [1]byte
	if n, err := io.ReadFull(r, one[:]); n > 0 {
		return nil, nil, bad("trailing data after the %d bytes that dimensions %v describe", need, dims)
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
