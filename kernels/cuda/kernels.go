package cuda

import (
	"embed"
	"encoding/binary"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"sort"
	"strings"
	"unsafe"
)

// ptxFS holds the kernels of src/*.cu compiled to PTX by `make ptx`
// (nvcc -ptx -arch=compute_70). The driver JIT-compiles PTX for whatever
// GPU it runs on, newer ones included, so one text serves every card.
//
//go:embed ptx/*.ptx
var ptxFS embed.FS

// EnvPTXDir names the environment variable that, when set, makes New load
// the kernels from that folder's *.ptx files instead of the embedded ones:
// for trying kernels rebuilt by another nvcc (on a GPU machine without Go,
// say) without rebuilding the binary.
const EnvPTXDir = "MACDIST_CUDA_PTX_DIR"

// ptxModules returns the PTX texts by file name, in name order: the
// embedded ones, or those of MACDIST_CUDA_PTX_DIR.
func ptxModules() (names []string, texts []string, err error) {
	var fsys fs.FS = ptxFS
	dir := "ptx"
	if d := os.Getenv(EnvPTXDir); d != "" {
		fsys, dir = os.DirFS(d), "."
	}
	ents, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".ptx") {
			continue
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, nil, err
		}
		names = append(names, e.Name())
		texts = append(texts, string(b))
	}
	if len(texts) == 0 {
		return nil, nil, fmt.Errorf("no .ptx files in %s", dir)
	}
	sort.Sort(byName{names, texts})
	return names, texts, nil
}

type byName struct{ n, t []string }

func (b byName) Len() int           { return len(b.n) }
func (b byName) Less(i, j int) bool { return b.n[i] < b.n[j] }
func (b byName) Swap(i, j int) {
	b.n[i], b.n[j] = b.n[j], b.n[i]
	b.t[i], b.t[j] = b.t[j], b.t[i]
}

// kernel indexes the functions the Device launches.
type kernel int

const (
	kScale kernel = iota
	kAxpby
	kAdd
	kMul
	kReLU
	kReLUBackward
	kGELU
	kGELUBackward
	kDropout
	kCopy2D
	kCopyStrided
	kScale2D
	kAddBias
	kExpand
	kAdamW
	kSGDStep
	kReduceRows
	kReduceCols
	kReduceColsFinal
	kReduceMid
	kReduceMidFinal
	kDotPartial
	kSoftmax
	kSoftmaxBackward
	kLogSoftmax
	kCrossEntropy
	kLayerNorm
	kLayerNormBackward
	kLNParam
	kLNParamFinal
	kBNReduce
	kBNMeanFinal
	kBNVarFinal
	kBNApply
	kBNBackwardFinal
	kBNBackwardApply
	kIm2col
	kCol2im
	kMaxPool
	kMaxPoolBackward
	kAvgPool
	kAvgPoolBackward
	numKernels
)

// kernelNames are the .entry names in the PTX (the kernels are extern "C").
var kernelNames = [numKernels]string{
	kScale:             "ew_scale",
	kAxpby:             "ew_axpby",
	kAdd:               "ew_add",
	kMul:               "ew_mul",
	kReLU:              "ew_relu",
	kReLUBackward:      "ew_relu_backward",
	kGELU:              "ew_gelu",
	kGELUBackward:      "ew_gelu_backward",
	kDropout:           "dropout_mask",
	kCopy2D:            "copy2d",
	kCopyStrided:       "copy_strided",
	kScale2D:           "scale2d",
	kAddBias:           "add_bias",
	kExpand:            "expand",
	kAdamW:             "adamw",
	kSGDStep:           "sgd_step",
	kReduceRows:        "reduce_rows",
	kReduceCols:        "reduce_cols",
	kReduceColsFinal:   "reduce_cols_final",
	kReduceMid:         "reduce_mid",
	kReduceMidFinal:    "reduce_mid_final",
	kDotPartial:        "dot_partial",
	kSoftmax:           "softmax",
	kSoftmaxBackward:   "softmax_backward",
	kLogSoftmax:        "log_softmax",
	kCrossEntropy:      "cross_entropy",
	kLayerNorm:         "layer_norm",
	kLayerNormBackward: "layer_norm_backward",
	kLNParam:           "ln_param",
	kLNParamFinal:      "ln_param_final",
	kBNReduce:          "bn_reduce",
	kBNMeanFinal:       "bn_mean_final",
	kBNVarFinal:        "bn_var_final",
	kBNApply:           "bn_apply",
	kBNBackwardFinal:   "bn_backward_final",
	kBNBackwardApply:   "bn_backward_apply",
	kIm2col:            "im2col",
	kCol2im:            "col2im",
	kMaxPool:           "max_pool",
	kMaxPoolBackward:   "max_pool_backward",
	kAvgPool:           "avg_pool",
	kAvgPoolBackward:   "avg_pool_backward",
}

