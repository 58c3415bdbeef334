package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/macdist/macdist/cluster"
	"github.com/macdist/macdist/safetensors"
	"github.com/macdist/macdist/train"
)

// The multi-process tests run this test binary as macdist: with
// MACDIST_TEST_AS_MAIN set it is the command itself (launch re-executes it
// as its workers, which inherit the variable). That is the binary built
// once for all of them, without a go build of its own.
func init() {
	if os.Getenv("MACDIST_TEST_AS_MAIN") == "1" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
}

// phase bounds how long a test waits for an event (a line printed, a
// process ending) before it declares a failure. It bounds a hang, not the
// speed of training: every phase is gated on an event, and on a slow or
// loaded machine events only come later.
const phase = 3 * time.Minute

// stepHold holds the runs a test starts at known steps (MACDIST_HOLD_FILE,
// train.StepHold), so that each phase of the test happens at the step it
// names however fast the machine trains.
type stepHold struct {
	t    *testing.T
	path string
}

// newStepHold sets MACDIST_HOLD_FILE for the processes the test starts
// from now on; with no at, they run freely.
func newStepHold(t *testing.T) *stepHold {
	h := &stepHold{t: t, path: filepath.Join(t.TempDir(), "hold")}
	t.Setenv(holdEnv, h.path)
	return h
}

// at lets the runs take steps up to n, and holds them before step n+1.
func (h *stepHold) at(n int) {
	h.t.Helper()
	tmp := h.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(n)), 0o644); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Rename(tmp, h.path); err != nil {
		h.t.Fatal(err)
	}
}

// release lets the runs finish.
func (h *stepHold) release() {
	h.t.Helper()
	if err := os.Remove(h.path); err != nil && !os.IsNotExist(err) {
		h.t.Fatal(err)
	}
}

// proc is a macdist process whose stderr is kept and searchable.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	cond *sync.Cond
	done chan struct{}
	err  error
}

func startMacdist(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, name: name, done: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	p.cmd = exec.Command(exe, args...)
	p.cmd.Env = append(os.Environ(), "MACDIST_TEST_AS_MAIN=1", "OPENBLAS_NUM_THREADS=1", "GOMAXPROCS=2", cluster.KeyEnv+"=")
	// Its own process group, so that kill -9 takes the agent and its
	// workers together, as a node's crash would.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw, _ := os.Pipe()
	p.cmd.Stderr, p.cmd.Stdout = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.cond.Broadcast()
			p.mu.Unlock()
		}
		p.err = p.cmd.Wait()
		p.mu.Lock()
		close(p.done)
		p.cond.Broadcast()
		p.mu.Unlock()
	}()
	t.Cleanup(func() {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		if t.Failed() || os.Getenv("MACDIST_TEST_VERBOSE") != "" {
			t.Logf("--- %s output:\n%s", p.name, p.output())
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// waitLine waits for a line matching re and returns its submatches.
func (p *proc) waitLine(re string, d time.Duration) []string {
	p.t.Helper()
	m := p.awaitLine(re, d)
	if m == nil {
		p.t.Fatalf("%s exited (%v) without printing /%s/", p.name, p.err, re)
	}
	return m
}

// awaitLine is waitLine, but returns nil if the process exits first.
func (p *proc) awaitLine(re string, d time.Duration) []string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(d)
	timer := time.AfterFunc(d, func() { p.mu.Lock(); p.cond.Broadcast(); p.mu.Unlock() })
	defer timer.Stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if m := rx.FindStringSubmatch(p.out.String()); m != nil {
			return m
		}
		select {
		case <-p.done:
			return nil
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: no line /%s/ within %v", p.name, re, d)
		}
		p.cond.Wait()
	}
}

// gossipAddr is the gossip address a launch prints.
func (p *proc) gossipAddr() string {
	p.t.Helper()
	return p.waitLine(`gossip on (\S+), control on`, phase)[1]
}

// startSeed starts the node the others join, at a port of its own that
// args(port) puts in --bind and --join. The port was free a moment before
// (freePort); should another process take it meanwhile, as tests running
// beside may, the node starts again at another. The other nodes bind
// port 0 and need no such care.
func startSeed(t *testing.T, name string, args func(port int) []string) *proc {
	t.Helper()
	for range 10 {
		port := freePort(t)
		p := startMacdist(t, name, args(port)...)
		if p.awaitLine(`gossip on \S+, control on`, phase) != nil {
			return p
		}
		if !strings.Contains(p.output(), "address already in use") {
			t.Fatalf("%s exited (%v) before it listened:\n%s", name, p.err, p.output())
		}
	}
	t.Fatalf("%s: every port tried was taken", name)
	return nil
}

// wait waits for the process to exit and returns its error.
func (p *proc) wait(d time.Duration) error {
	p.t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		p.t.Fatalf("%s still running after %v", p.name, d)
		return nil
	}
}

