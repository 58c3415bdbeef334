package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/macdist/macdist/cluster"
	"github.com/macdist/macdist/collective"
	"github.com/macdist/macdist/kernels/cpu"
	"github.com/macdist/macdist/nn/models"
	"github.com/macdist/macdist/train"
)

// localOnlyFlags are the train flags that may differ between nodes: where
// things are on this machine and how it reports. Every other train flag
// decides the computation and must agree everywhere.
var localOnlyFlags = map[string]bool{
	"device": true, "datasets-dir": true, "run-dir": true, "resume": true, "overwrite": true, "keep": true,
	"metrics-addr": true, "workers": true, "progress": true, "log-every": true, "checkpoint-every": true,
}

const launchUsage = `usage: macdist launch [flags] -- TRAIN FLAGS

Runs the workers of a data-parallel run on this node. One machine:

  macdist launch --standalone --nproc-per-node 2 -- --model lenet5 --batch 128 --run-dir runs/x

Many nodes: the same command on every node, all naming one of them in --join:

  macdist launch --nnodes 2:4 --nproc-per-node 1 --bind 0.0.0.0:29400 \
      --join node0:29400 --cluster-key "$KEY" -- --model lenet5 --batch 128 --run-dir /shared/x

--batch is the global batch: each of R ranks takes batch/R samples (with
--scale-lr it is the batch per rank and the learning rate is multiplied by
R). After a node is lost the run resumes from its newest complete
checkpoint: rank 0 writes them in its --run-dir and, with several nodes,
sends each to the first worker of every other node, which keeps a copy in
its own --run-dir, so the nodes need not share a file system.

flags:
`

