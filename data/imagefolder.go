package data

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // registers the decoders image.Decode uses
	_ "image/png"
	"io"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// ImageFolder is a set of JPEG/PNG files laid out as torchvision's
// ImageFolder expects, SPLIT/CLASS/…/IMAGE: labels are the class folder's
// index among the train folder's classes sorted by name, and samples are
// ordered as torchvision orders them (class, then folder path, then file
// name). Files are decoded per sample; from a directory they are read from
// disk as needed, from a tar archive they were loaded into memory once.
type ImageFolder struct {
	desc    string
	src     fileSource
	labels  []int32
	classes []string
	size    int     // output side
	resize  int     // evaluation: shorter side before the center crop
	augment Augment // AugmentNone for the evaluation split
	luts    []lut
	pool    sync.Pool // *resampler
	// maxPixels, when positive, replaces MaxImagePixels (for tests).
	maxPixels int
	// scales are libjpeg-turbo's DCT reductions, smallest first; nil
	// decodes with Go's image/jpeg.
	scales []scaleFactor
	clock  *stageClock // nil unless a benchmark asked for stage times
}

// MaxImagePixels bounds the width × height of an image that ImageFolder
// decodes. An image's header is read before its pixels: a file claiming
// more (a decompression bomb: a few bytes of PNG can claim 10⁹ pixels) is
// an error, not gigabytes allocated. 2²⁶ is 8192 × 8192, below PIL's own
// bomb limit of 2 × 89 478 485 and above any photograph one trains on.
const MaxImagePixels = 1 << 26

func (d *ImageFolder) Len() int             { return len(d.labels) }
func (d *ImageFolder) Shape() (c, h, w int) { return 3, d.size, d.size }
func (d *ImageFolder) Classes() int         { return len(d.classes) }
func (d *ImageFolder) String() string       { return d.desc }

// ClassNames returns the class folder names, index = label.
func (d *ImageFolder) ClassNames() []string { return slices.Clone(d.classes) }

// Label returns the label of sample i without decoding it.
func (d *ImageFolder) Label(i int) int { return int(d.labels[i]) }

// File names sample i's file (ARCHIVE:MEMBER for an archive).
func (d *ImageFolder) File(i int) string { return d.src.name(i) }

// Get decodes sample i. With rng and the default augmentation, it is
// RandomResizedCrop(size) then RandomHorizontalFlip; otherwise
// Resize(resize) then CenterCrop(size), followed, with rng and crop-flip,
// by RandomCrop(size, padding=4) and RandomHorizontalFlip. All end in
// ToTensor and Normalize.
func (d *ImageFolder) Get(i int, dst []float32, rng *rand.Rand) (int, error) {
	checkGet(d.desc, i, len(d.labels), dst, 3*d.size*d.size)
	s, _ := d.pool.Get().(*resampler)
	if s == nil {
		s = new(resampler)
	}
	defer d.pool.Put(s)
	t := d.clock.start()
	enc, err := d.src.read(i, s)
	if err == nil {
		d.clock.lap(&t, d.clock.readStage())
		err = d.render(s, enc, dst, rng, t)
	}
	if err != nil {
		return 0, &SampleError{Index: i, File: d.src.name(i), Err: err}
	}
	return int(d.labels[i]), nil
}

// transformEncoded is Get from a sample's encoded bytes instead of its
// index, for shard streams.
func (d *ImageFolder) transformEncoded(enc []byte, dst []float32, rng *rand.Rand) error {
	s, _ := d.pool.Get().(*resampler)
	if s == nil {
		s = new(resampler)
	}
	defer d.pool.Put(s)
	return d.render(s, enc, dst, rng, d.clock.start())
}