// freePort returns a port p with p and p+1 free on loopback (TCP, and UDP
// for p).
func freePort(t *testing.T) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		u, err1 := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		l2, err2 := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1))
		l.Close()
		if err1 == nil {
			u.Close()
		}
		if err2 == nil {
			l2.Close()
		}
		if err1 == nil && err2 == nil && p < 65000 {
			return p
		}
	}
	t.Fatal("no free port pair")
	return 0
}

// trainArgs are the train flags of a small run: an MLP on 8×8 synthetic
// images, samples/24 steps an epoch. How long a step takes does not matter
// to the tests: they hold the run at known steps (stepHold) and act on
// what the processes print.
func trainArgs(runDir string, samples, epochs int, extra ...string) []string {
	return append([]string{
		"--model", "mlp", "--data", fmt.Sprintf("synthetic:1x8x8:4:%d:96", samples), "--batch", "24",
		"--epochs", fmt.Sprint(epochs), "--optimizer", "sgd", "--lr", "0.05", "--run-dir", runDir,
		"--progress", "lines", "--log-every", "20", "--workers", "1",
	}, extra...)
}

// finalParams reads final/model.safetensors and fails on a non-finite value.
func checkFinalParams(t *testing.T, runDir string) {
	t.Helper()
	f, err := safetensors.ReadFile(filepath.Join(runDir, "final", "model.safetensors"))
	if err != nil {
		t.Fatalf("final weights: %v", err)
	}
	n := 0
	for _, name := range f.Names() {
		tn, err := f.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		v, err := tn.Floats()
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				t.Fatalf("final %s holds %v", name, x)
			}
		}
		n += len(v)
	}
	if n == 0 {
		t.Fatal("final weights hold no parameter")
	}
}

