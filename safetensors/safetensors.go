package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
)

// DType names an element type as the format spells it.
type DType string

const (
	F32 DType = "F32"
	F64 DType = "F64"
	F16 DType = "F16"
	I64 DType = "I64"
	I32 DType = "I32"
	U8  DType = "U8"
)

// Size is the number of bytes of one element.
func (d DType) Size() int {
	switch d {
	case F64, I64:
		return 8
	case F32, I32:
		return 4
	case F16:
		return 2
	case U8:
		return 1
	}
	return 0
}

// Tensor is one named array: raw little-endian bytes and a shape.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// Float32 returns a float32 tensor holding v.
func Float32(name string, shape []int, v []float32) Tensor {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return Tensor{Name: name, DType: F32, Shape: append([]int(nil), shape...), Data: b}
}

// Int64 returns an int64 tensor holding v.
func Int64(name string, shape []int, v []int64) Tensor {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
	}
	return Tensor{Name: name, DType: I64, Shape: append([]int(nil), shape...), Data: b}
}

// Numel is the number of elements its shape holds.
func (t *Tensor) Numel() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Floats converts the tensor's elements to float32 (F32, F64, F16, I64, I32 and U8 are accepted).
func (t *Tensor) Floats() ([]float32, error) {
	n := t.Numel()
	out := make([]float32, n)
	le := binary.LittleEndian
	switch t.DType {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(le.Uint32(t.Data[4*i:]))
		}
	case F64:
		for i := range out {
			out[i] = float32(math.Float64frombits(le.Uint64(t.Data[8*i:])))
		}
	case F16:
		for i := range out {
			out[i] = halfToFloat(le.Uint16(t.Data[2*i:]))
		}
	case I64:
		for i := range out {
			out[i] = float32(int64(le.Uint64(t.Data[8*i:])))
		}
	case I32:
		for i := range out {
			out[i] = float32(int32(le.Uint32(t.Data[4*i:])))
		}
	case U8:
		for i := range out {
			out[i] = float32(t.Data[i])
		}
	default:
		return nil, fmt.Errorf("tensor %q: cannot convert dtype %s to float32", t.Name, t.DType)
	}
	return out, nil
}

// Ints converts an integer tensor's elements to int64.
func (t *Tensor) Ints() ([]int64, error) {
	n := t.Numel()
	out := make([]int64, n)
	le := binary.LittleEndian
	switch t.DType {
	case I64:
		for i := range out {
			out[i] = int64(le.Uint64(t.Data[8*i:]))
		}
	case I32:
		for i := range out {
			out[i] = int64(int32(le.Uint32(t.Data[4*i:])))
		}
	case U8:
		for i := range out {
			out[i] = int64(t.Data[i])
		}
	default:
		return nil, fmt.Errorf("tensor %q: dtype %s is not an integer type", t.Name, t.DType)
	}
	return out, nil
}

func halfToFloat(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0 && mant == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal
		f := float32(mant) / 1024 / 16384
		if sign != 0 {
			return -f
		}
		return f
	case exp == 31:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
}

// File is a parsed safetensors file.
type File struct {
	Path     string
	Metadata map[string]string
	tensors  map[string]*Tensor
	order    []string // in file order
}

// Names lists the tensors in the order their data lies in the file.
func (f *File) Names() []string { return append([]string(nil), f.order...) }

// Tensor returns the named tensor.
func (f *File) Tensor(name string) (*Tensor, error) {
	t, ok := f.tensors[name]
	if !ok {
		return nil, fmt.Errorf("safetensors: %s: no tensor %q", f.Path, name)
	}
	return t, nil
}

// Float32s returns the named tensor as float32, checking its shape when want is not nil.
func (f *File) Float32s(name string, want []int) ([]float32, error) {
	t, err := f.Tensor(name)
	if err != nil {
		return nil, err
	}
	if want != nil && !sameShape(t.Shape, want) {
		return nil, fmt.Errorf("safetensors: %s: tensor %q has shape %v, want %v", f.Path, name, t.Shape, want)
	}
	v, err := t.Floats()
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", f.Path, err)
	}
	return v, nil
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

type headerEntry struct {
	DType   DType    `json:"dtype"`
	Shape   []int    `json:"shape"`
	Offsets [2]int64 `json:"data_offsets"`
}

// maxHeader bounds the JSON header, as the reference implementation does, so
// a corrupt length cannot make us allocate gigabytes.
const maxHeader = 100 << 20

// ReadFile reads and validates a whole safetensors file.
func ReadFile(path string) (*File, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	f, err := Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", path, err)
	}
	f.Path = path
	return f, nil
}

