"""Times macdist and PyTorch on one model in lockstep: their training steps
alternate, one step of each program in turn (the order rotating every round),
so that a neighbour's load that comes and goes over seconds falls on both
alike, where bench/compare.sh's separate runs, minutes apart, can catch it on
one side only. Each program is started once (`macdist bench --lockstep`,
`bench/torch_ref.py --lockstep`), warms up, says "ready", then runs one timed
step per line it is sent and reports its time.

    /usr/bin/python3 bench/lockstep.py --model resnet20 --steps 30
    /usr/bin/python3 bench/lockstep.py --model resnet50 --image-size 224 --batch 16 --steps 8
    /usr/bin/python3 bench/lockstep.py --model resnet20 --torch-modes "" --variant direct:MACDIST_CONV_ALGO=direct
    /usr/bin/python3 bench/lockstep.py --model resnet20 --precision bf16

Prints each side's median step and images per second, and the ratio the issue
asks for, macdist's speed over PyTorch's faster mode of the same precision (fp32: NCHW or channels_last; bf16:
channels_last under autocast) with the faster median step, as the median over rounds of that round's ratio, with
its quartiles; and each process's peak resident memory (its rusage). Needs Debian's python3-torch for the PyTorch
side (the standard library only here).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


class Side:
    def __init__(self, name, argv, env):
        self.name, self.times = name, []
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, bufsize=1)

    def expect(self, word):
        line = self.p.stdout.readline()
        if not line.startswith(word):
            self.p.kill()
            sys.exit(f"lockstep: {self.name} said {line.strip()!r}, not {word!r} (exit {self.p.poll()})")
        return line

    def step(self):
        self.p.stdin.write("go\n")
        self.p.stdin.flush()
        self.times.append(float(self.expect("step_ms").split()[1]))

    def finish(self):
        self.p.stdin.close()
        out = self.p.stdout.read()
        # The child's own peak, from wait4, as compare.sh takes it.
        _, status, usage = os.wait4(self.p.pid, 0)
        self.p.returncode = os.waitstatus_to_exitcode(status)
        last = [l for l in out.splitlines() if l.startswith("{")]
        result = json.loads(last[-1]) if last else {}
        result["max_rss_mb"] = usage.ru_maxrss / 1024
        return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30, help="timed steps of each side (rounds)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=0)
    ap.add_argument("--depth", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                    help="macdist's --precision; PyTorch's modes default to those of the same precision")
    ap.add_argument("--torch-modes", default=None,
                    help='PyTorch modes (bench/torch_ref.py --mode); default "nchw channels_last" in fp32, '
                         '"channels_last_bf16" in bf16')
    ap.add_argument("--macdist", default="bin/macdist")
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:VAR=VALUE,...",
                    help="another macdist side, run with these environment variables (MACDIST_CONV_ALGO=direct, "
                         "OMP_WAIT_POLICY=passive, ...); repeatable; its ratio to the first macdist is printed too")
    a = ap.parse_args()

    if a.torch_modes is None:
        a.torch_modes = "channels_last_bf16" if a.precision == "bf16" else "nchw channels_last"
    common = ["--model", a.model, "--batch", str(a.batch), "--steps", str(a.steps), "--warmup", str(a.warmup)]
    if a.image_size:
        common += ["--image-size", str(a.image_size)]
    if a.depth:
        common += ["--depth", str(a.depth)]
    env = dict(os.environ, GOMAXPROCS=str(a.threads))
    ours_argv = [a.macdist, "bench", "--lockstep", "--precision", a.precision] + common
    sides = [Side("macdist " + a.precision if a.precision != "fp32" else "macdist", ours_argv, env)]
    for v in a.variant:
        name, _, assigns = v.partition(":")
        venv = dict(env)
        for kv in filter(None, assigns.split(",")):
            k, _, val = kv.partition("=")
            venv[k] = val
        sides.append(Side("macdist " + name, ours_argv, venv))
    here = os.path.dirname(os.path.abspath(__file__))
    for mode in a.torch_modes.split():
        sides.append(Side("PyTorch " + mode, [a.python, os.path.join(here, "torch_ref.py"), "--lockstep",
                                               "--threads", str(a.threads), "--mode", mode] + common, env))
    # Every side has warmed up before any timed step runs.
    for s in sides:
        s.expect("ready")
    for r in range(a.steps):
        for s in sides[r % len(sides):] + sides[:r % len(sides)]:
            s.step()
    results = [s.finish() for s in sides]

    ours = sides[0]
    variants = [s for s in sides[1:] if s.name.startswith("macdist ")]
    torch = [s for s in sides[1:] if s.name.startswith("PyTorch ")]
    # The faster mode is the one with the faster median step; taking the
    # faster of the modes round by round instead would compare macdist with
    # the luckier of two noisy draws, a bias against it.
    fastest = min(torch, key=lambda t: statistics.median(t.times)) if torch else None
    ratios = sorted(fastest.times[r] / ours.times[r] for r in range(a.steps)) if torch else []
    q = lambda f: ratios[min(len(ratios) - 1, int(f * len(ratios)))]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"{a.model}, batch {a.batch}, {a.steps} rounds, {a.threads} threads each, {cpu}, "
          f"load {os.getloadavg()[0]:.2f} at the end")
    print()
    print("| side | median step (ms) | img/s | peak RSS (MB) |")
    print("|---|---:|---:|---:|")
    for s, res in zip(sides, results):
        med = statistics.median(s.times)
        print(f"| {s.name} | {med:.1f} | {a.batch / med * 1000:.1f} | {res['max_rss_mb']:.0f} |")
    if ratios:
        print()
        print(f"macdist ÷ PyTorch's faster {a.precision} mode ({fastest.name}), per round: median {statistics.median(ratios):.2f} "
              f"(quartiles {q(0.25):.2f}–{q(0.75):.2f})")
    for v in variants:
        vr = sorted(ours.times[r] / v.times[r] for r in range(a.steps))
        print(f"{v.name} ÷ macdist (speed), per round: median {statistics.median(vr):.3f} "
              f"(quartiles {vr[len(vr) // 4]:.3f}–{vr[min(len(vr) - 1, 3 * len(vr) // 4)]:.3f})")
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, f"lockstep-{a.model}-{time.strftime('%Y%m%d-%H%M%S')}.jsonl")
    with open(path, "w") as f:
        for s, res in zip(sides, results):
            f.write(json.dumps(dict(res, side=s.name, lockstep_step_ms=s.times)) + "\n")
    print(f"\nRaw results: {path}")


if __name__ == "__main__":
    main()
