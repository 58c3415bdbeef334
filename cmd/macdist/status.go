package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/macdist/macdist/cluster"
	pb "github.com/macdist/macdist/cluster/controlpb"
	"google.golang.org/protobuf/encoding/protojson"
)

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", stderr)
	join := fs.String("join", "", "gossip address HOST:PORT of any node of the run (its control service is at PORT+1)")
	control := fs.String("control", "", "control service address HOST:PORT, instead of --join (every launch prints both)")
	key := fs.String("cluster-key", "", "the run's cluster key (default $"+cluster.KeyEnv+"; for a standalone launch by the same user, the key it made up)")
	asJSON := fs.Bool("json", false, "print the status as JSON")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	if err := parse(fs, args); err != nil {
		return err
	}
	addr := *control
	if addr == "" {
		if *join == "" {
			return usageErrorf("--join HOST:PORT or --control HOST:PORT is required")
		}
		var err error
		if addr, err = cluster.ControlAddr(*join); err != nil {
			return usageErrorf("--join: %v", err)
		}
	}
	if *key == "" {
		*key = os.Getenv(cluster.KeyEnv)
	}
	if host, _, err := net.SplitHostPort(addr); err == nil && *key == "" && cluster.IsLoopback(host) {
		// A standalone launch made up its key and left it for us.
		k, err := cluster.LocalKey(addr)
		if err != nil {
			return err
		}
		*key = k
	}
	if err := cluster.RequireKey(*key, addr); err != nil {
		return usageErrorf("%v", err)
	}
	cl, cc, err := cluster.Dial(addr, cluster.NewSecrets(*key))
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	st, err := cl.Status(ctx, &pb.StatusRequest{})
	if err != nil && *key == "" {
		// Without a key the client speaks plaintext, which a keyed
		// server hangs up on before anything else is said.
		return fmt.Errorf("asking %s: %w (does the run have a cluster key? give it with --cluster-key; a standalone launch leaves its own only to the user who started it)", addr, err)
	}
	if err != nil {
		return fmt.Errorf("asking %s: %w", addr, err)
	}
	if *asJSON {
		js, err := protojson.MarshalOptions{EmitUnpopulated: true, UseProtoNames: true}.Marshal(st)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, string(js))
		return nil
	}
	printStatus(stdout, st)
	return nil
}

func printStatus(w io.Writer, st *pb.StatusResponse) {
	fmt.Fprintf(w, "coordinator %s, generation %d, world size %d", st.Coordinator, st.Generation, st.WorldSize)
	if st.RoundOpen {
		fmt.Fprintf(w, ", rendezvous open (waiting: %s)", strings.Join(st.Waiting, ", "))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "\nmembers (%d alive):\n", len(st.Members))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tGOSSIP\tCONTROL\tPROCS\tDEVICES\tCONFIG")
	for _, m := range st.Members {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%s\n", m.Name, m.Addr, m.Control, m.Procs, m.Devices, m.ConfigHash)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nranks (generation %d):\n", st.Generation)
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NODE\tRANKS\tSTEP\tSTATE\tRESTARTS\tLAST SEEN")
	for _, n := range st.Nodes {
		step, seen := "-", "-"
		if n.Step >= 0 {
			step = fmt.Sprint(n.Step)
		}
		if n.LastSeenMs >= 0 {
			seen = (time.Duration(n.LastSeenMs) * time.Millisecond).Round(100*time.Millisecond).String() + " ago"
		}
		fmt.Fprintf(tw, "  %s\t%d-%d\t%s\t%s\t%d\t%s\n", n.Node, n.BaseRank, n.BaseRank+n.Procs-1, step, n.State, n.Restarts, seen)
	}
	tw.Flush()
}