// Parse decodes a safetensors file held in memory. The tensors share raw.
func Parse(raw []byte) (*File, error) {
	if len(raw) < 8 {
		return nil, errors.New("truncated: shorter than the 8-byte header length")
	}
	hlen := binary.LittleEndian.Uint64(raw)
	if hlen > maxHeader || hlen > uint64(len(raw)-8) {
		return nil, fmt.Errorf("truncated or corrupt: header length %d, file holds %d bytes after it", hlen, len(raw)-8)
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(raw[8:8+hlen], &hdr); err != nil {
		return nil, fmt.Errorf("bad header: %w", err)
	}
	data := raw[8+hlen:]
	f := &File{tensors: map[string]*Tensor{}}
	type span struct {
		name   string
		lo, hi int64
	}
	var spans []span
	for name, msg := range hdr {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &f.Metadata); err != nil {
				return nil, fmt.Errorf("bad __metadata__: %w", err)
			}
			continue
		}
		var e headerEntry
		dec := json.NewDecoder(bytes.NewReader(msg))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return nil, fmt.Errorf("tensor %q: bad header entry: %w", name, err)
		}
		if e.DType.Size() == 0 {
			return nil, fmt.Errorf("tensor %q: unknown dtype %q", name, e.DType)
		}
		// The element count is bounded by the data size as it grows, so that a
		// huge shape cannot wrap around to match a small byte range. With a
		// zero dimension the product is 0 whatever wraps on the way.
		n, empty := int64(1), slices.Contains(e.Shape, 0)
		for _, d := range e.Shape {
			if d < 0 {
				return nil, fmt.Errorf("tensor %q: negative dimension in shape %v", name, e.Shape)
			}
			if !empty && n > int64(len(data))/int64(d) {
				return nil, fmt.Errorf("tensor %q: shape %v holds more elements than the file has bytes", name, e.Shape)
			}
			n *= int64(d)
		}
		lo, hi := e.Offsets[0], e.Offsets[1]
		if lo < 0 || hi < lo || hi > int64(len(data)) {
			return nil, fmt.Errorf("tensor %q: data offsets [%d, %d) outside the %d data bytes (truncated file?)", name, lo, hi, len(data))
		}
		if hi-lo != n*int64(e.DType.Size()) {
			return nil, fmt.Errorf("tensor %q: %d bytes for shape %v of %s", name, hi-lo, e.Shape, e.DType)
		}
		f.tensors[name] = &Tensor{Name: name, DType: e.DType, Shape: e.Shape, Data: data[lo:hi]}
		spans = append(spans, span{name, lo, hi})
	}
	// An empty tensor shares its offset with the next one: putting it first
	// keeps it from looking like an overlap, and the name makes Names the
	// same on every run despite the map's random order.
	sort.Slice(spans, func(i, j int) bool {
		if spans[i].lo != spans[j].lo {
			return spans[i].lo < spans[j].lo
		}
		if spans[i].hi != spans[j].hi {
			return spans[i].hi < spans[j].hi
		}
		return spans[i].name < spans[j].name
	})
	for i := 1; i < len(spans); i++ {
		if spans[i].lo < spans[i-1].hi {
			return nil, fmt.Errorf("tensors %q and %q overlap", spans[i-1].name, spans[i].name)
		}
	}
	for _, s := range spans {
		f.order = append(f.order, s.name)
	}
	return f, nil
}

// Encode writes tensors (in the given order) and metadata in the safetensors format.
func Encode(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	hdr := map[string]any{}
	if len(metadata) > 0 {
		hdr["__metadata__"] = metadata
	}
	var off int64
	for i := range tensors {
		t := &tensors[i]
		if t.DType.Size() == 0 {
			return fmt.Errorf("safetensors: tensor %q: unknown dtype %q", t.Name, t.DType)
		}
		if int64(len(t.Data)) != int64(t.Numel())*int64(t.DType.Size()) {
			return fmt.Errorf("safetensors: tensor %q: %d bytes for shape %v of %s", t.Name, len(t.Data), t.Shape, t.DType)
		}
		if _, dup := hdr[t.Name]; dup || t.Name == "__metadata__" {
			return fmt.Errorf("safetensors: duplicate or reserved tensor name %q", t.Name)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		hdr[t.Name] = headerEntry{DType: t.DType, Shape: shape, Offsets: [2]int64{off, off + int64(len(t.Data))}}
		off += int64(len(t.Data))
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		return fmt.Errorf("safetensors: header: %w", err)
	}
	// Pad the header with spaces so the data starts 8-byte aligned, as the
	// reference writer does; readers that mmap the file rely on it.
	for (8+len(js))%8 != 0 {
		js = append(js, ' ')
	}
	var lenb [8]byte
	binary.LittleEndian.PutUint64(lenb[:], uint64(len(js)))
	if _, err := w.Write(lenb[:]); err != nil {
		return err
	}
	if _, err := w.Write(js); err != nil {
		return err
	}
	for i := range tensors {
		if _, err := w.Write(tensors[i].Data); err != nil {
			return err
		}
	}
	return nil
}

// WriteFile writes tensors to path atomically: to a temporary file in the
// same directory, fsynced, then renamed over path, so a reader never sees a
// partial file.
func WriteFile(path string, tensors []Tensor, metadata map[string]string) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = Encode(tmp, tensors, metadata); err != nil {
		return fmt.Errorf("safetensors: %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("safetensors: %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("safetensors: %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("safetensors: sync %s: %w", dir, err)
	}
	return nil
}
