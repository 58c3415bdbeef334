package collective

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// ErrRefused is wrapped by NewRing's error when a peer answered but refused
// the connection (another generation, ring size or token): retrying will
// not help until the configurations agree.
var ErrRefused = errors.New("collective: ring handshake refused")

// NewRing connects this rank to its two neighbours and returns the ring.
// Every rank of the ring must call it with the same Size, Addrs, Generation
// and Token, at about the same time: each waits up to ConnectTimeout (or
// until ctx ends) for the others. A world of one needs no Listener and
// makes no connection; its collectives return at once.
func NewRing(ctx context.Context, cfg RingConfig) (*Ring, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = cfg.Timeout
	}
	if cfg.ChunkBytes == 0 {
		cfg.ChunkBytes = DefaultChunkBytes
	}
	if cfg.Lanes == 0 {
		cfg.Lanes = 1
	}
	r := &Ring{
		rank:    cfg.Rank,
		size:    cfg.Size,
		gen:     cfg.Generation,
		timeout: cfg.Timeout,
		chunk:   max(1, cfg.ChunkBytes/4),
		host:    newHost(cfg.Device),
		watch:   make(chan context.Context),
		opEnd:   make(chan struct{}),
		aborted: make(chan struct{}),
		quit:    make(chan struct{}),
	}
	if cfg.Size == 1 {
		return r, nil
	}
	lefts, rights, err := connect(ctx, &cfg)
	if err != nil {
		return nil, fmt.Errorf("collective: ring rank %d/%d (generation %d): %w", cfg.Rank, cfg.Size, cfg.Generation, err)
	}
	for k := range cfg.Lanes {
		l := &lane{
			ring: r, index: k, left: lefts[k], right: rights[k],
			scratch:  make([]float32, r.chunk),
			sendJobs: make(chan job), sendRes: make(chan error, 1),
			recvJobs: make(chan job), recvRes: make(chan error, 1),
			recvd: newProgress(), sent: newProgress(),
		}
		r.lanes = append(r.lanes, l)
		r.wg.Add(1)
		go l.serve(l.sendJobs, l.sendRes, l.send)
		if k > 0 { // lane 0 receives on the caller's goroutine
			r.wg.Add(1)
			go l.serve(l.recvJobs, l.recvRes, l.receive)
		}
	}
	r.wg.Add(1)
	go r.watcher()
	return r, nil
}

func (c *RingConfig) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("collective: ring config: "+format, a...)
	}
	switch {
	case c.Size < 1:
		return bad("size %d, need at least 1", c.Size)
	case c.Rank < 0 || c.Rank >= c.Size:
		return bad("rank %d outside [0, %d)", c.Rank, c.Size)
	case len(c.Addrs) != c.Size:
		return bad("%d addresses for %d ranks", len(c.Addrs), c.Size)
	case c.Timeout < 0 || c.ConnectTimeout < 0:
		return bad("negative timeout")
	case c.ChunkBytes < 0:
		return bad("negative chunk size %d", c.ChunkBytes)
	case c.Lanes < 0 || c.Lanes > MaxLanes:
		return bad("%d lanes, want 1 to %d", c.Lanes, MaxLanes)
	}
	if c.Size == 1 {
		return nil
	}
	if c.Listener == nil {
		return bad("rank %d has no listener", c.Rank)
	}
	if _, ok := c.Listener.(deadliner); !ok {
		return bad("listener %T has no SetDeadline method (use a *net.TCPListener)", c.Listener)
	}
	if c.Addrs[(c.Rank+1)%c.Size] == "" {
		return bad("no address for rank %d", (c.Rank+1)%c.Size)
	}
	return nil
}

type deadliner interface{ SetDeadline(time.Time) error }

// MaxLanes bounds RingConfig.Lanes: past a few lanes per core, more only
// add goroutines and sockets.
const MaxLanes = 32

