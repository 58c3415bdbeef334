package data

import (
	"context"
	"fmt"
	"math/rand/v2"
)

// Batches is what a trainer reads an epoch from: a Loader over an indexed
// Dataset or a StreamLoader over shards.
type Batches interface {
	// Len is the number of batches per epoch, the same on every rank.
	Len() int
	// NumReal is how many of the rank's samples per epoch are not padding.
	NumReal() int
	Start(ctx context.Context, epoch int) error
	StartAt(ctx context.Context, epoch, step int) error
	Next() (*Batch, error)
	Release(b *Batch)
	Close() error
}

var (
	_ Batches = (*Loader)(nil)
	_ Batches = (*StreamLoader)(nil)
)

// NewBatches reads ds with a Loader, or with a StreamLoader when ds is a
// shard set (Open's shards:DIR), taking the stream's own settings from sc
// (its LoaderConfig is replaced by cfg).
func NewBatches(ds Dataset, cfg LoaderConfig, sc StreamConfig) (Batches, error) {
	if s, ok := ds.(*ShardSet); ok {
		sc.LoaderConfig = cfg
		return NewStreamLoader(s, sc)
	}
	return NewLoader(ds, cfg)
}

// Get is here only so that a ShardSet can travel where a Dataset does
// (model building reads Shape and Classes): shards are read in sequence, by
// NewBatches, never by index.
func (s *ShardSet) Get(i int, dst []float32, rng *rand.Rand) (int, error) {
	return 0, &SampleError{Index: i, File: s.dir, Err: fmt.Errorf("shards are streamed, not read by index (use data.NewBatches)")}
}