// render decodes enc and writes the split's transform of it into dst,
// with s's buffers.
func (d *ImageFolder) render(s *resampler, enc []byte, dst []float32, rng *rand.Rand, t time.Time) error {
	var err error
	// libjpeg-turbo reads the size from the header and decodes after the
	// draws; anything else (PNG, CMYK JPEGs, no libjpeg-turbo) is decoded
	// by Go first. Either way the header's size is checked first.
	var img image.Image
	w, h, turbo := 0, 0, d.scales != nil && isJPEG(enc)
	if turbo {
		var rgbOK bool
		if w, h, rgbOK, err = s.turbo(enc); err != nil {
			return err
		}
		if err := d.checkPixels("jpeg", w, h); err != nil {
			return err
		}
		turbo = rgbOK
	}
	if !turbo {
		if img, err = d.decode(enc); err != nil {
			return err
		}
		w, h = img.Bounds().Dx(), img.Bounds().Dy()
		d.clock.lap(&t, d.clock.decodeStage())
	}
	if w <= 0 || h <= 0 {
		return fmt.Errorf("empty image (%d×%d)", w, h)
	}
	p, cropFlip := d.plan(w, h, rng)
	out := dst
	if cropFlip {
		s.chw = grow(s.chw, len(dst))
		out = s.chw
	}
	if turbo {
		if err := d.renderTurbo(s, enc, w, h, p, out, &t); err != nil {
			return err
		}
	} else {
		d.renderGo(s, img, p, out)
	}
	d.clock.lap(&t, d.clock.resizeStage())
	d.clock.done()
	if cropFlip {
		top, left := randomCropParams(rng, 4)
		shiftFlip(dst, out, 3, d.size, d.size, top-4, left-4, flipCoin(rng), d.luts)
	}
	return nil
}

// decode decodes a JPEG or PNG after checking the size its header claims.
func (d *ImageFolder) decode(enc []byte) (image.Image, error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(enc))
	if err != nil {
		return nil, err
	}
	if err := d.checkPixels(format, cfg.Width, cfg.Height); err != nil {
		return nil, err
	}
	img, _, err := image.Decode(bytes.NewReader(enc))
	return img, err
}

// checkPixels refuses an image size read from a header before anything of
// that size is allocated.
func (d *ImageFolder) checkPixels(format string, width, height int) error {
	limit := MaxImagePixels
	if d.maxPixels > 0 {
		limit = d.maxPixels
	}
	if w, h := int64(width), int64(height); w <= 0 || h <= 0 {
		return fmt.Errorf("%s of %d×%d pixels: empty image", format, w, h)
	} else if w*h > int64(limit) {
		return fmt.Errorf("%s of %d×%d = %d pixels: more than the %d an image may have (a corrupt header or a decompression bomb)",
			format, w, h, w*h, limit)
	}
	return nil
}

// fileSource yields the encoded bytes of sample i.
type fileSource interface {
	read(i int, s *resampler) ([]byte, error)
	name(i int) string
}

// dirSource reads files from disk into the worker's scratch buffer.
type dirSource struct {
	root  string
	files []string // slash-separated, relative to root
}

func (d *dirSource) name(i int) string { return filepath.Join(d.root, filepath.FromSlash(d.files[i])) }

func (d *dirSource) read(i int, s *resampler) ([]byte, error) {
	f, err := os.Open(d.name(i))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > maxImageFile {
		return nil, fmt.Errorf("%d bytes is more than an image file may have (%d)", st.Size(), int64(maxImageFile))
	}
	buf := grow(s.file, int(st.Size()))
	s.file = buf
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil, fmt.Errorf("reading %d bytes: %w", len(buf), err)
	}
	return buf, nil
}

// memSource serves the members of an archive that were loaded into memory.
type memSource struct {
	archive string
	names   []string
	blobs   [][]byte
}

func (m *memSource) name(i int) string                        { return m.archive + ":" + m.names[i] }
func (m *memSource) read(i int, _ *resampler) ([]byte, error) { return m.blobs[i], nil }

func isImageFile(name string) bool {
	switch strings.ToLower(path.Ext(name)) {
	case ".jpg", ".jpeg", ".png":
		return true
	}
	return false
}

