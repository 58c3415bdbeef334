package collective

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
)

const (
	// DefaultTimeout bounds every wait of a ring on a peer. It must exceed
	// the longest time one rank may legitimately reach a collective after
	// another (a slow step, rank 0 writing a checkpoint), so it is generous.
	DefaultTimeout = 60 * time.Second
	// DefaultChunkBytes is the unit of the ring's pipeline: small enough
	// that a rank forwards the first chunk of a segment while the rest is
	// still arriving, large enough that per-chunk costs (a deadline, a
	// system call) vanish against the copy.
	DefaultChunkBytes = 256 << 10
)

// RingConfig is what a rank needs to join a ring: the rendezvous hands it out.
type RingConfig struct {
	Rank, Size int
	// Addrs holds every rank's listen address, indexed by rank. Rank r
	// dials Addrs[(r+1)%Size], its right neighbour, and accepts its left.
	Addrs []string
	// Listener is this rank's, already bound to Addrs[Rank]. NewRing
	// accepts on it but does not close it: the caller owns it and may
	// reuse it for the next generation. It should have a SetDeadline
	// method (as *net.TCPListener has); otherwise NewRing closes it to
	// stop accepting when it gives up.
	Listener net.Listener
	// Generation and Token must match on both ends of every connection;
	// the token is never sent, both ends prove they know it (HMAC-SHA256
	// over fresh nonces).
	Generation uint64
	Token      string
	// Timeout bounds each wait on a peer, for data or for room to send
	// (0 means DefaultTimeout): a dead or stalled peer becomes an error
	// within it instead of a hang.
	Timeout time.Duration
	// ConnectTimeout bounds NewRing (0 means Timeout).
	ConnectTimeout time.Duration
	// ChunkBytes is the pipeline's unit (0 means DefaultChunkBytes).
	ChunkBytes int
	// Lanes is the number of connections to each neighbour (0 means 1),
	// each with its own sending and receiving goroutine: a large
	// collective is spread over them, so that more cores copy and add at
	// once. One TCP stream is bound by the core that copies it, well
	// below what a fast network or a many-core host's loopback can carry.
	// Every rank of a ring must use the same number.
	Lanes int
	// Device is the device whose buffers the ring reduces. Nil or a
	// *cpu.Device: buffers are used in place. Any other device: buffers
	// are staged through a host buffer (Download, ring, Upload), which the
	// ring keeps between calls.
	Device kernels.Device
}