func runLaunch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("launch", stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), launchUsage)
		fs.PrintDefaults()
	}
	standalone := fs.Bool("standalone", false, "one node, no cluster: nothing listens beyond loopback and no key is needed")
	nnodes := fs.String("nnodes", "1", "nodes in the run, MIN or MIN:MAX: training waits for MIN and takes up to MAX")
	nproc := fs.Int("nproc-per-node", 1, "worker processes on this node (one per GPU)")
	join := fs.String("join", "", "gossip address HOST:PORT of a node of the cluster (or this node's own); comma-separated for several")
	bind := fs.String("bind", "127.0.0.1:29400", "gossip address HOST:PORT this node listens on (TCP and UDP); its control service listens on PORT+1")
	advertise := fs.String("advertise", "", "gossip address HOST:PORT the other nodes reach this one at (default: --bind's, or a private address for 0.0.0.0)")
	key := fs.String("cluster-key", "", "shared secret: encrypts gossip, authenticates control calls and the ring (default $"+cluster.KeyEnv+"); required unless every address is loopback")
	name := fs.String("node-name", "", "this node's unique name; ranks follow the names' natural order (default: the host name, with the port on loopback)")
	maxRestarts := fs.Int("max-restarts", 3, "restarts after worker failures before the run gives up (lost and added nodes do not count)")
	rdzvTimeout := fs.Duration("rdzv-timeout", 10*time.Minute, "how long a rendezvous waits for MIN nodes before failing")
	lastCall := fs.Duration("last-call", 3*time.Second, "how long a rendezvous with MIN nodes waits for the remaining members")
	ringTimeout := fs.Duration("ring-timeout", collective.DefaultTimeout, "bound on every wait of a worker on a peer: a stalled or dead peer fails the step within it")
	ringLanes := fs.Int("ring-lanes", 1, "TCP connections from each worker to each ring neighbour (CPU all-reduce): large all-reduces are spread over them, so that more cores copy at once; 'macdist bench collective --lanes 1,2' compares counts")
	metricsAddr := fs.String("metrics-addr", "", "serve this node's cluster metrics (world size, generation, restarts, members alive; label rank) on /metrics here; the train flag --metrics-addr after -- is the workers' own, at its port + local rank")
	scaleLR := fs.Bool("scale-lr", false, "keep --batch per rank and multiply --lr by the world size, instead of splitting --batch across ranks")
	copies := fs.Bool("checkpoint-copies", true, "with several nodes, keep a copy of every checkpoint on each node (rank 0 sends them), so that losing rank 0's node loses no more than the last checkpoint interval without a shared --run-dir")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	trainArgs := fs.Args()
	if len(args) > len(trainArgs) && args[len(args)-len(trainArgs)-1] != "--" && len(trainArgs) > 0 {
		return usageErrorf("unexpected argument %q: put the train flags after --", trainArgs[0])
	}
	minN, maxN, err := parseNNodes(*nnodes)
	if err != nil {
		return usageErrorf("%v", err)
	}
	if *nproc < 1 {
		return usageErrorf("--nproc-per-node %d must be positive", *nproc)
	}
	if *maxRestarts < 0 {
		return usageErrorf("--max-restarts %d is negative", *maxRestarts)
	}
	if *ringLanes < 1 || *ringLanes > collective.MaxLanes {
		return usageErrorf("--ring-lanes %d: want 1 to %d", *ringLanes, collective.MaxLanes)
	}

	// The train flags are checked here, once, rather than by every worker.
	tfs := newFlagSet("launch", stderr)
	cfg := train.DefaultConfig()
	trainFlags(tfs, &cfg)
	if err := parse(tfs, trainArgs); err != nil {
		return usageErrorf("train flags: %v", strings.TrimPrefix(err.Error(), "usage: "))
	}
	if err := applyMethodDefaults(tfs, &cfg); err != nil {
		return err
	}
	if _, err := models.Default(cfg.Model); err != nil {
		return usageErrorf("%v", err)
	}
	// Every worker would fail alike, and be restarted to fail again.
	if cfg.Precision == "bf16" && cfg.Device == "cpu" {
		if err := cpu.CheckBF16(); err != nil {
			return fmt.Errorf("train flags: %w", err)
		}
	}
	if !*scaleLR {
		var bad []string
		every := 1 // the least batch that splits over every world size
		for n := minN; n <= maxN; n++ {
			if cfg.Batch%(n**nproc) != 0 {
				bad = append(bad, strconv.Itoa(n**nproc))
			}
			every = lcm(every, n**nproc)
		}
		if len(bad) > 0 {
			return usageErrorf("--batch %d (the global batch) does not split evenly over world size %s; the nearest that do: %s (or --scale-lr for a batch per rank)",
				cfg.Batch, strings.Join(bad, ", "), nearestMultiples(cfg.Batch, every))
		}
	}
	if cfg.RunDir == "" {
		// Fixed here, so that every worker and every generation writes to
		// and resumes from the same directory.
		cfg.RunDir = filepath.Join("runs", fmt.Sprintf("%s-%s-%s", cfg.Model, cfg.Optimizer, time.Now().Format("20060102-150405")))
		trainArgs = append(trainArgs, "--run-dir", cfg.RunDir)
	}

	if *key == "" {
		*key = os.Getenv(cluster.KeyEnv)
	}
	var seeds []string
	if *join != "" {
		seeds = strings.Split(*join, ",")
	}
	publishKey := false
	if *standalone {
		if *join != "" || *nnodes != "1" {
			return usageErrorf("--standalone runs one node: it takes neither --join nor --nnodes")
		}
		*bind = "127.0.0.1:0"
		if *key == "" {
			// Nobody else needs it: a random key keeps other local users out.
			b := make([]byte, 16)
			rand.Read(b)
			*key = hex.EncodeToString(b)
			publishKey = true // for `macdist status`
		}
	} else if len(seeds) == 0 {
		return usageErrorf("--join HOST:PORT is required (or --standalone for one machine)")
	}
	if err := cluster.RequireKey(*key, append([]string{*bind, *advertise}, seeds...)...); err != nil {
		return usageErrorf("%v", err)
	}
	bindHost, bindPort, err := net.SplitHostPort(*bind)
	if err != nil {
		return usageErrorf("--bind %q: %v", *bind, err)
	}
	if *name == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("host name: %w (give --node-name)", err)
		}
		*name = h
		if cluster.IsLoopback(bindHost) && bindPort != "0" {
			*name = h + "-" + bindPort
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the macdist executable for the workers: %w", err)
	}
	settings := map[string]string{}
	tfs.VisitAll(func(f *flag.Flag) {
		if !localOnlyFlags[f.Name] {
			settings[f.Name] = f.Value.String()
		}
	})
	settings["nnodes"] = fmt.Sprintf("%d:%d", minN, maxN)
	settings["scale-lr"] = strconv.FormatBool(*scaleLR)
	settings["checkpoint-copies"] = strconv.FormatBool(*copies)
	settings["ring-lanes"] = strconv.Itoa(*ringLanes)
	settings["macdist"] = buildVersion()

	nodeArgs := []string{"node", "--ring-timeout", ringTimeout.String(), "--ring-lanes", strconv.Itoa(*ringLanes)}
	if *scaleLR {
		nodeArgs = append(nodeArgs, "--scale-lr")
	}
	if !*copies {
		nodeArgs = append(nodeArgs, "--checkpoint-copies=false")
	}
	nodeArgs = append(append(nodeArgs, "--"), trainArgs...)

	ctx, cancel := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer cancel()
	var gossipLog io.Writer
	if os.Getenv("MACDIST_GOSSIP_LOG") != "" {
		gossipLog = stderr
	}
	return cluster.RunAgent(ctx, cluster.AgentConfig{
		Name: *name, Bind: *bind, Advertise: *advertise, Join: seeds, Secrets: cluster.NewSecrets(*key),
		MinNodes: minN, MaxNodes: maxN, Procs: *nproc, Devices: cfg.Device, Settings: settings,
		WaitTimeout: *rdzvTimeout, LastCall: *lastCall, MaxRestarts: *maxRestarts,
		FastGossip: cluster.IsLoopback(bindHost), MetricsAddr: *metricsAddr, PublishKey: publishKey,
		Command: func(cluster.WorkerSpec) *exec.Cmd {
			return exec.Command(exe, nodeArgs...)
		},
		Stdout: stdout, Stderr: stderr, GossipLog: gossipLog,
	})
}

// parseNNodes reads MIN or MIN:MAX.
func parseNNodes(s string) (minN, maxN int, err error) {
	lo, hi, ok := strings.Cut(s, ":")
	if minN, err = strconv.Atoi(lo); err != nil {
		return 0, 0, fmt.Errorf("--nnodes %q: want MIN or MIN:MAX", s)
	}
	maxN = minN
	if ok {
		if maxN, err = strconv.Atoi(hi); err != nil {
			return 0, 0, fmt.Errorf("--nnodes %q: want MIN or MIN:MAX", s)
		}
	}
	if minN < 1 || maxN < minN {
		return 0, 0, fmt.Errorf("--nnodes %q: need 1 ≤ MIN ≤ MAX", s)
	}
	return minN, maxN, nil
}

// buildVersion identifies the binary, so that nodes running different
// builds do not train together.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version + " " + bi.GoVersion
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			v += " " + s.Value
		}
	}
	return v
}

func lcm(a, b int) int {
	g, r := a, b
	for r != 0 {
		g, r = r, g%r
	}
	return a / g * b
}

// nearestMultiples names the multiples of m just below and above n.
func nearestMultiples(n, m int) string {
	below, above := n/m*m, (n/m+1)*m
	if below == 0 {
		return fmt.Sprintf("--batch %d", above)
	}
	return fmt.Sprintf("--batch %d or %d", below, above)
}
