package data

import (
	"archive/tar"
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// Shards in WebDataset's convention: a directory of plain tar files whose
// members come in pairs KEY.jpg (or KEY.png) and KEY.cls (the label in
// decimal), written in shuffled order, beside an index.json that lists the
// shards of each split with their sample counts, the class names and how
// the images were re-encoded. The counts let every rank compute the same
// epoch length without reading a shard.

// IndexName is the index file of a shard directory.
const IndexName = "index.json"

// ShardIndex is the content of index.json.
type ShardIndex struct {
	Version   int      `json:"version"`
	Classes   []string `json:"classes"`
	ImageSize int      `json:"image_size"` // the side ImageFolder would have chosen
	// MaxSide and Quality say how images were re-encoded: 0 means the
	// original bytes were copied.
	MaxSide     int          `json:"max_side,omitempty"`
	Quality     int          `json:"quality,omitempty"`
	Reencoded   int          `json:"reencoded"` // images that were larger than MaxSide
	Source      string       `json:"source"`
	Train       []ShardEntry `json:"train"`
	Eval        []ShardEntry `json:"eval"`
	EvalSplit   string       `json:"eval_split"` // "val" or "test"
	ShuffleSeed uint64       `json:"shuffle_seed"`
}

// ShardEntry is one shard file (relative to the index) and its sample count.
type ShardEntry struct {
	File    string `json:"file"`
	Samples int    `json:"samples"`
}

// maxIndexBytes bounds index.json: a million shards fit.
const maxIndexBytes = 256 << 20

// ReadShardIndex reads and checks DIR/index.json.
func ReadShardIndex(dir string) (*ShardIndex, error) {
	p := filepath.Join(dir, IndexName)
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, missingf("data: %s: no shard index (write one with macdist shard)", p)
		}
		return nil, fmt.Errorf("data: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxIndexBytes+1))
	if err != nil {
		return nil, fmt.Errorf("data: %s: %w", p, err)
	}
	if len(b) > maxIndexBytes {
		return nil, fmt.Errorf("data: %s: larger than %d bytes", p, maxIndexBytes)
	}
	return parseShardIndex(p, b)
}

func parseShardIndex(where string, b []byte) (*ShardIndex, error) {
	var x ShardIndex
	if err := json.Unmarshal(b, &x); err != nil {
		return nil, fmt.Errorf("data: %s: %w", where, err)
	}
	if x.Version != 1 {
		return nil, fmt.Errorf("data: %s: index version %d (want 1)", where, x.Version)
	}
	if len(x.Classes) == 0 {
		return nil, fmt.Errorf("data: %s: no classes", where)
	}
	if x.ImageSize <= 0 || x.ImageSize > 1<<14 {
		return nil, fmt.Errorf("data: %s: image_size %d", where, x.ImageSize)
	}
	for _, split := range []struct {
		name string
		s    []ShardEntry
	}{{"train", x.Train}, {"eval", x.Eval}} {
		if len(split.s) == 0 {
			return nil, fmt.Errorf("data: %s: no %s shards", where, split.name)
		}
		total := 0
		for _, e := range split.s {
			if e.File == "" || e.File != path.Base(e.File) || strings.ContainsAny(e.File, `/\`) || e.File == "." || e.File == ".." {
				return nil, fmt.Errorf("data: %s: shard file name %q must be a plain name in the directory", where, e.File)
			}
			if e.Samples <= 0 || e.Samples > 1<<30 {
				return nil, fmt.Errorf("data: %s: shard %s has %d samples", where, e.File, e.Samples)
			}
			total += e.Samples
			if total > 1<<40 {
				return nil, fmt.Errorf("data: %s: too many samples", where)
			}
		}
	}
	return &x, nil
}

// shardSample is one sample read from a shard: its encoded image and
// label, and where it is (for errors and for resuming).
type shardSample struct {
	enc    []byte
	label  int
	shard  int   // index into the split's shard list
	offset int64 // byte offset of the sample's first member header
	ext    string
	buf    *[]byte // the pooled buffer enc lives in, if any
}

// ShardError reports a sample or shard that cannot be read: which shard,
// at what byte offset, and why.
type ShardError struct {
	Shard  string
	Offset int64
	Err    error
}

func (e *ShardError) Error() string {
	return fmt.Sprintf("data: shard %s at offset %d: %v", e.Shard, e.Offset, e.Err)
}

func (e *ShardError) Unwrap() error { return e.Err }

// countingReader counts the bytes the tar reader consumed, which is the
// offset of the next header.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// shardReader reads the samples of one shard in order, holding one sample
// at a time: never a whole shard in memory.
type shardReader struct {
	name    string
	shard   int
	classes int
	f       io.Closer
	cr      *countingReader
	tr      *tar.Reader
	pending *tar.Header // a header read ahead: the first member of the next sample
	pendOff int64
	maxLen  int64
}

// maxMemberBytes bounds one image member so that a corrupt header cannot
// ask for gigabytes.
const maxMemberBytes = 256 << 20

func openShard(path string, shard, classes int) (*shardReader, error) {
	return openShardAt(path, shard, classes, 0)
}

// openShardAt opens a shard to read from the sample whose first header is
// at byte offset off.
func openShardAt(path string, shard, classes int, off int64) (*shardReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &ShardError{Shard: path, Err: err}
	}
	if off > 0 {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			f.Close()
			return nil, &ShardError{Shard: path, Offset: off, Err: err}
		}
	}
	r := newShardReader(f, path, shard, classes)
	r.cr.n = off
	return r, nil
}

// nextOffset is the byte offset of the sample after the one read last.
func (r *shardReader) nextOffset() int64 {
	if r.pending != nil {
		return r.pendOff
	}
	return r.cr.n
}

func newShardReader(f io.ReadCloser, name string, shard, classes int) *shardReader {
	cr := &countingReader{r: bufio.NewReaderSize(f, 1<<20)}
	return &shardReader{name: name, shard: shard, classes: classes, f: f, cr: cr, tr: tar.NewReader(cr), maxLen: maxMemberBytes}
}

func (r *shardReader) Close() error {
	if r.f == nil {
		return nil
	}
	return r.f.Close()
}

// next reads the next header, with the offset it starts at. Tar headers
// begin on 512-byte blocks and the reader consumed every byte up to the
// previous member's padding, so the header starts where counting stood.
func (r *shardReader) next() (*tar.Header, int64, error) {
	if h := r.pending; h != nil {
		r.pending = nil
		return h, r.pendOff, nil
	}
	for {
		off := r.cr.n
		// The tar reader skips the rest of the previous member before the
		// next header, so the header's own offset is known only after. Round
		// up: members are padded to 512 bytes.
		h, err := r.tr.Next()
		if err != nil {
			return nil, off, err
		}
		off = r.cr.n - 512 // the header block just read (no PAX/long names in our shards)
		if h.Typeflag == tar.TypeDir {
			continue
		}
		return h, off, nil
	}
}

// read returns the next sample, reusing buf for its bytes, or io.EOF after
// the last one. Errors are *ShardError.
func (r *shardReader) read(buf []byte) (shardSample, error) {
	fail := func(off int64, err error) (shardSample, error) {
		return shardSample{}, &ShardError{Shard: r.name, Offset: off, Err: err}
	}
	h, off, err := r.next()
	if err == io.EOF {
		return shardSample{}, io.EOF
	}
	if err != nil {
		return fail(off, fmt.Errorf("reading tar header: %w", readErr(err)))
	}
	s := shardSample{shard: r.shard, offset: off, label: -1}
	key := ""
	for {
		name := h.Name
		k, ext, ok := cutExt(name)
		if !ok || !h.FileInfo().Mode().IsRegular() {
			return fail(off, fmt.Errorf("member %q is not KEY.jpg, KEY.png or KEY.cls", name))
		}
		if key == "" {
			key = k
		} else if k != key {
			r.pending, r.pendOff = h, off
			break
		}
		if h.Size < 0 || h.Size > r.maxLen {
			return fail(off, fmt.Errorf("member %s has implausible size %d", name, h.Size))
		}
		switch ext {
		case "cls":
			if s.label >= 0 {
				return fail(off, fmt.Errorf("sample %s has two labels", key))
			}
			var b [32]byte
			if h.Size > int64(len(b)) {
				return fail(off, fmt.Errorf("member %s: %d bytes is too long for a label", name, h.Size))
			}
			if _, err := io.ReadFull(r.tr, b[:h.Size]); err != nil {
				return fail(off, fmt.Errorf("member %s: %w", name, readErr(err)))
			}
			v, err := strconv.Atoi(strings.TrimSpace(string(b[:h.Size])))
			if err != nil || v < 0 || v >= r.classes {
				return fail(off, fmt.Errorf("member %s: label %q is not a class in [0, %d)", name, b[:h.Size], r.classes))
			}
			s.label = v
		case "jpg", "jpeg", "png":
			if s.enc != nil {
				return fail(off, fmt.Errorf("sample %s has two images", key))
			}
			buf = grow(buf, int(h.Size))
			if _, err := io.ReadFull(r.tr, buf); err != nil {
				return fail(off, fmt.Errorf("member %s: %w", name, readErr(err)))
			}
			s.enc, s.ext = buf, ext
		default:
			// Other members (WebDataset allows any) are skipped.
		}
		h, off, err = r.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fail(off, fmt.Errorf("reading tar header: %w", readErr(err)))
		}
	}
	if s.enc == nil {
		return fail(s.offset, fmt.Errorf("sample %s has no image", key))
	}
	if s.label < 0 {
		return fail(s.offset, fmt.Errorf("sample %s has no label (.cls)", key))
	}
	return s, nil
}

// cutExt splits a member name at its first dot after the last slash, as
// WebDataset does (KEY.seg.jpg has key KEY and extension seg.jpg; we use
// only the last part).
func cutExt(name string) (key, ext string, ok bool) {
	base := path.Base(name)
	i := strings.IndexByte(base, '.')
	if i <= 0 || i == len(base)-1 {
		return "", "", false
	}
	dir := strings.TrimSuffix(name, base)
	ext = base[i+1:]
	if j := strings.LastIndexByte(ext, '.'); j >= 0 {
		ext = ext[j+1:]
	}
	return dir + base[:i], strings.ToLower(ext), true
}
