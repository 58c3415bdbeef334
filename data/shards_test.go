package data

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// idTree writes an ImageFolder tree of nTrain+nVal uniform 4×4 PNGs, each
// of a colour that encodes its id (lossless, so the decoded pixels name the
// sample), in `classes` classes.
func idTree(t testing.TB, nTrain, nVal, classes int) string {
	t.Helper()
	root := t.TempDir()
	for i := range nTrain + nVal {
		split, id := "train", i
		if i >= nTrain {
			split = "val"
		}
		c := color.NRGBA{uint8(id % 256), uint8(id / 256), 7, 255}
		writeFile(t, filepath.Join(root, split, fmt.Sprintf("c%d", i%classes), fmt.Sprintf("%05d.png", i)), uniformPNG(t, 4, 4, c))
	}
	return root
}

// sampleID reads back idTree's id from a decoded sample (no normalisation).
func sampleID(x []float32) int {
	return int(math.Round(float64(x[0])*255)) + 256*int(math.Round(float64(x[16])*255))
}

func writeTestShards(t testing.TB, src string, o ShardOptions) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "shards")
	if _, err := WriteShards(src, out, o); err != nil {
		t.Fatal(err)
	}
	return out
}

// epochIDs runs one epoch and returns the sample ids and labels in order,
// the real ones only (NumReal), and the batch count.
func epochIDs(t *testing.T, set *ShardSet, cfg StreamConfig, epoch, step int) (ids, labels []int, batches int) {
	t.Helper()
	l, err := NewStreamLoader(set, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.StartAt(context.Background(), epoch, step); err != nil {
		t.Fatal(err)
	}
	real := l.NumReal() - step*cfg.BatchSize
	for {
		b, err := l.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		batches++
		chw := b.C * b.H * b.W
		for j := range b.N {
			if len(ids) < real {
				ids = append(ids, sampleID(b.X[j*chw:(j+1)*chw]))
				labels = append(labels, int(b.Y[j]))
			}
		}
	}
	return ids, labels, batches
}

func TestShardsWriteAndStream(t *testing.T) {
	const nTrain, nVal, classes = 97, 23, 3
	src := idTree(t, nTrain, nVal, classes)
	out := writeTestShards(t, src, ShardOptions{ShardBytes: 2000, Seed: 5})
	ix, err := ReadShardIndex(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(ix.Train) < 4 || ix.EvalSplit != "val" || !slices.Equal(ix.Classes, []string{"c0", "c1", "c2"}) {
		t.Fatalf("index: %d train shards, eval split %q, classes %v", len(ix.Train), ix.EvalSplit, ix.Classes)
	}
	tr, te, err := OpenShards(out, Options{NoNormalize: true})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Len() != nTrain || te.Len() != nVal {
		t.Fatalf("lengths %d, %d; want %d, %d", tr.Len(), te.Len(), nTrain, nVal)
	}
	for _, world := range []int{1, 2, 3} {
		// Training: ranks read disjoint samples, the same number of steps.
		seen := map[int]int{}
		steps := -1
		for rank := range world {
			cfg := StreamConfig{LoaderConfig: LoaderConfig{BatchSize: 8, Rank: rank, World: world, Shuffle: true, Seed: 1, NoAugment: true, Workers: 2}, ShuffleBuffer: 10}
			ids, labels, nb := epochIDs(t, tr, cfg, 3, 0)
			if steps >= 0 && nb != steps {
				t.Errorf("world %d: rank %d has %d steps, rank 0 %d", world, rank, nb, steps)
			}
			steps = nb
			if len(ids) != nTrain/world {
				t.Errorf("world %d rank %d: %d samples, want %d", world, rank, len(ids), nTrain/world)
			}
			for k, id := range ids {
				seen[id]++
				if id >= nTrain || labels[k] != id%classes {
					t.Fatalf("world %d rank %d: sample id %d with label %d", world, rank, id, labels[k])
				}
			}
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("world %d: train sample %d read %d times", world, id, n)
			}
		}
		// Evaluation: every sample counted exactly once across ranks.
		seen = map[int]int{}
		for rank := range world {
			cfg := StreamConfig{LoaderConfig: LoaderConfig{BatchSize: 4, Rank: rank, World: world, Workers: 2}}
			ids, labels, _ := epochIDs(t, te, cfg, 0, 0)
			for k, id := range ids {
				seen[id]++
				if labels[k] != id%classes {
					t.Fatalf("eval sample %d label %d", id, labels[k])
				}
			}
		}
		if len(seen) != nVal {
			t.Errorf("world %d: eval saw %d distinct samples, want %d", world, len(seen), nVal)
		}
		for id, n := range seen {
			if n != 1 || id < nTrain {
				t.Errorf("world %d: eval sample %d counted %d times", world, id, n)
			}
		}
	}
}

// TestShardsOrder: an epoch's order depends on the epoch and not on the
// decoding worker count, and the shuffle buffer mixes across shards.
func TestShardsOrder(t *testing.T) {
	src := idTree(t, 80, 8, 2)
	out := writeTestShards(t, src, ShardOptions{ShardBytes: 3000})
	tr, _, err := OpenShards(out, Options{NoNormalize: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := StreamConfig{LoaderConfig: LoaderConfig{BatchSize: 5, Shuffle: true, Seed: 9, NoAugment: true, Workers: 1}, ShuffleBuffer: 16, Readers: 2}
	a, _, _ := epochIDs(t, tr, cfg, 0, 0)
	cfg.Workers = 3
	b, _, _ := epochIDs(t, tr, cfg, 0, 0)
	if !slices.Equal(a, b) {
		t.Fatalf("order depends on workers:\n%v\n%v", a, b)
	}
	c, _, _ := epochIDs(t, tr, cfg, 1, 0)
	if slices.Equal(a, c) {
		t.Fatal("epochs 0 and 1 have the same order")
	}
	if s := slices.Sorted(slices.Values(c)); !slices.Equal(s, slices.Sorted(slices.Values(a))) {
		t.Fatal("epochs 0 and 1 visit different samples with one rank")
	}
}

// TestShardsResume: starting mid-epoch gives the batches of an
// uninterrupted epoch from that step on, bit for bit, augmentation
// included.
func TestShardsResume(t *testing.T) {
	root := t.TempDir()
	for i := range 60 {
		split := "train"
		if i >= 50 {
			split = "val"
		}
		writeFile(t, filepath.Join(root, split, fmt.Sprintf("c%d", i%2), fmt.Sprintf("%03d.jpg", i)), gradientJPEG(t, 20+i%7, 18+i%5))
	}
	out := writeTestShards(t, root, ShardOptions{ShardBytes: 8000})
	tr, _, err := OpenShards(out, Options{ImageSize: 12})
	if err != nil {
		t.Fatal(err)
	}
	// run streams epoch 2 from step (re-reading the head, or from state)
	// and returns its batches, and the position after stateAt batches.
	run := func(cfg StreamConfig, step int, state []byte, stateAt int) (batches [][]float32, pos []byte) {
		l, err := NewStreamLoader(tr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if state != nil {
			err = l.StartFrom(context.Background(), 2, step, state)
		} else {
			err = l.StartAt(context.Background(), 2, step)
		}
		if err != nil {
			t.Fatal(err)
		}
		for k := step; ; k++ {
			if k == stateAt {
				if pos, err = l.State(2, k); err != nil {
					t.Fatal(err)
				}
			}
			b, err := l.Next()
			if err == io.EOF {
				return batches, pos
			}
			if err != nil {
				t.Fatal(err)
			}
			batches = append(batches, slices.Clone(b.X))
		}
	}
	for _, tc := range []struct {
		name        string
		buffer      int
		repeats     int
		rank, world int
	}{
		{"buffer 7", 7, 1, 0, 1},
		{"buffer 7, 3 repeats", 7, 3, 0, 1},
		{"no buffer, 2 repeats", -1, 2, 0, 1},
		{"buffer 100 (never full)", 100, 1, 0, 1},
		{"rank 1 of 2, buffer 5, 2 repeats", 5, 2, 1, 2},
	} {
		cfg := StreamConfig{LoaderConfig: LoaderConfig{BatchSize: 4, Shuffle: true, Seed: 3, Workers: 2, Repeats: tc.repeats, Rank: tc.rank, World: tc.world}, ShuffleBuffer: tc.buffer}
		full, _ := run(cfg, 0, nil, -1)
		for _, step := range []int{1, 2, 5, len(full) - 1} {
			if step >= len(full) {
				continue
			}
			reread, _ := run(cfg, step, nil, -1)
			_, pos := run(cfg, 0, nil, step)
			if pos == nil {
				t.Fatalf("%s: no position at batch %d", tc.name, step)
			}
			restored, again := run(cfg, step, pos, step)
			for what, part := range map[string][][]float32{"re-reading the head": reread, "from the position": restored} {
				if len(part) != len(full)-step {
					t.Fatalf("%s: resume at %d %s: %d batches, want %d", tc.name, step, what, len(part), len(full)-step)
				}
				for k := range part {
					if !slices.Equal(part[k], full[step+k]) {
						t.Fatalf("%s: resume at %d %s: batch %d differs", tc.name, step, what, step+k)
					}
				}
			}
			if !bytes.Equal(pos, again) {
				t.Errorf("%s: the restored stream's position at %d is not the one it was restored from", tc.name, step)
			}
		}
	}
}

// TestShardsBadState: a stream position that is truncated, damaged, of
// another step or configuration, or pointing where no sample is, is a
// clear error, not a different epoch.
func TestShardsBadState(t *testing.T) {
	src := idTree(t, 40, 4, 2)
	out := writeTestShards(t, src, ShardOptions{ShardBytes: 3000})
	tr, _, err := OpenShards(out, Options{ImageSize: 4, NoNormalize: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := StreamConfig{LoaderConfig: LoaderConfig{BatchSize: 4, Shuffle: true, Seed: 1, Workers: 1}, ShuffleBuffer: 6}
	l, err := NewStreamLoader(tr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Start(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := l.Next(); err != nil {
			t.Fatal(err)
		}
	}
	pos, err := l.State(0, 3)
	if err != nil || pos == nil {
		t.Fatal(pos, err)
	}
	if _, err := l.State(0, 9); err == nil {
		t.Error("a position the producer never recorded was returned")
	}
	flipped := slices.Clone(pos)
	flipped[len(flipped)/2] ^= 0x10
	st, err := unmarshalStreamState(pos)
	if err != nil {
		t.Fatal(err)
	}
	st.buf[0].off += 512 // inside a sample: its second member
	moved := st.marshal()
	for _, tc := range []struct {
		name, want  string
		state       []byte
		epoch, step int
	}{
		{"truncated", "checksum", pos[:len(pos)-7], 0, 3},
		{"truncated in the magic", "truncated", pos[:5], 0, 3},
		{"empty", "bad magic", nil, 0, 3},
		{"damaged", "checksum", flipped, 0, 3},
		{"other step", "batch 3, not 4", pos, 0, 4},
		{"other epoch", "epoch 0, not 1", pos, 1, 3},
	} {
		l2, err := NewStreamLoader(tr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		err = l2.StartFrom(context.Background(), tc.epoch, tc.step, tc.state)
		l2.Close()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	other := cfg
	other.ShuffleBuffer = 8
	l3, err := NewStreamLoader(tr, other)
	if err != nil {
		t.Fatal(err)
	}
	if err := l3.StartFrom(context.Background(), 0, 3, pos); err == nil || !strings.Contains(err.Error(), "shuffle buffer 6, not 8") {
		t.Errorf("another shuffle buffer: %v", err)
	}
	l3.Close()
	// An elastic launch that re-formed with another world size: the caller
	// is told so (and deals the epoch anew with StartAt).
	wider := cfg
	wider.World, wider.Rank = max(cfg.World, 1)+1, 0
	l5, err := NewStreamLoader(tr, wider)
	if err != nil {
		t.Fatal(err)
	}
	if err := l5.StartFrom(context.Background(), 0, 3, pos); !errors.Is(err, ErrStreamWorldChanged) {
		t.Errorf("another world size: %v, want ErrStreamWorldChanged", err)
	}
	l5.Close()
	l4, err := NewStreamLoader(tr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l4.Close()
	if err := l4.StartFrom(context.Background(), 0, 3, moved); err != nil {
		t.Fatal(err)
	}
	_, err = l4.Next()
	var se *ShardError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "restoring the stream position") {
		t.Errorf("a position inside a sample: %v, want a ShardError while restoring", err)
	}
}

// rawShards writes a hand-made shard directory: one train shard with the
// given members, one eval shard with a good sample.
func rawShards(t *testing.T, members map[string][]byte, samples int) string {
	t.Helper()
	dir := t.TempDir()
	writeTar(t, filepath.Join(dir, "train-000000.tar"), members, false)
	good := uniformPNG(t, 4, 4, color.NRGBA{1, 2, 3, 255})
	writeTar(t, filepath.Join(dir, "val-000000.tar"), map[string][]byte{"a.png": good, "a.cls": []byte("0")}, false)
	ix := fmt.Sprintf(`{"version":1,"classes":["x","y"],"image_size":4,"eval_split":"val",
		"train":[{"file":"train-000000.tar","samples":%d}],"eval":[{"file":"val-000000.tar","samples":1}]}`, samples)
	writeFile(t, filepath.Join(dir, IndexName), []byte(ix))
	return dir
}

func runEpoch(set *ShardSet, cfg StreamConfig) (int, error) {
	l, err := NewStreamLoader(set, cfg)
	if err != nil {
		return 0, err
	}
	defer l.Close()
	if err := l.Start(context.Background(), 0); err != nil {
		return 0, err
	}
	for {
		_, err := l.Next()
		if err == io.EOF {
			return int(l.Skipped()), nil
		}
		if err != nil {
			return int(l.Skipped()), err
		}
	}
}

func TestShardsBadInput(t *testing.T) {
	good := uniformPNG(t, 4, 4, color.NRGBA{9, 9, 9, 255})
	cfg := StreamConfig{LoaderConfig: LoaderConfig{BatchSize: 3, Workers: 2}}
	t.Run("corrupt image", func(t *testing.T) {
		dir := rawShards(t, map[string][]byte{
			"a.png": good, "a.cls": []byte("0"),
			"b.jpg": []byte("not a jpeg"), "b.cls": []byte("1"),
			"c.png": good, "c.cls": []byte("1"),
		}, 3)
		tr, _, err := OpenShards(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = runEpoch(tr, cfg)
		// b's first header follows a's two members: 2·(512+512).
		if err == nil || !strings.Contains(err.Error(), "train-000000.tar at offset 2048") {
			t.Fatalf("error %v, want one naming the shard and offset 2048", err)
		}
		skipCfg := cfg
		skipCfg.SkipBad = true
		n, err := runEpoch(tr, skipCfg)
		if err != nil || n != 1 {
			t.Fatalf("SkipBad: %d skipped, error %v; want 1, nil", n, err)
		}
	})
	for _, tc := range []struct {
		name    string
		members map[string][]byte
		samples int
		want    string
	}{
		{"label out of range", map[string][]byte{"a.png": good, "a.cls": []byte("2")}, 1, "not a class"},
		{"no label", map[string][]byte{"a.png": good, "b.png": good, "b.cls": []byte("1")}, 2, "no label"},
		{"fewer than indexed", map[string][]byte{"a.png": good, "a.cls": []byte("0")}, 2, "shard ends after 1 samples"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := rawShards(t, tc.members, tc.samples)
			tr, _, err := OpenShards(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			for _, skip := range []bool{false, true} {
				c := cfg
				c.SkipBad, c.BatchSize = skip, 1
				_, err = runEpoch(tr, c)
				if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "train-000000.tar") {
					t.Fatalf("skip %v: error %v, want %q naming the shard", skip, err, tc.want)
				}
			}
		})
	}
	t.Run("truncated shard", func(t *testing.T) {
		src := idTree(t, 10, 2, 2)
		out := writeTestShards(t, src, ShardOptions{})
		p := filepath.Join(out, "train-000000.tar")
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, st.Size()/2+100); err != nil {
			t.Fatal(err)
		}
		tr, _, err := OpenShards(out, Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = runEpoch(tr, StreamConfig{LoaderConfig: LoaderConfig{BatchSize: 2}, SkipBad: true})
		var se *ShardError
		if !errors.As(err, &se) || !strings.HasSuffix(se.Shard, "train-000000.tar") {
			t.Fatalf("error %v, want a ShardError naming the shard", err)
		}
	})
	t.Run("bad index", func(t *testing.T) {
		for _, ix := range []string{
			`{`, `{"version":2}`,
			`{"version":1,"classes":["a"],"image_size":4,"train":[{"file":"../x.tar","samples":1}],"eval":[{"file":"v.tar","samples":1}]}`,
			`{"version":1,"classes":["a"],"image_size":4,"train":[{"file":"t.tar","samples":0}],"eval":[{"file":"v.tar","samples":1}]}`,
			`{"version":1,"classes":["a"],"image_size":4,"train":[{"file":"t.tar","samples":1}]}`,
		} {
			if _, err := parseShardIndex("index.json", []byte(ix)); err == nil {
				t.Errorf("index %s: no error", ix)
			}
		}
	})
}

func TestShardsReencode(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "train", "a", "big.jpg"), gradientJPEG(t, 100, 40))
	writeFile(t, filepath.Join(root, "train", "a", "small.jpg"), gradientJPEG(t, 30, 20))
	writeFile(t, filepath.Join(root, "val", "a", "v.jpg"), gradientJPEG(t, 30, 60))
	out := filepath.Join(t.TempDir(), "s")
	ix, err := WriteShards(root, out, ShardOptions{MaxSide: 50, Quality: 80})
	if err != nil {
		t.Fatal(err)
	}
	if ix.Reencoded != 2 || ix.MaxSide != 50 || ix.Quality != 80 {
		t.Fatalf("index: reencoded %d, max side %d, quality %d; want 2, 50, 80", ix.Reencoded, ix.MaxSide, ix.Quality)
	}
	got, err := ReadShardIndex(out)
	if err != nil || got.Reencoded != 2 {
		t.Fatalf("index read back: %+v, %v", got, err)
	}
	f, err := os.Open(filepath.Join(out, "train-000000.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sr := newShardReader(f, "t", 0, 1)
	var sides [][2]int
	for {
		s, err := sr.read(nil)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		img, err := decodeConfig(s.enc)
		if err != nil {
			t.Fatal(err)
		}
		sides = append(sides, img)
	}
	slices.SortFunc(sides, func(a, b [2]int) int { return a[0] - b[0] })
	if !slices.Equal(sides, [][2]int{{30, 20}, {50, 20}}) {
		t.Fatalf("image sizes %v, want [30 20] kept and [100 40] shrunk to [50 20]", sides)
	}
}

func decodeConfig(b []byte) ([2]int, error) {
	c, _, err := image.DecodeConfig(bytes.NewReader(b))
	return [2]int{c.Width, c.Height}, err
}

// TestShardsDeal: each epoch the ranks' ranges cover the training samples
// once (less the remainder), and at most World−1 shards are split between
// neighbouring ranks; the rest are read whole by one rank.
func TestShardsDeal(t *testing.T) {
	shards := make([]ShardEntry, 10)
	total := 0
	for i := range shards {
		shards[i] = ShardEntry{File: fmt.Sprintf("s%d.tar", i), Samples: 7 + i%3}
		total += shards[i].Samples
	}
	set := &ShardSet{ix: &ShardIndex{Classes: []string{"a"}}, shards: shards, total: total, tf: &ImageFolder{size: 4}}
	for _, world := range []int{1, 2, 3, 4} {
		for epoch := range 3 {
			readers := map[int]int{}
			covered := 0
			for rank := range world {
				l, err := NewStreamLoader(set, StreamConfig{LoaderConfig: LoaderConfig{BatchSize: 5, Rank: rank, World: world, Shuffle: true, Seed: 2}})
				if err != nil {
					t.Fatal(err)
				}
				for _, sg := range l.segments(epoch) {
					readers[sg.shard]++
					covered += sg.count
					if sg.skip < 0 || sg.skip+sg.count > shards[sg.shard].Samples {
						t.Fatalf("segment %+v outside shard of %d", sg, shards[sg.shard].Samples)
					}
				}
			}
			shared := 0
			for _, n := range readers {
				if n > 1 {
					shared++
				}
			}
			if covered != total/world*world || shared > world-1 {
				t.Errorf("world %d epoch %d: %d samples covered (want %d), %d shards shared (want ≤ %d)", world, epoch, covered, total/world*world, shared, world-1)
			}
		}
	}
}

// TestShardsRecipeMatchesImageFolder: RandAugment, TrivialAugment and
// random erasing on a shard stream's sample are those of the ImageFolder
// path (Augmented over ImageFolder.Get) for the same image and generator
// state, and the stream's loader applies them (its batches differ from
// those without the recipe, and equal transform with the position's
// generator).
func TestShardsRecipeMatchesImageFolder(t *testing.T) {
	root := t.TempDir()
	for i := range 24 {
		split := "train"
		if i >= 20 {
			split = "val"
		}
		writeFile(t, filepath.Join(root, split, fmt.Sprintf("c%d", i%2), fmt.Sprintf("%03d.jpg", i)), gradientJPEG(t, 40+i%7, 36+i%5))
	}
	out := writeTestShards(t, root, ShardOptions{ShardBytes: 1 << 20})
	for _, policy := range []string{"rand-m9-mstd0.5", "trivialaugment"} {
		auto, err := ParseAutoAugment(policy)
		if err != nil {
			t.Fatal(err)
		}
		erase := RandomErasing{P: 0.5}
		folder, _, err := Open("imagefolder:"+root, Options{ImageSize: 24})
		if err != nil {
			t.Fatal(err)
		}
		aug, err := NewAugmented(folder, auto, erase)
		if err != nil {
			t.Fatal(err)
		}
		tr, _, err := OpenShards(out, Options{ImageSize: 24})
		if err != nil {
			t.Fatal(err)
		}
		set, err := tr.WithRecipe(auto, erase)
		if err != nil {
			t.Fatal(err)
		}
		f := folder.(*ImageFolder)
		n := 3 * 24 * 24
		a, b, plain := make([]float32, n), make([]float32, n), make([]float32, n)
		changed := 0
		for i := range f.Len() {
			enc, err := os.ReadFile(f.File(i))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := aug.Get(i, a, AugmentRand(5, 1, i)); err != nil {
				t.Fatal(err)
			}
			if err := set.transform(enc, b, AugmentRand(5, 1, i)); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(a, b) {
				t.Fatalf("%s: sample %d differs between ImageFolder and shards", policy, i)
			}
			if err := tr.transform(enc, plain, AugmentRand(5, 1, i)); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(plain, b) {
				changed++
			}
		}
		if changed < f.Len()/2 {
			t.Errorf("%s: the recipe changed only %d of %d samples", policy, changed, f.Len())
		}
		// The loader goes through transform with the position's generator.
		cfg := StreamConfig{LoaderConfig: LoaderConfig{BatchSize: 5, Shuffle: true, Seed: 5, Workers: 2}, ShuffleBuffer: 4}
		withRecipe, plainRun := loaderBatches(t, set, cfg, 1), loaderBatches(t, tr, cfg, 1)
		if len(withRecipe) != len(plainRun) {
			t.Fatalf("%d batches with the recipe, %d without", len(withRecipe), len(plainRun))
		}
		same := 0
		for k := range withRecipe {
			if slices.Equal(withRecipe[k], plainRun[k]) {
				same++
			}
		}
		if same == len(withRecipe) {
			t.Errorf("%s: the stream's batches are those without the recipe", policy)
		}
	}
}

// loaderBatches streams one epoch and returns its batches' pixels.
func loaderBatches(t *testing.T, set *ShardSet, cfg StreamConfig, epoch int) [][]float32 {
	t.Helper()
	l, err := NewStreamLoader(set, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Start(context.Background(), epoch); err != nil {
		t.Fatal(err)
	}
	var out [][]float32
	for {
		b, err := l.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, slices.Clone(b.X))
	}
}

// TestShardsRepeatedAug: with Repeats k a training stream reads the head
// of each rank's range, ⌈per/k⌉ samples, and emits each k times (each copy
// augmented on its own), keeping the epoch at per samples; ranks read
// disjoint samples.
func TestShardsRepeatedAug(t *testing.T) {
	src := idTree(t, 60, 4, 3)
	out := writeTestShards(t, src, ShardOptions{ShardBytes: 2000})
	tr, _, err := OpenShards(out, Options{ImageSize: 4, NoNormalize: true, Augment: AugmentNone})
	if err != nil {
		t.Fatal(err)
	}
	for _, buffer := range []int{-1, 10} {
		seen := map[int]int{}
		for rank := range 2 {
			cfg := StreamConfig{LoaderConfig: LoaderConfig{BatchSize: 4, Shuffle: true, Seed: 9, Workers: 2, Rank: rank, World: 2, Repeats: 3}, ShuffleBuffer: buffer}
			ids, _, batches := epochIDs(t, tr, cfg, 1, 0)
			if len(ids) != 30 || batches != 8 {
				t.Fatalf("buffer %d rank %d: %d samples in %d batches, want 30 in 8", buffer, rank, len(ids), batches)
			}
			count := map[int]int{}
			for _, id := range ids {
				count[id]++
			}
			if len(count) != 10 {
				t.Errorf("buffer %d rank %d: %d distinct samples, want ⌈30/3⌉ = 10", buffer, rank, len(count))
			}
			for id, c := range count {
				if c != 3 {
					t.Errorf("buffer %d rank %d: sample %d emitted %d times, want 3", buffer, rank, id, c)
				}
				if seen[id] != 0 {
					t.Errorf("buffer %d: sample %d read by both ranks", buffer, id)
				}
			}
			for id := range count {
				seen[id] = rank + 1
			}
		}
	}
}