// Ring is a Communicator over TCP: each rank keeps Lanes connections to
// its right neighbour, on which it only sends, and as many from its left,
// on which it only receives. See the package documentation for the
// algorithm.
type Ring struct {
	rank, size int
	gen        uint64
	timeout    time.Duration
	chunk      int // elements
	lanes      []*lane
	host       host

	opMu  sync.Mutex // one collective at a time
	seq   uint64
	watch chan context.Context
	opEnd chan struct{}

	aborted   chan struct{}
	abortOnce sync.Once
	causeMu   sync.Mutex
	cause     error

	quit      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// lane is one connection to each neighbour and the goroutines that drive
// them. A collective gives each lane in use its share of the buffer (see
// laneSegment); the lanes run independently and the collective ends when
// all have.
type lane struct {
	ring        *Ring
	index       int
	left, right *link
	scratch     []float32 // one received chunk, before it is added

	// The sending half of a lane's share runs on its sender goroutine,
	// the receiving half on the caller's goroutine (lane 0) or the lane's
	// receiver goroutine (the others). recvd counts the units received so
	// far (the header, then chunks): the sender waits on it before
	// forwarding a chunk. sent counts the chunks sent: the receiver waits
	// on it before overwriting a chunk the sender read in an earlier step.
	// That order already holds through the network (the bytes left this
	// rank before they came back round the ring), but only this makes it
	// visible to the race detector, and it costs one atomic load per chunk.
	sendJobs chan job
	sendRes  chan error
	recvJobs chan job
	recvRes  chan error
	recvd    progress
	sent     progress
}

type opKind uint8

const (
	kindAllReduce opKind = iota + 1
	kindBroadcast
	kindBarrier
)

func (k opKind) String() string {
	switch k {
	case kindAllReduce:
		return "AllReduce"
	case kindBroadcast:
		return "Broadcast"
	case kindBarrier:
		return "Barrier"
	}
	return fmt.Sprintf("op(%d)", uint8(k))
}

// header describes a collective. Each rank sends its own to its right
// neighbour before any data, and checks the one from its left, so that two
// ranks that disagree on the order or the sizes of their collectives fail
// at once with a clear error instead of exchanging garbage.
type header struct {
	kind opKind
	op   Op
	root uint32
	seq  uint64
	n    uint64
}

func (h header) String() string {
	switch h.kind {
	case kindAllReduce:
		return fmt.Sprintf("AllReduce #%d (%s, %d elements)", h.seq, h.op, h.n)
	case kindBroadcast:
		return fmt.Sprintf("Broadcast #%d (root %d, %d elements)", h.seq, h.root, h.n)
	}
	return fmt.Sprintf("%v #%d", h.kind, h.seq)
}

const (
	headerLen   = 32
	headerMagic = 0x4c43444d // "MDCL"
)

func (h header) encode(b *[headerLen]byte) {
	binary.LittleEndian.PutUint32(b[0:], headerMagic)
	b[4] = byte(h.kind)
	b[5] = byte(h.op)
	b[6], b[7] = 0, 0
	binary.LittleEndian.PutUint32(b[8:], h.root)
	binary.LittleEndian.PutUint32(b[12:], 0)
	binary.LittleEndian.PutUint64(b[16:], h.seq)
	binary.LittleEndian.PutUint64(b[24:], h.n)
}

func decodeHeader(b *[headerLen]byte) (header, bool) {
	h := header{
		kind: opKind(b[4]),
		op:   Op(b[5]),
		root: binary.LittleEndian.Uint32(b[8:]),
		seq:  binary.LittleEndian.Uint64(b[16:]),
		n:    binary.LittleEndian.Uint64(b[24:]),
	}
	return h, binary.LittleEndian.Uint32(b[0:]) == headerMagic
}

// job is one collective as a lane sees it: the whole buffer, of which the
// lane handles its share among the lanes in use.
type job struct {
	h     header
	data  []float32
	lanes int
}

// link is one connection to a neighbour, with the per-wait deadline.
type link struct {
	conn    net.Conn
	peer    int
	addr    string
	timeout time.Duration
	// Kept here so that passing them to the connection does not move
	// them to the heap on every call.
	hdr [headerLen]byte
	tok [8]byte
}

func (l *link) write(b []byte) error {
	if err := l.conn.SetWriteDeadline(time.Now().Add(l.timeout)); err != nil {
		return l.wrap("send to", err)
	}
	if _, err := l.conn.Write(b); err != nil {
		return l.wrap("send to", err)
	}
	return nil
}

func (l *link) read(b []byte) error {
	if err := l.conn.SetReadDeadline(time.Now().Add(l.timeout)); err != nil {
		return l.wrap("receive from", err)
	}
	if _, err := io.ReadFull(l.conn, b); err != nil {
		return l.wrap("receive from", err)
	}
	return nil
}

func (l *link) wrap(what string, err error) error {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%s rank %d (%s): no progress for %v (timeout; peer stalled or dead): %w", what, l.peer, l.addr, l.timeout, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%s rank %d (%s): connection closed by the peer (it failed or aborted): %w", what, l.peer, l.addr, err)
	}
	return fmt.Errorf("%s rank %d (%s): %w", what, l.peer, l.addr, err)
}

// Rank is this rank's index.
func (r *Ring) Rank() int { return r.rank }

// Size is the number of ranks in the ring.
func (r *Ring) Size() int { return r.size }

// Generation is the generation the ring was built for.
func (r *Ring) Generation() uint64 { return r.gen }

// Abort breaks the ring: it closes all its connections, which wakes this
// rank's blocked call and makes both neighbours fail in turn.
func (r *Ring) Abort(err error) {
	if err == nil {
		err = ErrAborted
	}
	r.abortOnce.Do(func() {
		r.causeMu.Lock()
		r.cause = err
		r.causeMu.Unlock()
		close(r.aborted)
		for _, l := range r.lanes {
			l.left.conn.Close()
			l.right.conn.Close()
		}
	})
}

