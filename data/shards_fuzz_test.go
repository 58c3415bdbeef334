package data

import (
	"bytes"
	"io"
	"testing"
)

// FuzzShardReader: no shard content may panic the reader, and every
// error it returns names the shard.
func FuzzShardReader(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 1024))
	f.Fuzz(func(t *testing.T, b []byte) {
		sr := newShardReader(io.NopCloser(bytes.NewReader(b)), "fuzz.tar", 0, 3)
		sr.maxLen = 1 << 20
		for range 1000 {
			s, err := sr.read(nil)
			if err == io.EOF {
				return
			}
			if err != nil {
				if _, ok := err.(*ShardError); !ok {
					t.Fatalf("error %T %v is not a *ShardError", err, err)
				}
				return
			}
			if s.enc == nil || s.label < 0 || s.label >= 3 {
				t.Fatalf("sample with %d bytes and label %d", len(s.enc), s.label)
			}
		}
	})
}

// FuzzShardIndex: no index.json may panic the parser, and an accepted one
// is usable: plain shard names, positive counts.
func FuzzShardIndex(f *testing.F) {
	f.Add([]byte(`{"version":1,"classes":["a"],"image_size":4,"train":[{"file":"t.tar","samples":1}],"eval":[{"file":"v.tar","samples":1}]}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ix, err := parseShardIndex("index.json", b)
		if err != nil {
			return
		}
		for _, e := range append(ix.Train, ix.Eval...) {
			if e.Samples <= 0 || e.File == "" || bytes.ContainsAny([]byte(e.File), `/\`) {
				t.Fatalf("accepted shard entry %+v", e)
			}
		}
	})
}
