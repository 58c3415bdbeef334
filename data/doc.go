// Package data feeds training: datasets (MNIST and Fashion-MNIST IDX files,
// CIFAR-10/100 binary, ImageFolder JPEG/PNG trees and archives, synthetic
// data), torchvision's transforms, PyTorch's DistributedSampler, and a
// prefetching Loader that yields host batches — []float32 in NCHW and
// []int32 labels — for the trainer to upload. It depends on nothing else in
// the module.
//
// # Opening a dataset
//
// Open(spec, Options) returns the training and evaluation sets named by one
// of the forms in Specs: "fashion-mnist" (Debian's dataset-fashion-mnist
// under /usr/share/datasets), "mnist:DIR", "cifar10:DIR", "cifar100:DIR",
// "imagefolder:PATH" (a directory or a .tar/.tar.gz) and
// "synthetic:CxHxW:K:N[:NT]". Every file is validated when it is opened
// (magic numbers, dimensions, record sizes, label ranges, image and label
// counts), and a problem is reported with the file's name and what is wrong
// with it. The one exception is the content of individual images in an
// ImageFolder, which is only decoded when the sample is used: a corrupt JPEG
// fails its sample with a *SampleError naming the file and the index, and
// the Loader passes it on to the consumer.
//
// # Samples decode into the caller's buffer
//
// Dataset.Get(i, dst, rng) writes one sample into dst instead of returning
// a new tensor. The Loader owns a fixed ring of Prefetch+1 batch buffers,
// allocated once; workers decode each sample straight into its place in a
// batch, so for the in-memory formats (IDX, CIFAR, synthetic) a training
// step costs no allocation at all and the garbage collector has nothing to
// do however long the run (TestLoaderNoAllocs checks this with
// testing.AllocsPerRun). IDX and CIFAR keep their pixels as the bytes the
// files hold — a quarter of the memory of float32 — and convert through a
// 256-entry table per channel computed exactly as torchvision's ToTensor
// then Normalize, so the values equal PyTorch's bit for bit. Cropping,
// padding and flipping are index arithmetic on the way from bytes to floats;
// no intermediate image exists. Go's JPEG decoding allocates (image/jpeg
// returns a new image); libjpeg-turbo decodes into the worker's pooled
// scratch, with one decompressor per worker.
//
// # Determinism
//
// Nothing depends on goroutine scheduling. The epoch's order is a
// Fisher–Yates shuffle from a generator keyed by (Seed, epoch). A sample's
// augmentation draws from a generator reseeded, before each Get, from
// (Seed, epoch, dataset index) — not from the worker, the rank or the
// position in the batch. So the same seed and epoch give the same batches,
// bit for bit, with 1 worker or 16, and a sample that two ranks both see
// (DistributedSampler's padding) is augmented identically on both.
// AugmentRand(seed, epoch, i) returns that generator, to reproduce a sample
// outside the Loader. Batches reach the consumer in order: batch b waits in
// its buffer until b−1 has been taken.
//
// # Sharding: PyTorch's DistributedSampler
//
// Sampler reproduces torch.utils.data.DistributedSampler. The epoch's list
// is a permutation of 0..N−1 (or, without Shuffle, 0..N−1 in order). Unless
// DropLast, it is padded by repeating its head to TotalSize =
// ⌈N/World⌉·World; with DropLast it is cut to ⌊N/World⌋·World. Rank r takes
// the entries r, r+World, r+2·World, …, and cuts them into batches of
// BatchSize; DropLastBatch (DataLoader's drop_last) leaves out a short final
// batch. Hence step s of World ranks with batch B together hold exactly step
// s of one process with batch World·B (TestShardsUnionIsGlobalBatch). The
// padding comes last in each rank's list; NumReal says how many of a rank's
// indices are not padding, so that evaluation and epoch metrics count every
// sample once, whatever the world size. The
// permutation itself is not torch.randperm's (that would need PyTorch's
// Mersenne Twister and its randperm algorithm); everything else matches the
// Python line by line (TestSamplerMatchesPyTorch transliterates it).
//
// # The Loader
//
// NewLoader(ds, cfg) checks the configuration and allocates the ring;
// Start(ctx, epoch) — or StartAt(ctx, epoch, step) to resume mid-epoch —
// launches a scheduler and cfg.Workers decoders for the epoch; Next returns
// batches until io.EOF. A Batch is valid until Release or the next Next, which hands its buffer back for decoding ahead. Cancelling ctx
// makes Next return the context's error at once, even while a worker is
// stuck inside a slow Get; Start and Close wait for the goroutines, so that
// none outlives the Loader and no buffer is reused while written.
//
// # Transforms
//
// Augment policies: AugmentDefault is none for MNIST and Fashion-MNIST,
// RandomCrop(32, padding=4) + RandomHorizontalFlip for CIFAR (the padding is
// black before normalisation, as torchvision pads the PIL image), and
// RandomResizedCrop(size, scale 0.08–1, ratio 3/4–4/3, ten tries then the
// clamped centre crop) + RandomHorizontalFlip for ImageFolder; AugmentNone
// turns augmentation off. Evaluation sets never augment: ImageFolder
// evaluation is Resize(shorter side) + CenterCrop, with torchvision's size
// and offset rounding. Resizing is PIL's bilinear filter (a triangle whose
// support widens with the reduction factor, so downscaling averages instead
// of aliasing), in fixed point and rounded to a byte after each pass as PIL
// does, with coarser weights (13 bits instead of 22, three channels to a
// uint64), so that a value is at most one level of 255 from PIL's, and that
// rarely. JPEGs are decoded by libjpeg-turbo when it is installed (decode.go:
// at the smallest DCT scale the crop allows, a few levels from PIL's full
// decode, 0.5 on average) and by Go's image/jpeg otherwise (a level or two
// from libjpeg). Normalisation constants are the usual ones
// (FashionMNISTStats, MNISTStats, CIFAR10Stats, CIFAR100Stats,
// ImageNetStats), overridable with Options.Mean/Std or NoNormalize.
//
// # ImageFolder
//
// PATH/train/CLASS/…/IMAGE, with PATH/val/ (or else PATH/test/) holding the
// same class folders; classes are the train folder's sub-folders sorted by
// name, files are ordered as torchvision's make_dataset orders them (class,
// then folder path as a string, then file name), and .jpg/.jpeg/.png are
// the extensions read (case-insensitively). Tiny-ImageNet's val layout
// (val/images/ labelled by val/val_annotations.txt) is read too. When PATH
// is a tar archive (gzip or not, recognised from its bytes) it is streamed
// once at Open and the encoded images are kept in memory, packed in 16 MB
// chunks — right for CIFAR-10 as JPEGs (20 MB) or Tiny-ImageNet; ImageNet
// belongs in a directory, whose files are read as they are needed. The tree
// may sit under a top folder of the archive (or of the directory): the
// shallowest folder holding train/ is the root. The output side defaults to
// the first training image's shorter side when that is at most 64 (CIFAR,
// Tiny-ImageNet: train at native resolution) and to 224 otherwise, with
// evaluation resizing to 256 (size·256/224).
//
// # Shards
//
// WriteShards (macdist shard) writes an ImageFolder tree as plain tar
// shards in WebDataset's convention, KEY.jpg (or .png) and KEY.cls (the
// label in decimal), each split in a random order, train-NNNNNN.tar and
// val-NNNNNN.tar (or test-) closed at a size, and index.json last: per-shard
// sample counts, class names, the output side, and how images were
// re-encoded (MaxSide, Quality: larger images shrunk by an area filter and
// written as JPEG). Open("shards:DIR") gives a ShardSet, which is read in
// sequence by a StreamLoader (NewBatches picks it), never by index.
//
// Each epoch the training shards are permuted from (Seed, epoch), their
// concatenation is cut into World ranges of floor(total/World) samples
// (the remainder is left out that epoch, and a different one the next),
// and rank r reads range r: whole shards, except at most one at each end,
// shared sample-disjointly with the neighbouring rank. Every rank thus has
// the same number of steps, ceil or floor (DropLastBatch) of
// floor(total/World)/BatchSize, and a change of World deals the shards
// afresh. A rank's segments are dealt round-robin to Readers sequential
// readers (one open shard each, ReadAhead samples buffered, one sample in
// memory at a time per reader), interleaved round-robin and mixed by a
// shuffle buffer drawn from (Seed, epoch, Rank); batches are decoded by the
// Workers in parallel, each sample's augmentation keyed by (Seed, epoch,
// Rank, position), so the batches depend on (Seed, epoch, Rank, World,
// Readers, ShuffleBuffer) and never on timing or Workers. The recipe's
// per-sample transforms (ShardSet.WithRecipe: RandAugment, TrivialAugment,
// random erasing) run after the crop and flip with the code of Augmented
// over an ImageFolder, drawing as there from the sample's generator right
// after the crop and flip's draws. Repeated augmentation
// (Repeats k) differs from RASampler's: a rank reads the first ⌈per/k⌉
// samples of its range and the shuffle buffer emits each k times, every
// copy at its own position and so with its own draws, keeping the epoch's
// length; the copies stay on the rank (ranks still read disjoint
// samples), where RASampler sends them to different ranks, and a rank sees
// a different head of its shards each epoch as the shards are dealt anew. State(epoch, step)
// records the stream's position at a batch boundary for a checkpoint:
// each reader's segment and the byte offset of its next sample, the
// shuffle buffer's samples as (shard, offset) references with their
// copies left, and the shuffle generator's state (streamstate.go);
// StartFrom seeks there and reads back only the buffered samples. Without
// a position, StartAt reads the epoch's head again without decoding it,
// which refills the shuffle buffer exactly. Either way a resumed epoch is
// bit for bit the uninterrupted one; a damaged position (checked by a
// CRC), or one of another epoch, step or configuration, is an error. The
// evaluation split is read in index order, cut into World ranges that differ
// by at most one sample; the shorter ranks pad with a blank sample that
// NumReal leaves out, so evaluation counts each sample once.
//
// A sample whose image does not decode is a *ShardError (shard file and the
// byte offset of the sample's first tar header); SkipBad replaces it by a
// good sample of its batch and counts it (Skipped). A broken tar stream (a
// truncated shard, a member that is not KEY.ext, a bad or missing label, a
// shard with fewer samples than the index says) is an error either way.
package data
