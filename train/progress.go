package train

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/macdist/macdist/internal/term"
)

// progress shows where training stands: a bar redrawn in place on a
// terminal, plain lines at intervals otherwise (a log file, a CI console).
type progress struct {
	w       io.Writer
	mode    string // "bar", "lines" or "none"
	every   int    // lines: step interval
	maxGap  time.Duration
	now     func() time.Time
	drawn   bool // a bar is on the screen
	lastOut time.Time

	// Throughput over the recent past: a window restarted every few
	// seconds, so that the rate follows the present and not the start.
	winStart time.Time
	winSeen  int64
	rate     float64
}

// IsTerminal reports whether w is a terminal (term.IsTerminal).
func IsTerminal(w io.Writer) bool { return term.IsTerminal(w) }

func newProgress(w io.Writer, mode string, every int, now func() time.Time) *progress {
	if mode == "auto" {
		mode = "lines"
		if IsTerminal(w) {
			mode = "bar"
		}
	}
	return &progress{w: w, mode: mode, every: every, maxGap: 30 * time.Second, now: now, lastOut: now()}
}

// status is one step's view for the progress output.
type status struct {
	epoch, epochs  int // epoch from 1
	estep, nb      int // steps done in the epoch, of nb
	step, total    int // steps done in the run, of total
	loss, acc, lr  float64
	seen           int64 // samples so far in this process's run
	remainingSteps int
	secondsPerStep float64
}

func (p *progress) update(s status) {
	if p.mode == "none" {
		return
	}
	t := p.now()
	if p.winStart.IsZero() {
		p.winStart, p.winSeen = t, s.seen
	} else if dt := t.Sub(p.winStart).Seconds(); dt >= 0.25 {
		p.rate = float64(s.seen-p.winSeen) / dt
		if dt >= 5 {
			p.winStart, p.winSeen = t, s.seen
		}
	}
	eta := ""
	if s.secondsPerStep > 0 {
		eta = fmtDuration(time.Duration(float64(s.remainingSteps) * s.secondsPerStep * float64(time.Second)))
	}
	switch p.mode {
	case "bar":
		if t.Sub(p.lastOut) < 100*time.Millisecond && s.estep != s.nb {
			return
		}
		const width = 24
		fill := width * s.estep / max(1, s.nb)
		bar := strings.Repeat("=", fill)
		if fill < width {
			bar += ">" + strings.Repeat(" ", width-fill-1)
		}
		fmt.Fprintf(p.w, "\r\033[Kepoch %d/%d [%s] %d/%d  loss %.4f  acc %5.1f%%  %s img/s  ETA %s",
			s.epoch, s.epochs, bar, s.estep, s.nb, s.loss, 100*s.acc, fmtRate(p.rate), eta)
		p.drawn = true
	case "lines":
		every := p.every
		if every <= 0 {
			every = max(1, s.nb/10)
		}
		if s.step%every != 0 && t.Sub(p.lastOut) < p.maxGap {
			return
		}
		fmt.Fprintf(p.w, "epoch %d/%d  step %d/%d (%d/%d)  loss %.4f  acc %.1f%%  lr %.4g  %s img/s  ETA %s\n",
			s.epoch, s.epochs, s.estep, s.nb, s.step, s.total, s.loss, 100*s.acc, s.lr, fmtRate(p.rate), eta)
	}
	p.lastOut = t
}

// clear removes a bar from the screen before other output.
func (p *progress) clear() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}

// printf writes a message line, around the bar.
func (p *progress) printf(format string, args ...any) {
	p.clear()
	fmt.Fprintf(p.w, format+"\n", args...)
}

func fmtRate(r float64) string {
	if r <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", r)
}

func fmtDuration(d time.Duration) string {
	d = d.Round(time.Second)
	h := int(d / time.Hour)
	m := int(d/time.Minute) % 60
	s := int(d/time.Second) % 60
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%d:%02d", m, s)
}