// lastRecord returns the last line of metrics.jsonl.
func lastRecord(t *testing.T, runDir string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(runDir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLaunchStandalone(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process")
	}
	dir := filepath.Join(t.TempDir(), "run")
	start := time.Now()
	p := startMacdist(t, "standalone", append([]string{"launch", "--standalone", "--nproc-per-node", "2", "--"},
		trainArgs(dir, 480, 1)...)...)
	if err := p.wait(2 * time.Minute); err != nil {
		t.Fatalf("launch: %v", err)
	}
	t.Logf("2 workers, 20 steps: %v", time.Since(start).Round(time.Millisecond))
	out := p.output()
	for _, want := range []string{"generation 1: world size 2", "batch 12 × 2 ranks", "done: 20 steps"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// Logs and progress come from rank 0 only.
	if strings.Contains(out, "[rank 1] training") || strings.Count(out, "training mlp") != 1 {
		t.Errorf("rank 1 logged its progress:\n%s", out)
	}
	checkFinalParams(t, dir)
}

// `macdist status` reaches a standalone run through either address its
// launch prints, gossip (--join) or control (--control), with no
// --cluster-key: the launch made one up and left it where only this user
// finds it. Without it, or with another key, status is refused.
func TestLaunchStandaloneStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process")
	}
	hold := newStepHold(t)
	runtime := t.TempDir()
	t.Setenv(cluster.RuntimeDirEnv, runtime)
	t.Setenv(cluster.KeyEnv, "")
	hold.at(5)
	p := startMacdist(t, "standalone", append([]string{"launch", "--standalone", "--nproc-per-node", "2", "--"},
		trainArgs(filepath.Join(t.TempDir(), "run"), 480, 1)...)...)
	m := p.waitLine(`gossip on (\S+), control on (\S+)`, phase)
	gossip, control := m[1], m[2]
	p.waitLine(`rank 0 holds before step 6`, phase)
	for _, args := range [][]string{{"--join", gossip}, {"--control", control}} {
		code, out, errOut := runArgs(append([]string{"status"}, args...)...)
		if code != 0 {
			t.Errorf("status %v: exit %d: %s", args, code, errOut)
			continue
		}
		for _, want := range []string{"generation 1, world size 2", "members (1 alive)", control} {
			if !strings.Contains(out, want) {
				t.Errorf("status %v lacks %q:\n%s", args, want, out)
			}
		}
	}
	if code, _, errOut := runArgs("status", "--control", control, "--cluster-key", "wrong"); code == 0 || !strings.Contains(errOut, "does not hold this cluster key") {
		t.Errorf("status with a wrong key: exit %d, %s", code, errOut)
	}
	// Another user has another runtime directory, without the key.
	t.Setenv(cluster.RuntimeDirEnv, t.TempDir())
	if code, _, errOut := runArgs("status", "--join", gossip); code == 0 {
		t.Errorf("status without the key: exit 0, %s", errOut)
	} else {
		t.Logf("status without the key: %s", strings.TrimSpace(errOut))
	}
	hold.release()
	if err := p.wait(phase); err != nil {
		t.Fatalf("launch: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(runtime, "macdist", "*")); len(left) != 0 {
		t.Errorf("the launch left %v behind", left)
	}
}

func TestLaunchUsage(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"launch", "--", "--model", "mlp"}, "--join HOST:PORT is required"},
		{[]string{"launch", "--nnodes", "3:2", "--join", "127.0.0.1:1", "--"}, "MIN ≤ MAX"},
		{[]string{"launch", "--join", "10.0.0.1:29400", "--", "--model", "mlp"}, "cluster key is required"},
		{[]string{"launch", "--bind", "0.0.0.0:29400", "--join", "127.0.0.1:1", "--", "--model", "mlp"}, "cluster key is required"},
		{[]string{"launch", "--nnodes", "1:3", "--join", "127.0.0.1:1", "--", "--model", "mlp", "--batch", "64"}, "world size 3"},
		{[]string{"launch", "--standalone", "--", "--model", "alexnet"}, "alexnet"},
		{[]string{"launch", "--standalone", "--", "--lr-typo", "1"}, "lr-typo"},
		{[]string{"launch", "--standalone", "--ring-lanes", "0", "--"}, "--ring-lanes 0"},
		{[]string{"node", "--", "--model", "mlp"}, "started by `macdist launch`"},
		{[]string{"status"}, "--join HOST:PORT or --control"},
	}
	for _, c := range cases {
		code, _, errOut := runArgs(c.args...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, errOut, c.want)
		}
	}
}

