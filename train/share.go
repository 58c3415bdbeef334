package train

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
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
// saying what rank 0 found.
const (
	shareNone   byte = iota // no complete checkpoint: every rank starts fresh
	shareFound              // a tar of the checkpoint follows
	shareFailed             // rank 0 could not resume: every rank stops
)

// shareCheckpoint gives every rank the checkpoint rank 0 resumes from. Rank
// 0 looks for it (find) and broadcasts it; the other ranks never look at
// their own disk: they unpack what they receive into a temporary directory,
// which LoadCheckpoint then verifies against its MANIFEST as it would a
// local one. dir is "" when rank 0 found nothing; cleanup removes the
// temporary copy.
func shareCheckpoint(b Broadcaster, lead bool, find func() (string, error)) (dir string, cleanup func(), err error) {
	cleanup = func() {}
	if lead {
		dir, err := find()
		msg := []byte{shareNone}
		switch {
		case err != nil:
			msg = append([]byte{shareFailed}, err.Error()...)
		case dir != "":
			if msg, err = packCheckpoint(dir); err != nil {
				msg = append([]byte{shareFailed}, err.Error()...)
			}
		}
		if _, berr := b.BroadcastBytes(msg); berr != nil {
			return "", cleanup, fmt.Errorf("train: sending the checkpoint to the other ranks: %w", berr)
		}
		return dir, cleanup, err
	}
	msg, err := b.BroadcastBytes(nil)
	if err != nil {
		return "", cleanup, fmt.Errorf("train: receiving rank 0's checkpoint: %w", err)
	}
	if len(msg) == 0 {
		return "", cleanup, errors.New("train: rank 0 sent an empty checkpoint message")
	}
	switch msg[0] {
	case shareNone:
		return "", cleanup, nil
	case shareFailed:
		return "", cleanup, fmt.Errorf("train: rank 0 could not resume: %s", msg[1:])
	}
	tmp, err := os.MkdirTemp("", "macdist-ckpt-")
	if err != nil {
		return "", cleanup, fmt.Errorf("train: %w", err)
	}
	cleanup = func() { os.RemoveAll(tmp) }
	if err := unpackCheckpoint(msg[1:], tmp); err != nil {
		cleanup()
		return "", func() {}, err
	}
	return tmp, cleanup, nil
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
			if _, berr := b.BroadcastBytes(msg); berr != nil {
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
		if _, err := b.BroadcastBytes(msg); err != nil {
			return fmt.Errorf("train: sending the initial weights to the other ranks: %w", err)
		}
		return nil
	}
	msg, err := b.BroadcastBytes(nil)
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
	for _, name := range []string{modelFile, optimizerFile, stateFile, manifestFile} {
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

// unpackCheckpoint writes the checkpoint files of a packed tar into dir,
// refusing any name that is not one of them.
func unpackCheckpoint(b []byte, dir string) error {
	known := map[string]bool{modelFile: true, optimizerFile: true, stateFile: true, manifestFile: true}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("train: rank 0's checkpoint: %w", err)
		}
		if !known[h.Name] || h.Typeflag != tar.TypeReg {
			return fmt.Errorf("train: rank 0's checkpoint holds an unexpected entry %q", h.Name)
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			return fmt.Errorf("train: rank 0's checkpoint: %s: %w", h.Name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, h.Name), content, 0o644); err != nil {
			return fmt.Errorf("train: %w", err)
		}
	}
}
