#!/usr/bin/env bash
# The whole GPU check in one call (DESIGN.md section 5).
#
#   scripts/device-check.sh build   # here (no GPU needed): builds the CUDA test
#                                   # binaries and the report into device-bin/
#   scripts/device-check.sh run     # on the GPU machine (carry device-bin):
#                                   # every CUDA test, compute-sanitizer on them,
#                                   # the GPU report with the PyTorch/Triton
#                                   # baselines merged (report --torch),
#                                   # each step its own file under $OUT
#
# The Triton baselines for Lightning attention travel as wheels in an ignored
# .whl/ (carry it too); fetch them here first:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform any -d .whl fla-core==0.6.0 lightning-attn==0.0.5
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
build)
    rm -rf device-bin && mkdir -p device-bin
    cargo build --release --features cuda --bin report
    cp target/release/report device-bin/
    cargo test --release --features cuda --test cuda_softmax --test cuda_norm --test cuda_lightning --test cuda_kron --test cuda_qgemm --no-run 2>&1 | tee /tmp/tk-no-run.log
    grep -o 'target/release/deps/cuda_[A-Za-z0-9_-]*' /tmp/tk-no-run.log | sort -u | while read -r bin; do
        cp "$bin" device-bin/
    done
    strip device-bin/* # debug info would push the folder past the 64 MiB a device call can carry
    ls -la device-bin
    # the binaries pass 64 MiB: carry them compressed in one stream (xz -T1:
    # the five copies of the fatbin compress against each other; about 10 MB)
    tar -C device-bin -cf - . | xz -T1 -9 >/tmp/tk-bins.tar.xz
    rm -rf device-bin && mkdir -p device-bin && mv /tmp/tk-bins.tar.xz device-bin/bins.tar.xz
    ls -la device-bin
    ;;
run)
    # Correctness first (the tests and the sanitizers side by side, each under a
    # timeout, so that a slow timing step cannot cost the verdicts), then the
    # timing alone on the card. Every step writes its own file under $OUT; the
    # summary prints last.
    out="${OUT:-/tmp}"
    if [ -f device-bin/bins.tar.xz ]; then
        tar -C device-bin -xJf device-bin/bins.tar.xz ||
            python3 -c "import lzma, tarfile; tarfile.open(fileobj=lzma.open('device-bin/bins.tar.xz')).extractall('device-bin')"
    fi
    export PATH="$PATH:/usr/local/cuda/bin"
    export TK_REQUIRE_GPU=1 # the CUDA tests fail instead of skipping when no device answers
    # cuBLAS for the report's GEMM baseline: PyTorch's pip copy when there is no system one
    cublas=$(python3 -c "import nvidia.cublas, os; print(os.path.join(nvidia.cublas.__path__[0], 'lib'))" 2>/dev/null || true)
    [ -n "$cublas" ] && export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$cublas"
    step() { # name, seconds, command...
        local name=$1 secs=$2
        shift 2
        if timeout "$secs" "$@" >"$out/$name.log" 2>&1; then
            echo "ok    $name"
        else
            echo "FAIL  $name (exit $?; 124 = timed out)"
        fi
    }
    ss=$(ls device-bin/cuda_softmax-*)
    nn=$(ls device-bin/cuda_norm-*)
    ll=$(ls device-bin/cuda_lightning-*)
    kk=$(ls device-bin/cuda_kron-*)
    qq=$(ls device-bin/cuda_qgemm-*)
    san="compute-sanitizer --error-exitcode 1"
    {
        step test_softmax 150 "$ss" &
        step test_norm 150 "$nn" &
        step test_lightning 180 "$ll" &
        step test_kron 150 "$kk" &
        step test_qgemm 240 "$qq" & # every int8 case with both GEMM kernels on compute capability 9.0
        step memcheck_qgemm 180 $san --tool memcheck "$qq" --test-threads=1 small_case_for_sanitizers errors_enqueue &
        step memcheck_kron 180 $san --tool memcheck "$kk" --test-threads=1 zero_and_non_finite errors_enqueue tensor_cores_for_sanitizers &
        step memcheck_lightning 180 $san --tool memcheck "$ll" --test-threads=1 small_case_for_sanitizers segmented_walk_for_sanitizers decode &
        step memcheck_softmax 180 $san --tool memcheck "$ss" --test-threads=1 &
        step memcheck_norm 180 $san --tool memcheck "$nn" --test-threads=1 &
        step racecheck_norm 180 $san --tool racecheck "$nn" --test-threads=1 shapes_for_sanitizers &
        step racecheck 180 sh -c "$san --tool racecheck $ss --test-threads=1 cuda_softmax_extremes && $san --tool racecheck $ll --test-threads=1 small_case_for_sanitizers segmented_walk_for_sanitizers && $san --tool racecheck $kk --test-threads=1 zero_and_non_finite tensor_cores_for_sanitizers && $san --tool racecheck $qq --test-threads=1 small_case_for_sanitizers" &
        wait
    } >"$out/summary.txt"
    # a device call brings back at most 8 files: the step logs travel as one archive
    for f in "$out"/*.log; do
        echo "== $(basename "$f"): last lines"
        tail -6 "$f"
    done >"$out/tails.txt"
    tar -C "$out" -czf "$out/logs.tar.gz" $(cd "$out" && ls *.log) && rm "$out"/*.log
    {
        echo "# device check, $(date -u +%F)"
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv,noheader || true
        # Triton baselines for Lightning attention, carried as wheels in .whl
        if ls .whl/*.whl >/dev/null 2>&1; then
            python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl ||
                echo "!!! the Lightning baselines' wheels did not install"
        fi
        # the wgmma GEMM is timed only when the int8 tests passed (a hang
        # would stop the report before it writes anything)
        if grep -q "FAIL  test_qgemm" "$out/summary.txt"; then
            export TK_REPORT_SKIP_WGMMA=1
            echo "!!! cuda_qgemm failed: the report skips the wgmma GEMM"
        fi
        # the GPU tables, then the PyTorch/Triton scripts run by the report
        # (same process, same card), their records merged into ours:
        # report.json / report.md / SVG plots in gpu-report.tar.gz
        PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 timeout 480 device-bin/report --gpu-only --torch python3 --out /tmp/gpu-report ||
            echo "!!! GPU report failed ($?)"
    } >"$out/timing.md" 2>&1
    [ -d /tmp/gpu-report ] && tar -C /tmp -czf "$out/gpu-report.tar.gz" gpu-report
    cat "$out/timing.md" "$out/tails.txt" "$out/summary.txt"
    ;;
*)
    echo "usage: $0 build|run" >&2
    exit 2
    ;;
esac
