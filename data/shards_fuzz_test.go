package data

import (
	"bytes"
	"io"
	"reflect"
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

// FuzzStreamState: no bytes may panic the stream-position decoder, and
// what it accepts encodes to a state that decodes the same.
func FuzzStreamState(f *testing.F) {
	s := &streamState{epoch: 2, step: 3, world: 1, readers: 2, shuffle: 4, copies: 1, bs: 4, seed: 9, shards: 3,
		rng: make([]byte, 20), next: 1, pos: []readerPos{{seg: 0, left: 2, off: 1024}, {seg: 1, off: -1}},
		buf: []sampleRef{{shard: 1, off: 512, left: 1}}, hand: sampleRef{shard: 2, left: 1}, hasHand: true}
	good := s.marshal()
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add([]byte(streamStateMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := unmarshalStreamState(b)
		if err != nil {
			return
		}
		again, err := unmarshalStreamState(st.marshal())
		if err != nil || !reflect.DeepEqual(again, st) {
			t.Fatalf("encoded and decoded again: %+v (%v), was %+v", again, err, st)
		}
	})
}