// connect dials the right neighbour and accepts the left one, concurrently
// (with two ranks they are the same peer, and each must dial while the
// other accepts), once per lane.
func connect(ctx context.Context, cfg *RingConfig) (lefts, rights []*link, err error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	type result struct {
		ls  []*link
		err error
	}
	dialc, acceptc := make(chan result, 1), make(chan result, 1)
	go func() {
		ls, err := dialRight(ctx, cfg)
		dialc <- result{ls, err}
	}()
	go func() {
		ls, err := acceptLeft(ctx, cfg)
		acceptc <- result{ls, err}
	}()
	var first error
	for range 2 {
		var res result
		select {
		case res = <-dialc:
			rights = res.ls
		case res = <-acceptc:
			lefts = res.ls
		}
		if res.err != nil && first == nil {
			first = res.err
			cancel() // the other half stops waiting
		}
	}
	if first != nil {
		closeLinks(lefts)
		closeLinks(rights)
		return nil, nil, first
	}
	for _, l := range append(slices.Clip(lefts), rights...) {
		l.timeout = cfg.Timeout
		if tc, ok := l.conn.(*net.TCPConn); ok {
			tc.SetNoDelay(true) // headers and barrier tokens are tiny
			tc.SetKeepAlive(true)
		}
	}
	return lefts, rights, nil
}

func closeLinks(ls []*link) {
	for _, l := range ls {
		if l != nil {
			l.conn.Close()
		}
	}
}

// dialRight dials the right neighbour once per lane, in lane order.
func dialRight(ctx context.Context, cfg *RingConfig) ([]*link, error) {
	var ls []*link
	for k := range cfg.Lanes {
		l, err := dialLane(ctx, cfg, k)
		if err != nil {
			closeLinks(ls)
			return nil, err
		}
		ls = append(ls, l)
	}
	return ls, nil
}

func dialLane(ctx context.Context, cfg *RingConfig, lane int) (*link, error) {
	peer := (cfg.Rank + 1) % cfg.Size
	addr := cfg.Addrs[peer]
	var d net.Dialer
	backoff := 10 * time.Millisecond
	var last error
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			err = handshake(ctx, c, func(c net.Conn) error { return dialHandshake(c, cfg, peer, lane) })
			if err == nil {
				return &link{conn: c, peer: peer, addr: addr}, nil
			}
			c.Close()
			if errors.Is(err, ErrRefused) {
				return nil, fmt.Errorf("dial rank %d at %s: %w", peer, addr, err)
			}
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("the peer took the connection but did not finish the handshake (is it at another generation, or did it refuse this ring?): %w", err)
		}
		last = err
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("dial rank %d at %s: gave up after %v (%w); last error: %v",
				peer, addr, cfg.ConnectTimeout, context.Cause(ctx), last)
		case <-t.C:
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// acceptLeft accepts connections until one per lane has completed the
// handshake as the left neighbour. Each handshake runs on its own
// goroutine, so that a stray connection that never speaks cannot hold up
// the real peer's.
func acceptLeft(ctx context.Context, cfg *RingConfig) ([]*link, error) {
	peer := mod(cfg.Rank-1, cfg.Size)
	ln := cfg.Listener
	dl := ln.(deadliner)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if d, ok := ctx.Deadline(); ok {
		dl.SetDeadline(d)
	}
	stopWake := context.AfterFunc(ctx, func() { dl.SetDeadline(time.Unix(1, 0)) })

	type result struct {
		c    net.Conn
		lane int
		err  error
	}
	results := make(chan result)
	done := make(chan struct{})
	acceptErr := make(chan error, 1)
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				acceptErr <- err
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				var lane int
				err := handshake(ctx, c, func(c net.Conn) (err error) {
					lane, err = acceptHandshake(c, cfg, peer)
					return err
				})
				select {
				case results <- result{c, lane, err}:
				case <-done:
					c.Close()
				}
			}()
		}
	}()

	won := make([]net.Conn, cfg.Lanes)
	missing := cfg.Lanes
	var refused []string
	var failure error
	loopDone := false
	for missing > 0 && failure == nil {
		select {
		case res := <-results:
			if res.err == nil {
				// A dialer that retries a lane (it missed the final
				// status) has given up on its first connection.
				if old := won[res.lane]; old != nil {
					old.Close()
				} else {
					missing--
				}
				won[res.lane] = res.c
				break
			}
			res.c.Close()
			if len(refused) < 4 {
				refused = append(refused, res.err.Error())
			}
		case err := <-acceptErr:
			loopDone = true
			why := err.Error()
			if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
				why = fmt.Sprintf("none within %v (%v)", cfg.ConnectTimeout, context.Cause(ctx))
			}
			failure = fmt.Errorf("accept rank %d on %s: %s", peer, ln.Addr(), why)
			if len(refused) > 0 {
				failure = fmt.Errorf("%w; refused: %s", failure, strings.Join(refused, "; "))
			}
		}
	}
	// Stop the accept loop and the handshakes of any strays, then give the
	// listener back as it was.
	close(done)
	stopWake()
	cancel()
	dl.SetDeadline(time.Unix(1, 0))
	if !loopDone {
		<-acceptErr
	}
	wg.Wait()
	dl.SetDeadline(time.Time{})
	if failure != nil {
		for _, c := range won {
			if c != nil {
				c.Close()
			}
		}
		return nil, failure
	}
	ls := make([]*link, len(won))
	for k, c := range won {
		ls[k] = &link{conn: c, peer: peer, addr: c.RemoteAddr().String()}
	}
	return ls, nil
}

