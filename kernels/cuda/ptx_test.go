package cuda

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// ptxParam is one parameter of a PTX .entry: its type and size in bytes.
type ptxParam struct {
	typ   string // .u64, .u32, .s32, .f32, .f64, or .b8 for an aggregate
	size  int
	align int
}

var (
	entryRe = regexp.MustCompile(`(?s)\.visible\s+\.entry\s+(\w+)\s*\((.*?)\)`)
	paramRe = regexp.MustCompile(`\.param\s+(?:\.align\s+(\d+)\s+)?(\.\w+)\s+\w+(?:\[(\d+)\])?`)
)

// ptxEntries parses the kernels and their parameter lists from a PTX text.
func ptxEntries(t *testing.T, text string) map[string][]ptxParam {
	t.Helper()
	out := map[string][]ptxParam{}
	for _, m := range entryRe.FindAllStringSubmatch(text, -1) {
		var ps []ptxParam
		for _, p := range paramRe.FindAllStringSubmatch(m[2], -1) {
			typ := p[2]
			size := map[string]int{".u64": 8, ".s64": 8, ".b64": 8, ".f64": 8, ".u32": 4, ".s32": 4, ".b32": 4, ".f32": 4}[typ]
			align := size
			if p[3] != "" { // an aggregate: .align A .b8 name[N]
				n, _ := strconv.Atoi(p[3])
				a, _ := strconv.Atoi(p[1])
				size, align = n, a
			}
			if size == 0 {
				t.Fatalf("%s: parameter type %q not understood", m[1], typ)
			}
			ps = append(ps, ptxParam{typ: typ, size: size, align: align})
		}
		out[m[1]] = ps
	}
	return out
}

// sigParam is what one letter of a kernelSigs signature must be in PTX.
func sigParam(c byte) (types []string, size int) {
	switch c {
	case 'p', 'l':
		return []string{".u64", ".s64", ".b64"}, 8
	case 'i':
		return []string{".u32", ".s32", ".b32"}, 4
	case 'f':
		return []string{".f32"}, 4
	case 'd':
		return []string{".f64"}, 8
	case 'G', 'P':
		return []string{".b8"}, 4 * geomInts[c]
	}
	return nil, 0
}

// TestPTX checks the embedded PTX: every module is a PTX text for a target
// old enough for the drivers we support, every kernel the Go side launches
// is defined in exactly one module, and its parameter list in the PTX is
// the one kernelSigs declares (which the launcher enforces at every call),
// with the same packed size.
func TestPTX(t *testing.T) {
	names, texts, err := ptxModules()
	if err != nil {
		t.Fatal(err)
	}
	if len(texts) == 0 {
		t.Fatal("no PTX embedded")
	}
	defined := map[string][]string{} // kernel → modules
	params := map[string][]ptxParam{}
	for i, text := range texts {
		if len(text) < 100 || !strings.Contains(text, ".version ") || !strings.Contains(text, ".address_size 64") {
			t.Errorf("%s does not look like PTX (%d bytes)", names[i], len(text))
		}
		if m := regexp.MustCompile(`\.target\s+sm_(\d+)`).FindStringSubmatch(text); m == nil {
			t.Errorf("%s has no .target", names[i])
		} else if sm, _ := strconv.Atoi(m[1]); sm > 80 {
			t.Errorf("%s targets sm_%d: PTX for a later architecture than sm_80 does not load on A100", names[i], sm)
		}
		for k, ps := range ptxEntries(t, text) {
			defined[k] = append(defined[k], names[i])
			params[k] = ps
		}
	}
	used := map[string]bool{}
	for k, name := range kernelNames {
		if name == "" {
			t.Errorf("kernel %d has no name", k)
			continue
		}
		used[name] = true
		if len(defined[name]) != 1 {
			t.Errorf("kernel %s is defined in %d modules %v, want 1", name, len(defined[name]), defined[name])
			continue
		}
		sig, ps := kernelSigs[k], params[name]
		if len(sig) != len(ps) {
			t.Errorf("%s: PTX has %d parameters, kernelSigs %q has %d", name, len(ps), sig, len(sig))
			continue
		}
		ptxSize := 0
		for i, p := range ps {
			types, size := sigParam(sig[i])
			ok := size == p.size
			if ok && len(types) > 0 {
				ok = false
				for _, ty := range types {
					ok = ok || ty == p.typ
				}
			}
			if !ok {
				t.Errorf("%s parameter %d: PTX %s[%d bytes], kernelSigs says %c", name, i, p.typ, p.size, sig[i])
			}
			ptxSize = (ptxSize+p.align-1)/p.align*p.align + p.size
		}
		if got := packedSize(t, kernel(k)); got != ptxSize {
			t.Errorf("%s: the launcher packs %d bytes, the PTX parameters take %d", name, got, ptxSize)
		}
	}
	for name := range defined {
		if !used[name] {
			t.Errorf("PTX kernel %s is launched by nothing (remove it or add it to kernelNames)", name)
		}
	}
}

