// Package collective is how data-parallel ranks agree: a Communicator
// (AllReduce, Broadcast, Barrier, Abort) and a Bucketer that averages a
// model's gradients and its optimizer's statistics through it while
// backward is still running.
//
// # Communicators
//
// Communicator is an interface over kernels.Buffer, so that a GPU
// communicator (NCCL) can stand where the CPU ones stand now:
//
//   - NewLocal: n ranks as goroutines of one process sharing memory, for
//     tests. It reduces in the ring's order, so its results are bit for bit
//     those of a Ring with the same inputs.
//   - NewRing: a TCP ring, one rank per process, for CPU training across
//     processes and machines. Its buffers are those of a *cpu.Device, used
//     in place; a RingConfig.Device of any other kind is staged through a
//     host buffer (Download, reduce, Upload) that is kept between calls.
//
// Every rank must issue the same collectives in the same order with the
// same lengths. Each collective starts with a small header (kind, sequence
// number, length, op or root) that every rank checks against its left
// neighbour's, so a disagreement is an error wrapping ErrMismatch on the
// spot, not garbage or a hang.
//
// # The ring
//
// Rank r keeps one TCP connection to its right neighbour r+1, on which it
// only sends, and one from its left neighbour r−1, on which it only
// receives. The connections are made once, by NewRing, from the bootstrap
// the rendezvous hands out (every rank's address, this rank's bound
// listener, a generation and a token): each rank dials its right and
// accepts its left, and a handshake checks the generation, the ring size,
// the rank on the other end and, by an HMAC over fresh nonces, the token
// (which never crosses the wire). Connections from an older generation, or
// with the wrong token, are refused with a reason, while the ring forms
// anyway; every stray's handshake runs on its own goroutine so a silent one
// cannot hold up the real neighbour.
//
// AllReduce is a reduce-scatter followed by an all-gather. The buffer is
// cut into R segments (the first n mod R one element longer, so sizes
// smaller than R or odd need no padding). In 2(R−1) steps, at step s rank r
// sends segment (r−s) mod R and receives segment (r−s−1) mod R; in the
// first R−1 steps it adds what it receives to its own values, and after
// them it holds the complete sum of segment (r+1) mod R; in the last R−1
// steps it forwards complete segments, overwriting. Each rank sends and
// receives 2(R−1)/R of the buffer, whatever R is: the ring is bandwidth
// optimal, which is what matters for the tens of megabytes of a gradient
// bucket (nccl-tests' busbw = algbw·2(R−1)/R measures exactly this). A
// tree or a reduce to one rank followed by a broadcast would send the
// whole buffer through one rank's link, R−1 times or twice.
//
// The sum of segment j is formed in one fixed order, rank j first and then
// round the ring; the all-gather then copies those bits to every rank.
// Results are therefore deterministic (the same inputs give the same bits
// on every run) and identical on every rank, which data-parallel training
// needs so that replicas never drift apart. Avg divides the complete
// segment by R on the rank that completed it, before it is gathered.
//
// Each step is cut into chunks (RingConfig.ChunkBytes, 256 KiB by default)
// and the halves of a collective run on two goroutines: the caller's
// receives and reduces, a long-lived sender goroutine sends. Chunk c of
// step s can go as soon as chunk c of step s−1 has been received and
// added, so a rank forwards one chunk while the next is still arriving and
// the R−1 steps overlap like a pipeline instead of running one after
// another. Chunks are sent straight from the caller's buffer and all-gather
// chunks are received straight into it; only reduce-scatter chunks pass
// through a preallocated chunk buffer. A steady-state collective
// allocates nothing. Broadcast pipelines the same way along the chain
// root → root+1 → … → root−1; Barrier passes a token R−1 times round the
// ring, after which every rank has heard, transitively, from every other.
// A world of one makes no connection and its collectives return at once.
//
// One TCP stream is bound by the core that copies it (and here by the
// core that also adds what arrives), well short of a fast NIC or of a
// many-core host's memory. RingConfig.Lanes (launch's --ring-lanes) opens
// that many connections to each neighbour, each with its own sending and
// receiving goroutine, as NCCL opens several sockets per peer. A
// collective large enough to give every lane at least a chunk per step is
// spread over them: each ring segment is split among the lanes, so every
// element is still summed starting at the rank that owns its segment, and
// the bits are those of one lane. Small collectives and barriers use one
// lane and keep its latency. The number of lanes must match across ranks
// (the handshake checks it).
//
// # Timeouts and Abort
//
// Every read and write of the ring has a deadline RingConfig.Timeout ahead
// (60 s by default): a peer that is stalled (SIGSTOP, a hung GPU, a full
// disk) makes the rank waiting on it fail within the timeout, with an
// error wrapping os.ErrDeadlineExceeded. A rank that fails for any reason
// aborts its ring, which closes both of its connections; its neighbours'
// reads and writes then fail at once, they abort and close theirs, and the
// failure goes round the ring in milliseconds. A peer that dies (kill -9,
// a lost machine whose kernel resets the connection) is noticed the same
// way, without waiting for the timeout. So a dead or stalled rank turns
// into an error on every rank within about one timeout, never a hang. The
// timeout must exceed the longest legitimate wait at a collective, such as
// rank 0 writing a checkpoint while the others wait for the next step.
//
// Abort(err) does the same on request: the membership layer calls it when
// it learns a peer is gone, which wakes every call blocked on this rank
// with an error wrapping err. A context that ends during a collective
// aborts too: a collective cut off halfway leaves the peers mid-stream, so
// the ring cannot go on. After any failure a communicator stays broken;
// the elastic supervisor builds a new one in the next generation.
//
// # Bucketing
//
// A Bucketer lays the gradients out in reverse parameter order, the order
// backward completes them, in buckets of about 25 MiB (the first about
// 1 MiB, so that communication starts as soon as the last layers are done).
// As the trainer marks gradients ready, every bucket whose gradients are
// all ready is copied into its flat buffer and handed to a background
// goroutine that all-reduces the buckets one after another, so the
// all-reduce of the late layers overlaps with the backward of the early
// ones. Buckets are launched strictly in bucket order: however a rank's
// backward interleaves, every rank issues the same collectives in the same
// order, which the ring requires. The layout depends only on the
// gradients' lengths, so all ranks compute the same one.
//
// The optimizer's statistics (MAC's ā vectors, KFAC's factors: the flat
// vector of mac.Optimizer.Stats) must be averaged too, or the ranks'
// preconditioners would differ and 2 ranks × batch 64 would not match
// 1 rank × batch 128. They are appended to the last bucket, which is the
// last to be ready anyway (it holds the first layers' gradients), so they
// cost bytes but no extra collective: no extra latency, no extra round
// trip, no extra synchronisation point. MAC's are small: one vector of
// the fan-in per preconditioned layer, about 1/fan-out of its weight.
//
// Counters reports steps, bytes, buckets, the time spent in all-reduce and
// the part of it Finish waited for (not hidden behind backward), for the
// trainer's metrics.
package collective
