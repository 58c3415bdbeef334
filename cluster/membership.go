package cluster

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/macdist/macdist/internal/natural"
)

// NodeMeta is what a node tells the others about itself through gossip.
// memberlist caps it at 512 bytes, hence the short JSON names.
type NodeMeta struct {
	// Control is the address of the node's control service.
	Control string `json:"c"`
	// Procs is the number of worker processes the node runs.
	Procs int `json:"p"`
	// Devices names what the workers compute on ("cpu", "cuda:0,cuda:1").
	Devices string `json:"d,omitempty"`
	// ConfigHash identifies the settings that must agree across the run.
	ConfigHash string `json:"h"`
	// Started orders the coordinator election (unix nanoseconds).
	Started int64 `json:"t"`
	// Done is the generation whose workers all finished successfully on
	// this node, 0 while none has: its departure is then no failure.
	Done int64 `json:"x,omitempty"`
}

// Member is an alive node as the local memberlist sees it.
type Member struct {
	Name string
	Addr string // gossip address
	Meta NodeMeta
}

// MembershipConfig configures Membership.
type MembershipConfig struct {
	// Name identifies the node; it must be unique in the cluster.
	Name string
	// Bind is the gossip address, host:port (TCP and UDP); port 0 picks one.
	Bind string
	// Advertise, when set, is the address others reach this node at.
	Advertise string
	// Secrets.Gossip, when set, encrypts every gossip message; a node with
	// another key can neither join nor be heard.
	Secrets Secrets
	Meta    NodeMeta
	// Fast shortens the failure detector's intervals for tests on one
	// machine; the default suits a LAN.
	Fast bool
	// Log receives memberlist's own log lines; nil discards them.
	Log io.Writer
}

// Membership is this node's view of the cluster, kept by memberlist's
// gossip and failure detector (SWIM).
type Membership struct {
	ml      *memberlist.Memberlist
	mu      sync.Mutex
	meta    NodeMeta
	changes chan struct{}
	port    int
}

// NewMembership starts gossiping on cfg.Bind. It joins nobody: call Join.
func NewMembership(cfg MembershipConfig) (*Membership, error) {
	host, portStr, err := net.SplitHostPort(cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("cluster: gossip address %q: %w", cfg.Bind, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("cluster: gossip port %q: %w", portStr, err)
	}
	if err := RequireKey(cfg.Secrets.Key, cfg.Bind, cfg.Advertise); err != nil {
		return nil, err
	}
	m := &Membership{meta: cfg.Meta, changes: make(chan struct{}, 1)}
	c := memberlist.DefaultLANConfig()
	if IsLoopback(host) {
		c = memberlist.DefaultLocalConfig()
	}
	c.Name = cfg.Name
	c.BindAddr = host
	c.BindPort = port
	c.AdvertisePort = port
	if cfg.Advertise != "" {
		ah, ap, err := net.SplitHostPort(cfg.Advertise)
		if err != nil {
			return nil, fmt.Errorf("cluster: advertise address %q: %w", cfg.Advertise, err)
		}
		c.AdvertiseAddr = ah
		if c.AdvertisePort, err = strconv.Atoi(ap); err != nil {
			return nil, fmt.Errorf("cluster: advertise port %q: %w", ap, err)
		}
	}
	if cfg.Fast {
		// A dead node is declared within about 3 s on loopback: a node
		// is suspected after a probe unanswered for 250 ms and dead when
		// it has not refuted that in SuspicionMult·ProbeInterval, 2 s. At
		// 0.9 s, on a 2-core machine crowded with test processes, the
		// peers of a 3-node launch declared a live agent dead, twice in
		// one run.
		c.ProbeInterval = 500 * time.Millisecond
		c.ProbeTimeout = 250 * time.Millisecond
		c.SuspicionMult = 4
		c.GossipInterval = 50 * time.Millisecond
		c.PushPullInterval = 5 * time.Second
	}
	c.SecretKey = cfg.Secrets.Gossip
	c.Delegate = (*delegate)(m)
	c.Events = (*events)(m)
	out := cfg.Log
	if out == nil {
		out = io.Discard
	}
	c.Logger = log.New(out, "memberlist: ", log.LstdFlags)
	ml, err := memberlist.Create(c)
	if err != nil {
		return nil, fmt.Errorf("cluster: starting gossip on %s: %w", cfg.Bind, err)
	}
	m.ml = ml
	m.port = c.BindPort // memberlist's pick, for port 0
	return m, nil
}

// Join contacts the given gossip addresses; it succeeds when at least one
// answered. Addresses equal to this node's own are skipped.
func (m *Membership) Join(addrs []string) (int, error) {
	self := m.ml.LocalNode().Address()
	var others []string
	for _, a := range addrs {
		if a != self && a != m.ml.LocalNode().FullAddress().Addr {
			others = append(others, a)
		}
	}
	if len(others) == 0 {
		return 0, nil
	}
	n, err := m.ml.Join(others)
	if err != nil {
		// memberlist's multi-error spans lines; one line reads better.
		msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "1 error occurred:", "")), " ")
		return n, fmt.Errorf("cluster: joining %v: %s (same --cluster-key on every node?)", others, strings.TrimPrefix(msg, "* "))
	}
	return n, nil
}

