package train

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeHold replaces the hold file atomically, as its doc asks.
func writeHold(t *testing.T, path, s string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestStepHold(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hold")
	held := make(chan [2]int, 1)
	h := &StepHold{Path: path, Poll: time.Millisecond, Held: func(step, limit int) { held <- [2]int{step, limit} }}
	ctx := context.Background()

	// No file: nothing waits.
	for step := 1; step <= 3; step++ {
		if err := h.Wait(ctx, step); err != nil {
			t.Fatal(err)
		}
	}
	// Steps up to the number run; the next one waits until the file
	// holds a larger number.
	writeHold(t, path, "5\n")
	if err := h.Wait(ctx, 5); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- h.Wait(ctx, 6) }()
	if got := <-held; got != [2]int{6, 5} {
		t.Fatalf("Held(%d, %d), want (6, 5)", got[0], got[1])
	}
	select {
	case err := <-done:
		t.Fatalf("step 6 ran under a hold at 5 (%v)", err)
	default:
	}
	writeHold(t, path, "6")
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Removing the file releases a waiting run.
	go func() { done <- h.Wait(ctx, 7) }()
	<-held
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// A cancelled context ends the wait with its cause.
	writeHold(t, path, "0")
	cctx, cancel := context.WithCancelCause(ctx)
	go func() { done <- h.Wait(cctx, 1) }()
	<-held
	cancel(errors.New("stop now"))
	if err := <-done; err == nil || err.Error() != "stop now" {
		t.Fatalf("cancelled while held: %v, want the cause", err)
	}

	// Anything but a step number is an error, not a silent release.
	writeHold(t, path, "twelve")
	if err := h.Wait(ctx, 1); err == nil || !strings.Contains(err.Error(), `"twelve"`) {
		t.Fatalf("a hold file holding a word: %v", err)
	}
}

// Run calls BeforeStep before every step, in order, and stops on its
// error; a hold on a cancelled context is an interruption.
func TestRunBeforeStep(t *testing.T) {
	c := smallConfig(t, t.TempDir())
	c.Epochs = 1
	var steps []int
	stop := errors.New("no further")
	c.BeforeStep = func(_ context.Context, step int) error {
		steps = append(steps, step)
		if step == 7 {
			return stop
		}
		return nil
	}
	err := Run(context.Background(), c, io.Discard)
	if !errors.Is(err, stop) || !strings.Contains(err.Error(), "before step 7") {
		t.Fatalf("Run: %v, want the hook's error at step 7", err)
	}
	for i, s := range steps {
		if s != i+1 {
			t.Fatalf("BeforeStep saw steps %v, want 1, 2, …, 7", steps)
		}
	}

	// A hold that the context ends: Run saves the steps taken and
	// returns an *Interrupted.
	dir := t.TempDir()
	c = smallConfig(t, dir)
	hold := filepath.Join(dir, "hold")
	writeHold(t, hold, "4")
	ctx, cancel := context.WithCancelCause(context.Background())
	h := &StepHold{Path: hold, Poll: time.Millisecond, Held: func(int, int) { cancel(errors.New("test stop")) }}
	c.BeforeStep = h.Wait
	err = Run(ctx, c, io.Discard)
	var intr *Interrupted
	if !errors.As(err, &intr) || intr.Step != 4 || !strings.Contains(err.Error(), "test stop") {
		t.Fatalf("Run held at 4 and cancelled: %v, want *Interrupted at step 4", err)
	}
	if st, err := VerifyCheckpoint(intr.Checkpoint); err != nil || st.Step != 4 {
		t.Fatalf("checkpoint of the interrupted run: step %d, %v", st.Step, err)
	}
}
