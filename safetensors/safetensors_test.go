package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// rawFile assembles a safetensors file from a header given as JSON text and
// the data bytes that follow it, padding nothing: tests of bad input need to
// say exactly what lies in the file.
func rawFile(header string, data []byte) []byte {
	b := make([]byte, 8, 8+len(header)+len(data))
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

func writeRaw(t *testing.T, name string, raw []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func float64Tensor(name string, shape []int, v []float64) Tensor {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(x))
	}
	return Tensor{Name: name, DType: F64, Shape: shape, Data: b}
}

func float16Tensor(name string, shape []int, bits []uint16) Tensor {
	b := make([]byte, 2*len(bits))
	for i, h := range bits {
		binary.LittleEndian.PutUint16(b[2*i:], h)
	}
	return Tensor{Name: name, DType: F16, Shape: shape, Data: b}
}

var negZero = float32(math.Copysign(0, -1))

// sampleTensors covers every dtype the package converts, a scalar, an empty
// tensor, and values whose bits would expose a wrong byte order.
func sampleTensors() []Tensor {
	return []Tensor{
		Float32("layer1.0.conv1.weight", []int{2, 3}, []float32{1, -2.5, 3e-8, float32(math.Inf(1)), negZero, 65504.125}),
		Int64("labels", []int{4}, []int64{0, -1, 1 << 40, math.MinInt64}),
		float64Tensor("f64", []int{2, 1}, []float64{math.Pi, -1e300}),
		float16Tensor("half", []int{5}, []uint16{0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000}),
		{Name: "bytes", DType: U8, Shape: []int{3}, Data: []byte{0, 128, 255}},
		Float32("scalar", []int{}, []float32{7}),
		Float32("empty", []int{0, 4}, nil),
		{Name: "i32", DType: I32, Shape: []int{2}, Data: []byte{0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0}},
	}
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "model.safetensors")
	in := sampleTensors()
	meta := map[string]string{"format": "pt", "step": "1200", "note": "ünïcode \"quoted\""}
	if err := WriteFile(path, in, meta); err != nil {
		t.Fatal(err)
	}
	f, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Path != path {
		t.Errorf("Path = %q, want %q", f.Path, path)
	}
	if !reflect.DeepEqual(f.Metadata, meta) {
		t.Errorf("Metadata = %v, want %v", f.Metadata, meta)
	}
	var wantNames []string
	for _, x := range in {
		wantNames = append(wantNames, x.Name)
	}
	// Names follows the data order, which Encode takes from its argument.
	if got := f.Names(); !reflect.DeepEqual(got, wantNames) {
		t.Errorf("Names = %v, want %v", got, wantNames)
	}
	for _, want := range in {
		got, err := f.Tensor(want.Name)
		if err != nil {
			t.Fatal(err)
		}
		if got.DType != want.DType || !sameShape(got.Shape, want.Shape) || !bytes.Equal(got.Data, want.Data) {
			t.Errorf("%s: got %s %v % x, want %s %v % x", want.Name, got.DType, got.Shape, got.Data, want.DType, want.Shape, want.Data)
		}
	}

	checkFloats := func(name string, want []float32) {
		t.Helper()
		got, err := f.Float32s(name, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
		}
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Errorf("%s[%d] = %v, want %v", name, i, got[i], want[i])
			}
		}
	}
	checkFloats("layer1.0.conv1.weight", []float32{1, -2.5, 3e-8, float32(math.Inf(1)), negZero, 65504.125})
	checkFloats("f64", []float32{float32(math.Pi), float32(math.Inf(-1))})
	checkFloats("half", []float32{1, -2, 65504, 0x1p-24, negZero})
	checkFloats("bytes", []float32{0, 128, 255})
	checkFloats("scalar", []float32{7})
	checkFloats("empty", []float32{})
	checkFloats("labels", []float32{0, -1, 1 << 40, -(1 << 63)})
	checkFloats("i32", []float32{-1, 2})

	lt, _ := f.Tensor("labels")
	ints, err := lt.Ints()
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{0, -1, 1 << 40, math.MinInt64}; !reflect.DeepEqual(ints, want) {
		t.Errorf("labels Ints = %v, want %v", ints, want)
	}
	bt, _ := f.Tensor("bytes")
	if ints, err := bt.Ints(); err != nil || !reflect.DeepEqual(ints, []int64{0, 128, 255}) {
		t.Errorf("bytes Ints = %v, %v", ints, err)
	}
	it, _ := f.Tensor("i32")
	if ints, err := it.Ints(); err != nil || !reflect.DeepEqual(ints, []int64{-1, 2}) {
		t.Errorf("i32 Ints = %v, %v", ints, err)
	}
}

