package train

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/mac"
	"github.com/macdist/macdist/nn"
)

// RunState is what a checkpoint records besides tensors: where training
// stood and under which configuration.
type RunState struct {
	Step       int    `json:"step"`        // training steps taken (batches consumed, skipped steps included)
	Epoch      int    `json:"epoch"`       // epoch the next step belongs to, from 0
	EpochStep  int    `json:"epoch_step"`  // steps already taken within Epoch; all of them when only its evaluation is left
	Seed       uint64 `json:"seed"`        // data order and augmentation derive from (seed, epoch)
	ConfigHash string `json:"config_hash"` // Settings.Hash of the settings that must not change on resume
	Model      string `json:"model"`
	Optimizer  string `json:"optimizer"`

	// Settings are the hashed settings themselves, so that a refused resume
	// can say what changed, and eval can rebuild the model.
	Settings *Settings `json:"settings,omitempty"`
	// Running is the current epoch's running sums, so that a resumed
	// epoch reports the same numbers as an uninterrupted one.
	Running EpochSums `json:"running"`
	// History holds the record of every finished epoch: metrics.jsonl and
	// curves.png are rebuilt from it on resume.
	History []EpochRecord `json:"history,omitempty"`
	// Stream is rank 0's shard-stream position mid-epoch (each reader's
	// shard and byte offset, the shuffle buffer as shard and offset
	// references, the shuffle generator): resuming seeks there and reads
	// only the buffered samples, instead of the epoch's head. Absent (old
	// checkpoints, other ranks, indexed datasets), the stream re-reads the
	// head, with the same result.
	Stream []byte `json:"stream,omitempty"`
}

// Manifest lists a checkpoint's files with their sizes and SHA-256 sums. It
// is written last, atomically: a checkpoint directory without a valid
// MANIFEST does not exist.
type Manifest struct {
	Files map[string]ManifestEntry `json:"files"`
}

// ManifestEntry describes one file of a checkpoint.
type ManifestEntry struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

const (
	modelFile     = "model.safetensors"
	optimizerFile = "optimizer.safetensors"
	stateFile     = "state.json"
	manifestFile  = "MANIFEST"
	ckptPrefix    = "step-"
)

// CheckpointName is the directory name of the checkpoint after step steps;
// zero-padded so that names sort in step order.
func CheckpointName(step int) string { return fmt.Sprintf("%s%09d", ckptPrefix, step) }