// Close aborts with ErrClosed (unless the ring failed before), waits for any
// call in flight to return and stops the ring's goroutines.
func (r *Ring) Close() error {
	r.Abort(ErrClosed)
	r.closeOnce.Do(func() {
		r.opMu.Lock()
		close(r.quit)
		r.opMu.Unlock()
		r.wg.Wait()
	})
	return nil
}

// Err returns the reason the ring broke, or nil while it works.
func (r *Ring) Err() error {
	select {
	case <-r.aborted:
		r.causeMu.Lock()
		defer r.causeMu.Unlock()
		return r.cause
	default:
		return nil
	}
}

func (r *Ring) opError(h header) error {
	return fmt.Errorf("collective: ring rank %d/%d (generation %d): %v: %w", r.rank, r.size, r.gen, h, r.Err())
}

// AllReduce reduces buf over the ring: reduce-scatter, then all-gather.
func (r *Ring) AllReduce(ctx context.Context, buf kernels.Buffer, op Op) error {
	if op != Sum && op != Avg {
		// The peers are about to wait for this rank: break the ring so
		// that they fail at once, not at the timeout.
		err := fmt.Errorf("collective: AllReduce: unknown op %v", op)
		r.Abort(err)
		return err
	}
	r.opMu.Lock()
	defer r.opMu.Unlock()
	if r.size == 1 { // nothing to stage either
		return r.run(ctx, header{kind: kindAllReduce, op: op, seq: r.seq, n: uint64(buf.Len())}, nil)
	}
	data := r.host.get(buf, true)
	err := r.run(ctx, header{kind: kindAllReduce, op: op, seq: r.seq, n: uint64(len(data))}, data)
	if err == nil {
		r.host.put(buf, data)
	}
	return err
}

// Broadcast pipelines root's buf along the ring, root → root+1 → … → root−1.
func (r *Ring) Broadcast(ctx context.Context, buf kernels.Buffer, root int) error {
	if root < 0 || root >= r.size {
		err := fmt.Errorf("collective: Broadcast: root %d outside [0, %d)", root, r.size)
		r.Abort(err)
		return err
	}
	r.opMu.Lock()
	defer r.opMu.Unlock()
	if r.size == 1 {
		return r.run(ctx, header{kind: kindBroadcast, seq: r.seq, n: uint64(buf.Len())}, nil)
	}
	data := r.host.get(buf, r.rank == root)
	err := r.run(ctx, header{kind: kindBroadcast, root: uint32(root), seq: r.seq, n: uint64(len(data))}, data)
	if err == nil && r.rank != root {
		r.host.put(buf, data)
	}
	return err
}

// Barrier passes a token round the ring Size−1 times; the last one a rank
// receives proves, transitively, that every rank has entered.
func (r *Ring) Barrier(ctx context.Context) error {
	r.opMu.Lock()
	defer r.opMu.Unlock()
	return r.run(ctx, header{kind: kindBarrier, seq: r.seq}, nil)
}

// run executes one collective: each lane in use sends on its sender
// goroutine and receives on its receiver goroutine, lane 0 on this one.
// Called with opMu held.
func (r *Ring) run(ctx context.Context, h header, data []float32) error {
	r.seq++
	select {
	case <-r.aborted:
		return r.opError(h)
	default:
	}
	if r.size == 1 {
		return nil
	}
	watching := ctx.Done() != nil
	if watching {
		r.watch <- ctx
	}
	j := job{h: h, data: data, lanes: r.lanesFor(h.kind, len(data))}
	for _, l := range r.lanes[:j.lanes] {
		l.recvd.reset()
		l.sent.reset()
		l.sendJobs <- j
		if l.index > 0 {
			l.recvJobs <- j
		}
	}
	failed := false
	if err := r.lanes[0].receive(j); err != nil {
		r.Abort(err)
		failed = true
	}
	// Every half always answers, and soon once the ring is aborted: all
	// must be done with data before the caller gets it back.
	for _, l := range r.lanes[1:j.lanes] {
		if err := <-l.recvRes; err != nil {
			r.Abort(err)
			failed = true
		}
	}
	for _, l := range r.lanes[:j.lanes] {
		if err := <-l.sendRes; err != nil {
			r.Abort(err)
			failed = true
		}
	}
	if watching {
		r.opEnd <- struct{}{}
	}
	if failed {
		return r.opError(h)
	}
	return nil
}

