package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	pb "github.com/macdist/macdist/cluster/controlpb"
	"github.com/macdist/macdist/internal/term"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// AgentConfig configures a launch agent: one per node.
type AgentConfig struct {
	// Name identifies the node (unique in the cluster); it fixes the
	// node's place in the rank order.
	Name string
	// Bind is the gossip address host:port; the control service listens
	// on port+1 (port 0: both pick free ports, for a single node).
	Bind string
	// Advertise, when set, is the gossip address others reach us at.
	Advertise string
	// Join lists gossip addresses of nodes to join; our own is skipped.
	Join    []string
	Secrets Secrets
	// MinNodes and MaxNodes bound a generation's nodes (--nnodes MIN:MAX).
	MinNodes, MaxNodes int
	// Procs is the number of worker processes on this node.
	Procs int
	// Devices is gossiped for status only.
	Devices string
	// Settings must agree on every node; their hash is gossiped.
	Settings map[string]string
	// WaitTimeout bounds a rendezvous below MinNodes; LastCall is how long
	// a round with MinNodes waits for the remaining alive members.
	WaitTimeout, LastCall time.Duration
	// MaxRestarts bounds the restarts after worker failures; membership
	// changes (a node lost, a node added) are not counted.
	MaxRestarts int
	// StopGrace is how long stopping workers get after SIGTERM before
	// SIGKILL.
	StopGrace time.Duration
	// Heartbeat is the interval of reports to the coordinator.
	Heartbeat time.Duration
	// FastGossip shortens the failure detector for loopback runs.
	FastGossip bool
	// Command returns the command of one worker; the agent adds the
	// environment (WorkerSpec.Env), the ring listener and the status pipe,
	// and the output.
	Command func(WorkerSpec) *exec.Cmd
	// Stdout and Stderr receive rank 0's output as is, and the other
	// ranks' stderr prefixed with their rank; Log receives the agent's
	// messages (nil: Stderr).
	Stdout, Stderr, Log io.Writer
	// GossipLog receives memberlist's log (nil: discarded).
	GossipLog io.Writer
	// MetricsAddr, when set, serves the agent's metrics (world size,
	// generation, restarts, members alive; label rank) on /metrics.
	MetricsAddr string
	// Ready, when set, is called once the control service and gossip run.
	Ready func(gossip, control string)
	// PublishKey, for a run that listens on loopback only, writes the key
	// where `macdist status` run by the same user finds it (LocalKey),
	// for as long as the agent runs: a standalone launch makes up a key
	// that nobody was told.
	PublishKey bool
}

// Agent runs one node's part of a run: membership, the control service,
// rendezvous, and its workers, generation after generation.
type Agent struct {
	cfg     AgentConfig
	ms      *Membership
	rv      *Rendezvous
	clients *clients
	grpc    *grpc.Server
	metrics *agentMetrics
	host    string // the host ring listeners bind
	adv     string // the host ring addresses advertise

	unpublish func() // removes the published key

	mu       sync.Mutex
	step     int64
	state    string
	restarts int
	gen      int64
	done     map[string]int64 // node → the generation it finished
}

// ErrAgentConfig wraps errors in an AgentConfig.
var ErrAgentConfig = errors.New("cluster: bad agent configuration")

func (c *AgentConfig) check() error {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: "+f, append([]any{ErrAgentConfig}, a...)...) }
	switch {
	case c.Name == "":
		return bad("node name required")
	case c.MinNodes < 1 || c.MaxNodes < c.MinNodes:
		return bad("--nnodes %d:%d: need 1 ≤ MIN ≤ MAX", c.MinNodes, c.MaxNodes)
	case c.Procs < 1:
		return bad("--nproc-per-node %d must be positive", c.Procs)
	case c.Command == nil:
		return bad("no worker command")
	}
	if c.WaitTimeout <= 0 {
		c.WaitTimeout = 10 * time.Minute
	}
	if c.LastCall <= 0 {
		c.LastCall = 3 * time.Second
	}
	if c.StopGrace <= 0 {
		c.StopGrace = 5 * time.Second
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 500 * time.Millisecond
	}
	if c.Stdout == nil {
		c.Stdout = io.Discard
	}
	if c.Stderr == nil {
		c.Stderr = io.Discard
	}
	if c.Log == nil {
		c.Log = c.Stderr
	}
	return RequireKey(c.Secrets.Key, append([]string{c.Bind, c.Advertise}, c.Join...)...)
}