// Two nodes start a run; a third joins late and is taken in at the next
// generation; intruders with a wrong key or a different configuration are
// refused without disturbing the run; then one node is killed (kill -9,
// agent and worker) and the other two re-form, resume from the last
// checkpoint and finish. The run is held at a step for every phase, so
// that no phase depends on the run lasting long enough.
func TestLaunchElastic(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process")
	}
	hold := newStepHold(t)
	dir := filepath.Join(t.TempDir(), "run")
	var seed int
	key := "test-cluster-key"
	// Port 0: any free gossip port (and the next one for control).
	args := func(port int, name, key string, extra ...string) []string {
		a := []string{"launch", "--nnodes", "2:3", "--nproc-per-node", "1", "--bind", fmt.Sprintf("127.0.0.1:%d", port),
			"--join", fmt.Sprintf("127.0.0.1:%d", seed), "--cluster-key", key, "--node-name", name,
			"--ring-timeout", "5s", "--last-call", "1s", "--rdzv-timeout", "5m"}
		return append(append(a, extra...), "--")
	}
	// 100 steps an epoch, a checkpoint every 25.
	train := trainArgs(dir, 2400, 2, "--checkpoint-every", "25")
	// Generation 1 takes 40 steps (a checkpoint at 25) and holds.
	hold.at(40)
	// The oldest member coordinates: n0's membership is up (startSeed
	// waits for it) before n1 starts, or a loaded machine could make n1
	// the older one.
	n0 := startSeed(t, "n0", func(port int) []string {
		seed = port
		return append(args(port, "n0", key, "--metrics-addr", "127.0.0.1:0"), train...)
	})
	metrics := n0.waitLine(`metrics on http://(\S+)/metrics`, phase)[1]
	n1 := startMacdist(t, "n1", append(args(0, "n1", key), train...)...)
	g1 := n1.gossipAddr()
	n0.waitLine(`(?s)generation 1: world size 2.*rank 0 holds before step 41`, phase)

	// Intruders: another key, and another learning rate.
	wrongKey := startMacdist(t, "wrong key", append(args(0, "x1", "another key", "--rdzv-timeout", "3s"), train...)...)
	otherLR := startMacdist(t, "other lr", append(args(0, "x2", key), append(train, "--lr", "0.01")...)...)
	if err := wrongKey.wait(phase); err == nil || !strings.Contains(wrongKey.output(), "same --cluster-key on every node?") {
		t.Errorf("a node with another key: %v\n%s", err, wrongKey.output())
	}
	if err := otherLR.wait(phase); err == nil || !strings.Contains(otherLR.output(), `lr: "0.05" (run) ≠ "0.01" (node)`) {
		t.Errorf("a node with another --lr: %v\n%s", err, otherLR.output())
	}
	if out := n0.output(); strings.Contains(out, "generation 2") || strings.Contains(out, "generation 1 failed") {
		t.Fatalf("the intruders disturbed the run:\n%s", out)
	}

	// A late joiner is taken in at the next generation, which resumes
	// from generation 1's checkpoint; then it runs to step 60 (a
	// checkpoint of its own at 50).
	n2 := startMacdist(t, "n2", append(args(0, "n2", key), train...)...)
	n0.waitLine(`generation 2: world size 3`, phase)
	n2.waitLine(`generation 2: world size 3, 3 nodes, this node's ranks 2\.\.2`, phase)
	m := n0.waitLine(`(?s)generation 2: world size 3.*?resuming from [^\n]*?step-0*(\d+)`, phase)
	if step, _ := strconv.Atoi(m[1]); step < 25 || step > 40 {
		t.Errorf("generation 2 resumed from step %d, want generation 1's checkpoint (25 to 40)", step)
	}
	hold.at(60)
	n0.waitLine(`(?s)generation 2: world size 3.*rank 0 holds before step 61`, phase)

	// The agent's metrics follow the generation.
	body := scrape(t, metrics)
	for _, want := range []string{`macdist_world_size{node="n0",rank="0"} 3`, `macdist_generation{node="n0",rank="0"} 2`,
		`macdist_members_alive{node="n0",rank="0"} 3`, `macdist_restarts_total{node="n0",rank="0"} 0`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s:\n%s", want, body)
		}
	}

	// Status through any node.
	code, out, errOut := runArgs("status", "--join", g1, "--cluster-key", key)
	if code != 0 {
		t.Fatalf("status: %d %s", code, errOut)
	}
	for _, want := range []string{"coordinator n0, generation 2, world size 3", "members (3 alive)", "n1", "n2"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	// Workers report their step to their agent, which reports it to the
	// coordinator with its next heartbeat: status shows it.
	stepRow := regexp.MustCompile(`(?m)^\s*n0\s+\S+\s+[0-9]+\s`)
	for deadline := time.Now().Add(phase); !stepRow.MatchString(out); {
		if time.Now().After(deadline) {
			t.Errorf("status shows no step for n0:\n%s", out)
			break
		}
		time.Sleep(200 * time.Millisecond)
		_, out, _ = runArgs("status", "--join", g1, "--cluster-key", key)
	}
	if code, _, errOut := runArgs("status", "--join", g1, "--cluster-key", "wrong"); code == 0 || !strings.Contains(errOut, "does not hold this cluster key") {
		t.Errorf("status with a wrong key: exit %d, %s", code, errOut)
	}

	// Kill node n1 mid-epoch, while the run holds after generation 2's
	// checkpoint at step 50.
	killed := time.Now()
	syscall.Kill(-n1.cmd.Process.Pid, syscall.SIGKILL)
	n0.waitLine(`generation 2 (failed|ends)`, phase)
	noticed := time.Since(killed)
	n0.waitLine(`generation 3: world size 2`, phase)
	reformed := time.Since(killed)
	t.Logf("node killed: noticed after %v, re-formed with two after %v", noticed.Round(time.Millisecond), reformed.Round(time.Millisecond))
	// The failure detector's bound, with room for a loaded machine.
	if noticed > 10*time.Second {
		t.Errorf("the loss was noticed after %v, want within 10 s", noticed)
	}
	m = n0.waitLine(`(?s)generation 3: world size 2.*?resuming from [^\n]*?step-0*(\d+)`, phase)
	if step, _ := strconv.Atoi(m[1]); step < 50 {
		t.Errorf("generation 3 resumed from step %d, want generation 2's checkpoint (50 or later)", step)
	}
	hold.release()
	if err := n0.wait(phase); err != nil {
		t.Fatalf("n0: %v", err)
	}
	if err := n2.wait(phase); err != nil {
		t.Fatalf("n2: %v", err)
	}
	checkFinalParams(t, dir)
	if out := n0.output(); !strings.Contains(out, "done: 200 steps") {
		t.Errorf("n0 did not finish the run's 200 steps:\n%s", out)
	}
	rec := lastRecord(t, dir)
	if acc, _ := rec["test_acc"].(float64); acc < 0.9 {
		t.Errorf("test accuracy %v after recovery, want ≥ 0.9 (an undisturbed run reaches 1)", rec["test_acc"])
	}
}