func TestNoMetadata(t *testing.T) {
	var buf bytes.Buffer
	if err := Encode(&buf, []Tensor{Float32("w", []int{1}, []float32{1})}, nil); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf.Bytes(), []byte("__metadata__")) {
		t.Errorf("header has __metadata__ without metadata: %q", buf.Bytes())
	}
	f, err := Parse(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Metadata) != 0 {
		t.Errorf("Metadata = %v, want none", f.Metadata)
	}
}

// The reference writer pads the header with spaces so that the data starts at
// a multiple of 8; readers that map the file and cast the data rely on it.
func TestHeaderAlignment(t *testing.T) {
	for n := range 17 {
		name := strings.Repeat("x", n+1)
		var buf bytes.Buffer
		meta := map[string]string{"k": strings.Repeat("v", n)}
		if err := Encode(&buf, []Tensor{Float32(name, []int{1}, []float32{2})}, meta); err != nil {
			t.Fatal(err)
		}
		raw := buf.Bytes()
		hlen := binary.LittleEndian.Uint64(raw)
		if (8+hlen)%8 != 0 {
			t.Errorf("name of %d bytes: data starts at %d, not a multiple of 8", n+1, 8+hlen)
		}
		hdr := raw[8 : 8+hlen]
		js := bytes.TrimRight(hdr, " ")
		if !json.Valid(js) {
			t.Errorf("name of %d bytes: header %q is not JSON followed by spaces", n+1, hdr)
		}
		if len(hdr)-len(js) > 7 {
			t.Errorf("name of %d bytes: %d bytes of padding", n+1, len(hdr)-len(js))
		}
		if got := raw[8+hlen:]; !bytes.Equal(got, []byte{0, 0, 0, 0x40}) {
			t.Errorf("name of %d bytes: data % x, want 00 00 00 40", n+1, got)
		}
	}
}