// RunAgent runs the agent until its workers finish (nil), the run fails
// for good, or ctx ends.
func RunAgent(ctx context.Context, cfg AgentConfig) error {
	if err := cfg.check(); err != nil {
		return err
	}
	a := &Agent{cfg: cfg, clients: newClients(cfg.Secrets), done: map[string]int64{}, step: -1, state: "waiting"}
	if err := a.start(); err != nil {
		return err
	}
	defer a.stop()
	return a.loop(ctx)
}

func (a *Agent) logf(format string, args ...any) {
	fmt.Fprintf(a.cfg.Log, "macdist launch [%s]: %s\n", a.cfg.Name, fmt.Sprintf(format, args...))
}

func (a *Agent) start() error {
	host, port, err := net.SplitHostPort(a.cfg.Bind)
	if err != nil {
		return fmt.Errorf("%w: --bind %q: %v", ErrAgentConfig, a.cfg.Bind, err)
	}
	a.host = host
	settingsHash := HashSettings(a.cfg.Settings)
	a.rv = NewRendezvous(RendezvousConfig{
		MinNodes: a.cfg.MinNodes, MaxNodes: a.cfg.MaxNodes, LastCall: a.cfg.LastCall,
		ConfigHash: settingsHash, Settings: a.cfg.Settings, Self: a.cfg.Name,
	})
	meta := NodeMeta{Procs: a.cfg.Procs, Devices: a.cfg.Devices, ConfigHash: settingsHash, Started: time.Now().UnixNano()}
	ctlLn, err := a.listen(host, port, meta)
	if err != nil {
		return err
	}
	a.rv.cfg.Members = a.ms.Members
	a.metrics = newAgentMetrics()
	if a.cfg.MetricsAddr != "" {
		if err := a.metrics.serve(a.cfg.MetricsAddr); err != nil {
			ctlLn.Close()
			a.ms.Shutdown()
			return err
		}
	}
	a.adv, _, _ = net.SplitHostPort(a.ms.Addr())
	// The control address others dial is on the advertised host.
	_, cport, _ := net.SplitHostPort(ctlLn.Addr().String())
	meta = a.ms.Meta()
	meta.Control = net.JoinHostPort(a.adv, cport)
	if err := a.ms.SetMeta(meta); err != nil {
		ctlLn.Close()
		a.ms.Shutdown()
		return err
	}
	opts, err := a.cfg.Secrets.ServerOptions()
	if err != nil {
		ctlLn.Close()
		a.ms.Shutdown()
		return err
	}
	a.grpc = grpc.NewServer(opts...)
	pb.RegisterControlServer(a.grpc, &controlServer{rv: a.rv, ms: a.ms, clients: a.clients})
	go a.grpc.Serve(ctlLn)
	go func() {
		for range a.ms.Changes() {
			a.rv.Poke()
		}
	}()
	if a.cfg.PublishKey {
		if a.unpublish, err = PublishLocalKey(meta.Control, a.cfg.Secrets.Key); err != nil {
			a.logf("%v: `macdist status` will need --cluster-key", err)
		}
	}
	a.logf("gossip on %s, control on %s", a.ms.Addr(), meta.Control)
	if a.metrics.ln != nil {
		a.logf("metrics on http://%s/metrics", a.metrics.ln.Addr())
	}
	if a.cfg.Ready != nil {
		a.cfg.Ready(a.ms.Addr(), meta.Control)
	}
	return nil
}

