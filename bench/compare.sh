#!/usr/bin/env bash
# Times macdist and PyTorch on the same models, batch and step (forward,
# cross-entropy, backward, zero_grad) and prints a table of images per second:
# macdist with oneDNN's convolutions and with its own im2col ones, PyTorch in
# NCHW, channels_last, and channels_last under bf16 autocast, all with the same
# threads, side by side in one run. Each configuration runs REPEAT times,
# interleaved, and the table gives the median: the machine may be shared, and
# the load (uptime) before and after is printed with the CPU model.
#
#   bash bench/compare.sh                      # what `make bench` runs
#   MODELS="resnet20" BATCH=64 REPEAT=5 bash bench/compare.sh
#
# resnet50 runs at 224 px with a batch of 16 (BATCH does not apply to it). Each
# JSON line also carries the process's peak resident memory (max_rss_mb).
#
# On a machine whose speed drifts over minutes (a shared VM), separate runs
# catch the drift on one side or the other: bench/lockstep.py alternates
# single steps of macdist and PyTorch instead, for the ratio alone.
#
# macdist's bf16 (--precision bf16, mode onednn_bf16) joins MACDIST_MODES when
# this CPU runs bf16 natively (AVX512-BF16 or AMX), or when MACDIST_BF16=emulate
# is set (oneDNN's emulation: slow, for checking the script, not for timing);
# otherwise one line says why it is skipped.
#
# Environment: MODELS (lenet5 resnet20 resnet50 vit-tiny-cifar), BATCH (128), REPEAT (3),
# THREADS (2), MACDIST_MODES (onednn none, and onednn_bf16 where it runs), TORCH_MODES (nchw channels_last
# channels_last_bf16), MACDIST (bin/macdist), PYTHON (/usr/bin/python3, with
# python3-torch), OUT (runs/bench: the raw JSON lines are kept there).
# Steps per model are set so that one repeat takes a few minutes on 2 cores.
set -euo pipefail

cd "$(dirname "$0")/.."
MODELS=${MODELS:-"lenet5 resnet20 resnet50 vit-tiny-cifar"}
BATCH=${BATCH:-128}
REPEAT=${REPEAT:-3}
THREADS=${THREADS:-2}
MACDIST_MODES=${MACDIST_MODES:-"onednn none"}
TORCH_MODES=${TORCH_MODES:-"nchw channels_last channels_last_bf16"}
MACDIST=${MACDIST:-bin/macdist}
PYTHON=${PYTHON:-/usr/bin/python3}
OUT=${OUT:-runs/bench}
mkdir -p "$OUT"
results="$OUT/results-$(date +%Y%m%d-%H%M%S).jsonl"

if [ ! -x "$MACDIST" ]; then
	echo "compare: $MACDIST not built; run make build" >&2
	exit 1
fi
have_torch=1
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
	have_torch=0
	echo "compare: $PYTHON has no torch (apt-get install python3-torch); timing macdist only" >&2
fi

# Model-specific flags and step counts; both programs take the same flags.
flags_for() {
	case "$1" in
	lenet5) echo "--steps 20 --warmup 3" ;;
	resnet20) echo "--steps 10 --warmup 2" ;;
	# The CIFAR ViT-Tiny at depth 6 (vit-tiny-cifar defaults to 12): 192 wide,
	# 3 heads, 4 px patches, 65 tokens.
	vit-tiny-cifar) echo "--depth 6 --steps 3 --warmup 1" ;;
	resnet50) echo "--image-size 224 --steps 3 --warmup 1" ;;
	*) echo "--steps 5 --warmup 1" ;;
	esac
}

# bf16: ask macdist itself, whose refusal says what the CPU lacks.
if ! bf16_err=$("$MACDIST" bench --model lenet5 --batch 2 --steps 1 --warmup 0 --precision bf16 2>&1 >/dev/null); then
	echo "compare: skipping macdist bf16: $(echo "$bf16_err" | tail -1)" >&2
elif [[ " $MACDIST_MODES " != *" onednn_bf16 "* ]]; then
	MACDIST_MODES="$MACDIST_MODES onednn_bf16"
fi

cpu_model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
cpu_flags=$(grep -o -w -E 'avx2|avx512f|avx512_vnni|avx512_bf16|amx_bf16' /proc/cpuinfo 2>/dev/null | sort -u | tr '\n' ' ' || true)
load_before=$(uptime)
echo "== CPU: ${cpu_model:-unknown} ($(nproc) CPUs; ${cpu_flags:-no AVX2}); $THREADS threads each" >&2
echo "== load before: $load_before" >&2

# with_rss runs a command that prints one JSON line and adds its peak resident
# memory to it, as torch_ref.py reports its own.
with_rss() {
	"$PYTHON" -c '
import json, resource, subprocess, sys
out = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, check=True, text=True).stdout
r = json.loads(out.strip().splitlines()[-1])
r["max_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps(r))' "$@"
}