// tinyAnnotations is the file that labels Tiny-ImageNet's val/images/*.
const tinyAnnotations = "val_annotations.txt"

// tree is a listing of a dataset root: file paths relative to it
// (slash-separated), and where the bytes come from.
type tree struct {
	files []string
	// dirs are the folders seen, so that an empty class folder of a
	// directory tree is still a class (as in torchvision).
	dirs  map[string]bool
	blobs map[string][]byte // archive: member bytes; nil for a directory
	root  string            // directory, or archive path
}

// listDir walks root (following symbolic links, as torchvision does) and
// collects the image files and folders under it.
func listDir(root string) (*tree, error) {
	t := &tree{dirs: map[string]bool{}, root: root}
	var walk func(rel string, depth int) error
	walk = func(rel string, depth int) error {
		if depth > 32 {
			return fmt.Errorf("data: %s: folders nested over 32 deep (a symbolic link loop?)", filepath.Join(root, rel))
		}
		ents, err := os.ReadDir(filepath.Join(root, filepath.FromSlash(rel)))
		if err != nil {
			return fmt.Errorf("data: %w", err)
		}
		for _, e := range ents {
			p := path.Join(rel, e.Name())
			isDir := e.IsDir()
			if e.Type()&os.ModeSymlink != 0 {
				if st, err := os.Stat(filepath.Join(root, filepath.FromSlash(p))); err == nil && st.IsDir() {
					isDir = true
				}
			}
			switch {
			case isDir:
				t.dirs[p] = true
				if err := walk(p, depth+1); err != nil {
					return err
				}
			case isImageFile(p) || e.Name() == tinyAnnotations:
				t.files = append(t.files, p)
			}
		}
		return nil
	}
	if err := walk("", 0); err != nil {
		return nil, err
	}
	return t, nil
}

// maxImageFile bounds the bytes of one image file (or annotations file),
// read whole into memory.
const maxImageFile = 1 << 30

// arenaChunk is the allocation unit for archive members: small JPEGs are
// packed together instead of being 60 000 separate objects for the GC.
const arenaChunk = 16 << 20

// listTar reads a tar archive (gzip-compressed or not, recognised from the
// content) once, keeping the image files and annotation files in memory.
func listTar(archive string) (*tree, error) {
	f, err := os.Open(archive)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	defer f.Close()
	return readTar(archive, f)
}

// readTar is listTar of the archive read from f; archive names it.
func readTar(archive string, f io.Reader) (*tree, error) {
	br := bufio.NewReaderSize(f, 1<<20)
	var r io.Reader = br
	if head, _ := br.Peek(2); len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("data: %s: gzip: %w", archive, err)
		}
		defer zr.Close()
		r = zr
	}
	t := &tree{dirs: map[string]bool{}, blobs: map[string][]byte{}, root: archive}
	tr := tar.NewReader(r)
	var arena []byte
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("data: %s: reading tar (after %d files): %w", archive, len(t.files), err)
		}
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		if name == "" {
			continue
		}
		if hdr.Typeflag == tar.TypeDir {
			t.dirs[name] = true
			continue
		}
		if !hdr.FileInfo().Mode().IsRegular() || !(isImageFile(name) || path.Base(name) == tinyAnnotations) {
			continue
		}
		if hdr.Size < 0 || hdr.Size > maxImageFile {
			return nil, fmt.Errorf("data: %s: member %s has implausible size %d", archive, name, hdr.Size)
		}
		n := int(hdr.Size)
		var buf []byte
		if n > arenaChunk/4 {
			// Read as it comes rather than allocated on the header's word: a
			// header can claim a gigabyte that the archive does not hold.
			if buf, err = io.ReadAll(io.LimitReader(tr, hdr.Size)); err == nil && len(buf) < n {
				err = io.ErrUnexpectedEOF
			}
			if err != nil {
				return nil, fmt.Errorf("data: %s: member %s: %w", archive, name, readErr(err))
			}
		} else {
			if cap(arena)-len(arena) < n {
				arena = make([]byte, 0, arenaChunk)
			}
			buf = arena[len(arena) : len(arena)+n : len(arena)+n]
			arena = arena[:len(arena)+n]
			if _, err := io.ReadFull(tr, buf); err != nil {
				return nil, fmt.Errorf("data: %s: member %s: %w", archive, name, readErr(err))
			}
		}
		if _, dup := t.blobs[name]; !dup {
			t.files = append(t.files, name)
		}
		t.blobs[name] = buf // a later member of the same name replaces it, as tar extraction would
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			t.dirs[d] = true
		}
	}
	return t, nil
}