// listen starts the gossip and opens the control service's listener on
// the gossip port + 1, where `macdist status --join` looks for it. With
// port 0 both are picked: a free gossip port whose next one is free too.
func (a *Agent) listen(host, port string, meta NodeMeta) (net.Listener, error) {
	for try := 1; ; try++ {
		ms, err := NewMembership(MembershipConfig{
			Name: a.cfg.Name, Bind: net.JoinHostPort(host, port), Advertise: a.cfg.Advertise, Secrets: a.cfg.Secrets,
			Fast: a.cfg.FastGossip, Log: a.cfg.GossipLog, Meta: meta,
		})
		if err != nil {
			return nil, err
		}
		gossip := net.JoinHostPort(host, strconv.Itoa(ms.Port()))
		ctlAddr, err := ControlAddr(gossip)
		var ln net.Listener
		if err == nil {
			ln, err = net.Listen("tcp", ctlAddr)
		}
		if err == nil {
			a.ms = ms
			return ln, nil
		}
		ms.Shutdown()
		if port != "0" || try == 20 {
			return nil, fmt.Errorf("cluster: control service on %s (the gossip port + 1): %w", ctlAddr, err)
		}
	}
}

func (a *Agent) stop() {
	if a.unpublish != nil {
		a.unpublish()
	}
	a.ms.Leave(2 * time.Second)
	a.metrics.close()
	// Stop, not GracefulStop: a peer's Join may still be waiting on us.
	a.grpc.Stop()
	a.clients.close()
}

// joinCluster contacts the seeds until one answers (or none is needed).
func (a *Agent) joinCluster(ctx context.Context, deadline time.Time) error {
	if len(a.cfg.Join) == 0 {
		return nil
	}
	for {
		_, err := a.ms.Join(a.cfg.Join)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%v; gave up after --rdzv-timeout %v", err, a.cfg.WaitTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

type outcome int

const (
	succeeded outcome = iota
	failed
	changed
)

func (a *Agent) loop(ctx context.Context) error {
	if err := a.joinCluster(ctx, time.Now().Add(a.cfg.WaitTimeout)); err != nil {
		return err
	}
	var failures int
	for {
		asg, lns, err := a.rendezvous(ctx)
		if err != nil {
			return err
		}
		a.rv.Observe(asg)
		a.updateMetrics(asg, failures)
		a.mu.Lock()
		a.gen, a.state, a.step = asg.Generation, "running", -1
		a.mu.Unlock()
		nodes := "nodes"
		if len(asg.Nodes) == 1 {
			nodes = "node"
		}
		a.logf("generation %d: world size %d, %d %s, this node's ranks %d..%d",
			asg.Generation, asg.WorldSize, len(asg.Nodes), nodes, asg.BaseRank, int(asg.BaseRank)+a.cfg.Procs-1)
		out, why := a.runGeneration(ctx, asg, lns, failures)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case out == succeeded:
			a.finish(asg)
			return nil
		case out == failed:
			failures++
			a.mu.Lock()
			a.restarts = failures
			a.mu.Unlock()
			if failures > a.cfg.MaxRestarts {
				return fmt.Errorf("generation %d failed: %v; no restarts left (--max-restarts %d)", asg.Generation, why, a.cfg.MaxRestarts)
			}
			a.logf("generation %d failed: %v; restarting (%d of --max-restarts %d)", asg.Generation, why, failures, a.cfg.MaxRestarts)
		default:
			a.logf("generation %d ends: %v", asg.Generation, why)
		}
		a.mu.Lock()
		a.state = "waiting"
		a.mu.Unlock()
	}
}

// rendezvous opens this node's ring listeners and joins the coordinator's
// round; it retries while the coordinator changes or is unreachable.
func (a *Agent) rendezvous(ctx context.Context) (*pb.JoinResponse, []*net.TCPListener, error) {
	lns := make([]*net.TCPListener, a.cfg.Procs)
	addrs := make([]string, a.cfg.Procs)
	closeAll := func() {
		for _, l := range lns {
			if l != nil {
				l.Close()
			}
		}
	}
	for i := range lns {
		l, err := net.Listen("tcp", net.JoinHostPort(a.host, "0"))
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("cluster: ring listener: %w", err)
		}
		lns[i] = l.(*net.TCPListener)
		_, port, _ := net.SplitHostPort(l.Addr().String())
		addrs[i] = net.JoinHostPort(a.adv, port)
	}
	deadline := time.Now().Add(a.cfg.WaitTimeout)
	full := false
	for {
		c := a.ms.Coordinator()
		req := &pb.JoinRequest{
			Node: a.cfg.Name, WorkerAddrs: addrs, Devices: a.cfg.Devices,
			ConfigHash: a.ms.Meta().ConfigHash, Settings: a.cfg.Settings,
			LastGeneration: a.rv.Generation(), WaitTimeoutMs: max(1, time.Until(deadline).Milliseconds()),
		}
		if full {
			req.WaitTimeoutMs = a.cfg.WaitTimeout.Milliseconds()
		}
		resp, err := a.join(ctx, c, req)
		if err == nil {
			return resp, lns, nil
		}
		code := status.Code(err)
		switch {
		case ctx.Err() != nil:
			closeAll()
			return nil, nil, ctx.Err()
		case code == codes.FailedPrecondition || code == codes.InvalidArgument ||
			code == codes.Unauthenticated || code == codes.DeadlineExceeded:
			closeAll()
			return nil, nil, fmt.Errorf("rendezvous with %s: %s", c.Name, status.Convert(err).Message())
		case code == codes.ResourceExhausted:
			if !full {
				a.logf("%s", status.Convert(err).Message())
			}
			full = true
			deadline = time.Now().Add(a.cfg.WaitTimeout)
		case time.Now().After(deadline):
			closeAll()
			return nil, nil, fmt.Errorf("rendezvous: no coordinator answered within --rdzv-timeout %v: %v", a.cfg.WaitTimeout, err)
		}
		select {
		case <-ctx.Done():
			closeAll()
			return nil, nil, ctx.Err()
		case <-time.After(map[bool]time.Duration{true: 2 * time.Second, false: 300 * time.Millisecond}[full]):
		}
	}
}