// lanesFor is the number of lanes a collective of n elements uses: as
// many as give each lane at least a chunk per step, so that small
// collectives keep the latency of one lane. Barriers use one.
func (r *Ring) lanesFor(kind opKind, n int) int {
	per := r.chunk
	switch kind {
	case kindBarrier:
		return 1
	case kindAllReduce:
		per *= r.size
	}
	return max(1, min(len(r.lanes), n/per))
}

// laneSegment is lane k's share [off, off+n) of ring segment i of an
// n-element AllReduce spread over L lanes: every segment is split among
// the lanes, rather than the buffer among lanes and then each share among
// ranks, so that each element is summed in the same order (starting at the
// rank that owns its segment) whatever the number of lanes, and the result
// is bit for bit that of one lane and of Local.
func laneSegment(total, ranks, i, k, L int) (off, n int) {
	off, n = segment(total, ranks, i)
	o, m := segment(n, L, k)
	return off + o, m
}

// watcher turns the end of a call's context into an abort: a collective
// interrupted halfway leaves its peers mid-stream, so the ring cannot go on.
func (r *Ring) watcher() {
	defer r.wg.Done()
	for {
		select {
		case ctx := <-r.watch:
			select {
			case <-ctx.Done():
				r.Abort(fmt.Errorf("context ended during a collective: %w", context.Cause(ctx)))
				<-r.opEnd
			case <-r.opEnd:
			}
		case <-r.quit:
			return
		}
	}
}

// serve runs one half of the lane's collectives, send or receive, on its
// own goroutine until the ring closes. A failed half aborts the ring at
// once, before it reports: the other halves may be waiting on it.
func (l *lane) serve(jobs <-chan job, res chan<- error, half func(job) error) {
	defer l.ring.wg.Done()
	for {
		select {
		case j := <-jobs:
			err := half(j)
			if err != nil {
				l.ring.Abort(err)
			}
			res <- err
		case <-l.ring.quit:
			return
		}
	}
}

// errAbortedWait stands for "the ring was aborted during a wait"; the
// caller reports the abort's cause instead.
var errAbortedWait = errors.New("collective: aborted while waiting")

// progress is a counter that one half of a collective advances and the
// other waits on, without allocating: kick holds at most one wake-up, and
// the waiter rechecks the counter after each.
type progress struct {
	n    atomic.Int64
	kick chan struct{}
}

func newProgress() progress { return progress{kick: make(chan struct{}, 1)} }

// reset is called between collectives, when neither half runs.
func (p *progress) reset() {
	p.n.Store(0)
	select {
	case <-p.kick:
	default:
	}
}