// findRoot returns the folder of the tree that holds train/ (the tree's root
// or a folder nested in it, as when an archive has one top folder), as a
// prefix ending in "/" or "" for the root itself. The shallowest wins; two at
// the same depth are ambiguous.
func (t *tree) findRoot() (string, error) {
	best, bestDepth := "", -1
	var other string
	for _, f := range t.files {
		// Walk f's folders without splitting it (no allocation per file):
		// k is the depth of the folder that starts at start.
		for k, start := 0, 0; ; k++ {
			i := strings.IndexByte(f[start:], '/')
			if i < 0 {
				break
			}
			if f[start:start+i] != "train" || !strings.Contains(f[start+i+1:], "/") {
				start += i + 1
				continue
			}
			prefix := f[:start]
			switch {
			case bestDepth < 0 || k < bestDepth:
				best, bestDepth, other = prefix, k, ""
			case k == bestDepth && prefix != best:
				other = prefix
			}
			break
		}
	}
	if bestDepth < 0 {
		return "", fmt.Errorf("data: %s: no train/CLASS/IMAGE files (.jpg, .jpeg, .png) found", t.root)
	}
	if other != "" {
		return "", fmt.Errorf("data: %s: both %strain/ and %strain/ hold images; point at one of them", t.root, best, other)
	}
	return best, nil
}

// split lists the labelled files of one split folder: class = first folder
// under it, numbered by classIndex. Files are ordered as torchvision's
// make_dataset: by class, then folder path, then file name.
type labelled struct {
	file  string
	slash int32 // index of file's last slash (−1: none), to sort by folder then name without allocating
	class int32
}

func newLabelled(file string, class int) labelled {
	return labelled{file: file, slash: int32(strings.LastIndexByte(file, '/')), class: int32(class)}
}

func (l labelled) dir() string  { return l.file[:max(l.slash, 0)] }
func (l labelled) base() string { return l.file[l.slash+1:] }

