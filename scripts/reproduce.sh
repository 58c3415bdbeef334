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
# The ResNet-20 and CIFAR-10 ViT runs are skipped when it is not set.
#
# The ImageNet runs (imagenet-*) are the paper's four models with timm's recipe
# as the authors ran it (their ImageNet code is timm's train.py with MAC added),
# written for a GPU cluster and never run by this script's authors: they start
# `macdist launch` on this node and expect the same command on every node.
#   IMAGENET   shards:DIR (from `macdist shard`) or imagefolder:DIR (train/, val/)
#   NNODES     nodes in the run (4), NPROC      GPUs per node (8)
#   JOIN       HOST:PORT of the first node (this node's gossip address if empty)
#   MACDIST_CLUSTER_KEY  the shared secret of `launch --cluster-key`
#   EPOCHS     100 (the paper also reports 200)
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

# The paper's ViT recipe on CIFAR-10: MAC with η 0.5 at batch 1024 scaled
# linearly to batch 128 (as timm scales SGD-like optimizers), λ 3, β 0.99,
# Tcov 5, Tinv 5, decoupled weight decay 1e-4; AdamW with the usual
# small-data ViT setting (lr 1e-3, weight decay 0.05). Both with timm's
# augmentation: mixup 0.8 / CutMix 1.0, label smoothing 0.1, RandAugment
# m9-mstd0.5, random erasing 0.25, drop-path 0.1, model EMA. Warmup is half an
# epoch of the three (the paper's 5 of 100-300).
vitc=(--model vit-tiny-cifar --patch 4 --depth 6 --data "$CIFAR10" --augment crop-flip --normalize cifar10
	--epochs 3 --warmup 0.5 --batch 128 --lr-schedule cosine --seed 0 --progress lines
	--label-smoothing 0.1 --mixup 0.8 --cutmix 1.0 --auto-augment rand-m9-mstd0.5 --random-erase 0.25
	--drop-path 0.1 --model-ema --model-ema-decay 0.999 --no-decay-bn-bias)

# ImageNet: the global batch is 1024 (the paper's 4 GPUs x 256); --batch is
# the global batch under launch. ResNets: η 0.5, λ 1, decoupled wd 2e-5, 5
# warmup epochs, cosine; DeiT-Small and Swin-Tiny: η 0.5, λ 3, β 0.99, Tcov 5,
# Tinv 5, wd 1e-4, 5 warmup epochs, cosine; timm's augmentation for all.
IMAGENET=${IMAGENET:-}
EPOCHS=${EPOCHS:-100}
inet=(--data "$IMAGENET" --epochs "$EPOCHS" --batch 1024 --lr-schedule cosine --warmup 5 --seed 0 --progress lines
	--optimizer mac --lr 0.5 --decoupled-wd --label-smoothing 0.1 --no-decay-bn-bias --workers 8)
inet_cnn=("${inet[@]}" --damping 1 --weight-decay 2e-5)
inet_vit=("${inet[@]}" --damping 3 --stat-decay 0.99 --tcov 5 --tinv 5 --weight-decay 1e-4
	--mixup 0.8 --cutmix 1.0 --auto-augment rand-m9-mstd0.5 --random-erase 0.25 --model-ema
	--model-ema-decay 0.99996 --clip-grad 5)

declare -A runs=(
	[vit-mac]="${vit[*]} --optimizer mac"
	[vit-mac-noattn]="${vit[*]} --optimizer mac --attention-v=false"
	[vit-adamw]="${vit[*]} --optimizer adamw --lr 1e-3"
	[resnet20-mac]="${cifar[*]} --optimizer mac"
	[resnet20-sgd]="${cifar[*]} --optimizer sgd --lr 0.1"
	[resnet20-kfac]="${cifar[*]} --optimizer kfac"
	[resnet20-eva]="${cifar[*]} --optimizer eva"
	[resnet20-adamw]="${cifar[*]} --optimizer adamw --lr 1e-3"
	[vit-cifar-mac]="${vitc[*]} --optimizer mac --lr 0.0625 --damping 3 --stat-decay 0.99 --tcov 5 --tinv 5 --weight-decay 1e-4 --decoupled-wd"
	[vit-cifar-adamw]="${vitc[*]} --optimizer adamw --lr 1e-3 --weight-decay 0.05"
	[imagenet-resnet50]="--model resnet50 ${inet_cnn[*]}"
	[imagenet-resnet101]="--model resnet101 ${inet_cnn[*]}"
	[imagenet-deit-small]="--model deit-small ${inet_vit[*]} --drop-path 0.1 --repeated-aug 3"
	[imagenet-swin-tiny]="--model swin-tiny ${inet_vit[*]} --drop-path 0.2"
)
# The ImageNet runs only when named.
order=(vit-mac vit-mac-noattn vit-adamw resnet20-mac resnet20-sgd resnet20-kfac resnet20-eva resnet20-adamw
	vit-cifar-mac vit-cifar-adamw)
[ $# -gt 0 ] && order=("$@")

for name in "${order[@]}"; do
	args=${runs[$name]:-}
	if [ -z "$args" ]; then
		echo "reproduce: unknown run $name (have: ${!runs[*]})" >&2
		exit 2
	fi
	if [[ $name == imagenet-* ]]; then
		if [ -z "$IMAGENET" ]; then
			echo "reproduce: $name needs IMAGENET=shards:DIR or imagefolder:DIR" >&2
			exit 2
		fi
		key=${MACDIST_CLUSTER_KEY:-}
		if [ -z "$key" ] && [ "${NNODES:-4}" != 1 ]; then
			echo "reproduce: $name on ${NNODES:-4} nodes needs MACDIST_CLUSTER_KEY (the same on every node)" >&2
			exit 2
		fi
		dir=$OUT/$name
		mkdir -p "$dir"
		resume=()
		[ -e "$dir/metrics.jsonl" ] && resume=(--resume)
		bind=${BIND:-0.0.0.0:29400}
		launch=(--nnodes "${NNODES:-4}" --nproc-per-node "${NPROC:-8}" --bind "$bind" --join "${JOIN:-$bind}")
		[ "${NNODES:-4}" = 1 ] && launch=(--standalone --nproc-per-node "${NPROC:-8}")
		echo "reproduce: $name: $MACDIST launch ${launch[*]} -- $args --device cuda --run-dir $dir ${resume[*]}"
		# shellcheck disable=SC2086 # args is a word list
		"$MACDIST" launch "${launch[@]}" -- $args --device cuda --run-dir "$dir" "${resume[@]}" >>"$dir/log" 2>&1
		continue
	fi
	if [[ ( $name == resnet20-* || $name == vit-cifar-* ) && -z $CIFAR10 ]]; then
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
