#!/usr/bin/env bash
# Runs every Go fuzz target of the module, one after another, each for the
# given time, and prints a table: target, inputs run, new interesting
# inputs, crashes.
#
#   scripts/fuzz.sh [TIME]      TIME in seconds (60) or as a Go duration (90s, 2m); default 60
#
# Environment:
#   FUZZ_PARALLEL   fuzzing workers per target (go test -parallel; default GOMAXPROCS)
#   FUZZ_MINIMIZE   how long each new input (and a crasher) is minimised (-fuzzminimizetime;
#                   default 100x, a hundred runs: with go's 60 s a target whose inputs take a
#                   millisecond spends its whole turn minimising, and runs a few hundred inputs)
#   FUZZ_ONLY       a regular expression: only the targets whose package/name match
#   FUZZ_LOGS       directory for each target's go test output (default: a temporary one)
#
# A crash leaves its input in the package's testdata/fuzz/TARGET/, where
# `go test` replays it from then on; fix the bug and commit the input. The
# exit status is 1 when any target crashed.
set -euo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
time=${1:-60}
[[ $time =~ ^[0-9]+$ ]] && time=${time}s
minimize=${FUZZ_MINIMIZE:-100x}
logs=${FUZZ_LOGS:-$(mktemp -d "${TMPDIR:-/tmp}/macdist-fuzz.XXXXXX")}
mkdir -p "$logs"
par=()
[[ -n ${FUZZ_PARALLEL:-} ]] && par=(-parallel "$FUZZ_PARALLEL")

# Targets as "DIR NAME", from the test files' func FuzzX(f *testing.F).
mapfile -t targets < <(
	grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' . |
		sed -E 's#^\./(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*).*#\1 \2#' |
		grep -E "${FUZZ_ONLY:-.}" | sort -u
)
if ((${#targets[@]} == 0)); then
	echo "fuzz: no targets${FUZZ_ONLY:+ match $FUZZ_ONLY}" >&2
	exit 1
fi
echo "fuzz: ${#targets[@]} targets, $time each (workers: ${FUZZ_PARALLEL:-GOMAXPROCS=$(nproc)}); logs in $logs"

rows=()
failed=0
for t in "${targets[@]}"; do
	dir=${t% *} name=${t#* }
	log="$logs/${dir//\//_}.$name.log"
	echo "fuzz: ./$dir $name ..."
	rc=0
	"$GO" test -run '^$' -fuzz "^$name\$" -fuzztime "$time" -fuzzminimizetime "$minimize" "${par[@]}" "./$dir" >"$log" 2>&1 || rc=$?
	# The last progress line holds the totals:
	# "fuzz: elapsed: 60s, execs: 123456 (2057/sec), new interesting: 7 (total: 19)"
	last=$(grep -E '^fuzz: elapsed: .*execs: ' "$log" | tail -n 1 || true)
	execs=$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' <<<"$last")
	fresh=$(sed -nE 's/.*new interesting: ([0-9]+).*/\1/p' <<<"$last")
	crashes=0
	if ((rc != 0)); then
		crashes=$(grep -c 'Failing input written to' "$log" || true)
		if ((crashes == 0)); then
			crashes="error"
		fi
		failed=1
		echo "fuzz: ./$dir $name failed (exit $rc); the end of $log:" >&2
		tail -n 30 "$log" >&2
	fi
	rows+=("$(printf '%-12s %-22s %12s %8s %8s' "$dir" "$name" "${execs:-?}" "${fresh:-?}" "$crashes")")
done

echo
printf '%-12s %-22s %12s %8s %8s\n' package target inputs new crashes
for r in "${rows[@]}"; do
	echo "$r"
done
exit $failed