// A worker that stalls (SIGSTOP) makes its peers' collectives time out:
// the generation fails within --ring-timeout instead of hanging, the
// stalled worker is ended by its agent, and the run re-forms and finishes.
func TestLaunchStalledPeer(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process")
	}
	hold := newStepHold(t)
	dir := filepath.Join(t.TempDir(), "run")
	train := trainArgs(dir, 2400, 1, "--checkpoint-every", "25")
	hold.at(40)
	var seed int
	args := func(port, i int) []string {
		return append([]string{"launch", "--nnodes", "3",
			"--nproc-per-node", "1", "--bind", fmt.Sprintf("127.0.0.1:%d", port), "--join", fmt.Sprintf("127.0.0.1:%d", seed),
			"--node-name", fmt.Sprintf("n%d", i), "--ring-timeout", "2s", "--last-call", "1s", "--rdzv-timeout", "5m", "--"}, train...)
	}
	n0 := startSeed(t, "n0", func(port int) []string { seed = port; return args(port, 0) })
	nodes := []*proc{n0}
	for i := 1; i < 3; i++ {
		nodes = append(nodes, startMacdist(t, fmt.Sprintf("n%d", i), args(0, i)...))
	}
	// Rank 2 waits before step 41, outside any collective: stop it there,
	// then let the others go on into step 41's all-reduce.
	// (A loaded machine may have failed a generation before, on its short
	// --ring-timeout: the one that matters is the one that holds.)
	m := nodes[2].waitLine(`(?s).*generation (\d+): world size 3.*rank 2: pid (\d+).*rank 2 holds before step 41`, phase)
	gen, _ := strconv.Atoi(m[1])
	pid, _ := strconv.Atoi(m[2])
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	mark := len(nodes[0].output())
	released := time.Now()
	hold.release()
	fail := nodes[0].waitLine(fmt.Sprintf(`generation %d (failed: .*|ends: .*)`, gen), phase)
	noticed := time.Since(released)
	t.Logf("stalled peer: generation %d ended %v after the others went on: %s", gen, noticed.Round(time.Millisecond), fail[1])
	// --ring-timeout, with room for a loaded machine.
	if noticed > 2*time.Second+8*time.Second {
		t.Errorf("the stall was noticed after %v, want about --ring-timeout 2s", noticed)
	}
	// The failure is rank 0's timeout on its stalled neighbour (rank 2
	// feeds rank 0 in the ring of three), not a hang.
	if out := nodes[0].output()[mark:]; !strings.Contains(out, "timeout") && !strings.Contains(out, "timed out") {
		t.Errorf("rank 0 did not report a timeout:\n%s", out)
	}
	nodes[0].waitLine(fmt.Sprintf(`(?s)generation %d: world size 3.*resuming from`, gen+1), phase)
	for i, n := range nodes {
		if err := n.wait(phase); err != nil {
			t.Fatalf("n%d: %v", i, err)
		}
	}
	checkFinalParams(t, dir)
}

