#!/usr/bin/env bash
# Times one ResNet-20 / CIFAR-10 training epoch, data loading included:
# macdist with MAC (the reproduction's recipe: crop + flip, CIFAR-10
# normalisation, batch 128) against PyTorch 1.13 with SGD on the same recipe
# (bench/torch_epoch.py: ImageFolder + DataLoader, NCHW and channels_last), on
# the same JPEG files, with the same threads and data workers, one after
# another in one run. Prints the JSON lines and a table.
#
#   bash bench/epoch.sh                          # whole epochs (minutes each)
#   MAX_STEPS=100 REPEAT=2 bash bench/epoch.sh   # the first 100 steps
#
# Environment: CIFAR (/work/shared/datasets/cifar10-jpeg.tar.gz: ImageFolder
# train/ and test/ as JPEGs), TREE (runs/bench-epoch/cifar10-jpeg, unpacked
# there when missing), THREADS (2), WORKERS (2), MAX_STEPS (0: whole epoch),
# REPEAT (1), MACDIST (bin/macdist), PYTHON (/usr/bin/python3 with torch).
set -euo pipefail

cd "$(dirname "$0")/.."
CIFAR=${CIFAR:-/work/shared/datasets/cifar10-jpeg.tar.gz}
OUT=${OUT:-runs/bench-epoch}
TREE=${TREE:-$OUT/cifar10-jpeg}
THREADS=${THREADS:-2}
WORKERS=${WORKERS:-2}
MAX_STEPS=${MAX_STEPS:-0}
REPEAT=${REPEAT:-1}
MACDIST=${MACDIST:-bin/macdist}
PYTHON=${PYTHON:-/usr/bin/python3}
mkdir -p "$OUT"
results="$OUT/results-$(date +%Y%m%d-%H%M%S).jsonl"

if [ ! -x "$MACDIST" ]; then
	echo "epoch.sh: $MACDIST not built; run make build" >&2
	exit 1
fi
if [ ! -d "$TREE/train" ]; then
	echo "epoch.sh: unpacking $CIFAR into $(dirname "$TREE")" >&2
	tar -xzf "$CIFAR" -C "$(dirname "$TREE")"
	[ -d "$TREE/train" ] || {
		echo "epoch.sh: $CIFAR did not unpack to $TREE/train" >&2
		exit 1
	}
fi
echo "== CPU: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) CPUs); $THREADS threads, $WORKERS data workers" >&2
load_before=$(uptime)

for r in $(seq "$REPEAT"); do
	run=$OUT/run-macdist
	echo "== repeat $r: macdist resnet20, MAC" >&2
	steps=()
	[ "$MAX_STEPS" != 0 ] && steps=(--max-steps "$MAX_STEPS")
	GOMAXPROCS=$THREADS "$MACDIST" train --model resnet20 --data "imagefolder:$TREE" --augment crop-flip \
		--normalize cifar10 --batch 128 --epochs 1 --optimizer mac --workers "$WORKERS" --test-subset 128 \
		--seed "$r" --progress none --run-dir "$run" --overwrite "${steps[@]}" >&2
	# The epoch's training time (evaluation apart) from the run's metrics.
	"$PYTHON" -c '
import json, sys
m = json.loads(open(sys.argv[1]).readlines()[0])
images = m["img_per_s"] * m["epoch_time_s"]
print(json.dumps({"framework": "macdist", "recipe": "resnet20 mac crop-flip", "mode": "onednn",
    "steps": m["step"], "images": round(images), "epoch_time_s": m["epoch_time_s"], "img_per_s": m["img_per_s"],
    "train_acc": m["train_acc"], "workers": int(sys.argv[2]), "threads": int(sys.argv[3])}))' \
		"$run/metrics.jsonl" "$WORKERS" "$THREADS" | tee -a "$results" >&2
	for mode in nchw channels_last; do
		echo "== repeat $r: PyTorch resnet20, SGD, $mode" >&2
		"$PYTHON" bench/torch_epoch.py --data "$TREE/train" --threads "$THREADS" --workers "$WORKERS" \
			--max-steps "$MAX_STEPS" --mode "$mode" | tee -a "$results" >&2
	done
done

"$PYTHON" - "$results" "$load_before" "$(uptime)" <<'PY'
import json, statistics, sys
path, before, after = sys.argv[1:4]
runs = {}
for line in open(path):
    r = json.loads(line)
    runs.setdefault(f'{r["framework"]} {r["recipe"]} ({r["mode"]})', []).append(r)
print(f"\nLoad before: {before.split('load average:')[-1].strip()}; after: {after.split('load average:')[-1].strip()}.\n")
print("| run | steps | s (median) | img/s |")
print("|---|---:|---:|---:|")
for k, rs in runs.items():
    t = statistics.median(r["epoch_time_s"] for r in rs)
    print(f'| {k} | {rs[0]["steps"]} | {t:.1f} | {statistics.median(r["img_per_s"] for r in rs):.0f} |')
print(f"\nRaw results: {path}")
PY