func (a *Agent) join(ctx context.Context, c Member, req *pb.JoinRequest) (*pb.JoinResponse, error) {
	cl, err := a.clients.get(c.Meta.Control)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(req.WaitTimeoutMs)*time.Millisecond+10*time.Second)
	defer cancel()
	// Wake up if the coordinator dies meanwhile: its successor holds the
	// next round.
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
				if a.ms.Coordinator().Name != c.Name {
					cancel()
					return
				}
			}
		}
	}()
	resp, err := cl.Join(ctx, req)
	if err != nil && status.Code(err) == codes.Canceled && ctx.Err() != nil {
		return nil, status.Error(codes.Unavailable, "coordinator changed")
	}
	return resp, err
}

// worker is one running worker process.
type worker struct {
	spec WorkerSpec
	cmd  *exec.Cmd
	exit chan error
}

func (a *Agent) runGeneration(ctx context.Context, asg *pb.JoinResponse, lns []*net.TCPListener, restarts int) (outcome, error) {
	workers := make([]*worker, 0, len(lns))
	exits := make(chan *worker, len(lns))
	defer func() {
		for _, l := range lns {
			l.Close()
		}
		a.stopWorkers(workers)
	}()
	for i, l := range lns {
		spec := WorkerSpec{
			Rank: int(asg.BaseRank) + i, LocalRank: i, LocalWorld: len(lns), World: int(asg.WorldSize),
			Node: a.cfg.Name, NodeRank: int(asg.NodeRank), Nodes: len(asg.Nodes), Generation: asg.Generation,
			RingAddrs: asg.RingAddrs, RingToken: asg.RingToken, Restarts: restarts, Members: len(a.ms.Members()),
		}
		w, err := a.spawn(spec, l, exits)
		if err != nil {
			return failed, err
		}
		workers = append(workers, w)
		// The worker holds its own copy of the listener now.
		l.Close()
	}
	nodes := map[string]bool{}
	for _, n := range asg.Nodes {
		nodes[n.Node] = true
	}
	tick := time.NewTicker(a.cfg.Heartbeat)
	defer tick.Stop()
	running := len(workers)
	for {
		select {
		case <-ctx.Done():
			return failed, ctx.Err()
		case w := <-exits:
			if err := <-w.exit; err != nil {
				// A joining node ends every worker's generation too, and
				// one may see its ring break before its agent hears of the
				// new round: that is no failure to count.
				if why := a.heartbeat(ctx, asg.Generation); why != "" {
					return changed, fmt.Errorf("%s (rank %d exited: %v)", why, w.spec.Rank, err)
				}
				return failed, fmt.Errorf("rank %d (pid %d): %v", w.spec.Rank, w.cmd.Process.Pid, err)
			}
			if running--; running == 0 {
				return succeeded, nil
			}
		case <-a.ms.Changes():
			a.rv.Poke()
			a.updateMetrics(asg, restarts)
			if lost := a.lostNodes(nodes, asg.Generation); len(lost) > 0 {
				return changed, fmt.Errorf("lost node(s) %s", strings.Join(lost, ", "))
			}
		case <-tick.C:
			a.updateMetrics(asg, restarts)
			if why := a.heartbeat(ctx, asg.Generation); why != "" {
				return changed, errors.New(why)
			}
			if lost := a.lostNodes(nodes, asg.Generation); len(lost) > 0 {
				return changed, fmt.Errorf("lost node(s) %s", strings.Join(lost, ", "))
			}
		}
	}
}

