package collective

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// peerConn is a connection whose peer's bytes are given: reads come from r,
// writes are kept. Only what the handshake calls is implemented.
type peerConn struct {
	net.Conn
	r       io.Reader
	written bytes.Buffer
}

func (c *peerConn) Read(b []byte) (int, error)  { return c.r.Read(b) }
func (c *peerConn) Write(b []byte) (int, error) { return c.written.Write(b) }
func (c *peerConn) RemoteAddr() net.Addr        { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 7} }

// fuzzRing is the configuration of the rank the handshake targets run as:
// rank 1 of 3, two lanes, whose left neighbour is rank 0.
func fuzzRing() *RingConfig {
	return &RingConfig{Rank: 1, Size: 3, Generation: 5, Token: "secret", Lanes: 2}
}

// helloFrom is the hello rank of cfg's ring would send on lane.
func helloFrom(t testing.TB, cfg *RingConfig, rank, lane int) []byte {
	c := *cfg
	c.Rank = rank
	h, err := makeHello(&c, lane)
	if err != nil {
		t.Fatal(err)
	}
	return h[:]
}

// FuzzHandshakeAccept is the accepting end of the ring's handshake reading
// a dialer's bytes. Without the token no dialer gets through; a hello is
// answered (status 0, a hello and a proof) exactly when it belongs on the
// connection, and refused with the reason otherwise.
func FuzzHandshakeAccept(f *testing.F) {
	cfg := fuzzRing()
	good := helloFrom(f, cfg, 0, 1)
	f.Add(good)
	f.Add(append(append([]byte{}, good...), make([]byte, proofLen)...))
	f.Add(helloFrom(f, cfg, 2, 0))
	f.Add(good[:20])
	f.Add(bytes.Repeat([]byte{0xff}, helloLen+proofLen))
	f.Fuzz(func(t *testing.T, in []byte) {
		c := &peerConn{r: bytes.NewReader(in)}
		_, err := acceptHandshake(c, cfg, 0)
		if err == nil {
			t.Fatal("a dialer without the token was accepted")
		}
		if !strings.HasPrefix(err.Error(), "192.0.2.1:7: ") {
			t.Fatalf("error %q does not name the dialer", err)
		}
		if len(in) < helloLen {
			if c.written.Len() != 0 {
				t.Fatalf("answered a truncated hello with %d bytes", c.written.Len())
			}
			return
		}
		out := c.written.Bytes()
		why := parseHello((*[helloLen]byte)(in)).mismatch(cfg, 0)
		if why != "" {
			if len(why) > maxReason {
				why = why[:maxReason]
			}
			if len(out) != 3+len(why) || out[0] != 1 || int(binary.LittleEndian.Uint16(out[1:])) != len(why) || string(out[3:]) != why {
				t.Fatalf("hello refused for %q, but the refusal sent is %q", why, out)
			}
			return
		}
		if len(out) < 1+helloLen+proofLen || out[0] != 0 {
			t.Fatalf("a hello that fits was not answered: %q", out)
		}
		mine := parseHello((*[helloLen]byte)(out[1:]))
		if mine.mismatch(&RingConfig{Rank: 0, Size: 3, Generation: 5, Lanes: 2}, 1) != "" || mine.lane != parseHello((*[helloLen]byte)(in)).lane {
			t.Fatalf("the answer's hello %+v does not fit the dialer's", mine)
		}
	})
}

// FuzzHandshakeDial is the dialing end reading an acceptor's bytes: a
// status, maybe a refusal's reason, a hello and a proof. Without the token
// no acceptor gets through, and a refusal's reason reaches the error.
func FuzzHandshakeDial(f *testing.F) {
	cfg := fuzzRing()
	answer := append([]byte{0}, helloFrom(f, cfg, 2, 1)...)
	f.Add(append(answer, make([]byte, proofLen+1)...))
	f.Add(append([]byte{1, 5, 0}, "nope!"...))
	f.Add([]byte{1, 0xff, 0xff, 'x'})
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, in []byte) {
		c := &peerConn{r: bytes.NewReader(in)}
		err := dialHandshake(c, cfg, 2, 1)
		if err == nil {
			t.Fatal("an acceptor without the token was trusted")
		}
		if len(in) >= 3 && in[0] == 1 {
			n := min(int(binary.LittleEndian.Uint16(in[1:])), maxReason)
			if len(in) >= 3+n && !strings.HasSuffix(err.Error(), ": "+string(in[3:3+n])) {
				t.Fatalf("refusal %q reported as %q", in[3:3+n], err)
			}
		}
		// The dialer sends its hello, and a proof only to an acceptor whose
		// own proof checked out, which needs the token.
		if c.written.Len() != helloLen {
			t.Fatalf("dialer wrote %d bytes", c.written.Len())
		}
	})
}

// FuzzRingStream is a two-rank ring whose rank 0 receives, in a
// collective, what the fuzzer makes rank 1 send: any stream that is not
// the collective rank 0 issued is an error naming rank 1, never a panic or
// a hang (rank 1's connection is closed after the bytes, so rank 0 reads
// to its end).
func FuzzRingStream(f *testing.F) {
	var good [headerLen]byte
	header{kind: kindAllReduce, op: Sum, seq: 0, n: 3}.encode(&good)
	f.Add(append(good[:], make([]byte, 4*4)...), uint8(0))
	header{kind: kindBroadcast, root: 1, seq: 0, n: 3}.encode(&good)
	f.Add(append(good[:], make([]byte, 3*4)...), uint8(2))
	header{kind: kindAllReduce, op: Avg, seq: 0, n: 1 << 40}.encode(&good)
	f.Add(good[:], uint8(1))
	f.Add([]byte("MACDRING"), uint8(0))
	f.Fuzz(func(t *testing.T, in []byte, which uint8) {
		rings := mustRings(t, 2, func(c *RingConfig) { c.Timeout = time.Minute })
		defer rings[0].Close()
		defer rings[1].Close()
		// Rank 1's right neighbour is rank 0: its connection there is the
		// one rank 0 receives on.
		conn := rings[1].lanes[0].right.conn
		go func() {
			conn.Write(in)
			conn.(*net.TCPConn).CloseWrite()
		}()
		buf := dev.Alloc(3)
		var err error
		var want header
		switch which % 3 {
		case 0:
			want = header{kind: kindAllReduce, op: Sum, n: 3}
			err = rings[0].AllReduce(context.Background(), buf, Sum)
		case 1:
			want = header{kind: kindAllReduce, op: Avg, n: 3}
			err = rings[0].AllReduce(context.Background(), buf, Avg)
		case 2:
			want = header{kind: kindBroadcast, root: 1, n: 3}
			err = rings[0].Broadcast(context.Background(), buf, 1)
		}
		if err == nil {
			// The reserved bytes of a header are not read.
			if len(in) < headerLen {
				t.Fatalf("the collective succeeded on a %d-byte stream", len(in))
			}
			if got, ok := decodeHeader((*[headerLen]byte)(in)); !ok || got != want {
				t.Fatalf("the collective %v succeeded on a stream that starts with %v (magic %v)", want, got, ok)
			}
			return
		}
		if !strings.Contains(err.Error(), "rank 1") && !errors.Is(err, ErrMismatch) {
			t.Fatalf("error %q does not name the peer", err)
		}
	})
}