// Two nodes that share no run directory: the node of rank 0 is killed
// (kill -9, agent and worker) once the other holds a copy of a checkpoint.
// The other node re-forms alone, resumes from its newest copy instead of
// starting over, and finishes.
func TestLaunchLosesRankZeroNode(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process")
	}
	hold := newStepHold(t)
	tmp := t.TempDir()
	dir0, dir1 := filepath.Join(tmp, "n0"), filepath.Join(tmp, "n1")
	var seed int
	args := func(port int, name, dir string) []string {
		return append([]string{"launch", "--nnodes", "1:2", "--nproc-per-node", "1", "--bind", fmt.Sprintf("127.0.0.1:%d", port),
			"--join", fmt.Sprintf("127.0.0.1:%d", seed), "--node-name", name,
			"--ring-timeout", "5s", "--last-call", "1s", "--rdzv-timeout", "5m", "--"},
			trainArgs(dir, 2400, 2, "--checkpoint-every", "25")...)
	}
	// n0 may start alone (MIN is 1): no step runs until both are in.
	hold.at(0)
	n0 := startSeed(t, "n0", func(port int) []string { seed = port; return args(port, "n0", dir0) })
	n1 := startMacdist(t, "n1", args(0, "n1", dir1)...)
	n1.waitLine(`generation \d+: world size 2, 2 nodes, this node's ranks 1\.\.1`, phase)
	// Two ranks take 30 steps (a checkpoint at 25, which n1 keeps a copy
	// of) and hold.
	hold.at(30)
	var kept int
	for deadline := time.Now().Add(phase); ; time.Sleep(10 * time.Millisecond) {
		dir, st, err := train.LatestCheckpoint(filepath.Join(dir1, train.CheckpointsDir), nil)
		if err != nil {
			t.Fatal(err)
		}
		if dir != "" && st.Step >= 25 {
			kept = st.Step
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n1 kept no copy of rank 0's checkpoint of step 25:\n%s", n0.output())
		}
	}
	syscall.Kill(-n0.cmd.Process.Pid, syscall.SIGKILL)
	n1.waitLine(`(?s)world size 2, 2 nodes.*generation \d+: world size 1`, phase)
	m := n1.waitLine(`(?s)world size 2, 2 nodes.*generation \d+: world size 1.*?resuming from [^\n]*?step-0*(\d+)`, phase)
	if step, _ := strconv.Atoi(m[1]); step < kept {
		t.Errorf("n1 resumed from step %d, want its copy of step %d or a later one", step, kept)
	} else {
		t.Logf("rank 0's node killed once n1 held a copy of step %d; n1 resumed alone from step %d", kept, step)
	}
	hold.release()
	if err := n1.wait(phase); err != nil {
		t.Fatalf("n1: %v", err)
	}
	checkFinalParams(t, dir1)
	rec := lastRecord(t, dir1)
	if acc, _ := rec["test_acc"].(float64); acc < 0.9 {
		t.Errorf("test accuracy %v after recovery, want ≥ 0.9", rec["test_acc"])
	}
}
