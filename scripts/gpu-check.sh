#!/usr/bin/env bash
# gpu-check.sh: the checks that need an NVIDIA GPU, run on the lent GPU
# machine (x86-64, root, no Go, no network; nvcc 13, PyTorch 2.11 with
# CUDA 13 under /opt/torch/.venv). DRAFT: the lead finalises it.
#
# Binaries are built on the development machine and carried, since the GPU
# machine has no Go:
#
#   go test -c -o kernels/cuda/cuda.test ./kernels/cuda      # (*.test is gitignored: carry it)
#
# then, on the GPU machine, from the repository root:
#
#   bash scripts/gpu-check.sh
#
# It prints a PASS/FAIL/WARN/SKIP line per check and exits non-zero when a
# check fails. Logs go to $LOG_DIR (default: $OUT when set, else
# /tmp/gpu-check). Every step has its own timeout; the whole script stays
# under 4 minutes.
set -u

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
LOG_DIR=${LOG_DIR:-${OUT:-/tmp/gpu-check}}
mkdir -p "$LOG_DIR"
PYTHON=${PYTHON:-python3}
[ -x /opt/torch/.venv/bin/python3 ] && PYTHON=${PYTHON_TORCH:-/opt/torch/.venv/bin/python3}
start=$(date +%s)

results=()
result() { # result STATUS NAME DETAIL
	results+=("$(printf '%-5s %-34s %s' "$1" "$2" "$3")")
	printf '\n>>> %-5s %s: %s\n\n' "$1" "$2" "$3"
}
elapsed() { echo $(($(date +%s) - start)); }

echo "=== environment"
{
	uname -a
	nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || echo "nvidia-smi failed"
	command -v nvcc >/dev/null && nvcc --version | tail -2
	echo "--- libcuda known to ld.so:"; ldconfig -p 2>/dev/null | grep -E 'libcuda\.so|libcublas(Lt)?\.so' || echo "(none)"
	echo "--- cuBLAS files:"
	ls -1 /usr/local/cuda*/lib64/libcublas.so.* /usr/local/nvidia/lib64/libcuda.so.* 2>/dev/null
	find /opt /usr/local/lib /usr/lib/python3* -path '*nvidia*' -name 'libcublas*.so.*' 2>/dev/null | head -5
	echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
} 2>&1 | tee "$LOG_DIR/env.txt"