// Every half-precision bit pattern against the textbook definition.
func TestHalfToFloatExhaustive(t *testing.T) {
	for h := range 1 << 16 {
		sign := 1.0
		if h&0x8000 != 0 {
			sign = -1
		}
		e := (h >> 10) & 0x1f
		m := float64(h & 0x3ff)
		var want float64
		switch e {
		case 0:
			want = sign * math.Ldexp(m/1024, -14)
		case 31:
			if m == 0 {
				want = sign * math.Inf(1)
			} else {
				want = math.NaN()
			}
		default:
			want = sign * math.Ldexp(1+m/1024, e-15)
		}
		got := halfToFloat(uint16(h))
		if math.IsNaN(want) {
			if !math.IsNaN(float64(got)) {
				t.Errorf("half %#04x = %v, want NaN", h, got)
			}
			continue
		}
		if float64(got) != want || math.Signbit(float64(got)) != math.Signbit(want) {
			t.Errorf("half %#04x = %v, want %v", h, got, want)
		}
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ckpt.safetensors")
	old := []Tensor{Float32("w", []int{2}, []float32{1, 2})}
	if err := WriteFile(path, old, map[string]string{"v": "old"}); err != nil {
		t.Fatal(err)
	}
	oldBytes, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	onlyFile := func(what string) {
		t.Helper()
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if !reflect.DeepEqual(names, []string{"ckpt.safetensors"}) {
			t.Errorf("%s: directory holds %v, want only ckpt.safetensors", what, names)
		}
	}
	onlyFile("after a write")

	// A write that fails after the temporary file exists must remove it and
	// leave the old file as it was.
	bad := []Tensor{
		Float32("w", []int{2}, []float32{3, 4}),
		{Name: "broken", DType: F32, Shape: []int{3}, Data: make([]byte, 8)},
	}
	err = WriteFile(path, bad, nil)
	if err == nil {
		t.Fatal("WriteFile of a tensor whose data does not fit its shape: no error")
	}
	for _, want := range []string{path, `"broken"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, oldBytes) {
		t.Error("a failed WriteFile changed the old file")
	}
	onlyFile("after a failed write")

	// A successful overwrite replaces the file whole.
	if err := WriteFile(path, []Tensor{Float32("w", []int{3}, []float32{5, 6, 7})}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := f.Float32s("w", []int{3}); err != nil || !reflect.DeepEqual(v, []float32{5, 6, 7}) {
		t.Errorf("after overwrite: w = %v, %v", v, err)
	}
	if len(f.Metadata) != 0 {
		t.Errorf("after overwrite: old metadata %v survived", f.Metadata)
	}
	onlyFile("after an overwrite")
}

// A rename that fails (the target is a non-empty directory) must also clean up.
func TestWriteFileRenameFails(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "target")
	if err := os.MkdirAll(filepath.Join(path, "inside"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(path, []Tensor{Float32("w", []int{1}, []float32{1})}, nil)
	if err == nil {
		t.Fatal("WriteFile over a non-empty directory: no error")
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name %s", err, path)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != "target" {
		t.Errorf("temporary file left behind: %v", ents)
	}
}

func TestWriteFileMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "dir", "x.safetensors")
	err := WriteFile(path, []Tensor{Float32("w", []int{1}, []float32{1})}, nil)
	if err == nil || !strings.Contains(err.Error(), filepath.Dir(path)) {
		t.Errorf("WriteFile into a missing directory: %v, want an error naming it", err)
	}
}

func TestWriteErrors(t *testing.T) {
	w := Float32("w", []int{2}, []float32{1, 2})
	cases := []struct {
		name    string
		tensors []Tensor
		want    string // the tensor the error must name
	}{
		{"duplicate name", []Tensor{w, Float32("b", []int{1}, []float32{0}), w}, `"w"`},
		{"reserved name", []Tensor{Float32("__metadata__", []int{1}, []float32{0})}, `"__metadata__"`},
		{"unknown dtype", []Tensor{{Name: "q", DType: "Q4", Shape: []int{1}, Data: []byte{0}}}, `"q"`},
		{"too few bytes", []Tensor{{Name: "short", DType: F32, Shape: []int{2, 2}, Data: make([]byte, 15)}}, `"short"`},
		{"too many bytes", []Tensor{{Name: "long", DType: I64, Shape: []int{1}, Data: make([]byte, 9)}}, `"long"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.safetensors")
			err := WriteFile(path, c.tensors, nil)
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range []string{path, c.want} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %s", err, want)
				}
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Errorf("a failed first write left %s behind", path)
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	f32x2 := make([]byte, 8)
	cases := []struct {
		name string
		raw  []byte
		want []string // besides the file's path
	}{
		{"empty file", nil, []string{"truncated"}},
		{"shorter than the length", []byte{1, 0, 0}, []string{"truncated"}},
		{"header length larger than the file", func() []byte {
			r := rawFile(`{}`, nil)
			binary.LittleEndian.PutUint64(r, 3)
			return r
		}(), []string{"header length 3"}},
		{"header length absurd", func() []byte {
			r := rawFile(`{}`, nil)
			binary.LittleEndian.PutUint64(r, math.MaxUint64)
			return r
		}(), []string{"header length"}},
		{"bad JSON", rawFile(`{"w": {"dtype": "F32",`, f32x2), []string{"bad header"}},
		{"header not an object", rawFile(`[1, 2]`, nil), []string{"bad header"}},
		{"entry not an object", rawFile(`{"w": 3}`, nil), []string{`"w"`}},
		{"unknown field", rawFile(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"strides":[1]}}`, f32x2), []string{`"w"`}},
		{"unknown dtype", rawFile(`{"w":{"dtype":"BF17","shape":[2],"data_offsets":[0,8]}}`, f32x2), []string{`"w"`, "BF17"}},
		{"missing dtype", rawFile(`{"w":{"shape":[2],"data_offsets":[0,8]}}`, f32x2), []string{`"w"`, "dtype"}},
		{"offsets past the end", rawFile(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, f32x2), []string{`"w"`, "offsets"}},
		{"offsets reversed", rawFile(`{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}`, f32x2), []string{`"w"`, "offsets"}},
		{"negative offset", rawFile(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}`, f32x2), []string{`"w"`, "offsets"}},
		{"size not matching shape", rawFile(`{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, f32x2), []string{`"w"`, "[3]"}},
		{"size not matching dtype", rawFile(`{"w":{"dtype":"F64","shape":[2],"data_offsets":[0,8]}}`, f32x2), []string{`"w"`, "F64"}},
		{"negative dimension", rawFile(`{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,0]}}`, f32x2), []string{`"w"`, "negative"}},
		{"fractional dimension", rawFile(`{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`, f32x2), []string{`"w"`}},
		{"overlapping tensors", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, f32x2), []string{`"a"`, `"b"`, "overlap"}},
		{"same span twice", rawFile(`{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}`, f32x2), []string{`"a"`, `"b"`, "overlap"}},
		{"metadata not strings", rawFile(`{"__metadata__":{"step":3}}`, nil), []string{"__metadata__"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeRaw(t, "bad.safetensors", c.raw)
			f, err := ReadFile(path)
			if err == nil {
				t.Fatalf("no error; parsed %v", f.Names())
			}
			for _, want := range append([]string{path}, c.want...) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %s", err, want)
				}
			}
		})
	}
}

func TestReadFileMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.safetensors")
	if _, err := ReadFile(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("ReadFile of a missing file: %v, want an error naming it", err)
	}
}

// Cutting a valid file anywhere must give an error, never a panic or a file
// that silently holds less than was written.
func TestTruncatedPrefixes(t *testing.T) {
	var buf bytes.Buffer
	if err := Encode(&buf, sampleTensors()[:5], map[string]string{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	full := buf.Bytes()
	if _, err := Parse(full); err != nil {
		t.Fatalf("the whole file: %v", err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "cut.safetensors")
	for n := range len(full) {
		if err := os.WriteFile(path, full[:n], 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ReadFile(path)
		if err == nil {
			t.Fatalf("prefix of %d of %d bytes: no error", n, len(full))
		}
		if !strings.Contains(err.Error(), path) {
			t.Fatalf("prefix of %d bytes: error %q does not name the file", n, err)
		}
	}
}

func TestLookupErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.safetensors")
	if err := WriteFile(path, sampleTensors(), nil); err != nil {
		t.Fatal(err)
	}
	f, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, err error, want ...string) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: no error", what)
			return
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not contain %s", what, err, w)
			}
		}
	}
	_, err = f.Tensor("nope")
	check("missing tensor", err, path, `"nope"`)
	_, err = f.Float32s("nope", nil)
	check("Float32s of a missing tensor", err, path, `"nope"`)
	_, err = f.Float32s("layer1.0.conv1.weight", []int{3, 2})
	check("wrong shape", err, path, `"layer1.0.conv1.weight"`, "[2 3]", "[3 2]")
	w, _ := f.Tensor("layer1.0.conv1.weight")
	_, err = w.Ints()
	check("Ints of F32", err, `"layer1.0.conv1.weight"`)
	bad := Tensor{Name: "odd", DType: "Q4"}
	_, err = bad.Floats()
	check("Floats of an unknown dtype", err, `"odd"`)
}

// A shape whose element count overflows int64 must be refused: the product
// wraps and can come out equal to the byte range, and then the tensor claims
// 2^63 elements while holding none, or Numel is negative and Floats panics.
func TestShapeOverflow(t *testing.T) {
	cases := []struct {
		hdr string
		ok  bool
	}{
		{`{"w":{"dtype":"F32","shape":[4611686018427387904,2],"data_offsets":[0,0]}}`, false},                   // 2^63 elements, ·4 wraps to 0
		{`{"w":{"dtype":"U8","shape":[4294967296,4294967296,2],"data_offsets":[0,0]}}`, false},                  // 2^65 wraps to 0
		{`{"w":{"dtype":"I64","shape":[9223372036854775807,9223372036854775807],"data_offsets":[0,8]}}`, false}, // wraps to 1
		{`{"w":{"dtype":"F64","shape":[2305843009213693952,0,8],"data_offsets":[0,0]}}`, true},                  // a zero dimension: 0 elements
	}
	for _, c := range cases {
		path := writeRaw(t, "big.safetensors", rawFile(c.hdr, make([]byte, 8)))
		f, err := ReadFile(path)
		if !c.ok {
			if err == nil {
				w, _ := f.Tensor("w")
				t.Errorf("header %s accepted (Numel %d, %d data bytes)", c.hdr, w.Numel(), len(w.Data))
			} else if !strings.Contains(err.Error(), `"w"`) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file and the tensor", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("header %s: %v", c.hdr, err)
			continue
		}
		if w, _ := f.Tensor("w"); w.Numel() != 0 {
			t.Errorf("header %s: Numel %d, want 0", c.hdr, w.Numel())
		}
	}
}

func FuzzParse(f *testing.F) {
	var buf bytes.Buffer
	if err := Encode(&buf, sampleTensors(), map[string]string{"k": "v"}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add(rawFile(`{}`, nil))
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)))
	f.Add(rawFile(`{"w":{"dtype":"F16","shape":[1,2],"data_offsets":[0,4]}}`, []byte{0, 0x3c, 0, 0x7c}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, raw []byte) {
		file, err := Parse(raw)
		if err != nil {
			return
		}
		// Whatever Parse accepts must be usable and must survive a rewrite.
		var ts []Tensor
		for _, name := range file.Names() {
			tn, err := file.Tensor(name)
			if err != nil {
				t.Fatalf("Names lists %q, Tensor cannot find it: %v", name, err)
			}
			if n := tn.Numel(); n < 0 || n*tn.DType.Size() != len(tn.Data) {
				t.Fatalf("%q: shape %v of %s, %d data bytes", name, tn.Shape, tn.DType, len(tn.Data))
			}
			v, err := tn.Floats()
			if err != nil || len(v) != tn.Numel() {
				t.Fatalf("%q: Floats gave %d values, %v", name, len(v), err)
			}
			ts = append(ts, *tn)
		}
		var out bytes.Buffer
		if err := Encode(&out, ts, file.Metadata); err != nil {
			t.Fatalf("re-encoding a parsed file: %v", err)
		}
		again, err := Parse(out.Bytes())
		if err != nil {
			t.Fatalf("parsing a re-encoded file: %v", err)
		}
		if !reflect.DeepEqual(again.Names(), file.Names()) {
			t.Fatalf("names changed on rewrite: %v, then %v", file.Names(), again.Names())
		}
		for _, name := range file.Names() {
			a, _ := file.Tensor(name)
			b, _ := again.Tensor(name)
			if a.DType != b.DType || !bytes.Equal(a.Data, b.Data) || len(a.Shape) != len(b.Shape) {
				t.Fatalf("%q changed on rewrite", name)
			}
		}
	})
}
