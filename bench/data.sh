#!/usr/bin/env bash
# Times the input pipeline on an ImageNet-like tree: macdist with
# libjpeg-turbo, macdist with Go's decoder, and torchvision + PIL through
# DataLoader(num_workers=WORKERS), on the same files, with the training
# transforms (RandomResizedCrop + flip) and the evaluation ones (Resize +
# CenterCrop), REPEAT times each, interleaved; prints the JSON lines and a
# table of medians. img/CPU-s (images per second of the processes' CPU time)
# is the per-core figure that survives a machine shared with other work.
#
#   bash bench/data.sh
#   WORKERS=2 SIZE=224 REPEAT=3 TRAIN=2000 bash bench/data.sh
#
# With SHARD_MAX_SIDE=N (e.g. 320) it also times macdist on the tree written
# as shards by `macdist shard --max-side N` (generated when missing), against
# the same torchvision run on the original files: the gain of shrinking the
# JPEGs once, ahead of training.
#
# Environment: CIFAR (/work/shared/datasets/cifar10-jpeg.tar.gz, the source
# photos), TREE (runs/bench-data/tree, generated when missing), MACDIST
# (bin/macdist), PYTHON (/usr/bin/python3 with torch, torchvision, PIL),
# SHARD_MAX_SIDE (unset: no shards).
set -euo pipefail

cd "$(dirname "$0")/.."
WORKERS=${WORKERS:-2}
SIZE=${SIZE:-224}
REPEAT=${REPEAT:-3}
TRAIN=${TRAIN:-2000}
CIFAR=${CIFAR:-/work/shared/datasets/cifar10-jpeg.tar.gz}
TREE=${TREE:-runs/bench-data/tree}
MACDIST=${MACDIST:-bin/macdist}
PYTHON=${PYTHON:-/usr/bin/python3}
OUT=${OUT:-runs/bench-data}
mkdir -p "$OUT"
results="$OUT/results-$(date +%Y%m%d-%H%M%S).jsonl"

if [ ! -x "$MACDIST" ]; then
	echo "data.sh: $MACDIST not built; run make build" >&2
	exit 1
fi
if [ ! -d "$TREE/train" ]; then
	"$PYTHON" bench/gen_imagenet_like.py "$CIFAR" "$TREE" --train "$TRAIN" --val 100
fi
SHARDS=""
if [ -n "${SHARD_MAX_SIDE:-}" ]; then
	SHARDS="$OUT/shards-max$SHARD_MAX_SIDE"
	if [ ! -f "$SHARDS/index.json" ]; then
		"$MACDIST" shard --data "imagefolder:$TREE" --out "$SHARDS" --max-side "$SHARD_MAX_SIDE" >&2
	fi
fi
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; workers $WORKERS" >&2

for r in $(seq "$REPEAT"); do
	for t in train eval; do
		flag=""
		[ "$t" = eval ] && flag="--eval"
		echo "round $r $t: load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
		MACDIST_JPEG=turbo "$MACDIST" bench data --data "imagefolder:$TREE" --workers "$WORKERS" --image-size "$SIZE" $flag | tee -a "$results"
		MACDIST_JPEG=go "$MACDIST" bench data --data "imagefolder:$TREE" --workers "$WORKERS" --image-size "$SIZE" $flag | tee -a "$results"
		if [ -n "$SHARDS" ]; then
			MACDIST_JPEG=turbo "$MACDIST" bench data --data "shards:$SHARDS" --workers "$WORKERS" --image-size "$SIZE" $flag | tee -a "$results"
		fi
		"$PYTHON" bench/torch_data.py --data "$TREE" --workers "$WORKERS" --image-size "$SIZE" $flag | tee -a "$results"
	done
done

"$PYTHON" - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
key = lambda r: (r["transforms"], r["framework"] if r.get("data", "imagefolder") == "imagefolder" else r["framework"] + "/" + r["data"], r["decoder"])
groups = {}
for r in rows:
    groups.setdefault(key(r), []).append(r)
med = {k: (statistics.median(r["images_per_s"] for r in v), statistics.median(r["images_per_cpu_s"] for r in v), v) for k, v in groups.items()}
print("%-6s %-15s %-14s %8s %10s %9s  %s" % ("", "framework", "decoder", "img/s", "img/CPU-s", "vs torch", "read/decode/resize"))
for t in ("train", "eval"):
    base = [m[1] for k, m in med.items() if k[0] == t and k[1] == "torchvision"]
    for k, (ips, ipc, v) in sorted(med.items()):
        if k[0] != t:
            continue
        sh = ""
        if v[0]["read_share"] is not None:
            sh = "/".join("%.0f%%" % (100 * statistics.median(r[s] for r in v)) for s in ("read_share", "decode_share", "resize_share"))
        rel = "%.2fx" % (ipc / base[0]) if base else "-"
        print("%-6s %-15s %-14s %8.0f %10.0f %9s  %s" % (t, k[1], k[2], ips, ipc, rel, sh))
print("(medians of %d runs; raw lines in %s)" % (len(rows) // max(len(groups), 1), sys.argv[1]))
PY
