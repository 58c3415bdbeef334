package collective

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/macdist/macdist/kernels/cpu"
)

// The multi-process tests re-execute this test binary as ring ranks: with
// childEnv set, TestMain runs childMain instead of the tests.
const childEnv = "MACDIST_COLLECTIVE_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(childMain(mode))
	}
	os.Exit(m.Run())
}

type childCase struct {
	n  int
	op Op
}

var childCases = []childCase{{1, Sum}, {2, Avg}, {1001, Sum}, {1001, Avg}, {1 << 18, Avg}}

func digest(x []float32) string {
	h := sha256.Sum256(asBytes(x))
	return hex.EncodeToString(h[:8])
}

// childMain is one rank: its listener is file descriptor 3, the rest comes
// from the environment.
func childMain(mode string) int {
	rank, _ := strconv.Atoi(os.Getenv("RING_RANK"))
	addrs := strings.Split(os.Getenv("RING_ADDRS"), ",")
	ln, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		fmt.Println("error:", err)
		return 2
	}
	timeout, err := time.ParseDuration(os.Getenv("RING_TIMEOUT"))
	if err != nil {
		timeout = 10 * time.Second
	}
	ctx := context.Background()
	ring, err := NewRing(ctx, RingConfig{Rank: rank, Size: len(addrs), Addrs: addrs, Listener: ln,
		Generation: 3, Token: "process-test", Timeout: timeout, ConnectTimeout: 30 * time.Second})
	if err != nil {
		fmt.Println("error:", err)
		return 2
	}
	defer ring.Close()
	d := cpu.New()
	switch mode {
	case "reduce":
		for _, c := range childCases {
			buf := d.Alloc(c.n)
			d.Upload(buf, inputs(len(addrs), c.n, uint64(c.n))[rank])
			if err := ring.AllReduce(ctx, buf, c.op); err != nil {
				fmt.Println("error:", err)
				return 3
			}
			fmt.Println(c.n, c.op, digest(cpu.Data(buf)))
		}
		if err := ring.Barrier(ctx); err != nil {
			fmt.Println("error:", err)
			return 3
		}
	case "loop":
		buf := d.Alloc(1 << 16)
		for i := 0; ; i++ {
			if err := ring.AllReduce(ctx, buf, Avg); err != nil {
				fmt.Println("error:", err)
				return 3
			}
			if i == 0 {
				fmt.Println("ready")
			}
		}
	}
	return 0
}

type child struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr bytes.Buffer
}

// startChildren starts one process per rank, each inheriting its listener,
// so that no port is chosen before it is bound.
func startChildren(t *testing.T, ranks int, mode string, env ...string) []*child {
	t.Helper()
	ls, addrs := listeners(t, ranks)
	children := make([]*child, ranks)
	for r := range ranks {
		f, err := ls[r].(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		c := &child{cmd: exec.Command(os.Args[0], "-test.run=^$"), lines: make(chan string, 100)}
		c.cmd.Env = append(os.Environ(), childEnv+"="+mode, "RING_RANK="+strconv.Itoa(r), "RING_ADDRS="+strings.Join(addrs, ","))
		c.cmd.Env = append(c.cmd.Env, env...)
		c.cmd.ExtraFiles = []*os.File{f}
		c.cmd.Stderr = &c.stderr
		out, err := c.cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		go func() {
			s := bufio.NewScanner(out)
			for s.Scan() {
				c.lines <- s.Text()
			}
			io.Copy(io.Discard, out)
			close(c.lines)
		}()
		t.Cleanup(func() {
			c.cmd.Process.Signal(syscall.SIGCONT)
			c.cmd.Process.Kill()
			c.cmd.Wait()
		})
		children[r] = c
	}
	for _, l := range ls {
		l.Close() // the children hold their own copies
	}
	return children
}

func (c *child) next(t *testing.T, rank int, within time.Duration) string {
	t.Helper()
	select {
	case line, ok := <-c.lines:
		if !ok {
			t.Fatalf("rank %d exited early; stderr:\n%s", rank, c.stderr.String())
		}
		return line
	case <-time.After(within):
		t.Fatalf("rank %d said nothing for %v", rank, within)
	}
	return ""
}

// TestMultiProcess forms a ring of three processes on loopback and checks
// their all-reduces bit for bit against the in-process group, which sums
// in the ring's order.
func TestMultiProcess(t *testing.T) {
	const ranks = 3
	children := startChildren(t, ranks, "reduce")
	local := NewLocal(ranks)
	for _, c := range childCases {
		xs := inputs(ranks, c.n, uint64(c.n))
		want := fmt.Sprint(c.n, " ", c.op, " ", digest(allReduce(t, local, xs, c.op)[0]))
		for r, ch := range children {
			if got := ch.next(t, r, time.Minute); got != want {
				t.Errorf("rank %d: %q, want %q", r, got, want)
			}
		}
	}
	for r, ch := range children {
		if err := ch.cmd.Wait(); err != nil {
			t.Errorf("rank %d: %v; stderr:\n%s", r, err, ch.stderr.String())
		}
	}
}

// TestMultiProcessKill kills one of three ranks (SIGKILL) while they
// all-reduce in a loop: the other two must fail, not hang, well within their
// timeout (a minute, beyond the bound below however slow the machine),
// since the dead rank's connections close with it.
func TestMultiProcessKill(t *testing.T) {
	const ranks = 3
	children := startChildren(t, ranks, "loop", "RING_TIMEOUT=1m")
	for r, ch := range children {
		if got := ch.next(t, r, time.Minute); got != "ready" {
			t.Fatalf("rank %d: %q", r, got)
		}
	}
	t0 := time.Now()
	if err := children[1].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, r := range []int{0, 2} {
		line := children[r].next(t, r, 20*time.Second)
		if !strings.HasPrefix(line, "error:") {
			t.Errorf("rank %d: %q", r, line)
		}
		t.Logf("rank %d after %v: %s", r, time.Since(t0).Round(time.Millisecond), line)
	}
}

// TestMultiProcessStall stops one of three ranks (SIGSTOP): its connections
// stay open, so only the timeout can tell the others, and it must.
func TestMultiProcessStall(t *testing.T) {
	const ranks, timeout = 3, 2 * time.Second
	children := startChildren(t, ranks, "loop", "RING_TIMEOUT="+timeout.String())
	for r, ch := range children {
		if got := ch.next(t, r, time.Minute); got != "ready" {
			t.Fatalf("rank %d: %q", r, got)
		}
	}
	t0 := time.Now()
	if err := children[1].cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for _, r := range []int{0, 2} {
		// A hang's bound, with room for a loaded machine.
		line := children[r].next(t, r, timeout+20*time.Second)
		if !strings.HasPrefix(line, "error:") {
			t.Errorf("rank %d: %q", r, line)
		}
		t.Logf("rank %d after %v: %s", r, time.Since(t0).Round(time.Millisecond), line)
	}
}
