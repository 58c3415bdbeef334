package cluster

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/macdist/macdist/cluster/controlpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func newMember(t *testing.T, name, key string) *Membership {
	t.Helper()
	m, err := NewMembership(MembershipConfig{
		Name: name, Bind: "127.0.0.1:0", Secrets: NewSecrets(key), Fast: true,
		Meta: NodeMeta{Procs: 1, ConfigHash: "h", Started: time.Now().UnixNano()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })
	return m
}

func names(ms []Member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	sort.Strings(out)
	return out
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestMembershipEncryption(t *testing.T) {
	a := newMember(t, "a", "right key")
	b := newMember(t, "b", "right key")
	if _, err := b.Join([]string{a.Addr()}); err != nil {
		t.Fatalf("same key: %v", err)
	}
	waitFor(t, "a and b to see each other", time.Minute, func() bool {
		return len(a.Members()) == 2 && len(b.Members()) == 2
	})

	for _, key := range []string{"wrong key", ""} {
		c, err := NewMembership(MembershipConfig{
			Name: "c", Bind: "127.0.0.1:0", Secrets: NewSecrets(key), Fast: true,
			Meta: NodeMeta{Procs: 1, ConfigHash: "h"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Join([]string{a.Addr()}); err == nil {
			t.Errorf("key %q: joined a cluster encrypted with another key", key)
		}
		time.Sleep(300 * time.Millisecond)
		if got := names(a.Members()); strings.Join(got, ",") != "a,b" {
			t.Errorf("key %q: a sees %v, want [a b]", key, got)
		}
		if got := len(c.Members()); got != 1 {
			t.Errorf("key %q: the outsider sees %d members", key, got)
		}
		c.Shutdown()
	}

	// A dead member is noticed within seconds.
	start := time.Now()
	b.Shutdown()
	waitFor(t, "a to notice b's death", 10*time.Second, func() bool { return len(a.Members()) == 1 })
	t.Logf("death noticed in %v", time.Since(start).Round(time.Millisecond))
}

func TestRequireKey(t *testing.T) {
	if err := RequireKey("", "127.0.0.1:1", "[::1]:2", "localhost:3"); err != nil {
		t.Errorf("loopback without key: %v", err)
	}
	err := RequireKey("", "127.0.0.1:1", "10.1.2.3:4")
	if err == nil || !strings.Contains(err.Error(), "10.1.2.3:4") || !strings.Contains(err.Error(), KeyEnv) {
		t.Errorf("non-loopback without key: %v", err)
	}
	if err := RequireKey("k", "0.0.0.0:1"); err != nil {
		t.Errorf("with key: %v", err)
	}
	if _, err := NewMembership(MembershipConfig{Name: "x", Bind: "0.0.0.0:0"}); err == nil {
		t.Error("membership on 0.0.0.0 without key started")
	}
}

// serve starts a control server for rv; its membership is m.
func serve(t *testing.T, s Secrets, rv *Rendezvous, m *Membership) string {
	t.Helper()
	opts, err := s.ServerOptions()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	pb.RegisterControlServer(srv, &controlServer{rv: rv, ms: m, clients: newClients(s)})
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return l.Addr().String()
}

func TestTokenInterceptor(t *testing.T) {
	for _, key := range []string{"k1", ""} {
		t.Run(fmt.Sprintf("key=%q", key), func(t *testing.T) {
			s := NewSecrets(key)
			m := newMember(t, "coord", key)
			a := serve(t, s, NewRendezvous(RendezvousConfig{MinNodes: 1, Self: "coord"}), m)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			call := func(opts ...grpc.DialOption) error {
				cc, err := grpc.NewClient(a, opts...)
				if err != nil {
					t.Fatal(err)
				}
				defer cc.Close()
				_, err = pb.NewControlClient(cc).Status(ctx, &pb.StatusRequest{})
				return err
			}
			if err := call(s.DialOptions()...); err != nil {
				t.Fatalf("right token: %v", err)
			}
			wrong := []grpc.DialOption{grpc.WithTransportCredentials(s.clientCredentials()),
				grpc.WithPerRPCCredentials(tokenCreds{token: NewSecrets("other").Token, secure: key != ""})}
			if err := call(wrong...); status.Code(err) != codes.Unauthenticated {
				t.Errorf("wrong token: %v, want Unauthenticated", err)
			}
			none := []grpc.DialOption{grpc.WithTransportCredentials(s.clientCredentials())}
			if err := call(none...); status.Code(err) != codes.Unauthenticated {
				t.Errorf("no token: %v, want Unauthenticated", err)
			}
			if key != "" {
				// A client with another key does not trust the server's
				// identity and never sends its token.
				if err := call(NewSecrets("other").DialOptions()...); err == nil || !strings.Contains(err.Error(), "does not hold this cluster key") {
					t.Errorf("other key: %v, want a refused handshake", err)
				}
			}
		})
	}
}

func joinReq(node string, procs int, settings map[string]string) *pb.JoinRequest {
	addrs := make([]string, procs)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("%s:%d", node, 1000+i)
	}
	return &pb.JoinRequest{Node: node, WorkerAddrs: addrs, Settings: settings, ConfigHash: HashSettings(settings), WaitTimeoutMs: 60000}
}

func TestConfigHashRefusal(t *testing.T) {
	run := map[string]string{"model": "lenet5", "lr": "0.1", "batch": "64"}
	rv := NewRendezvous(RendezvousConfig{MinNodes: 1, ConfigHash: HashSettings(run), Settings: run, Self: "n0"})
	other := map[string]string{"model": "lenet5", "lr": "0.05", "batch": "64", "seed": "3"}
	_, err := rv.Join(context.Background(), joinReq("n1", 1, other))
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("different config: %v, want FailedPrecondition", err)
	}
	msg := status.Convert(err).Message()
	for _, want := range []string{`lr: "0.1" (run) ≠ "0.05" (node)`, `seed`} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not name %q", msg, want)
		}
	}
	if strings.Contains(msg, "model") || strings.Contains(msg, "batch") {
		t.Errorf("message %q names settings that agree", msg)
	}
	// The same config is taken.
	resp, err := rv.Join(context.Background(), joinReq("n1", 1, run))
	if err != nil || resp.WorldSize != 1 {
		t.Fatalf("same config: %v %v", resp, err)
	}
}

func TestRendezvousRanks(t *testing.T) {
	procs := map[string]int{"node-10": 2, "node-2": 1, "node-1": 3}
	want := map[string]int32{"node-1": 0, "node-2": 3, "node-10": 4}
	for round := range 3 {
		rv := NewRendezvous(RendezvousConfig{MinNodes: 3, MaxNodes: 3, Self: "node-1", ConfigHash: HashSettings(nil)})
		var mu sync.Mutex
		got := map[string]*pb.JoinResponse{}
		var wg sync.WaitGroup
		for name, n := range procs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(len(name)*round) * time.Millisecond) // vary arrival order
				resp, err := rv.Join(context.Background(), joinReq(name, n, nil))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				got[name] = resp
				mu.Unlock()
			}()
		}
		wg.Wait()
		var ring []string
		for name, resp := range got {
			if resp.BaseRank != want[name] || resp.WorldSize != 6 || resp.Generation != 1 {
				t.Errorf("round %d: %s got base rank %d, world %d, generation %d; want %d, 6, 1",
					round, name, resp.BaseRank, resp.WorldSize, resp.Generation, want[name])
			}
			if ring == nil {
				ring = resp.RingAddrs
			} else if strings.Join(ring, ",") != strings.Join(resp.RingAddrs, ",") {
				t.Errorf("ring addresses differ between nodes")
			}
		}
		wantRing := "node-1:1000,node-1:1001,node-1:1002,node-2:1000,node-10:1000,node-10:1001"
		if strings.Join(ring, ",") != wantRing {
			t.Errorf("ring %v, want %s", ring, wantRing)
		}
		// The next round has the next generation.
		if round == 0 {
			rv2 := rv
			var wg sync.WaitGroup
			for name, n := range procs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, err := rv2.Join(context.Background(), joinReq(name, n, nil))
					if err != nil || resp.Generation != 2 {
						t.Errorf("second round: %v %v", resp, err)
					}
				}()
			}
			wg.Wait()
		}
	}
}

