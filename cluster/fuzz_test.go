package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"net"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/macdist/macdist/cluster/controlpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// swapServer serves the control service of the controlServer in cur, so
// that every fuzz input meets a fresh coordinator and a crash replays
// from its input alone.
type swapServer struct {
	pb.UnimplementedControlServer
	cur atomic.Pointer[controlServer]
}

func (s *swapServer) Join(ctx context.Context, req *pb.JoinRequest) (*pb.JoinResponse, error) {
	return s.cur.Load().Join(ctx, req)
}

func (s *swapServer) Heartbeat(ctx context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
	return s.cur.Load().Heartbeat(ctx, req)
}

func (s *swapServer) Status(ctx context.Context, req *pb.StatusRequest) (*pb.StatusResponse, error) {
	return s.cur.Load().Status(ctx, req)
}

// controlCall is one request of a FuzzControl input: kind&3 is the method
// (Join, Heartbeat, Status), kind&4 sends a wrong token, then the length
// (2 bytes, little-endian) and the request's protobuf encoding.
func controlCall(kind uint8, msg proto.Message) []byte {
	b, err := proto.Marshal(msg)
	if err != nil {
		panic(err)
	}
	return append(binary.LittleEndian.AppendUint16([]byte{kind}, uint16(len(b))), b...)
}

// FuzzControl sends a sequence of the control service's requests, decoded
// from the fuzzer's bytes, to a coordinator's server through gRPC, with the
// cluster's token or another. Without the token every call is refused
// before its handler runs; with it, the handler answers or refuses, and
// an answer is consistent with the request.
func FuzzControl(f *testing.F) {
	s := NewSecrets("k1")
	m, err := NewMembership(MembershipConfig{
		Name: "coord", Bind: "127.0.0.1:0", Secrets: s, Fast: true,
		Meta: NodeMeta{Procs: 1, ConfigHash: HashSettings(nil), Started: time.Now().UnixNano()},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { m.Shutdown() })
	opts, err := s.ServerOptions()
	if err != nil {
		f.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	swap := &swapServer{}
	pb.RegisterControlServer(srv, swap)
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
	clients := newClients(s)
	f.Cleanup(clients.close)

	join := func(node string, last int64) *pb.JoinRequest {
		return &pb.JoinRequest{Node: node, WorkerAddrs: []string{node + ":1"}, ConfigHash: HashSettings(nil), LastGeneration: last}
	}
	hb := &pb.HeartbeatRequest{Node: "n1", Generation: 1, Step: 10, State: "running", Restarts: 2}
	for _, seq := range [][][]byte{
		{controlCall(0, joinReq("n1", 2, nil)), controlCall(1, hb), controlCall(2, &pb.StatusRequest{})},
		{controlCall(0, joinReq("n2", 1, map[string]string{"lr": "0.1"})), controlCall(4, joinReq("n1", 1, nil))},
		{controlCall(0, join("n1", 0)), controlCall(0, join("n2", 3)), controlCall(0, join("n3", 0)), controlCall(2, &pb.StatusRequest{})},
		{controlCall(5, hb), controlCall(6, &pb.StatusRequest{})},
		// A generation that once wrapped to negative on the next join.
		{controlCall(0, join("n1", math.MaxInt64-1)), controlCall(0, join("n2", 0)), controlCall(1, hb)},
	} {
		f.Add(bytes.Join(seq, nil))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		swap.cur.Store(&controlServer{
			rv: NewRendezvous(RendezvousConfig{MinNodes: 1, MaxNodes: 2, ConfigHash: HashSettings(nil), Self: "coord", Members: m.Members}),
			ms: m, clients: clients,
		})
		// A round closes as soon as a node joins (no other member is alive
		// to wait for): no call waits on the fuzzer.
		ctx := context.Background()
		for len(in) >= 3 {
			kind := in[0]
			n := min(int(binary.LittleEndian.Uint16(in[1:])), len(in)-3)
			msg := in[3 : 3+n]
			in = in[3+n:]
			cl, token := right, kind&4 == 0
			if !token {
				cl = wrong
			}
			var err error
			switch kind & 3 {
			case 0:
				var req pb.JoinRequest
				if proto.Unmarshal(msg, &req) != nil {
					continue
				}
				var resp *pb.JoinResponse
				if resp, err = cl.Join(ctx, &req); err == nil {
					checkAssignment(t, &req, resp)
				}
			case 1:
				var req pb.HeartbeatRequest
				if proto.Unmarshal(msg, &req) != nil {
					continue
				}
				var resp *pb.HeartbeatResponse
				if resp, err = cl.Heartbeat(ctx, &req); err == nil && resp.Generation < 0 {
					t.Fatalf("heartbeat answered generation %d", resp.Generation)
				}
			default:
				var req pb.StatusRequest
				if proto.Unmarshal(msg, &req) != nil {
					continue
				}
				var resp *pb.StatusResponse
				if resp, err = cl.Status(ctx, &req); err == nil {
					if resp.Coordinator != "coord" || resp.Generation < 0 || resp.WorldSize < 0 {
						t.Fatalf("status %v", resp)
					}
				}
			}
			code := status.Code(err)
			switch {
			case !token && code != codes.Unauthenticated:
				t.Fatalf("a call with a wrong token gave %v, want Unauthenticated", err)
			case token && code == codes.Unauthenticated, code == codes.Unknown, code == codes.Internal, code == codes.Unavailable:
				t.Fatalf("call with the token: %v", err)
			}
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
