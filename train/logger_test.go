package train

import (
	"bytes"
	"errors"
	"testing"
)

func TestLoggerLines(t *testing.T) {
	var buf bytes.Buffer
	l := NewLogger(&buf)
	l.Info("not shown")
	l.Warn("skipping a checkpoint that is incomplete or corrupt", "dir", "runs/x/step-3", "err", errors.New("no MANIFEST"))
	l.With("rank", 2).Error("gave up")
	want := "warning: skipping a checkpoint that is incomplete or corrupt (dir: runs/x/step-3, err: no MANIFEST)\n" +
		"error: gave up (rank: 2)\n"
	if buf.String() != want {
		t.Errorf("got\n%q\nwant\n%q", buf.String(), want)
	}
}
