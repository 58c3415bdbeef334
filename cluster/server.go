package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"sort"
	"sync"
	"time"

	pb "github.com/macdist/macdist/cluster/controlpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// HashSettings is the config hash of settings: SHA-256 over the sorted
// name=value lines, shortened.
func HashSettings(settings map[string]string) string {
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\n", k, settings[k])
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// controlServer is the gRPC face of an agent: Join and Heartbeat go to the
// rendezvous when this node coordinates, Status is answered anywhere.
type controlServer struct {
	pb.UnimplementedControlServer
	rv      *Rendezvous
	ms      *Membership
	clients *clients
}

func (s *controlServer) coordinating() (Member, bool) {
	c := s.ms.Coordinator()
	return c, c.Name == s.ms.Name()
}

func (s *controlServer) Join(ctx context.Context, req *pb.JoinRequest) (*pb.JoinResponse, error) {
	if c, ok := s.coordinating(); !ok {
		return nil, status.Errorf(codes.Unavailable, "%s is not the coordinator (%s is)", s.ms.Name(), c.Name)
	}
	return s.rv.Join(ctx, req)
}

func (s *controlServer) Heartbeat(_ context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
	if c, ok := s.coordinating(); !ok {
		return nil, status.Errorf(codes.Unavailable, "%s is not the coordinator (%s is)", s.ms.Name(), c.Name)
	}
	return s.rv.Heartbeat(req), nil
}

func (s *controlServer) Status(ctx context.Context, req *pb.StatusRequest) (*pb.StatusResponse, error) {
	c, ok := s.coordinating()
	if !ok {
		cl, err := s.clients.get(c.Meta.Control)
		if err == nil {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if resp, err := cl.Status(ctx, req); err == nil {
				return resp, nil
			}
		}
		// The coordinator is unreachable: say what this node knows.
	}
	resp := s.rv.Status()
	resp.Coordinator = c.Name
	for _, m := range s.ms.Members() {
		resp.Members = append(resp.Members, &pb.Member{
			Name: m.Name, Addr: m.Addr, Control: m.Meta.Control, Procs: int32(m.Meta.Procs),
			Devices: m.Meta.Devices, ConfigHash: m.Meta.ConfigHash, State: "alive",
		})
	}
	return resp, nil
}

// clients caches one gRPC connection per control address.
type clients struct {
	secrets Secrets
	mu      sync.Mutex
	conns   map[string]*grpc.ClientConn
}

func newClients(s Secrets) *clients {
	return &clients{secrets: s, conns: map[string]*grpc.ClientConn{}}
}

func (c *clients) get(addr string) (pb.ControlClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc := c.conns[addr]; cc != nil {
		return pb.NewControlClient(cc), nil
	}
	cc, err := grpc.NewClient(addr, c.secrets.DialOptions()...)
	if err != nil {
		return nil, fmt.Errorf("cluster: control client for %s: %w", addr, err)
	}
	c.conns[addr] = cc
	return pb.NewControlClient(cc), nil
}

func (c *clients) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cc := range c.conns {
		cc.Close()
	}
	c.conns = map[string]*grpc.ClientConn{}
}

// Dial returns a control client for addr with the key's credentials; the
// caller closes the connection.
func Dial(addr string, s Secrets) (pb.ControlClient, *grpc.ClientConn, error) {
	cc, err := grpc.NewClient(addr, s.DialOptions()...)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: control client for %s: %w", addr, err)
	}
	return pb.NewControlClient(cc), cc, nil
}

// ControlAddr is the control service's address for a gossip address: the
// next port up, on the same host.
func ControlAddr(gossip string) (string, error) {
	host, port, err := net.SplitHostPort(gossip)
	if err != nil {
		return "", fmt.Errorf("cluster: address %q: %w", gossip, err)
	}
	var p int
	if _, err := fmt.Sscan(port, &p); err != nil || p <= 0 || p >= 65535 {
		return "", fmt.Errorf("cluster: address %q: need a port in [1, 65534]", gossip)
	}
	return net.JoinHostPort(host, fmt.Sprint(p+1)), nil
}
