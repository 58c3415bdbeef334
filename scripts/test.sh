#!/usr/bin/env bash
# `make test`: every step runs even when an earlier one fails, so one red
# step does not hide the others; the exit status is non-zero if any failed,
# and the last line counts the steps.
set -uo pipefail

GO=${GO:-go}
TEST_TIMEOUT=${TEST_TIMEOUT:-10m}
RACE_PKGS=${RACE_PKGS:-}

# deploy/'s tests find the prometheus that scripts/test-tools.sh unpacked,
# and fail rather than skip when it is not there.
export PATH="$PWD/.cache/test-tools/usr/bin:$PATH"
export MACDIST_TEST_TOOLS=required

passed=0
failed=()
step() {
	local name=$1
	shift
	echo "== $name: $*"
	if "$@"; then
		passed=$((passed + 1))
	else
		echo "== $name: FAILED"
		failed+=("$name")
	fi
}

fmt_check() {
	local out
	out=$(gofmt -l $(find . -name '*.go' -not -path './.git/*' -not -path './.cache/*'))
	if [ -n "$out" ]; then
		echo "gofmt would change:"
		echo "$out"
		return 1
	fi
}

step vet "$GO" vet ./...
step gofmt fmt_check
step test "$GO" test -timeout "$TEST_TIMEOUT" ./...
if [ -n "$RACE_PKGS" ]; then
	# shellcheck disable=SC2086 # a list of packages
	step race "$GO" test -race -short -timeout "$TEST_TIMEOUT" $RACE_PKGS
fi
step cuda-emu kernels/cuda/emu/run.sh
step nccl-emu collective/nccl/emu/run.sh

if [ ${#failed[@]} -gt 0 ]; then
	echo "make test: failed steps: ${failed[*]}"
fi
echo "steps: $passed passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
