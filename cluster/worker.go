package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/macdist/macdist/collective"
)

// The environment a worker receives from its agent.
const (
	EnvRank       = "MACDIST_RANK"
	EnvLocalRank  = "MACDIST_LOCAL_RANK"
	EnvLocalWorld = "MACDIST_LOCAL_WORLD"
	EnvWorld      = "MACDIST_WORLD"
	EnvNode       = "MACDIST_NODE"
	EnvNodeRank   = "MACDIST_NODE_RANK"
	EnvNodes      = "MACDIST_NODES"
	EnvGeneration = "MACDIST_GENERATION"
	EnvRingAddrs  = "MACDIST_RING_ADDRS"
	EnvRingToken  = "MACDIST_RING_TOKEN"
	EnvRestarts   = "MACDIST_RESTARTS"
	EnvMembers    = "MACDIST_MEMBERS"
	// EnvRingFD is the inherited descriptor of the worker's ring listener,
	// bound by the agent before the rendezvous so that its address could
	// be handed to the other ranks.
	EnvRingFD = "MACDIST_RING_FD"
	// EnvStatusFD is a pipe to the agent, for "step N" lines.
	EnvStatusFD = "MACDIST_STATUS_FD"
	// EnvProgressTerminal is "1" for a rank 0 whose node's stderr is a
	// terminal: its progress bar then draws, through the agent's pipe.
	EnvProgressTerminal = "MACDIST_PROGRESS_TERMINAL"
)

// WorkerSpec is one worker's place in a generation.
type WorkerSpec struct {
	Rank, LocalRank, LocalWorld, World int
	Node                               string
	NodeRank, Nodes                    int
	Generation                         int64
	RingAddrs                          []string
	RingToken                          string
	// Restarts is how many times this node restarted after failures.
	Restarts int
	// Members is the number of alive members when the generation began.
	Members int
}

// Env is spec as environment variables.
func (s WorkerSpec) Env() []string {
	return []string{
		EnvRank + "=" + strconv.Itoa(s.Rank),
		EnvLocalRank + "=" + strconv.Itoa(s.LocalRank),
		EnvLocalWorld + "=" + strconv.Itoa(s.LocalWorld),
		EnvWorld + "=" + strconv.Itoa(s.World),
		EnvNode + "=" + s.Node,
		EnvNodeRank + "=" + strconv.Itoa(s.NodeRank),
		EnvNodes + "=" + strconv.Itoa(s.Nodes),
		EnvGeneration + "=" + strconv.FormatInt(s.Generation, 10),
		EnvRingAddrs + "=" + strings.Join(s.RingAddrs, ","),
		EnvRingToken + "=" + s.RingToken,
		EnvRestarts + "=" + strconv.Itoa(s.Restarts),
		EnvMembers + "=" + strconv.Itoa(s.Members),
	}
}

// Worker is a worker process's view of its generation, read from the
// environment its agent set.
type Worker struct {
	WorkerSpec
	listener *net.TCPListener
	status   *os.File
	mu       sync.Mutex
}

// ErrNotWorker is returned by WorkerFromEnv outside a launched worker.
var ErrNotWorker = errors.New("cluster: not started by `macdist launch` (no " + EnvRank + ")")

// WorkerFromEnv reads the worker's spec and inherited descriptors.
func WorkerFromEnv() (*Worker, error) {
	if os.Getenv(EnvRank) == "" {
		return nil, ErrNotWorker
	}
	var w Worker
	var errs []error
	atoi := func(name string) int {
		n, err := strconv.Atoi(os.Getenv(name))
		if err != nil {
			errs = append(errs, fmt.Errorf("$%s: %w", name, err))
		}
		return n
	}
	w.Rank, w.LocalRank, w.LocalWorld, w.World = atoi(EnvRank), atoi(EnvLocalRank), atoi(EnvLocalWorld), atoi(EnvWorld)
	w.NodeRank, w.Nodes, w.Restarts, w.Members = atoi(EnvNodeRank), atoi(EnvNodes), atoi(EnvRestarts), atoi(EnvMembers)
	w.Generation = int64(atoi(EnvGeneration))
	w.Node, w.RingToken = os.Getenv(EnvNode), os.Getenv(EnvRingToken)
	if a := os.Getenv(EnvRingAddrs); a != "" {
		w.RingAddrs = strings.Split(a, ",")
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("cluster: worker environment: %w", errors.Join(errs...))
	}
	if len(w.RingAddrs) != w.World || w.Rank < 0 || w.Rank >= w.World {
		return nil, fmt.Errorf("cluster: worker environment: rank %d, world %d, %d ring addresses", w.Rank, w.World, len(w.RingAddrs))
	}
	if fd := os.Getenv(EnvRingFD); fd != "" {
		n, err := strconv.Atoi(fd)
		if err != nil {
			return nil, fmt.Errorf("cluster: $%s: %w", EnvRingFD, err)
		}
		f := os.NewFile(uintptr(n), "ring-listener")
		l, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("cluster: inherited ring listener: %w", err)
		}
		tl, ok := l.(*net.TCPListener)
		if !ok {
			l.Close()
			return nil, fmt.Errorf("cluster: inherited ring listener is a %T", l)
		}
		w.listener = tl
	}
	if fd := os.Getenv(EnvStatusFD); fd != "" {
		if n, err := strconv.Atoi(fd); err == nil {
			// Non-blocking, so that the runtime poller handles it and
			// write deadlines work.
			syscall.SetNonblock(n, true)
			w.status = os.NewFile(uintptr(n), "status")
		}
	}
	return &w, nil
}

// Ring connects this worker's ring. opts carries the tuning (Timeout,
// ConnectTimeout, ChunkBytes, Lanes, Device); the worker fills in its
// place in the generation: rank, size, addresses, listener, generation and
// token.
func (w *Worker) Ring(ctx context.Context, opts collective.RingConfig) (*collective.Ring, error) {
	cfg := opts
	cfg.Rank, cfg.Size, cfg.Addrs, cfg.Listener = w.Rank, w.World, w.RingAddrs, w.listener
	cfg.Generation, cfg.Token = uint64(w.Generation), w.RingToken
	return collective.NewRing(ctx, cfg)
}

// ReportStep tells the agent the training step reached, for status. It
// never blocks training for long: errors are ignored.
func (w *Worker) ReportStep(step int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.status != nil {
		w.status.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		fmt.Fprintf(w.status, "step %d\n", step)
	}
}

// WatchParent ends the process when the agent that started it goes away
// (its parent changes), a second guard besides the death signal the agent
// asks the kernel for.
func WatchParent(ctx context.Context, exit func()) {
	ppid := os.Getppid()
	go func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if os.Getppid() != ppid {
					exit()
					return
				}
			}
		}
	}()
}

// Close releases the inherited descriptors.
func (w *Worker) Close() {
	if w.listener != nil {
		w.listener.Close()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.status != nil {
		w.status.Close()
		w.status = nil
	}
}
