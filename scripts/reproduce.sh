#!/usr/bin/env bash
# Runs the README's reproduction experiments, one after another, each into
# runs/repro/NAME (metrics.jsonl, curves.png, log). Runs already finished
# (final/ exists) are skipped, so the script can be stopped and started again.
#
#   bash scripts/reproduce.sh                       # every run below
#   bash scripts/reproduce.sh vit-mac vit-adamw     # only these
#
# CIFAR10 names the CIFAR-10 data: a cifar10:DIR of the binary version, or
# imagefolder:FILE.tar.gz of an ImageFolder tree (train/, test/) of JPEGs.
# The ResNet-20 runs are skipped when it is not set.
set -euo pipefail
cd "$(dirname "$0")/.."
MACDIST=${MACDIST:-bin/macdist}
OUT=${OUT:-runs/repro}
CIFAR10=${CIFAR10:-}

common=(--batch 128 --lr-schedule cosine --weight-decay 5e-4 --seed 0 --progress lines)
vit=(--model vit-tiny-cifar --patch 4 --depth 6 --data fashion-mnist --epochs 3 "${common[@]}")
# CIFAR JPEGs are augmented as CIFAR is (RandomCrop 32 pad 4 + flip) and
# normalised with CIFAR-10's statistics, not ImageNet's.
cifar=(--model resnet20 --data "$CIFAR10" --augment crop-flip --normalize cifar10 --epochs 10 "${common[@]}")

declare -A runs=(
	[vit-mac]="${vit[*]} --optimizer mac"
	[vit-mac-noattn]="${vit[*]} --optimizer mac --attention-v=false"
	[vit-adamw]="${vit[*]} --optimizer adamw --lr 1e-3"
	[resnet20-mac]="${cifar[*]} --optimizer mac"
	[resnet20-sgd]="${cifar[*]} --optimizer sgd --lr 0.1"
	[resnet20-kfac]="${cifar[*]} --optimizer kfac"
	[resnet20-eva]="${cifar[*]} --optimizer eva"
	[resnet20-adamw]="${cifar[*]} --optimizer adamw --lr 1e-3"
)
order=(vit-mac vit-mac-noattn vit-adamw resnet20-mac resnet20-sgd resnet20-kfac resnet20-eva resnet20-adamw)
[ $# -gt 0 ] && order=("$@")

for name in "${order[@]}"; do
	args=${runs[$name]:-}
	if [ -z "$args" ]; then
		echo "reproduce: unknown run $name (have: ${!runs[*]})" >&2
		exit 2
	fi
	if [[ $name == resnet20-* && -z $CIFAR10 ]]; then
		echo "reproduce: $name skipped: set CIFAR10=cifar10:DIR (https://www.cs.toronto.edu/~kriz/cifar.html)" >&2
		continue
	fi
	dir=$OUT/$name
	if [ -d "$dir/final" ]; then
		echo "reproduce: $name already done ($dir)"
		continue
	fi
	mkdir -p "$dir"
	resume=()
	[ -e "$dir/metrics.jsonl" ] && resume=(--resume)
	echo "reproduce: $name: $MACDIST train $args --run-dir $dir ${resume[*]}"
	# shellcheck disable=SC2086 # args is a word list
	"$MACDIST" train $args --run-dir "$dir" "${resume[@]}" >>"$dir/log" 2>&1
done