func (a *Agent) updateMetrics(asg *pb.JoinResponse, restarts int) {
	a.metrics.set(a.cfg.Name, int(asg.BaseRank), a.cfg.Procs, int(asg.WorldSize), asg.Generation, restarts, len(a.ms.Members()))
}

// lostNodes names the nodes of the generation that are gone without having
// finished it.
func (a *Agent) lostNodes(nodes map[string]bool, gen int64) []string {
	alive := map[string]bool{}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, m := range a.ms.Members() {
		alive[m.Name] = true
		if m.Meta.Done > a.done[m.Name] {
			a.done[m.Name] = m.Meta.Done
		}
	}
	var lost []string
	for n := range nodes {
		if !alive[n] && a.done[n] < gen {
			lost = append(lost, n)
		}
	}
	return lost
}

// heartbeat reports to the coordinator and returns why this generation
// must end, or "" to go on. An unreachable coordinator is no reason: the
// failure detector speaks for dead nodes.
func (a *Agent) heartbeat(ctx context.Context, gen int64) string {
	c := a.ms.Coordinator()
	cl, err := a.clients.get(c.Meta.Control)
	if err != nil {
		return ""
	}
	a.mu.Lock()
	req := &pb.HeartbeatRequest{Node: a.cfg.Name, Generation: gen, Step: a.step, State: a.state, Restarts: int32(a.restarts)}
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := cl.Heartbeat(ctx, req)
	switch {
	case err != nil:
		return ""
	case resp.RoundOpen:
		return "a new rendezvous round is open (a node failed or joined)"
	case resp.Generation > gen:
		return fmt.Sprintf("the run moved on to generation %d", resp.Generation)
	}
	return ""
}

