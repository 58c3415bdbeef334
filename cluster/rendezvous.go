package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	pb "github.com/macdist/macdist/cluster/controlpb"
	"github.com/macdist/macdist/internal/natural"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// RendezvousConfig configures the coordinator's side of the rendezvous.
type RendezvousConfig struct {
	// MinNodes and MaxNodes bound the nodes of a generation (--nnodes).
	MinNodes, MaxNodes int
	// LastCall is how long a round that has MinNodes waits for alive,
	// compatible members that have not joined yet.
	LastCall time.Duration
	// ConfigHash and Settings are this run's; a joiner must match them.
	ConfigHash string
	Settings   map[string]string
	// Members returns the alive members (the coordinator's gossip view).
	Members func() []Member
	// Self is the coordinator's node name, for Status.
	Self string
}

// Rendezvous is the coordinator's state: the current generation and its
// nodes, the open round if any, and what each node last reported. Every
// agent keeps one (it records the assignments it receives, so a node that
// becomes coordinator knows the generation), but only the coordinator's
// answers Join and Heartbeat.
type Rendezvous struct {
	cfg RendezvousConfig

	mu         sync.Mutex
	generation int64
	current    []*pb.NodeAssignment // the nodes of generation, in rank order
	round      *round
	reports    map[string]*report
	timer      *time.Timer
}

type round struct {
	joined   map[string]*pending
	minSince time.Time // when the round first had MinNodes, zero before
}

type pending struct {
	req  *pb.JoinRequest
	done chan struct{}
	resp *pb.JoinResponse
	err  error
}

type report struct {
	hb   *pb.HeartbeatRequest
	seen time.Time
}

// maxGeneration bounds the last generation a joiner reports. Each round
// counts one past the newest generation any joiner saw, so without a bound
// a joiner could make the count wrap around to negative; with it, wrapping
// takes 2⁶² rounds.
const maxGeneration = 1 << 62

// NewRendezvous returns a coordinator state at generation 0.
func NewRendezvous(cfg RendezvousConfig) *Rendezvous {
	if cfg.MaxNodes < cfg.MinNodes {
		cfg.MaxNodes = cfg.MinNodes
	}
	if cfg.Members == nil {
		cfg.Members = func() []Member { return nil }
	}
	return &Rendezvous{cfg: cfg, reports: map[string]*report{}}
}

// Observe records an assignment this node received from the coordinator,
// so that, should it become coordinator, it continues the generations.
func (r *Rendezvous) Observe(a *pb.JoinResponse) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a.Generation > r.generation {
		r.generation = a.Generation
		r.current = a.Nodes
	}
}

// Generation returns the newest generation known here.
func (r *Rendezvous) Generation() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.generation
}

// Poke re-examines the open round: the membership changed.
func (r *Rendezvous) Poke() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evaluate()
}

// Join enters req's node into the round and waits for the round to close.
func (r *Rendezvous) Join(ctx context.Context, req *pb.JoinRequest) (*pb.JoinResponse, error) {
	if req.Node == "" || len(req.WorkerAddrs) == 0 {
		return nil, status.Error(codes.InvalidArgument, "join: node name and at least one worker address required")
	}
	if req.LastGeneration < 0 || req.LastGeneration > maxGeneration {
		return nil, status.Errorf(codes.InvalidArgument, "join: node %s: last generation %d outside [0, %d]", req.Node, req.LastGeneration, int64(maxGeneration))
	}
	if req.ConfigHash != r.cfg.ConfigHash {
		return nil, status.Errorf(codes.FailedPrecondition,
			"node %s has a different configuration from the run's (coordinator %s): %s",
			req.Node, r.cfg.Self, strings.Join(DiffSettings(r.cfg.Settings, req.Settings), "; "))
	}
	wait := time.Duration(req.WaitTimeoutMs) * time.Millisecond
	if wait <= 0 {
		wait = 10 * time.Minute
	}
	r.mu.Lock()
	if r.round == nil {
		inCurrent := false
		for _, n := range r.current {
			inCurrent = inCurrent || n.Node == req.Node
		}
		if !inCurrent && len(r.current) >= r.cfg.MaxNodes {
			r.mu.Unlock()
			return nil, status.Errorf(codes.ResourceExhausted,
				"the run is full (%d of at most %d nodes): %s waits for a place", len(r.current), r.cfg.MaxNodes, req.Node)
		}
		r.round = &round{joined: map[string]*pending{}}
	}
	if old := r.round.joined[req.Node]; old != nil {
		old.err = status.Errorf(codes.Aborted, "node %s joined again", req.Node)
		close(old.done)
	}
	p := &pending{req: req, done: make(chan struct{})}
	r.round.joined[req.Node] = p
	r.evaluate()
	r.mu.Unlock()

	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-p.done:
		return p.resp, p.err
	case <-ctx.Done():
		r.leaveRound(p)
		return nil, status.FromContextError(ctx.Err()).Err()
	case <-t.C:
		r.mu.Lock()
		defer r.mu.Unlock()
		select {
		case <-p.done: // closed meanwhile
			return p.resp, p.err
		default:
		}
		n, names := 0, []string{}
		if r.round != nil {
			n = len(r.round.joined)
			for name := range r.round.joined {
				names = append(names, name)
			}
			sort.Slice(names, func(i, j int) bool { return natural.Less(names[i], names[j]) })
			delete(r.round.joined, req.Node)
			if len(r.round.joined) == 0 {
				r.round = nil
			}
		}
		return nil, status.Errorf(codes.DeadlineExceeded,
			"rendezvous: waited %v for at least %d nodes (--nnodes %d:%d), %d joined: %s",
			wait, r.cfg.MinNodes, r.cfg.MinNodes, r.cfg.MaxNodes, n, strings.Join(names, ", "))
	}
}

