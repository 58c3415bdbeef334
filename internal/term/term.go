// Package term tells whether output goes to a terminal, as isatty does,
// without a dependency: the trainer draws its progress bar there, and the
// launcher tells rank 0 to draw it through its pipe.
package term

import (
	"io"
	"os"
)

// IsTerminal reports whether w is a character device (a terminal) and TERM
// is not "dumb".
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb"
}
