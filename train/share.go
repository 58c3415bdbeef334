package train

import (
	"archive/tar"
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

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/nn"
)

// A shared checkpoint travels as a tar of its four files behind one byte
// saying what the sending rank found.
const (
	shareNone   byte = iota // no complete checkpoint: every rank starts fresh
	shareFound              // a tar of the checkpoint follows
	shareFailed             // the sender could not resume: every rank stops
)

// findResult is what one rank found in its run directory to resume from.
type findResult struct {
	dir  string // "" for none
	step int
	err  error
}

// resumeSource picks the rank whose checkpoint every rank resumes from: the
// one holding the newest, the lowest such rank on a tie. Every rank says
// what it found through one float64 sum, a slot per rank (0: none, −1:
// failed, step+1). When rank 0 failed (say its checkpoint has other
// settings), it is the source, so that its error reaches every rank; other
// ranks' failures count as none. It returns −1 when no rank holds one.
func resumeSource(red Reducer, rank, world int, mine findResult) (int, error) {
	slots := make([]float64, world)
	switch {
	case mine.err != nil:
		slots[rank] = -1
	case mine.dir != "":
		slots[rank] = float64(mine.step) + 1
	}
	if err := red.AllReduceSum64(slots); err != nil {
		return -1, fmt.Errorf("train: asking the ranks for their checkpoints: %w", err)
	}
	if slots[0] < 0 {
		return 0, nil
	}
	src := -1
	for r, v := range slots {
		if v > 0 && (src < 0 || v > slots[src]) {
			src = r
		}
	}
	return src, nil
}

// shareCheckpoint gives every rank the checkpoint that rank src found
// (mine, on src). src sends it; the others never read their own disk for
// it: they unpack what they receive into a temporary directory, which
// LoadCheckpoint then verifies against its MANIFEST as it would a local
// one. dir is "" when src is −1; cleanup removes the temporary copy.
func shareCheckpoint(b Broadcaster, rank, src int, mine findResult) (dir string, cleanup func(), err error) {
	cleanup = func() {}
	if src < 0 {
		return "", cleanup, nil
	}
	if rank == src {
		msg := []byte{shareNone}
		err := mine.err
		switch {
		case err != nil:
			msg = append([]byte{shareFailed}, err.Error()...)
		case mine.dir != "":
			if msg, err = packCheckpoint(mine.dir); err != nil {
				msg = append([]byte{shareFailed}, err.Error()...)
			}
		}
		if _, berr := b.BroadcastBytes(src, msg); berr != nil {
			return "", cleanup, fmt.Errorf("train: sending the checkpoint to the other ranks: %w", berr)
		}
		return mine.dir, cleanup, err
	}
	msg, err := b.BroadcastBytes(src, nil)
	if err != nil {
		return "", cleanup, fmt.Errorf("train: receiving rank %d's checkpoint: %w", src, err)
	}
	if len(msg) == 0 {
		return "", cleanup, fmt.Errorf("train: rank %d sent an empty checkpoint message", src)
	}
	switch msg[0] {
	case shareNone:
		return "", cleanup, nil
	case shareFailed:
		return "", cleanup, fmt.Errorf("train: rank %d could not resume: %s", src, msg[1:])
	}
	files, err := unpackCheckpoint(msg[1:])
	if err != nil {
		return "", cleanup, fmt.Errorf("train: rank %d's checkpoint: %w", src, err)
	}
	tmp, err := os.MkdirTemp("", "macdist-ckpt-")
	if err != nil {
		return "", cleanup, fmt.Errorf("train: %w", err)
	}
	cleanup = func() { os.RemoveAll(tmp) }
	if err := writeCheckpointFiles(tmp, files); err != nil {
		cleanup()
		return "", func() {}, err
	}
	return tmp, cleanup, nil
}

// replicateCheckpoint sends the checkpoint rank 0 has just written (dir,
// or the error that stopped it) to every rank; with keep set, a rank
// writes its copy into root, its own checkpoint directory, so that the
// run can resume from it when rank 0's node, and its disk, are lost.
// Every rank of the run calls it at the same step.
func replicateCheckpoint(b Broadcaster, lead bool, dir string, saveErr error, root string, keep bool, keepN int) (string, error) {
	if lead {
		msg := []byte{shareFailed}
		if saveErr == nil {
			var err error
			if msg, err = packCheckpoint(dir); err != nil {
				msg, saveErr = []byte{shareFailed}, err
			}
		}
		if _, err := b.BroadcastBytes(0, msg); err != nil {
			return "", fmt.Errorf("train: sending the checkpoint to the other ranks: %w", err)
		}
		return dir, saveErr
	}
	msg, err := b.BroadcastBytes(0, nil)
	if err != nil {
		return "", fmt.Errorf("train: receiving rank 0's checkpoint: %w", err)
	}
	if !keep || len(msg) == 0 || msg[0] != shareFound {
		// Rank 0 stops on its own error; a rank that keeps no copy has
		// nothing to do.
		return "", nil
	}
	files, err := unpackCheckpoint(msg[1:])
	if err != nil {
		return "", fmt.Errorf("train: rank 0's checkpoint: %w", err)
	}
	return installCheckpoint(root, files, keepN)
}