// SaveCheckpoint writes a checkpoint of params, the optimizer and st under
// root/CheckpointName(st.Step), then removes all but the newest keep
// complete checkpoints (keep ≤ 0 keeps all). Every file is written to a
// temporary name, fsynced and renamed; the MANIFEST comes last.
func SaveCheckpoint(root string, dev kernels.Device, params []*nn.Param, opt mac.Optimizer, st RunState, keep int) (string, error) {
	dir := filepath.Join(root, CheckpointName(st.Step))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("train: checkpoint: %w", err)
	}
	// A MANIFEST left by an earlier attempt at the same step would vouch for
	// files about to be replaced: remove it first.
	if err := os.Remove(filepath.Join(dir, manifestFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("train: checkpoint: %w", err)
	}
	if err := nn.SaveParams(dev, filepath.Join(dir, modelFile), params); err != nil {
		return "", fmt.Errorf("train: checkpoint: %w", err)
	}
	if err := mac.SaveState(filepath.Join(dir, optimizerFile), opt); err != nil {
		return "", fmt.Errorf("train: checkpoint: %w", err)
	}
	js, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return "", fmt.Errorf("train: checkpoint: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, stateFile), append(js, '\n')); err != nil {
		return "", err
	}
	man := Manifest{Files: map[string]ManifestEntry{}}
	for _, name := range []string{modelFile, optimizerFile, stateFile} {
		e, err := hashFile(filepath.Join(dir, name))
		if err != nil {
			return "", err
		}
		man.Files[name] = e
	}
	js, err = json.MarshalIndent(man, "", "  ")
	if err != nil {
		return "", fmt.Errorf("train: checkpoint: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, manifestFile), append(js, '\n')); err != nil {
		return "", err
	}
	if keep > 0 {
		if err := prune(root, keep); err != nil {
			return dir, err
		}
	}
	return dir, nil
}

// writeFileAtomic writes data to path through a temporary file, fsync and
// rename, then fsyncs the directory so the rename itself is durable.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	// CreateTemp makes the file private; these are ordinary outputs.
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("train: writing %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("train: writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("train: writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("train: writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("train: %w", err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("train: sync %s: %w", filepath.Dir(path), err)
	}
	return nil
}

func hashFile(path string) (ManifestEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return ManifestEntry{}, fmt.Errorf("train: checkpoint: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return ManifestEntry{}, fmt.Errorf("train: checkpoint: %s: %w", path, err)
	}
	return ManifestEntry{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// VerifyCheckpoint checks that dir holds a valid MANIFEST and that every
// file it lists has the recorded size and checksum, and returns its state.
func VerifyCheckpoint(dir string) (RunState, error) {
	var st RunState
	raw, err := os.ReadFile(filepath.Join(dir, manifestFile))
	if err != nil {
		return st, fmt.Errorf("train: checkpoint %s is incomplete: %w", dir, err)
	}
	var man Manifest
	if err := json.Unmarshal(raw, &man); err != nil {
		return st, fmt.Errorf("train: checkpoint %s: bad MANIFEST: %w", dir, err)
	}
	for _, name := range []string{modelFile, optimizerFile, stateFile} {
		want, ok := man.Files[name]
		if !ok {
			return st, fmt.Errorf("train: checkpoint %s: MANIFEST does not list %s", dir, name)
		}
		got, err := hashFile(filepath.Join(dir, name))
		if err != nil {
			return st, err
		}
		if got != want {
			return st, fmt.Errorf("train: checkpoint %s: %s is corrupt or truncated (size %d, sha256 %.12s…; MANIFEST says %d, %.12s…)",
				dir, name, got.Size, got.SHA256, want.Size, want.SHA256)
		}
	}
	raw, err = os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return st, fmt.Errorf("train: checkpoint %s: %w", dir, err)
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, fmt.Errorf("train: checkpoint %s: bad %s: %w", dir, stateFile, err)
	}
	// Resuming counts batches from these: a negative one, or more steps in
	// the epoch than in the run, is no place a run could have stopped.
	if st.Step < 0 || st.Epoch < 0 || st.EpochStep < 0 || st.EpochStep > st.Step {
		return st, fmt.Errorf("train: checkpoint %s: bad %s: step %d, epoch %d, step %d within it", dir, stateFile, st.Step, st.Epoch, st.EpochStep)
	}
	return st, nil
}

// Checkpoints lists the checkpoint directories under root, oldest first,
// complete or not.
func Checkpoints(root string) ([]string, error) {
	entries, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	var dirs []string
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), ckptPrefix) {
			continue
		}
		if _, err := strconv.Atoi(strings.TrimPrefix(e.Name(), ckptPrefix)); err != nil {
			continue
		}
		dirs = append(dirs, filepath.Join(root, e.Name()))
	}
	sort.Strings(dirs)
	return dirs, nil
}

// LatestCheckpoint returns the newest complete, uncorrupted checkpoint
// under root; incomplete or corrupt ones are skipped and reported through
// skipped (which may be nil). It returns "" when there is none.
func LatestCheckpoint(root string, skipped func(dir string, err error)) (string, RunState, error) {
	dirs, err := Checkpoints(root)
	if err != nil {
		return "", RunState{}, err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		st, err := VerifyCheckpoint(dirs[i])
		if err == nil {
			return dirs[i], st, nil
		}
		if skipped != nil {
			skipped(dirs[i], err)
		}
	}
	return "", RunState{}, nil
}

// LoadCheckpoint verifies dir and loads its parameters and optimizer state
// (opt may be nil to load the model alone).
func LoadCheckpoint(dir string, dev kernels.Device, params []*nn.Param, opt mac.Optimizer) (RunState, error) {
	st, err := VerifyCheckpoint(dir)
	if err != nil {
		return st, err
	}
	if err := nn.LoadParams(dev, filepath.Join(dir, modelFile), params); err != nil {
		return st, fmt.Errorf("train: %w", err)
	}
	if opt != nil {
		if err := mac.LoadState(filepath.Join(dir, optimizerFile), opt); err != nil {
			return st, fmt.Errorf("train: %w", err)
		}
	}
	return st, nil
}

// prune removes all but the newest keep complete checkpoints, and any
// incomplete one older than the newest complete.
func prune(root string, keep int) error {
	dirs, err := Checkpoints(root)
	if err != nil {
		return err
	}
	complete := 0
	for i := len(dirs) - 1; i >= 0; i-- {
		_, err := VerifyCheckpoint(dirs[i])
		if err == nil && complete < keep {
			complete++
			continue
		}
		if err != nil && complete == 0 {
			continue // possibly being written right now
		}
		if err := os.RemoveAll(dirs[i]); err != nil {
			return fmt.Errorf("train: pruning checkpoints: %w", err)
		}
	}
	return nil
}