# retry_local_ptx: when the driver refused our PTX (nvcc 11.8,
# compute_70), rebuild it with this machine's nvcc and run the conformance
# suite once more; the binary loads MACDIST_CUDA_PTX_DIR instead of its
# embedded PTX.
retry_local_ptx() {
	command -v nvcc >/dev/null || { result WARN "PTX from local nvcc" "no nvcc here"; return; }
	# Outside $LOG_DIR: the device tool brings back at most 8 files.
	local ptx=/tmp/gpu-check-ptx f
	mkdir -p "$ptx"
	for f in kernels/cuda/src/*.cu; do
		nvcc -ptx -arch=compute_90 -O3 -o "$ptx/$(basename "${f%.cu}").ptx" "$f" || break
	done
	(cd kernels/cuda && MACDIST_CUDA_PTX_DIR="$ptx" timeout 120 ./cuda.test -test.v -test.count=1 \
		-test.run 'TestConformance' -test.timeout=110s) >"$LOG_DIR/cuda-test-ptx.log" 2>&1
	if grep -q -- '--- PASS: TestConformance' "$LOG_DIR/cuda-test-ptx.log"; then
		result FAIL "embedded PTX" "refused by the driver; PTX from this machine's nvcc passes: regenerate ptx/ with a newer nvcc or arch"
	else
		result FAIL "PTX from local nvcc" "also fails, see $LOG_DIR/cuda-test-ptx.log"
	fi
}

# ---- 1. kernels/cuda: conformance suite and device tests ----------------
bin=kernels/cuda/cuda.test
if [ ! -x "$bin" ]; then
	result FAIL "kernels/cuda tests" "$bin missing: build it with 'go test -c -o $bin ./kernels/cuda' and carry it"
else
	echo "=== kernels/cuda tests"
	# The test binary runs in its package's folder, as go test would.
	(cd kernels/cuda && timeout 120 ./cuda.test -test.v -test.count=1 -test.timeout=110s) >"$LOG_DIR/cuda-test.log" 2>&1
	rc=$?
	grep -E '^(=== RUN|--- |\s+--- |PASS|FAIL|ok)|cuda_test.go' "$LOG_DIR/cuda-test.log" | grep -v '=== RUN' | head -80
	if grep -q -- '--- SKIP: TestConformance' "$LOG_DIR/cuda-test.log"; then
		# go test -v prints t.Skip's message just before the SKIP line.
		why=$(grep -B1 -- '--- SKIP: TestConformance' "$LOG_DIR/cuda-test.log" | head -1 | sed 's/^ *//' | cut -c1-300)
		result FAIL "kernels/cuda conformance" "skipped: no usable GPU found by New(0): $why"
		# Retry once with MACDIST_CUDA_LIBS pointing at a cuBLAS found on
		# disk, so that one GPU session shows whether only the search is
		# at fault; or with PTX from this machine's nvcc if the driver
		# refused ours.
		lib=$(find /usr/local/cuda*/lib64 /opt -name 'libcublas.so.1[123]' 2>/dev/null | sort -r | head -1)
		if [[ $why == *cuModuleLoadDataEx* ]]; then
			retry_local_ptx
		elif [[ $why == *cuBLAS* && -n $lib ]]; then
			dir=$(dirname "$lib")
			echo "=== retry with MACDIST_CUDA_LIBS=$dir"
			(cd kernels/cuda && MACDIST_CUDA_LIBS="$dir" timeout 120 ./cuda.test -test.v -test.count=1 \
				-test.run 'TestConformance' -test.timeout=110s) >"$LOG_DIR/cuda-test-retry.log" 2>&1
			if grep -q -- '--- PASS: TestConformance' "$LOG_DIR/cuda-test-retry.log"; then
				result FAIL "library search" "conformance passes only with MACDIST_CUDA_LIBS=$dir: fix search.go"
			else
				result FAIL "conformance with MACDIST_CUDA_LIBS" "see $LOG_DIR/cuda-test-retry.log"
			fi
		fi
	elif [ $rc -eq 0 ] && grep -q -- '--- PASS: TestConformance' "$LOG_DIR/cuda-test.log"; then
		result PASS "kernels/cuda tests" "$(grep -c -- '--- PASS' "$LOG_DIR/cuda-test.log") passed, device: $(grep -m1 -o 'cuda:0 (.*)' "$LOG_DIR/cuda-test.log")"
	else
		fails=$(grep -E -- '--- FAIL' "$LOG_DIR/cuda-test.log" | awk '{print $3}' | tr '\n' ' ')
		[ $rc -eq 124 ] && fails="$fails(timed out)"
		result FAIL "kernels/cuda tests" "rc=$rc, failed: ${fails:-see log}; first errors:"
		grep -E '^\s+\S+\.go:[0-9]+:' "$LOG_DIR/cuda-test.log" | head -15
		grep -q 'cuModuleLoadDataEx' "$LOG_DIR/cuda-test.log" && retry_local_ptx
	fi
fi

# ---- 2. GEMM throughput: cuBLAS through kernels/cuda vs PyTorch ----------
if [ -x "$bin" ] && grep -q -- '--- PASS: TestConformance' "$LOG_DIR/cuda-test.log" 2>/dev/null; then
	echo "=== GEMM 1024^3"
	(cd kernels/cuda && timeout 40 ./cuda.test -test.run '^$' -test.bench 'BenchmarkGemm' -test.benchtime 200x) \
		>"$LOG_DIR/gemm-bench.log" 2>&1
	ours=$(grep -E 'BenchmarkGemm/(fp32|tf32)' "$LOG_DIR/gemm-bench.log" | awk '{for(i=1;i<=NF;i++) if($i=="GFLOP/s") printf "%s=%s ", $1, $(i-1)}')
	theirs=$(timeout 40 "$PYTHON" - <<'EOF' 2>&1 | tail -1
import time, torch
n = 1024
a = torch.full((n, n), 0.5, device="cuda"); b = torch.full((n, n), 0.25, device="cuda")
out = []
for tf32 in (False, True):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    for _ in range(10): torch.mm(a, b)
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(200): torch.mm(a, b)
    torch.cuda.synchronize()
    out.append("torch-%s=%.0f" % ("tf32" if tf32 else "fp32", 2 * n**3 * 200 / (time.perf_counter() - t) / 1e9))
print(" ".join(out))
EOF
	)
	if [ -n "$ours" ]; then
		result PASS "GEMM 1024^3 GFLOP/s" "ours: $ours| $theirs"
	else
		result WARN "GEMM 1024^3 GFLOP/s" "benchmark did not run, see $LOG_DIR/gemm-bench.log"
	fi
else
	result SKIP "GEMM 1024^3 GFLOP/s" "kernels/cuda tests did not pass"
fi

# ---- 3. compute-sanitizer memcheck on the kernels ------------------------
# Out-of-bounds accesses in src/*.cu that happen to read mapped memory
# pass the conformance suite; memcheck sees them. It does not run under
# gVisor ("Device not supported"), which is then a WARN, not a failure.
if [ -x "$bin" ] && command -v compute-sanitizer >/dev/null && [ $(elapsed) -lt 120 ]; then
	echo "=== compute-sanitizer memcheck"
	(cd kernels/cuda && timeout 75 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 99 --print-limit 20 \
		./cuda.test -test.count=1 -test.run 'TestConformance/(Memory|Im2col|Col2im|Elementwise|Reduce|Softmax|CrossEntropy|LayerNorm|BatchNorm|Pool|Dropout)$') \
		>"$LOG_DIR/memcheck.log" 2>&1
	rc=$?
	if [ $rc -eq 0 ] && grep -q 'ERROR SUMMARY: 0 errors' "$LOG_DIR/memcheck.log"; then
		result PASS "memcheck (our kernels)" "0 errors"
	elif [ $rc -eq 99 ] || grep -qE 'ERROR SUMMARY: [1-9]' "$LOG_DIR/memcheck.log"; then
		result FAIL "memcheck (our kernels)" "$(grep -m1 'ERROR SUMMARY' "$LOG_DIR/memcheck.log"); first: $(grep -m1 -E 'Invalid|Error' "$LOG_DIR/memcheck.log" | cut -c1-200)"
	else
		result WARN "memcheck (our kernels)" "rc=$rc, not conclusive (gVisor? timeout?): $(tail -2 "$LOG_DIR/memcheck.log" | tr '\n' ' ' | cut -c1-200)"
	fi
else
	result SKIP "memcheck (our kernels)" "no compute-sanitizer, no test binary, or no time left"
fi

# ---- TODO(lead): later parts ---------------------------------------------
# Each hook below must keep the whole script under 4 minutes; give each its
# own `timeout` and a result line.
#
# TODO(lead) 4. GPU vs CPU training parity: 20 steps of lenet5 and resnet20
#   on the same seed and data, with bin/macdist (built here with
#   `go build -o bin/macdist ./cmd/macdist`, carried), e.g.
#     timeout 60 bin/macdist train --model lenet5 --device cuda --steps 20 --log $LOG_DIR/lenet5-gpu.jsonl
#     timeout 60 bin/macdist train --model lenet5 --device cpu  --steps 20 --log $LOG_DIR/lenet5-cpu.jsonl
#   and compare the losses step by step (relative error ~1e-4 with TF32 off).
#
# TODO(lead) 5. NCCL: a 1-rank all-reduce through collective's NCCL
#   communicator (libnccl.so.2 from the nvidia-nccl-cu13 wheel:
#   /opt/torch/.venv/lib/python3.12/site-packages/nvidia/nccl/lib), e.g. a
#   carried collective.test run with -test.run NCCL.
#
# TODO(lead) 6. Throughput vs PyTorch: images/s of macdist train vs the
#   same model in PyTorch (bench/compare.sh with the GPU device), a few
#   hundred steps each, after warm-up.

# ---- summary -------------------------------------------------------------
echo
echo "=== gpu-check summary ($(elapsed) s; logs in $LOG_DIR)"
status=0
for r in "${results[@]}"; do
	echo "$r"
	case $r in FAIL*) status=1 ;; esac
done
if [ $status -eq 0 ]; then echo "gpu-check: PASS"; else echo "gpu-check: FAIL"; fi
exit $status
