package train

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