func (p *progress) set(n int64) {
	p.n.Store(n)
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// await blocks until the counter reaches n or the ring is aborted.
func (p *progress) await(n int64, aborted <-chan struct{}) error {
	for p.n.Load() < n {
		select {
		case <-p.kick:
		case <-aborted:
			return errAbortedWait
		}
	}
	return nil
}

// chunks is the number of pipeline chunks per ring segment of an n-element
// AllReduce over L lanes: every lane's share of every segment is cut at
// the same multiples of r.chunk, so the shorter shares simply have a
// shorter (or empty) last chunk.
func (r *Ring) chunks(n, L int) int {
	seg := (n + r.size - 1) / r.size
	share := (seg + L - 1) / L
	return (share + r.chunk - 1) / r.chunk
}

// The AllReduce stream has 2(R−1) steps. At step s, rank r sends segment
// (r−s) mod R and receives segment (r−s−1) mod R: for s < R−1 it adds what
// it receives into its own values (reduce-scatter); at s = R−2 the segment
// it receives, (r+1) mod R, is complete; from s = R−1 on it overwrites
// (all-gather). What a rank sends at step s is what it received at step
// s−1, so chunk c of step s waits only for chunk c of step s−1: unit
// 1 + (s−1)·C + c + 1 of the receiver's progress (unit 0 is the header).

func (ln *lane) send(j job) error {
	r, l := ln.ring, ln.right
	j.h.encode(&l.hdr)
	if err := l.write(l.hdr[:]); err != nil {
		return err
	}
	R := r.size
	switch j.h.kind {
	case kindAllReduce:
		n := len(j.data)
		C := r.chunks(n, j.lanes)
		for s := 0; s < 2*(R-1); s++ {
			off, segLen := laneSegment(n, R, mod(r.rank-s, R), ln.index, j.lanes)
			for c := 0; c < C; c++ {
				lo, hi := c*r.chunk, min((c+1)*r.chunk, segLen)
				if lo < hi {
					if s > 0 {
						if err := ln.recvd.await(int64(1+(s-1)*C+c+1), r.aborted); err != nil {
							return err
						}
					}
					if err := l.write(asBytes(j.data[off+lo : off+hi])); err != nil {
						return err
					}
				}
				ln.sent.set(int64(s*C + c + 1))
			}
		}
	case kindBroadcast:
		root := int(j.h.root)
		if mod(r.rank+1, R) == root {
			return nil // the end of the chain
		}
		off, n := segment(len(j.data), j.lanes, ln.index)
		data := j.data[off : off+n]
		for c, lo := 0, 0; lo < len(data); c, lo = c+1, lo+r.chunk {
			hi := min(lo+r.chunk, len(data))
			if r.rank != root {
				if err := ln.recvd.await(int64(1+c+1), r.aborted); err != nil {
					return err
				}
			}
			if err := l.write(asBytes(data[lo:hi])); err != nil {
				return err
			}
		}
	case kindBarrier:
		for s := 1; s < R-1; s++ {
			if err := ln.recvd.await(int64(s), r.aborted); err != nil {
				return err
			}
			binary.LittleEndian.PutUint64(l.tok[:], j.h.seq)
			if err := l.write(l.tok[:]); err != nil {
				return err
			}
		}
	}
	return nil
}

func (ln *lane) receive(j job) error {
	r, l, h, data := ln.ring, ln.left, j.h, j.data
	if err := l.read(l.hdr[:]); err != nil {
		return err
	}
	got, ok := decodeHeader(&l.hdr)
	if !ok {
		return fmt.Errorf("receive from rank %d (%s): stream out of step (bad header magic)", l.peer, l.addr)
	}
	if got != h {
		return fmt.Errorf("%w: rank %d issued %v while rank %d issued %v", ErrMismatch, l.peer, got, r.rank, h)
	}
	ln.recvd.set(1)
	R := r.size
	switch h.kind {
	case kindAllReduce:
		n := len(data)
		C := r.chunks(n, j.lanes)
		for s := 0; s < 2*(R-1); s++ {
			off, segLen := laneSegment(n, R, mod(r.rank-s-1, R), ln.index, j.lanes)
			for c := 0; c < C; c++ {
				lo, hi := c*r.chunk, min((c+1)*r.chunk, segLen)
				if lo < hi {
					dst := data[off+lo : off+hi]
					if s < R-1 {
						in := ln.scratch[:hi-lo]
						if err := l.read(asBytes(in)); err != nil {
							return err
						}
						cpu.AddTo(dst, in)
						if s == R-2 && h.op == Avg {
							div(dst, float32(R))
						}
					} else {
						// Step s−R+1 sent this chunk's old value.
						if err := ln.sent.await(int64((s-R+1)*C+c+1), r.aborted); err != nil {
							return err
						}
						if err := l.read(asBytes(dst)); err != nil {
							return err
						}
					}
				}
				ln.recvd.set(int64(1 + s*C + c + 1))
			}
		}
	case kindBroadcast:
		if r.rank == int(h.root) {
			return nil
		}
		off, n := segment(len(data), j.lanes, ln.index)
		data = data[off : off+n]
		for c, lo := 0, 0; lo < len(data); c, lo = c+1, lo+r.chunk {
			hi := min(lo+r.chunk, len(data))
			if err := l.read(asBytes(data[lo:hi])); err != nil {
				return err
			}
			ln.recvd.set(int64(1 + c + 1))
		}
	case kindBarrier:
		for s := 1; s < R-1; s++ {
			if err := l.read(l.tok[:]); err != nil {
				return err
			}
			if binary.LittleEndian.Uint64(l.tok[:]) != h.seq {
				return fmt.Errorf("receive from rank %d (%s): barrier token out of step", l.peer, l.addr)
			}
			ln.recvd.set(int64(s + 1))
		}
	}
	return nil
}

// asBytes is f's memory as bytes, in this host's byte order; the handshake
// refuses peers of the other order.
func asBytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(f))), 4*len(f))
}

func div(x []float32, d float32) {
	for i := range x {
		x[i] /= d
	}
}
