package data

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/draw"
	"image/jpeg"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// ShardOptions configure WriteShards.
type ShardOptions struct {
	// ShardBytes is the size a shard is closed at (the last sample may
	// cross it); 0 means 1 GB.
	ShardBytes int64
	// MaxSide re-encodes images whose longer side exceeds it to that longer
	// side as JPEG of quality Quality (0: 90); 0 copies the original bytes.
	MaxSide, Quality int
	// Seed orders the samples: shards hold a random permutation of each
	// split, so that reading shards sequentially is already well mixed.
	Seed uint64
	// Progress, if set, is called after each shard is closed.
	Progress func(file string, samples int)
}

// WriteShards writes the ImageFolder tree at src (a directory or tar
// archive) into out as train-NNNNNN.tar and EVAL-NNNNNN.tar shards and
// out/index.json, the index written last so that a directory with an index
// is complete.
func WriteShards(src, out string, o ShardOptions) (*ShardIndex, error) {
	if o.ShardBytes <= 0 {
		o.ShardBytes = 1 << 30
	}
	if o.Quality == 0 {
		o.Quality = 90
	}
	if o.MaxSide < 0 || o.Quality < 1 || o.Quality > 100 {
		return nil, fmt.Errorf("data: shard: max side %d, quality %d (want ≥ 0 and 1..100)", o.MaxSide, o.Quality)
	}
	tr, te, err := openImageFolder(src, Options{})
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	ix := &ShardIndex{
		Version: 1, Classes: tr.classes, ImageSize: tr.size, MaxSide: o.MaxSide, Source: src, ShuffleSeed: o.Seed,
	}
	if o.MaxSide > 0 {
		ix.Quality = o.Quality
	}
	evalSplit := "val"
	if strings.Contains(te.desc, "test: ") {
		evalSplit = "test"
	}
	ix.EvalSplit = evalSplit
	w := &shardWriter{out: out, o: o, ix: ix}
	if ix.Train, err = w.split(tr, "train"); err != nil {
		return nil, err
	}
	if ix.Eval, err = w.split(te, evalSplit); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(ix, "", "  ")
	if err != nil {
		return nil, err
	}
	tmp := filepath.Join(out, IndexName+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(out, IndexName)); err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	return ix, nil
}

type shardWriter struct {
	out string
	o   ShardOptions
	ix  *ShardIndex
	s   resampler
}

// split writes one split in a random order drawn from (Seed, split name).
func (w *shardWriter) split(d *ImageFolder, name string) ([]ShardEntry, error) {
	n := d.Len()
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	var tag uint64
	for _, c := range name {
		tag = tag*131 + uint64(c)
	}
	r := rand.New(rand.NewPCG(mix64(w.o.Seed^tagShuffle), tag))
	r.Shuffle(n, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })

	var (
		entries []ShardEntry
		f       *os.File
		bw      *bufio.Writer
		tw      *tar.Writer
		size    int64
		count   int
		file    string
	)
	closeShard := func() error {
		if tw == nil {
			return nil
		}
		err := tw.Close()
		if err == nil {
			err = bw.Flush()
		}
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("data: writing %s: %w", file, err)
		}
		entries = append(entries, ShardEntry{File: path.Base(file), Samples: count})
		if w.o.Progress != nil {
			w.o.Progress(file, count)
		}
		tw = nil
		return nil
	}
	for k, i := range perm {
		enc, ext, err := w.encoded(d, i)
		if err != nil {
			return nil, err
		}
		if tw != nil && size+int64(len(enc)) > w.o.ShardBytes {
			if err := closeShard(); err != nil {
				return nil, err
			}
		}
		if tw == nil {
			file = filepath.Join(w.out, fmt.Sprintf("%s-%06d.tar", name, len(entries)))
			if f, err = os.Create(file); err != nil {
				return nil, fmt.Errorf("data: %w", err)
			}
			bw = bufio.NewWriterSize(f, 1<<20)
			tw = tar.NewWriter(bw)
			size, count = 0, 0
		}
		key := fmt.Sprintf("%09d", k)
		label := strconv.Itoa(d.Label(i))
		for _, m := range []struct {
			name string
			b    []byte
		}{{key + "." + ext, enc}, {key + ".cls", []byte(label)}} {
			hdr := &tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.b)), Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}
			if err := tw.WriteHeader(hdr); err != nil {
				return nil, fmt.Errorf("data: writing %s: %w", file, err)
			}
			if _, err := tw.Write(m.b); err != nil {
				return nil, fmt.Errorf("data: writing %s: %w", file, err)
			}
			size += 512 + (int64(len(m.b))+511)/512*512
		}
		count++
	}
	if err := closeShard(); err != nil {
		return nil, err
	}
	return entries, nil
}

// encoded returns sample i's bytes as they go into the shard, re-encoded
// when it is larger than MaxSide.
func (w *shardWriter) encoded(d *ImageFolder, i int) ([]byte, string, error) {
	enc, err := d.src.read(i, &w.s)
	if err != nil {
		return nil, "", &SampleError{Index: i, File: d.File(i), Err: err}
	}
	ext := "jpg"
	if bytes.HasPrefix(enc, []byte("\x89PNG")) {
		ext = "png"
	}
	if w.o.MaxSide <= 0 {
		return enc, ext, nil
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(enc))
	if err != nil {
		return nil, "", &SampleError{Index: i, File: d.File(i), Err: err}
	}
	if max(cfg.Width, cfg.Height) <= w.o.MaxSide {
		return enc, ext, nil
	}
	img, _, err := image.Decode(bytes.NewReader(enc))
	if err != nil {
		return nil, "", &SampleError{Index: i, File: d.File(i), Err: err}
	}
	small := shrink(img, w.o.MaxSide)
	var b bytes.Buffer
	if err := jpeg.Encode(&b, small, &jpeg.Options{Quality: w.o.Quality}); err != nil {
		return nil, "", &SampleError{Index: i, File: d.File(i), Err: err}
	}
	w.ix.Reencoded++
	return b.Bytes(), "jpg", nil
}

// shrink scales img down so that its longer side is maxSide, averaging
// the source pixels each output pixel covers (an area filter: no aliasing
// when shrinking by large factors).
func shrink(img image.Image, maxSide int) *image.RGBA {
	b := img.Bounds()
	sw, sh := b.Dx(), b.Dy()
	dw, dh := maxSide, max(1, (sh*maxSide+sw/2)/sw)
	if sh > sw {
		dh, dw = maxSide, max(1, (sw*maxSide+sh/2)/sh)
	}
	src := image.NewRGBA(image.Rect(0, 0, sw, sh))
	draw.Draw(src, src.Rect, img, b.Min, draw.Src)
	out := image.NewRGBA(image.Rect(0, 0, dw, dh))
	for y := range dh {
		y0, y1 := y*sh/dh, max((y+1)*sh/dh, y*sh/dh+1)
		for x := range dw {
			x0, x1 := x*sw/dw, max((x+1)*sw/dw, x*sw/dw+1)
			var acc [3]int
			for yy := y0; yy < y1; yy++ {
				row := src.Pix[yy*src.Stride+x0*4 : yy*src.Stride+x1*4]
				for p := 0; p < len(row); p += 4 {
					acc[0] += int(row[p])
					acc[1] += int(row[p+1])
					acc[2] += int(row[p+2])
				}
			}
			n := (y1 - y0) * (x1 - x0)
			o := out.PixOffset(x, y)
			for c := range 3 {
				out.Pix[o+c] = uint8((acc[c] + n/2) / n)
			}
			out.Pix[o+3] = 255
		}
	}
	return out
}