// handshake runs f on c with c's deadline tied to ctx, and clears the
// deadline afterwards.
func handshake(ctx context.Context, c net.Conn, f func(net.Conn) error) error {
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	err := f(c)
	if !stop() && err == nil {
		err = fmt.Errorf("handshake interrupted: %w", context.Cause(ctx))
	}
	if err == nil {
		err = c.SetDeadline(time.Time{})
	}
	return err
}

// The handshake. The dialer sends its hello; the acceptor checks it and
// either refuses (status 1 and a reason) or answers with status 0, its own
// hello and a proof; the dialer checks those and sends its proof; the
// acceptor checks that and sends a final status. A proof is the
// HMAC-SHA256, keyed by the token, of a label and both hellos, which carry
// fresh nonces: the token itself never crosses the wire and old proofs are
// worthless.

const (
	helloLen     = 48
	proofLen     = sha256.Size
	helloMagic   = "MACDRING"
	helloVersion = 2
	maxReason    = 512
)

type hello struct {
	version   uint16
	little    bool
	size      int
	rank      int
	gen       uint64
	lane      int
	lanes     int
	nonce     [16]byte
	magicGood bool
}

var hostLittle = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

func makeHello(cfg *RingConfig, lane int) ([helloLen]byte, error) {
	var b [helloLen]byte
	copy(b[0:8], helloMagic)
	binary.LittleEndian.PutUint16(b[8:], helloVersion)
	if hostLittle {
		b[10] = 1
	}
	binary.LittleEndian.PutUint32(b[12:], uint32(cfg.Size))
	binary.LittleEndian.PutUint32(b[16:], uint32(cfg.Rank))
	binary.LittleEndian.PutUint16(b[20:], uint16(lane))
	binary.LittleEndian.PutUint16(b[22:], uint16(max(1, cfg.Lanes)))
	binary.LittleEndian.PutUint64(b[24:], cfg.Generation)
	_, err := rand.Read(b[32:48])
	return b, err
}

func parseHello(b *[helloLen]byte) hello {
	h := hello{
		magicGood: string(b[0:8]) == helloMagic,
		version:   binary.LittleEndian.Uint16(b[8:]),
		little:    b[10] == 1,
		size:      int(binary.LittleEndian.Uint32(b[12:])),
		rank:      int(binary.LittleEndian.Uint32(b[16:])),
		lane:      int(binary.LittleEndian.Uint16(b[20:])),
		lanes:     int(binary.LittleEndian.Uint16(b[22:])),
		gen:       binary.LittleEndian.Uint64(b[24:]),
	}
	copy(h.nonce[:], b[32:48])
	return h
}

// mismatch says why a peer's hello does not belong on this connection, or
// "". The reason goes to both ends, so it names ranks rather than "peer".
func (h hello) mismatch(cfg *RingConfig, wantRank int) string {
	switch {
	case !h.magicGood:
		return "not a macdist ring peer"
	case h.version != helloVersion:
		return fmt.Sprintf("ring protocol version %d meets version %d", h.version, helloVersion)
	case h.little != hostLittle:
		return "ranks of different byte orders"
	case h.gen != cfg.Generation:
		return fmt.Sprintf("rank %d is at generation %d, rank %d at generation %d", h.rank, h.gen, cfg.Rank, cfg.Generation)
	case h.size != cfg.Size:
		return fmt.Sprintf("rank %d has a ring of %d ranks, rank %d one of %d", h.rank, h.size, cfg.Rank, cfg.Size)
	case h.rank != wantRank:
		return fmt.Sprintf("rank %d connected to rank %d, whose neighbour there is rank %d (addresses out of date?)", h.rank, cfg.Rank, wantRank)
	case h.lanes != max(1, cfg.Lanes):
		return fmt.Sprintf("rank %d has %d lanes to each neighbour, rank %d has %d", h.rank, h.lanes, cfg.Rank, max(1, cfg.Lanes))
	case h.lane >= h.lanes:
		return fmt.Sprintf("rank %d connected lane %d of %d", h.rank, h.lane, h.lanes)
	}
	return ""
}