// kernelSigs are the kernels' parameter lists, one letter a parameter:
// p a device pointer, l a long long (or unsigned long long), i an int, f a
// float, d a double, G a conv_geom (13 ints), P a pool_geom (10 ints). The
// launcher checks every launch against them, and a test checks them
// against the parameter lists in the PTX.
var kernelSigs = [numKernels]string{
	kScale:             "pfl",
	kAxpby:             "ppffl",
	kAdd:               "pppl",
	kMul:               "pppl",
	kReLU:              "ppl",
	kReLUBackward:      "pppl",
	kGELU:              "ppil",
	kGELUBackward:      "pppil",
	kDropout:           "pffll",
	kCopy2D:            "pllpllll",
	kCopyStrided:       "plllllplllllllll",
	kScale2D:           "pflllll",
	kAddBias:           "pplll",
	kExpand:            "ppllffl",
	kAdamW:             "ppppffffffffl",
	kSGDStep:           "pppffffiiil",
	kReduceRows:        "pplff",
	kReduceCols:        "pppllllff",
	kReduceColsFinal:   "pplllff",
	kReduceMid:         "ppplllff",
	kReduceMidFinal:    "ppllff",
	kDotPartial:        "pppl",
	kSoftmax:           "ppi",
	kSoftmaxBackward:   "pppi",
	kLogSoftmax:        "ppi",
	kCrossEntropy:      "ppppiif",
	kLayerNorm:         "ppppppif",
	kLayerNormBackward: "ppppppi",
	kLNParam:           "pppppiii",
	kLNParamFinal:      "pppii",
	kBNReduce:          "pipppppiil",
	kBNMeanFinal:       "ppiid",
	kBNVarFinal:        "ppppppiidff",
	kBNApply:           "pppppfppill",
	kBNBackwardFinal:   "ppppiid",
	kBNBackwardApply:   "pppppppill",
	kIm2col:            "ppGll",
	kCol2im:            "ppGll",
	kMaxPool:           "ppPl",
	kMaxPoolBackward:   "pppPl",
	kAvgPool:           "ppPil",
	kAvgPoolBackward:   "ppPil",
}

// geomInts is the number of ints in the structs G and P.
var geomInts = map[byte]int{'G': 13, 'P': 10}

// Launch geometry of the one-thread-per-element kernels. The grid is
// capped and the kernels stride over the rest; 8192 blocks of 256 threads
// are several times what an H100 keeps resident.
const (
	ewThreads = 256
	maxBlocks = 8192
)

func blocksFor(n int64) uint32 {
	return uint32(min((n+ewThreads-1)/ewThreads, maxBlocks))
}

// rowThreads is the block size of the one-block-per-row kernels: a multiple
// of 32 (their reductions use whole warps) near cols, at most 256.
func rowThreads(cols int) uint32 {
	return uint32(min(256, max(32, (cols+31)/32*32)))
}

// argBytes bounds a kernel's packed parameters (the largest, bn_reduce
// and the pooling kernels, need well under 128).
const argBytes = 256

// launcher packs one kernel's parameters, each at its natural alignment as
// the kernel's parameter list lays them out, into C memory (args), so that
// cgo has no Go memory to check and a launch allocates nothing.
type launcher struct {
	d    *Device
	f    kernel
	args []byte // argBytes of C memory
	n    int    // bytes packed
	argi int    // parameters packed
}