// spawn starts one worker with its ring listener as fd 3 and a status pipe
// as fd 4.
func (a *Agent) spawn(spec WorkerSpec, l *net.TCPListener, exits chan<- *worker) (*worker, error) {
	lf, err := l.File()
	if err != nil {
		return nil, fmt.Errorf("cluster: ring listener of rank %d: %w", spec.Rank, err)
	}
	defer lf.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("cluster: status pipe: %w", err)
	}
	defer pw.Close()
	cmd := a.cfg.Command(spec)
	cmd.Env = append(append(cmd.Environ(), spec.Env()...), EnvRingFD+"=3", EnvStatusFD+"=4")
	cmd.ExtraFiles = []*os.File{lf, pw}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// A worker must not outlive its agent: a dead agent's workers would
		// hold ring ranks nobody supervises.
		Pdeathsig: syscall.SIGKILL,
	}
	// Rank 0's stdout (results) is the node's; every rank's log lines are
	// marked with its rank. Rank 0 draws its progress bar when the node's
	// stderr is a terminal, which it cannot see through the pipe.
	cmd.Stdout = io.Discard
	if spec.Rank == 0 {
		cmd.Stdout = a.cfg.Stdout
		if term.IsTerminal(a.cfg.Stderr) {
			cmd.Env = append(cmd.Env, EnvProgressTerminal+"=1")
		}
	}
	er, ew := io.Pipe()
	cmd.Stderr = ew
	copied := make(chan struct{})
	go func() {
		prefixLines(a.cfg.Stderr, er, fmt.Sprintf("[rank %d] ", spec.Rank))
		close(copied)
	}()
	pending := []func(){func() { ew.Close(); <-copied }}
	if err := cmd.Start(); err != nil {
		pr.Close()
		for _, f := range pending {
			f()
		}
		return nil, fmt.Errorf("cluster: starting rank %d: %w", spec.Rank, err)
	}
	a.logf("rank %d: pid %d", spec.Rank, cmd.Process.Pid)
	w := &worker{spec: spec, cmd: cmd, exit: make(chan error, 1)}
	go a.readStatus(pr, spec.Rank)
	go func() {
		err := cmd.Wait()
		for _, f := range pending {
			f()
		}
		w.exit <- err
		exits <- w
	}()
	return w, nil
}

// prefixLines copies r to w with prefix before every line. A carriage
// return also starts a line, so that a progress bar redrawn in place keeps
// its prefix.
func prefixLines(w io.Writer, r io.Reader, prefix string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
			return i + 1, data[:i+1], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasSuffix(line, "\n") && !strings.HasSuffix(line, "\r") {
			line += "\n"
		}
		io.WriteString(w, prefix+line)
	}
	io.Copy(io.Discard, r)
}

// readStatus follows a worker's status pipe: lines "step N".
func (a *Agent) readStatus(r io.ReadCloser, rank int) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "step" {
			if n, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				a.mu.Lock()
				a.step = max(a.step, n)
				a.mu.Unlock()
			}
		}
	}
}

// stopWorkers ends every worker still running: SIGTERM (with SIGCONT, for
// a stopped one), SIGKILL after the grace period.
func (a *Agent) stopWorkers(ws []*worker) {
	var wg sync.WaitGroup
	for _, w := range ws {
		if w.cmd.ProcessState != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pgid := -w.cmd.Process.Pid
			syscall.Kill(pgid, syscall.SIGTERM)
			syscall.Kill(pgid, syscall.SIGCONT)
			select {
			case err := <-w.exit:
				w.exit <- err
			case <-time.After(a.cfg.StopGrace):
				syscall.Kill(pgid, syscall.SIGKILL)
				err := <-w.exit
				w.exit <- err
			}
		}()
	}
	wg.Wait()
}

// finish announces that this node's workers are done, then waits a while
// for the other nodes of the generation to finish too, so that its leaving
// does not look like a failure to one still running.
func (a *Agent) finish(asg *pb.JoinResponse) {
	a.mu.Lock()
	a.state = "succeeded"
	a.mu.Unlock()
	meta := a.ms.Meta()
	meta.Done = asg.Generation
	if err := a.ms.SetMeta(meta); err != nil {
		a.logf("%v", err)
	}
	a.logf("generation %d: this node's workers finished", asg.Generation)
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		waiting := false
		alive := map[string]Member{}
		for _, m := range a.ms.Members() {
			alive[m.Name] = m
		}
		for _, n := range asg.Nodes {
			if m, ok := alive[n.Node]; ok && m.Meta.Done < asg.Generation {
				waiting = true
			}
		}
		if !waiting {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}