func TestRendezvousWaitAndFull(t *testing.T) {
	rv := NewRendezvous(RendezvousConfig{MinNodes: 2, MaxNodes: 2, Self: "a", ConfigHash: HashSettings(nil)})
	req := joinReq("a", 1, nil)
	req.WaitTimeoutMs = 300
	start := time.Now()
	_, err := rv.Join(context.Background(), req)
	if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "at least 2 nodes") || !strings.Contains(err.Error(), "1 joined: a") {
		t.Fatalf("below MIN: %v", err)
	}
	// A bound far beyond 300 ms that still shows the request's timeout,
	// not a default of minutes, was applied.
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("wait timeout took %v", d)
	}

	// Two nodes fill the run; a third waits for a place; the generation
	// only moves on when a member of the run re-joins, and then the third
	// is not taken beyond MAX.
	var wg sync.WaitGroup
	for _, n := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := rv.Join(context.Background(), joinReq(n, 1, nil)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	_, err = rv.Join(context.Background(), joinReq("c", 1, nil))
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("third node in a full run: %v", err)
	}
	if hb := rv.Heartbeat(&pb.HeartbeatRequest{Node: "a", Generation: 1}); hb.RoundOpen || hb.Generation != 1 {
		t.Errorf("heartbeat after a refused join: %v", hb)
	}
}

// A late joiner opens a round; the running nodes learn of it through
// their heartbeat and join, and the next generation holds everyone.
func TestRendezvousLateJoiner(t *testing.T) {
	var mu sync.Mutex
	members := []Member{{Name: "a", Meta: NodeMeta{ConfigHash: HashSettings(nil)}}}
	// A last call far beyond the bound below, so that a round closed
	// within it closed because everyone joined, however slow the machine.
	rv := NewRendezvous(RendezvousConfig{MinNodes: 1, MaxNodes: 3, LastCall: time.Minute, ConfigHash: HashSettings(nil), Self: "a",
		Members: func() []Member { mu.Lock(); defer mu.Unlock(); return append([]Member(nil), members...) }})
	resp, err := rv.Join(context.Background(), joinReq("a", 1, nil))
	if err != nil || resp.Generation != 1 || resp.WorldSize != 1 {
		t.Fatalf("first generation: %v %v", resp, err)
	}
	mu.Lock()
	members = append(members, Member{Name: "b", Meta: NodeMeta{ConfigHash: HashSettings(nil)}})
	mu.Unlock()
	got := make(chan *pb.JoinResponse, 2)
	go func() {
		r, err := rv.Join(context.Background(), joinReq("b", 1, nil))
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	waitFor(t, "a round to open", time.Minute, func() bool {
		return rv.Heartbeat(&pb.HeartbeatRequest{Node: "a", Generation: 1}).RoundOpen
	})
	start := time.Now()
	go func() {
		r, err := rv.Join(context.Background(), joinReq("a", 1, nil))
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	for range 2 {
		r := <-got
		if r == nil || r.Generation != 2 || r.WorldSize != 2 {
			t.Fatalf("late joiner's generation: %v", r)
		}
	}
	// Every alive member joined: the round closed without the last call.
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("round took %v, want no last-call wait", d)
	}
}