// k starts a launch of f; d.mu must be held.
func (d *Device) k(f kernel) *launcher {
	l := &d.l
	l.f, l.n, l.argi = f, 0, 0
	return l
}

// next checks that the next parameter of the kernel is of kind c.
func (l *launcher) next(c byte) {
	sig := kernelSigs[l.f]
	if l.argi >= len(sig) || sig[l.argi] != c {
		panic(fmt.Sprintf("cuda: %s(%s): parameter %d given as %c", kernelNames[l.f], sig, l.argi, c))
	}
	l.argi++
}

func (l *launcher) put(size int) []byte {
	l.n = (l.n + size - 1) &^ (size - 1)
	if l.n+size > len(l.args) {
		panic(fmt.Sprintf("cuda: parameters of %s exceed %d bytes", kernelNames[l.f], len(l.args)))
	}
	b := l.args[l.n : l.n+size]
	l.n += size
	return b
}

// ptr adds a device pointer: a buffer's, or null for a nil buffer.
func (l *launcher) ptr(b *buffer) *launcher {
	var p uint64
	if b != nil {
		p = b.ptr
	}
	return l.addr(p)
}

// addr adds a raw device pointer (scratch space).
func (l *launcher) addr(p uint64) *launcher {
	l.next('p')
	binary.LittleEndian.PutUint64(l.put(8), p)
	return l
}

func (l *launcher) u64(v uint64) *launcher {
	l.next('l')
	binary.LittleEndian.PutUint64(l.put(8), v)
	return l
}

func (l *launcher) i64(v int) *launcher { return l.u64(uint64(int64(v))) }

func (l *launcher) i32(v int) *launcher {
	l.next('i')
	l.int32(v)
	return l
}

func (l *launcher) int32(v int) {
	if v > math.MaxInt32 || v < math.MinInt32 {
		panic(fmt.Sprintf("cuda: %s: parameter %d does not fit in an int", kernelNames[l.f], v))
	}
	binary.LittleEndian.PutUint32(l.put(4), uint32(int32(v)))
}

func (l *launcher) f32(v float32) *launcher {
	l.next('f')
	binary.LittleEndian.PutUint32(l.put(4), math.Float32bits(v))
	return l
}

func (l *launcher) f64(v float64) *launcher {
	l.next('d')
	binary.LittleEndian.PutUint64(l.put(8), math.Float64bits(v))
	return l
}

func (l *launcher) flag(v bool) *launcher {
	if v {
		return l.i32(1)
	}
	return l.i32(0)
}

// geom adds a struct of ints (tag 'G' conv_geom, 'P' pool_geom), packed at
// 4-byte alignment.
func (l *launcher) geom(tag byte, vs ...int) *launcher {
	l.next(tag)
	if len(vs) != geomInts[tag] {
		panic(fmt.Sprintf("cuda: %s: %c has %d ints, given %d", kernelNames[l.f], tag, geomInts[tag], len(vs)))
	}
	for _, v := range vs {
		l.int32(v)
	}
	return l
}

// run launches the kernel with the given grid and block on d's stream.
func (l *launcher) run(grid, block [3]uint32) {
	d := l.d
	if l.argi != len(kernelSigs[l.f]) {
		panic(fmt.Sprintf("cuda: %s(%s) launched with %d parameters", kernelNames[l.f], kernelSigs[l.f], l.argi))
	}
	if grid[0] == 0 || grid[1] == 0 || grid[2] == 0 {
		return
	}
	err := launch(d.ctx, d.stream, d.fn[l.f], grid, block, unsafe.Pointer(&l.args[0]), l.n)
	d.record(kernelNames[l.f], err)
}

// run1D launches one thread per element of n (grid-stride beyond the cap).
func (l *launcher) run1D(n int64) {
	if n <= 0 {
		return
	}
	l.run([3]uint32{blocksFor(n), 1, 1}, [3]uint32{ewThreads, 1, 1})
}

// runRows launches one block per row.
func (l *launcher) runRows(rows, cols int) {
	if rows <= 0 {
		return
	}
	l.run([3]uint32{uint32(rows), 1, 1}, [3]uint32{rowThreads(cols), 1, 1})
}