func (r *Rendezvous) leaveRound(p *pending) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.round != nil && r.round.joined[p.req.Node] == p {
		delete(r.round.joined, p.req.Node)
		if len(r.round.joined) == 0 {
			r.round = nil
		}
	}
}

// evaluate closes the open round if it is complete. Called with mu held.
func (r *Rendezvous) evaluate() {
	rd := r.round
	if rd == nil {
		return
	}
	n := len(rd.joined)
	if n < r.cfg.MinNodes {
		rd.minSince = time.Time{}
		return
	}
	now := time.Now()
	if rd.minSince.IsZero() {
		rd.minSince = now
	}
	complete := n >= r.cfg.MaxNodes
	if !complete {
		// Complete when every alive member that could join has.
		complete = true
		for _, m := range r.cfg.Members() {
			if m.Meta.ConfigHash == r.cfg.ConfigHash && rd.joined[m.Name] == nil {
				complete = false
				break
			}
		}
	}
	if !complete {
		if left := r.cfg.LastCall - now.Sub(rd.minSince); left > 0 {
			if r.timer != nil {
				r.timer.Stop()
			}
			r.timer = time.AfterFunc(left+time.Millisecond, r.Poke)
			return
		}
	}
	r.close()
}

// close assigns ranks to the joined nodes, in natural name order: node
// names fix the ranks, so the same nodes always get the same ones.
// Called with mu held.
func (r *Rendezvous) close() {
	rd := r.round
	r.round = nil
	names := make([]string, 0, len(rd.joined))
	gen := r.generation
	for name, p := range rd.joined {
		names = append(names, name)
		gen = max(gen, p.req.LastGeneration)
	}
	gen++
	sort.Slice(names, func(i, j int) bool { return natural.Less(names[i], names[j]) })
	var refused []string
	if len(names) > r.cfg.MaxNodes {
		names, refused = names[:r.cfg.MaxNodes], names[r.cfg.MaxNodes:]
	}
	var nodes []*pb.NodeAssignment
	var addrs []string
	for _, name := range names {
		p := rd.joined[name]
		nodes = append(nodes, &pb.NodeAssignment{Node: name, BaseRank: int32(len(addrs)), Procs: int32(len(p.req.WorkerAddrs))})
		addrs = append(addrs, p.req.WorkerAddrs...)
	}
	token := make([]byte, 16)
	rand.Read(token)
	for i, name := range names {
		p := rd.joined[name]
		p.resp = &pb.JoinResponse{
			Generation: gen, WorldSize: int32(len(addrs)), NodeRank: int32(i), BaseRank: nodes[i].BaseRank,
			RingAddrs: addrs, RingToken: hex.EncodeToString(token), Nodes: nodes,
		}
		close(p.done)
	}
	for _, name := range refused {
		p := rd.joined[name]
		p.err = status.Errorf(codes.ResourceExhausted, "the run is full (at most %d nodes): %s waits for a place", r.cfg.MaxNodes, name)
		close(p.done)
	}
	r.generation = gen
	r.current = nodes
	for name := range r.reports {
		if !contains(names, name) {
			delete(r.reports, name)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Heartbeat records a node's report and tells it whether to re-join.
func (r *Rendezvous) Heartbeat(req *pb.HeartbeatRequest) *pb.HeartbeatResponse {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reports[req.Node] = &report{hb: req, seen: time.Now()}
	return &pb.HeartbeatResponse{Generation: r.generation, RoundOpen: r.round != nil}
}

// Status describes the generation and the round; the caller adds members.
func (r *Rendezvous) Status() *pb.StatusResponse {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &pb.StatusResponse{Coordinator: r.cfg.Self, Generation: r.generation, RoundOpen: r.round != nil}
	for _, n := range r.current {
		s.WorldSize += n.Procs
		ns := &pb.NodeStatus{Node: n.Node, BaseRank: n.BaseRank, Procs: n.Procs, Step: -1, State: "unknown", LastSeenMs: -1}
		if rep := r.reports[n.Node]; rep != nil {
			ns.Step, ns.State, ns.Restarts = rep.hb.Step, rep.hb.State, rep.hb.Restarts
			ns.LastSeenMs = time.Since(rep.seen).Milliseconds()
			if rep.hb.Generation != r.generation {
				ns.State = fmt.Sprintf("%s (generation %d)", ns.State, rep.hb.Generation)
			}
		}
		s.Nodes = append(s.Nodes, ns)
	}
	if r.round != nil {
		for name := range r.round.joined {
			s.Waiting = append(s.Waiting, name)
		}
		sort.Slice(s.Waiting, func(i, j int) bool { return natural.Less(s.Waiting[i], s.Waiting[j]) })
	}
	return s
}

// DiffSettings lists, sorted, the settings whose values differ between
// want (the run's) and got (a joiner's) as "name: want (run) ≠ got (node)".
func DiffSettings(want, got map[string]string) []string {
	var out []string
	seen := map[string]bool{}
	for k, v := range want {
		seen[k] = true
		if g, ok := got[k]; !ok {
			out = append(out, fmt.Sprintf("%s: %q (run) but the node does not set it", k, v))
		} else if g != v {
			out = append(out, fmt.Sprintf("%s: %q (run) ≠ %q (node)", k, v, g))
		}
	}
	for k, v := range got {
		if !seen[k] {
			out = append(out, fmt.Sprintf("%s: the run does not set it, the node has %q", k, v))
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		out = []string{"the settings agree but their hashes differ (different macdist versions?)"}
	}
	return out
}
