package train

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"
)

// StepHold holds a run before a step named in a file, until the file says
// otherwise: a test or an operator pauses training at a known step, does
// something (kills a node, adds one, stops a process), and releases it.
// Its Wait is a Config.BeforeStep.
//
// The file holds a step number N: steps up to N run, and the run waits
// before step N+1 while the file still holds N (or less). Writing a larger
// number lets the run go on to it; removing the file lets it run freely.
// Write it atomically (a temporary file renamed over it), so that a reader
// never sees it half-written.
type StepHold struct {
	// Path is the file.
	Path string
	// Held, when set, is called each time the run begins to wait: step is
	// the step that waits and limit the number the file holds.
	Held func(step, limit int)
	// Poll is how often a waiting run looks at the file again (0: 20 ms).
	Poll time.Duration

	fi    fs.FileInfo // the file last read, to read it again only when it changes
	limit int
}

// Wait returns once step may run: when the file is absent or holds a
// number ≥ step. It returns ctx's cause if ctx ends first, and an error
// if the file holds anything but a step number. Outside a hold it costs
// one stat of the file.
func (h *StepHold) Wait(ctx context.Context, step int) error {
	var tick *time.Ticker
	for {
		limit, ok, err := h.read()
		if err != nil {
			return err
		}
		if !ok || step <= limit {
			return nil
		}
		if tick == nil {
			poll := h.Poll
			if poll <= 0 {
				poll = 20 * time.Millisecond
			}
			tick = time.NewTicker(poll)
			defer tick.Stop()
			if h.Held != nil {
				h.Held(step, limit)
			}
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-tick.C:
		}
	}
}

// read returns the number the file holds, and false when there is no file.
func (h *StepHold) read() (int, bool, error) {
	fi, err := os.Stat(h.Path)
	if errors.Is(err, fs.ErrNotExist) {
		h.fi = nil
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("train: hold file: %w", err)
	}
	if h.fi != nil && os.SameFile(h.fi, fi) && fi.Size() == h.fi.Size() && fi.ModTime().Equal(h.fi.ModTime()) {
		return h.limit, true, nil
	}
	b, err := os.ReadFile(h.Path)
	if errors.Is(err, fs.ErrNotExist) {
		h.fi = nil
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("train: hold file: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, false, fmt.Errorf("train: hold file %s holds %q: want the number of the last step to run", h.Path, b)
	}
	// Should the file change between the stat and the read, the next
	// stat differs from fi and reads it again.
	h.fi, h.limit = fi, n
	return n, true, nil
}