func (t *tree) classFolders(prefix string) []string {
	seen := map[string]bool{}
	for d := range t.dirs {
		if rest, ok := strings.CutPrefix(d, prefix); ok && rest != "" && !strings.Contains(rest, "/") {
			seen[rest] = true
		}
	}
	for _, f := range t.files {
		if rest, ok := strings.CutPrefix(f, prefix); ok {
			if c, _, ok := strings.Cut(rest, "/"); ok {
				seen[c] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for c := range seen {
		out = append(out, c)
	}
	slices.Sort(out) // byte order of UTF-8 is Python's code-point order
	return out
}

func (t *tree) splitFiles(splitPrefix string, classIndex map[string]int) ([]labelled, error) {
	// Count first and allocate once: an ImageNet-sized split is over a
	// million entries, and append's doubling would hold two copies at once.
	n := 0
	for _, f := range t.files {
		if strings.HasPrefix(f, splitPrefix) {
			n++
		}
	}
	out := make([]labelled, 0, n)
	for _, f := range t.files {
		rest, ok := strings.CutPrefix(f, splitPrefix)
		if !ok || !isImageFile(f) {
			continue
		}
		c, _, ok := strings.Cut(rest, "/")
		if !ok {
			continue // a file directly in the split folder belongs to no class
		}
		k, ok := classIndex[c]
		if !ok {
			return nil, fmt.Errorf("data: %s: %s is in class folder %q, which train/ does not have", t.root, f, c)
		}
		out = append(out, newLabelled(f, k))
	}
	slices.SortFunc(out, func(a, b labelled) int {
		if a.class != b.class {
			return int(a.class - b.class)
		}
		if c := strings.Compare(a.dir(), b.dir()); c != 0 {
			return c
		}
		return strings.Compare(a.base(), b.base())
	})
	return out, nil
}

// tinyVal reads Tiny-ImageNet's val layout: val/images/*.JPEG labelled by
// val/val_annotations.txt (file, class id, box). ok is false when the split
// is not laid out that way.
func (t *tree) tinyVal(valPrefix string, classIndex map[string]int) (out []labelled, ok bool, err error) {
	ann := valPrefix + tinyAnnotations
	var text []byte
	if t.blobs != nil {
		b, found := t.blobs[ann]
		if !found {
			return nil, false, nil
		}
		text = b
	} else {
		p := filepath.Join(t.root, filepath.FromSlash(ann))
		if text, err = os.ReadFile(p); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, false, nil
			}
			return nil, false, fmt.Errorf("data: %w", err)
		}
	}
	where := t.root + ":" + ann
	if t.blobs == nil {
		where = filepath.Join(t.root, filepath.FromSlash(ann))
	}
	have := map[string]bool{}
	for _, f := range t.files {
		have[f] = true
	}
	for ln, line := range strings.Split(string(text), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			return nil, false, fmt.Errorf("data: %s line %d: want FILE CLASS …, got %q", where, ln+1, line)
		}
		k, known := classIndex[fields[1]]
		if !known {
			return nil, false, fmt.Errorf("data: %s line %d: class %q is not a train/ class", where, ln+1, fields[1])
		}
		f := valPrefix + "images/" + fields[0]
		if !have[f] {
			return nil, false, fmt.Errorf("data: %s line %d: %s is missing", where, ln+1, f)
		}
		out = append(out, newLabelled(f, k))
	}
	slices.SortFunc(out, func(a, b labelled) int { return strings.Compare(a.file, b.file) })
	return out, true, nil
}

// openImageFolder opens the train split and the val (or else test) split of
// the tree at p, a directory or a tar(.gz) archive.
func openImageFolder(p string, o Options) (train, test *ImageFolder, err error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, nil, fmt.Errorf("data: %w", err)
	}
	var t *tree
	if st.IsDir() {
		t, err = listDir(p)
	} else {
		t, err = listTar(p)
	}
	if err != nil {
		return nil, nil, err
	}
	return openTree(t, o)
}