// shareParams gives every rank rank 0's parameters (buffers included) at
// the start of a run: rank 0 runs load (the --init weights) and sends the
// bits of every float, the others take them. A failure on rank 0 is sent
// too, so that no rank waits for weights that will not come.
func shareParams(b Broadcaster, lead bool, dev kernels.Device, params []*nn.Param, load func() error) error {
	n := 0
	for _, p := range params {
		n += p.Value.Len()
	}
	if lead {
		msg := []byte{shareFound}
		if err := load(); err != nil {
			msg = append([]byte{shareFailed}, err.Error()...)
			if _, berr := b.BroadcastBytes(0, msg); berr != nil {
				return fmt.Errorf("%w (and telling the other ranks: %v)", err, berr)
			}
			return err
		}
		msg = slices.Grow(msg, 4*n)
		var host []float32
		for _, p := range params {
			host = slices.Grow(host[:0], p.Value.Len())[:p.Value.Len()]
			dev.Download(host, p.Value.Data)
			for _, v := range host {
				msg = binary.LittleEndian.AppendUint32(msg, math.Float32bits(v))
			}
		}
		if _, err := b.BroadcastBytes(0, msg); err != nil {
			return fmt.Errorf("train: sending the initial weights to the other ranks: %w", err)
		}
		return nil
	}
	msg, err := b.BroadcastBytes(0, nil)
	if err != nil {
		return fmt.Errorf("train: receiving rank 0's initial weights: %w", err)
	}
	switch {
	case len(msg) > 0 && msg[0] == shareFailed:
		return fmt.Errorf("train: rank 0 could not set up its weights: %s", msg[1:])
	case len(msg) != 1+4*n || msg[0] != shareFound:
		return fmt.Errorf("train: rank 0 sent %d bytes of weights, this rank's model holds %d floats", len(msg), n)
	}
	msg = msg[1:]
	var host []float32
	for _, p := range params {
		host = slices.Grow(host[:0], p.Value.Len())[:p.Value.Len()]
		for i := range host {
			host[i] = math.Float32frombits(binary.LittleEndian.Uint32(msg[4*i:]))
		}
		msg = msg[4*len(host):]
		dev.Upload(p.Value.Data, host)
	}
	return nil
}

// packCheckpoint reads a checkpoint's files into shareFound + tar.
func packCheckpoint(dir string) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte(shareFound)
	tw := tar.NewWriter(&buf)
	for _, name := range checkpointFiles {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return nil, fmt.Errorf("train: packing %s: %w", dir, err)
		}
		if _, err := tw.Write(b); err != nil {
			return nil, fmt.Errorf("train: packing %s: %w", dir, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("train: packing %s: %w", dir, err)
	}
	return buf.Bytes(), nil
}

// checkpointFiles are the files of a checkpoint, MANIFEST last.
var checkpointFiles = []string{modelFile, optimizerFile, stateFile, manifestFile}

// unpackCheckpoint reads the files of a packed tar, refusing any name that
// is not a checkpoint file and a tar that lacks one.
func unpackCheckpoint(b []byte) (map[string][]byte, error) {
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if !slices.Contains(checkpointFiles, h.Name) || h.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("unexpected entry %q", h.Name)
		}
		if files[h.Name], err = io.ReadAll(tr); err != nil {
			return nil, fmt.Errorf("%s: %w", h.Name, err)
		}
	}
	for _, name := range checkpointFiles {
		if _, ok := files[name]; !ok {
			return nil, fmt.Errorf("no %s", name)
		}
	}
	return files, nil
}

// writeCheckpointFiles writes files into dir as SaveCheckpoint does: any
// old MANIFEST removed first, each file atomically, the MANIFEST last, so
// that a crash leaves a checkpoint that fails verification, never one that
// loads wrong.
func writeCheckpointFiles(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	if err := os.Remove(filepath.Join(dir, manifestFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("train: %w", err)
	}
	for _, name := range checkpointFiles {
		if err := writeFileAtomic(filepath.Join(dir, name), files[name]); err != nil {
			return err
		}
	}
	return nil
}

// installCheckpoint writes a copy of another rank's checkpoint under root,
// where LatestCheckpoint finds it, and prunes as SaveCheckpoint does. A
// complete checkpoint of the same step already there (root is shared with
// rank 0, which wrote it) is left alone.
func installCheckpoint(root string, files map[string][]byte, keep int) (string, error) {
	var st RunState
	if err := json.Unmarshal(files[stateFile], &st); err != nil {
		return "", fmt.Errorf("train: rank 0's checkpoint: bad %s: %w", stateFile, err)
	}
	dir := filepath.Join(root, CheckpointName(st.Step))
	if _, err := VerifyCheckpoint(dir); err == nil {
		return dir, nil
	}
	if err := writeCheckpointFiles(dir, files); err != nil {
		return "", err
	}
	if _, err := VerifyCheckpoint(dir); err != nil {
		return "", err
	}
	if keep > 0 {
		if err := prune(root, keep); err != nil {
			return dir, err
		}
	}
	return dir, nil
}