# Both programs use THREADS: macdist through GOMAXPROCS (which sets oneDNN's
# OpenMP threads too), PyTorch through torch.set_num_threads.
for r in $(seq "$REPEAT"); do
	for m in $MODELS; do
		f=$(flags_for "$m")
		batch=$BATCH
		[ "$m" = resnet50 ] && batch=16
		for mode in $MACDIST_MODES; do
			dnn=${mode%_bf16} precision=fp32
			[ "$dnn" != "$mode" ] && precision=bf16
			echo "== repeat $r: $m batch $batch $f, macdist --dnn $dnn --precision $precision" >&2
			# shellcheck disable=SC2086
			GOMAXPROCS=$THREADS with_rss "$MACDIST" bench --model "$m" --batch "$batch" --dnn "$dnn" --precision "$precision" $f | tee -a "$results" >&2
		done
		if [ $have_torch = 1 ]; then
			for mode in $TORCH_MODES; do
				echo "== repeat $r: $m batch $batch $f, PyTorch $mode" >&2
				# shellcheck disable=SC2086
				"$PYTHON" bench/torch_ref.py --model "$m" --batch "$batch" --threads "$THREADS" --mode "$mode" $f | tee -a "$results" >&2
			done
		fi
	done
done
load_after=$(uptime)
echo "== load after: $load_after" >&2

# The table, from the JSON lines (the standard library only: any python3 will do).
"$PYTHON" - "$results" "$cpu_model" "$load_before" "$load_after" <<'PY'
import json, statistics, sys
path, cpu, before, after = sys.argv[1:5]
runs, order = {}, []
for line in open(path):
    r = json.loads(line)
    side = "macdist " + r["mode"] if r["framework"] == "macdist" else "PyTorch " + r["mode"]
    if r["framework"] == "macdist" and r.get("precision") == "bf16":
        side += "_bf16" if r.get("bf16_native") else "_bf16 (emulated)"
    if side not in order:
        order.append(side)
    runs.setdefault(r["model"], {}).setdefault(side, []).append(r)
# Images per second from each run's median step: on a shared machine a
# step that a neighbour slowed moves the mean, not the median.
ips = lambda x: x["batch"] / (x["median_step_ms"] / 1000) if x.get("median_step_ms") else x["img_per_s"]
med = lambda rs: statistics.median(ips(x) for x in rs)
print()
print(f"CPU: {cpu}. Load before: {before.split('load average:')[-1].strip()}; after: {after.split('load average:')[-1].strip()}.")
print("img/s from each run's median step, median of the repeats (min–max in brackets); ratio = macdist onednn ÷")
print("PyTorch's faster fp32 mode, of the medians; paired = the median over repeats of that ratio within each repeat")
print("(the runs of one repeat are minutes apart, not hours); bf16 ratio = macdist onednn_bf16 ÷ PyTorch channels_last_bf16")
print()
print("| model | batch | " + " | ".join(order) + " | ratio | paired | bf16 ratio |")
print("|---|---:|" + "---:|" * len(order) + "---:|---:|---:|")
for model, s in runs.items():
    cells = []
    for side in order:
        rs = s.get(side)
        if not rs:
            cells.append("–")
            continue
        v = [ips(x) for x in rs]
        cells.append(f"{med(rs):.1f} ({min(v):.0f}–{max(v):.0f})" if len(v) > 1 else f"{v[0]:.1f}")
    torch32 = [med(s[k]) for k in ("PyTorch nchw", "PyTorch channels_last") if k in s]
    ours = s.get("macdist onednn")
    ratio = f"{med(ours) / max(torch32):.2f}" if ours and torch32 else "–"
    # Per repeat: the i-th run of each side belongs to repeat i.
    pairs = []
    for i, o in enumerate(ours or []):
        t = [ips(s[k][i]) for k in ("PyTorch nchw", "PyTorch channels_last") if k in s and i < len(s[k])]
        if t:
            pairs.append(ips(o) / max(t))
    paired = f"{statistics.median(pairs):.2f}" if pairs else "–"
    ours16 = next((s[k] for k in ("macdist onednn_bf16", "macdist onednn_bf16 (emulated)") if k in s), None)
    torch16 = s.get("PyTorch channels_last_bf16")
    ratio16 = f"{med(ours16) / med(torch16):.2f}" if ours16 and torch16 else "–"
    batch = next(iter(s.values()))[0]["batch"]
    print(f"| {model} | {batch} | " + " | ".join(cells) + f" | {ratio} | {paired} | {ratio16} |")
print()
print("Peak resident memory (MB, median of the repeats) of each process:")
print()
print("| model | " + " | ".join(order) + " |")
print("|---|" + "---:|" * len(order))
for model, s in runs.items():
    cells = []
    for side in order:
        v = [x["max_rss_mb"] for x in s.get(side, []) if "max_rss_mb" in x]
        cells.append(f"{statistics.median(v):.0f}" if v else "–")
    print(f"| {model} | " + " | ".join(cells) + " |")
isa = {r[0]["dnn_isa"] for s in runs.values() for k, r in s.items() if k == "macdist onednn"}
print(f"\noneDNN ISA: {', '.join(sorted(isa)) or '–'}. Raw results: {path}")
PY