// openTree is openImageFolder of a listed tree.
func openTree(t *tree, o Options) (train, test *ImageFolder, err error) {
	jpeg, err := defaultJPEG()
	if err != nil {
		return nil, nil, err
	}
	prefix, err := t.findRoot()
	if err != nil {
		return nil, nil, err
	}
	classes := t.classFolders(prefix + "train/")
	classIndex := make(map[string]int, len(classes))
	for i, c := range classes {
		classIndex[c] = i
	}
	trainFiles, err := t.splitFiles(prefix+"train/", classIndex)
	if err != nil {
		return nil, nil, err
	}
	counts := make([]int, len(classes))
	for _, f := range trainFiles {
		counts[f.class]++
	}
	for k, n := range counts {
		if n == 0 {
			return nil, nil, fmt.Errorf("data: %s: class folder %strain/%s has no image files (.jpg, .jpeg, .png)", t.root, prefix, classes[k])
		}
	}
	var testFiles []labelled
	var testSplit string
	for _, split := range []string{"val", "test"} {
		sp := prefix + split + "/"
		files, isTiny, err := t.tinyVal(sp, classIndex)
		if err != nil {
			return nil, nil, err
		}
		if !isTiny {
			if files, err = t.splitFiles(sp, classIndex); err != nil {
				return nil, nil, err
			}
		}
		if len(files) > 0 {
			testFiles, testSplit = files, split
			break
		}
	}
	if testFiles == nil {
		return nil, nil, fmt.Errorf("data: %s: no evaluation images in %sval/CLASS/ or %stest/CLASS/", t.root, prefix, prefix)
	}
	// The listing is done with; its array holds the splits' file names
	// (each split's entries are distinct files of it), so that an
	// ImageNet-sized tree does not hold two 1.3-million-entry tables at once.
	store := t.files[:0]
	t.files, t.dirs = nil, nil

	size := o.ImageSize
	if size <= 0 {
		if size, err = t.guessSize(trainFiles[0].file); err != nil {
			return nil, nil, err
		}
	}
	resize, luts, err := imageTransforms("imagefolder", size, o)
	if err != nil {
		return nil, nil, err
	}
	var scales []scaleFactor
	if jpeg == jpegTurbo {
		scales = turboFactors
	}
	mk := func(split string, files []labelled, augment Augment) *ImageFolder {
		d := &ImageFolder{
			classes: classes, size: size, resize: resize, augment: augment, luts: luts, scales: scales,
			labels: make([]int32, len(files)),
		}
		var names []string
		if cap(store)-len(store) >= len(files) {
			names = store[len(store) : len(store)+len(files) : len(store)+len(files)]
			store = store[:len(store)+len(files)]
		} else {
			names = make([]string, len(files))
		}
		for i, f := range files {
			names[i] = f.file
			d.labels[i] = int32(f.class)
		}
		if t.blobs != nil {
			blobs := make([][]byte, len(files))
			for i, f := range files {
				blobs[i] = t.blobs[f.file]
			}
			d.src = &memSource{archive: t.root, names: names, blobs: blobs}
		} else {
			d.src = &dirSource{root: t.root, files: names}
		}
		d.desc = fmt.Sprintf("imagefolder %s %s%s: %d images, %d classes, 3x%dx%d", t.root, prefix, split, len(files), len(classes), size, size)
		return d
	}
	return mk("train", trainFiles, o.Augment), mk(testSplit, testFiles, AugmentNone), nil
}

// guessSize picks the output side from the first training image: the
// shorter side of small images (CIFAR's 32, Tiny-ImageNet's 64), which are
// then used at their own resolution; 224 for anything larger, the ImageNet
// convention.
func (t *tree) guessSize(file string) (int, error) {
	var r io.Reader
	where := t.root + ":" + file
	if t.blobs != nil {
		r = bytes.NewReader(t.blobs[file])
	} else {
		where = filepath.Join(t.root, filepath.FromSlash(file))
		f, err := os.Open(where)
		if err != nil {
			return 0, fmt.Errorf("data: %w", err)
		}
		defer f.Close()
		r = f
	}
	cfg, _, err := image.DecodeConfig(r)
	if err != nil {
		return 0, fmt.Errorf("data: %s: %w", where, err)
	}
	if s := min(cfg.Width, cfg.Height); s <= 0 {
		return 0, fmt.Errorf("data: %s: image of %d×%d pixels is empty", where, cfg.Width, cfg.Height)
	} else if s <= 64 {
		return s, nil
	}
	return 224, nil
}

// imageTransforms settles an image set's evaluation resize (o.ResizeSize,
// or torchvision's 256/224 of the crop from 128 px up) and its
// normalisation tables (ImageNet's unless o says otherwise).
func imageTransforms(kind string, size int, o Options) (resize int, luts []lut, err error) {
	resize = o.ResizeSize
	if resize <= 0 {
		resize = size
		if size >= 128 {
			resize = roundHalfEven(float64(size) * 256 / 224)
		}
	}
	if resize < size {
		return 0, nil, fmt.Errorf("data: %s resize %d is smaller than the crop %d", kind, resize, size)
	}
	stats := ImageNetStats
	if o.Mean != nil || o.Std != nil {
		stats = Stats{Mean: o.Mean, Std: o.Std}
	} else if o.NoNormalize {
		stats = identityStats
	}
	luts, err = makeLUTs(stats, 3)
	return resize, luts, err
}