// packedSize packs zero values for every parameter of k as a launch would.
func packedSize(t *testing.T, k kernel) int {
	t.Helper()
	d := &Device{}
	d.l = launcher{d: d, args: make([]byte, argBytes)}
	l := d.k(k)
	for _, c := range []byte(kernelSigs[k]) {
		switch c {
		case 'p':
			l.addr(0)
		case 'l':
			l.i64(0)
		case 'i':
			l.i32(0)
		case 'f':
			l.f32(0)
		case 'd':
			l.f64(0)
		case 'G', 'P':
			l.geom(c, make([]int, geomInts[c])...)
		default:
			t.Fatalf("%s: unknown signature letter %c", kernelNames[k], c)
		}
	}
	return l.n
}

func TestLauncherPacking(t *testing.T) {
	d := &Device{}
	d.l = launcher{d: d, args: make([]byte, argBytes)}
	// bn_apply(float*, float*, float*, float*, float*, float, float*,
	// float*, int, long long, long long): the float after five pointers
	// sits at 40, the next pointer is aligned up to 48, the int at 64 and
	// the long longs at 72 and 80.
	l := d.k(kBNApply).addr(1).addr(2).addr(3).addr(4).addr(5).f32(1.5).addr(6).addr(7).i32(-3).i64(1 << 40).i64(9)
	if l.n != 88 {
		t.Errorf("bn_apply packs %d bytes, want 88", l.n)
	}
	for _, c := range []struct {
		off  int
		want string
	}{
		{40, "0000c03f"}, {48, "0600000000000000"}, {64, "fdffffff"}, {72, "0000000000010000"}, {80, "0900000000000000"},
	} {
		if got := fmt.Sprintf("%x", l.args[c.off:c.off+len(c.want)/2]); got != c.want {
			t.Errorf("bytes at %d = %s, want %s", c.off, got, c.want)
		}
	}

	mustPanic := func(what string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", what)
			}
		}()
		f()
	}
	mustPanic("a float where a pointer goes", func() { d.k(kScale).f32(1) })
	mustPanic("too many parameters", func() { d.k(kReLU).addr(0).addr(0).i64(0).i64(0) })
	mustPanic("an int too large", func() { d.k(kSoftmax).addr(0).addr(0).i32(1 << 40) })
	mustPanic("a conv_geom of 12 ints", func() { d.k(kIm2col).addr(0).addr(0).geom('G', make([]int, 12)...) })
	mustPanic("a launch with parameters missing", func() {
		d.k(kScale).addr(0).f32(1).run([3]uint32{1, 1, 1}, [3]uint32{32, 1, 1})
	})
}

// MACDIST_CUDA_PTX_DIR replaces the embedded PTX with a folder's .ptx
// files, and a folder without any is an error rather than no kernels.
func TestPTXDir(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvPTXDir, dir)
	if _, _, err := ptxModules(); err == nil {
		t.Error("an empty MACDIST_CUDA_PTX_DIR gave no error")
	}
	for name, text := range map[string]string{"b.ptx": "second", "a.ptx": "first", "notes.txt": "skipped"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	names, texts, err := ptxModules()
	if err != nil || strings.Join(names, ",") != "a.ptx,b.ptx" || strings.Join(texts, ",") != "first,second" {
		t.Errorf("ptxModules() = %v, %v, %v", names, texts, err)
	}
}
