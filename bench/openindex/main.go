// Command openindex times data.Open on a dataset spec and prints one JSON
// line: the index-scale benchmark of bench/index_scale.sh.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/macdist/macdist/data"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: openindex SPEC")
		os.Exit(2)
	}
	t0 := time.Now()
	tr, te, err := data.Open(os.Args[1], data.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	el := time.Since(t0)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	line, _ := json.Marshal(map[string]any{
		"spec": os.Args[1], "train": tr.Len(), "test": te.Len(), "open_s": el.Seconds(),
		"heap_live_mb": float64(ms.HeapAlloc) / 1e6, "gc_sys_mb": float64(ms.Sys) / 1e6,
	})
	fmt.Println(string(line))
}
