package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
)

// errUsage marks errors that are the caller's: they exit with status 2.
var errUsage = errors.New("usage")

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{"bench", "time training steps of a model on synthetic data and print one JSON line", runBench},
	{"train", "train a model on one machine: checkpoints, metrics.jsonl, curves.png, --resume", runTrain},
	{"eval", "print a checkpoint's loss and accuracy on a dataset as one JSON line", runEval},
	{"export", "write a checkpoint's weights as a safetensors file PyTorch loads", runExport},
	{"shard", "write an ImageFolder tree as shuffled tar shards for --data shards:DIR", runShard},
	{"plot", "draw the loss and accuracy curves of one or more runs into a PNG", runPlot},
	{"launch", "run the workers of a data-parallel run on this node (--standalone for one machine)", runLaunch},
	{"status", "print a launched run's members, ranks, generation and step", runStatus},
	{"node", "a worker process of launch (started by launch, not by hand)", runNode},
	{"doctor", "print the compute libraries and GPUs found (OpenBLAS, CUDA, cuBLAS, NCCL), versions, and fixes for what is missing", runDoctor},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line args and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return 0
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			fmt.Fprintf(stderr, "macdist %s: %v\n", c.name, strings.TrimPrefix(err.Error(), errUsage.Error()+": "))
			return 2
		}
		fmt.Fprintf(stderr, "macdist %s: %v\n", c.name, err)
		return 1
	}
	fmt.Fprintf(stderr, "macdist: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: macdist COMMAND [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'macdist COMMAND -h' for a command's flags.")
}

// usageErrorf returns an error that makes run exit with status 2.
func usageErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, args...)...)
}

// newFlagSet returns a flag set that reports errors to run instead of exiting.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("macdist "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args. -h prints the flags; a bad flag is one line that
// points at -h, not the whole list of flags after it (the flag package's
// own habit).
func parseFlags(fs *flag.FlagSet, args []string) error {
	out, usage := fs.Output(), fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.SetOutput(out)
	fs.Usage = usage
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		fs.Usage()
		return err
	}
	return usageErrorf("%v (see '%s -h')", err, fs.Name())
}

// parse parses args and refuses positional arguments, which no subcommand takes.
func parse(fs *flag.FlagSet, args []string) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