// Addr is the gossip address this node is reached at.
func (m *Membership) Addr() string { return m.ml.LocalNode().Address() }

// Port is the gossip port this node listens on (TCP and UDP).
func (m *Membership) Port() int { return m.port }

// Name is this node's name.
func (m *Membership) Name() string { return m.ml.LocalNode().Name }

// Members returns the alive nodes, this one included, in election order:
// oldest first (by start time), then by name.
func (m *Membership) Members() []Member {
	var out []Member
	for _, n := range m.ml.Members() {
		var meta NodeMeta
		if err := json.Unmarshal(n.Meta, &meta); err != nil {
			continue // not one of ours, or not yet announced
		}
		out = append(out, Member{Name: n.Name, Addr: n.Address(), Meta: meta})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Meta.Started != out[j].Meta.Started {
			return out[i].Meta.Started < out[j].Meta.Started
		}
		return natural.Less(out[i].Name, out[j].Name)
	})
	return out
}

// Coordinator returns the member that runs the rendezvous: the oldest
// alive one. Being oldest, it changes only when it dies, and a late
// joiner never takes the role over.
func (m *Membership) Coordinator() Member {
	ms := m.Members()
	if len(ms) == 0 {
		return Member{Name: m.Name(), Addr: m.Addr(), Meta: m.Meta()}
	}
	return ms[0]
}

// Meta returns this node's metadata.
func (m *Membership) Meta() NodeMeta {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.meta
}

// SetMeta changes this node's metadata and gossips it.
func (m *Membership) SetMeta(meta NodeMeta) error {
	m.mu.Lock()
	m.meta = meta
	m.mu.Unlock()
	if err := m.ml.UpdateNode(5 * time.Second); err != nil {
		return fmt.Errorf("cluster: announcing metadata: %w", err)
	}
	return nil
}

// Changes receives a value (coalesced) whenever a node joins, leaves, dies
// or changes its metadata.
func (m *Membership) Changes() <-chan struct{} { return m.changes }

func (m *Membership) changed() {
	select {
	case m.changes <- struct{}{}:
	default:
	}
}

// Leave tells the others that this node is going, then stops gossiping.
func (m *Membership) Leave(timeout time.Duration) error {
	err := m.ml.Leave(timeout)
	if serr := m.ml.Shutdown(); err == nil {
		err = serr
	}
	return err
}

// Shutdown stops gossiping without telling anyone, as a crash would.
func (m *Membership) Shutdown() error { return m.ml.Shutdown() }

type delegate Membership

func (d *delegate) NodeMeta(limit int) []byte {
	js, _ := json.Marshal((*Membership)(d).Meta())
	if len(js) > limit {
		// Devices is the only open-ended field.
		meta := (*Membership)(d).Meta()
		meta.Devices = ""
		js, _ = json.Marshal(meta)
	}
	return js
}
func (d *delegate) NotifyMsg([]byte)                {}
func (d *delegate) GetBroadcasts(int, int) [][]byte { return nil }
func (d *delegate) LocalState(bool) []byte          { return nil }
func (d *delegate) MergeRemoteState([]byte, bool)   {}
func (e *events) NotifyJoin(*memberlist.Node)       { (*Membership)(e).changed() }
func (e *events) NotifyLeave(*memberlist.Node)      { (*Membership)(e).changed() }
func (e *events) NotifyUpdate(*memberlist.Node)     { (*Membership)(e).changed() }

type events Membership
