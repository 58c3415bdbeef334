package data

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"
	"time"
)

// StageTimes is the time ImageFolder.Get spent in each stage, summed over
// the goroutines that called it: reading the file, decoding it (for Go's
// decoder, also the conversion to RGB), and cropping, resizing, flipping
// and normalising.
type StageTimes struct {
	Read, Decode, Resize time.Duration
	Images               int64
}

// stageClock accumulates StageTimes; a nil clock measures nothing.
type stageClock struct {
	read, decode, resize, images atomic.Int64
}

// lap adds the time since *t to stage and restarts *t.
func (c *stageClock) lap(t *time.Time, stage *atomic.Int64) {
	if c == nil {
		return
	}
	now := time.Now()
	stage.Add(int64(now.Sub(*t)))
	*t = now
}

// The stages' counters; nil for a nil clock, which lap ignores.
func (c *stageClock) readStage() *atomic.Int64   { return c.field(0) }
func (c *stageClock) decodeStage() *atomic.Int64 { return c.field(1) }
func (c *stageClock) resizeStage() *atomic.Int64 { return c.field(2) }

func (c *stageClock) field(k int) *atomic.Int64 {
	if c == nil {
		return nil
	}
	return [...]*atomic.Int64{&c.read, &c.decode, &c.resize}[k]
}

// done counts an image.
func (c *stageClock) done() {
	if c != nil {
		c.images.Add(1)
	}
}

func (c *stageClock) start() time.Time {
	if c == nil {
		return time.Time{}
	}
	return time.Now()
}

// TimeStages makes Get time its stages from now on, from zero. It must not
// be called while Get runs; ResetStages may be.
func (d *ImageFolder) TimeStages() { d.clock = new(stageClock) }

// ResetStages sets the stage times to zero.
func (d *ImageFolder) ResetStages() {
	if c := d.clock; c != nil {
		c.read.Store(0)
		c.decode.Store(0)
		c.resize.Store(0)
		c.images.Store(0)
	}
}

// Stages returns the time spent per stage since TimeStages.
func (d *ImageFolder) Stages() StageTimes {
	c := d.clock
	if c == nil {
		return StageTimes{}
	}
	return StageTimes{
		Read:   time.Duration(c.read.Load()),
		Decode: time.Duration(c.decode.Load()),
		Resize: time.Duration(c.resize.Load()),
		Images: c.images.Load(),
	}
}

// JPEGDecoder names the decoder the dataset decodes JPEGs with:
// "libjpeg-turbo" or "go".
func (d *ImageFolder) JPEGDecoder() string {
	if d.scales != nil {
		return "libjpeg-turbo"
	}
	return "go"
}

// LoaderBenchConfig says what BenchLoader measures.
type LoaderBenchConfig struct {
	Workers, Batch int
	// Eval decodes with the evaluation transforms instead of the training
	// augmentation.
	Eval bool
}

// LoaderBench is BenchLoader's result.
type LoaderBench struct {
	// Decoder names the JPEG decoder ("libjpeg-turbo" or "go") of an
	// ImageFolder or shard set, empty for other datasets.
	Decoder string
	Images  int
	Seconds float64
	// CPUSeconds is the process's user + system time over the timed epoch
	// (0 where the platform does not say).
	CPUSeconds float64
	Stages     StageTimes
}

// BenchLoader times a Loader (a StreamLoader for a shard set) decoding ds
// into batches as training would consume them: one epoch to warm up (the
// page cache, the workers' buffers), then one timed epoch, from Start to
// its last batch, with ImageFolder's stage clock on when ds is one or a
// shard set (whose samples go through an ImageFolder's transform).
func BenchLoader(ctx context.Context, ds Dataset, cfg LoaderBenchConfig) (LoaderBench, error) {
	if cfg.Workers <= 0 || cfg.Batch <= 0 {
		return LoaderBench{}, fmt.Errorf("data: bench with %d workers, batch %d", cfg.Workers, cfg.Batch)
	}
	lc := LoaderConfig{BatchSize: cfg.Batch, Workers: cfg.Workers, Shuffle: true, Seed: 1, NoAugment: cfg.Eval, DropLastBatch: true}
	l, err := NewBatches(ds, lc, StreamConfig{})
	if err != nil {
		return LoaderBench{}, err
	}
	defer l.Close()
	folder, _ := ds.(*ImageFolder)
	if set, ok := ds.(*ShardSet); ok {
		// The set's transform is its own ImageFolder value, timed here
		// as a folder is.
		folder = set.tf
	}
	var res LoaderBench
	if folder != nil {
		folder.TimeStages()
		res.Decoder = folder.JPEGDecoder()
	}
	for epoch := range 2 {
		if epoch == 1 {
			if folder != nil {
				folder.ResetStages()
			}
			res = LoaderBench{Decoder: res.Decoder}
		}
		t0, cpu0 := time.Now(), processCPUSeconds()
		if err := l.Start(ctx, epoch); err != nil {
			return res, err
		}
		for {
			b, err := l.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return res, err
			}
			res.Images += b.N
			l.Release(b)
		}
		res.Seconds = time.Since(t0).Seconds()
		if cpu := processCPUSeconds(); cpu > 0 {
			res.CPUSeconds = cpu - cpu0
		}
	}
	if folder != nil {
		res.Stages = folder.Stages()
	}
	return res, nil
}

// Cores is how many cores a bench with this many workers can use.
func Cores(workers int) int { return max(1, min(workers, runtime.GOMAXPROCS(0), runtime.NumCPU())) }
