package cuda

import (
	"bytes"
	"io"
	"os"
	"sync"
)

// The warnings the package gives during the tests, also shown on stderr.
var (
	warnMu  sync.Mutex
	warnBuf bytes.Buffer
)

type lockedWriter struct{}

func (lockedWriter) Write(p []byte) (int, error) {
	warnMu.Lock()
	defer warnMu.Unlock()
	warnBuf.Write(p)
	return len(p), nil
}

func init() { warnOut = io.MultiWriter(os.Stderr, lockedWriter{}) }

// Warnings returns what the package has warned about so far.
func Warnings() string {
	warnMu.Lock()
	defer warnMu.Unlock()
	return warnBuf.String()
}

// Plans is the number of convolution shapes d has asked cuDNN about.
func (d *Device) Plans() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.dnn.plans)
}

// Algos returns the algorithms (forward, backward data, backward filter)
// and workspace bytes of every plan d has made.
func (d *Device) Algos() (algos [][3]int, ws [][3]int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range d.dnn.plans {
		if p != nil {
			algos, ws = append(algos, p.algo), append(ws, p.ws)
		}
	}
	return algos, ws
}
