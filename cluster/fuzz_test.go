package cluster

import (
	"context"
	"math"
	"net"
	"testing"
	"time"

	pb "github.com/macdist/macdist/cluster/controlpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// FuzzControl sends the control service's requests, decoded from the
// fuzzer's bytes, to a coordinator's server through gRPC, with the
// cluster's token or another. Without the token every call is refused
// before its handler runs; with it, the handler answers or refuses, and
// an answer is consistent.
func FuzzControl(f *testing.F) {
	s := NewSecrets("k1")
	m, err := NewMembership(MembershipConfig{
		Name: "coord", Bind: addr(freePort(f)), Secrets: s, Fast: true,
		Meta: NodeMeta{Procs: 1, ConfigHash: HashSettings(nil), Started: time.Now().UnixNano()},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { m.Shutdown() })
	// A round closes as soon as one node joins (no other member is alive
	// to wait for), so no Join waits on the fuzzer.
	rv := NewRendezvous(RendezvousConfig{MinNodes: 1, MaxNodes: 2, ConfigHash: HashSettings(nil), Self: "coord", Members: m.Members})
	opts, err := s.ServerOptions()
	if err != nil {
		f.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	pb.RegisterControlServer(srv, &controlServer{rv: rv, ms: m, clients: newClients(s)})
	go srv.Serve(l)
	f.Cleanup(srv.Stop)
	dial := func(token string) pb.ControlClient {
		cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(s.clientCredentials()),
			grpc.WithPerRPCCredentials(tokenCreds{token: token, secure: true}))
		if err != nil {
			f.Fatal(err)
		}
		f.Cleanup(func() { cc.Close() })
		return pb.NewControlClient(cc)
	}
	right, wrong := dial(s.Token), dial(NewSecrets("other").Token)

	for _, msg := range []proto.Message{
		joinReq("n1", 2, nil), joinReq("n2", 1, map[string]string{"lr": "0.1"}),
		&pb.JoinRequest{Node: "n3", WorkerAddrs: []string{"h:1"}, ConfigHash: HashSettings(nil), LastGeneration: 1 << 62, WaitTimeoutMs: -1},
		&pb.JoinRequest{Node: "n4", WorkerAddrs: []string{"h:2"}, ConfigHash: HashSettings(nil), LastGeneration: math.MaxInt64},
		&pb.HeartbeatRequest{Node: "n1", Generation: 1, Step: 10, State: "running", Restarts: 2},
		&pb.StatusRequest{},
	} {
		b, err := proto.Marshal(msg)
		if err != nil {
			f.Fatal(err)
		}
		kind := map[string]uint8{"JoinRequest": 0, "HeartbeatRequest": 1, "StatusRequest": 2}[string(msg.ProtoReflect().Descriptor().Name())]
		f.Add(b, kind, true)
		f.Add(b, kind, false)
	}
	f.Fuzz(func(t *testing.T, in []byte, kind uint8, token bool) {
		cl := wrong
		if token {
			cl = right
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var err error
		switch kind % 3 {
		case 0:
			var req pb.JoinRequest
			if proto.Unmarshal(in, &req) != nil {
				return
			}
			var resp *pb.JoinResponse
			if resp, err = cl.Join(ctx, &req); err == nil {
				checkAssignment(t, &req, resp)
			}
		case 1:
			var req pb.HeartbeatRequest
			if proto.Unmarshal(in, &req) != nil {
				return
			}
			var resp *pb.HeartbeatResponse
			if resp, err = cl.Heartbeat(ctx, &req); err == nil && resp.Generation < 0 {
				t.Fatalf("heartbeat answered generation %d", resp.Generation)
			}
		case 2:
			var req pb.StatusRequest
			if proto.Unmarshal(in, &req) != nil {
				return
			}
			var resp *pb.StatusResponse
			if resp, err = cl.Status(ctx, &req); err == nil && resp.Coordinator != "coord" {
				t.Fatalf("status names coordinator %q", resp.Coordinator)
			}
		}
		code := status.Code(err)
		switch {
		case !token && code != codes.Unauthenticated:
			t.Fatalf("a call with a wrong token gave %v, want Unauthenticated", err)
		case token && code == codes.Unauthenticated, code == codes.Unknown, code == codes.Internal, code == codes.Unavailable:
			t.Fatalf("call with the token: %v", err)
		}
	})
}

// checkAssignment checks a Join's answer against its request: the node is
// among the assigned ones with the ranks of its workers, and the ranks
// tile the world.
func checkAssignment(t *testing.T, req *pb.JoinRequest, resp *pb.JoinResponse) {
	t.Helper()
	if int(resp.WorldSize) != len(resp.RingAddrs) || resp.NodeRank < 0 || int(resp.NodeRank) >= len(resp.Nodes) {
		t.Fatalf("assignment %v", resp)
	}
	next := int32(0)
	for _, n := range resp.Nodes {
		if n.BaseRank != next || n.Procs <= 0 {
			t.Fatalf("node %s: base rank %d, %d procs, after %d ranks", n.Node, n.BaseRank, n.Procs, next)
		}
		next += n.Procs
	}
	me := resp.Nodes[resp.NodeRank]
	if next != resp.WorldSize || me.Node != req.Node || int(me.Procs) != len(req.WorkerAddrs) || me.BaseRank != resp.BaseRank {
		t.Fatalf("node %s with %d workers got %v", req.Node, len(req.WorkerAddrs), resp)
	}
	for i, a := range req.WorkerAddrs {
		if resp.RingAddrs[int(me.BaseRank)+i] != a {
			t.Fatalf("worker %d of %s: ring address %q, want %q", i, req.Node, resp.RingAddrs[int(me.BaseRank)+i], a)
		}
	}
	if resp.Generation <= 0 || resp.Generation <= req.LastGeneration {
		t.Fatalf("generation %d after the node's %d", resp.Generation, req.LastGeneration)
	}
}