func proof(token, label string, dialer, acceptor *[helloLen]byte) []byte {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte(label))
	m.Write(dialer[:])
	m.Write(acceptor[:])
	return m.Sum(nil)
}

func refuse(c net.Conn, reason string) {
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	b := make([]byte, 3+len(reason))
	b[0] = 1
	binary.LittleEndian.PutUint16(b[1:], uint16(len(reason)))
	copy(b[3:], reason)
	c.Write(b)
}

// readStatus reads a status byte, and the reason of a refusal.
func readStatus(c net.Conn) error {
	var b [3]byte
	if _, err := io.ReadFull(c, b[:1]); err != nil {
		return err
	}
	switch b[0] {
	case 0:
		return nil
	case 1:
		if _, err := io.ReadFull(c, b[1:3]); err != nil {
			return err
		}
		reason := make([]byte, min(int(binary.LittleEndian.Uint16(b[1:])), maxReason))
		if _, err := io.ReadFull(c, reason); err != nil {
			return err
		}
		return fmt.Errorf("%w: %s", ErrRefused, reason)
	}
	return fmt.Errorf("%w: bad status byte %d (not a macdist ring peer?)", ErrRefused, b[0])
}

func dialHandshake(c net.Conn, cfg *RingConfig, peer, lane int) error {
	mine, err := makeHello(cfg, lane)
	if err != nil {
		return err
	}
	if _, err := c.Write(mine[:]); err != nil {
		return err
	}
	if err := readStatus(c); err != nil {
		return err
	}
	var theirs [helloLen]byte
	var theirProof [proofLen]byte
	if _, err := io.ReadFull(c, theirs[:]); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, theirProof[:]); err != nil {
		return err
	}
	h := parseHello(&theirs)
	why := h.mismatch(cfg, peer)
	if why == "" && h.lane != lane {
		why = fmt.Sprintf("rank %d answered lane %d for lane %d", h.rank, h.lane, lane)
	}
	if why != "" {
		return fmt.Errorf("%w: %s", ErrRefused, why)
	}
	if !hmac.Equal(theirProof[:], proof(cfg.Token, "accept", &mine, &theirs)) {
		return fmt.Errorf("%w: the peer's token differs from this rank's", ErrRefused)
	}
	if _, err := c.Write(proof(cfg.Token, "dial", &mine, &theirs)); err != nil {
		return err
	}
	return readStatus(c)
}

// acceptHandshake returns the lane the dialer connected.
func acceptHandshake(c net.Conn, cfg *RingConfig, peer int) (lane int, err error) {
	from := c.RemoteAddr().String()
	var theirs [helloLen]byte
	if _, err := io.ReadFull(c, theirs[:]); err != nil {
		return 0, fmt.Errorf("%s: %w", from, err)
	}
	h := parseHello(&theirs)
	if why := h.mismatch(cfg, peer); why != "" {
		refuse(c, why)
		return 0, fmt.Errorf("%s: %s", from, why)
	}
	mine, err := makeHello(cfg, h.lane)
	if err != nil {
		return 0, err
	}
	msg := append([]byte{0}, mine[:]...)
	msg = append(msg, proof(cfg.Token, "accept", &theirs, &mine)...)
	if _, err := c.Write(msg); err != nil {
		return 0, fmt.Errorf("%s: %w", from, err)
	}
	var theirProof [proofLen]byte
	if _, err := io.ReadFull(c, theirProof[:]); err != nil {
		return 0, fmt.Errorf("%s: %w", from, err)
	}
	if !hmac.Equal(theirProof[:], proof(cfg.Token, "dial", &theirs, &mine)) {
		refuse(c, "wrong token")
		return 0, fmt.Errorf("%s: wrong token", from)
	}
	_, err = c.Write([]byte{0})
	return h.lane, err
}
