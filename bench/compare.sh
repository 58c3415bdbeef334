#!/usr/bin/env bash
# Times macdist and PyTorch on the same models, batch and step (forward,
# cross-entropy, backward, zero_grad) and prints a table of images per second.
#
#   bash bench/compare.sh                      # what `make bench` runs
#   MODELS="resnet20" BATCH=64 bash bench/compare.sh
#
# Environment: MODELS (lenet5 resnet20 vit-tiny-cifar), BATCH (128),
# MACDIST (bin/macdist), PYTHON (/usr/bin/python3, with python3-torch),
# OUT (runs/bench: the raw JSON lines are kept there).
# Steps per model are set so that the whole run takes a few minutes on 2 cores.
set -euo pipefail

cd "$(dirname "$0")/.."
MODELS=${MODELS:-"lenet5 resnet20 vit-tiny-cifar"}
BATCH=${BATCH:-128}
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
	resnet20) echo "--steps 5 --warmup 1" ;;
	# The CIFAR ViT-Tiny at depth 6 (vit-tiny-cifar defaults to 12): 192 wide,
	# 3 heads, 4 px patches, 65 tokens.
	vit-tiny-cifar) echo "--depth 6 --steps 3 --warmup 1" ;;
	*) echo "--steps 5 --warmup 1" ;;
	esac
}

for m in $MODELS; do
	f=$(flags_for "$m")
	echo "== $m batch $BATCH $f" >&2
	# shellcheck disable=SC2086
	"$MACDIST" bench --model "$m" --batch "$BATCH" $f | tee -a "$results" >&2
	if [ $have_torch = 1 ]; then
		# shellcheck disable=SC2086
		"$PYTHON" bench/torch_ref.py --model "$m" --batch "$BATCH" $f | tee -a "$results" >&2
	fi
done

# The table, from the JSON lines (the standard library only: any python3 will do).
"$PYTHON" - "$results" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    side = "macdist" if r["framework"] == "macdist" else "torch"
    rows.setdefault(r["model"], {})[side] = r
print()
print("| model | batch | macdist img/s | PyTorch img/s | ratio | macdist ms/step | PyTorch ms/step | macdist BLAS |")
print("|---|---:|---:|---:|---:|---:|---:|---|")
for model, s in rows.items():
    m, t = s.get("macdist"), s.get("torch")
    ratio = f"{m['img_per_s'] / t['img_per_s']:.2f}" if m and t else "–"
    fmt = lambda r, k, p: f"{r[k]:.{p}f}" if r else "–"
    print(f"| {model} | {(m or t)['batch']} | {fmt(m, 'img_per_s', 1)} | {fmt(t, 'img_per_s', 1)} | {ratio} "
          f"| {fmt(m, 'step_ms', 1)} | {fmt(t, 'step_ms', 1)} | {m['blas'] if m else '–'} |")
print(f"\nratio = macdist img/s ÷ PyTorch img/s (above 1: macdist is faster). Raw results: {sys.argv[1]}")
PY
