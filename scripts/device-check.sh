#!/usr/bin/env bash
# The whole GPU check in one call (DESIGN.md section 5).
#
#   scripts/device-check.sh build   # here (no GPU needed): builds the CUDA test
#                                   # binaries and the report into device-bin/
#   scripts/device-check.sh run     # on the GPU machine (carry device-bin):
#                                   # every CUDA test, compute-sanitizer on them,
#                                   # the GPU report and the PyTorch baseline,
#                                   # all written to $OUT/device-check.md
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
build)
    rm -rf device-bin && mkdir -p device-bin
    cargo build --release --features cuda --bin report
    cp target/release/report device-bin/
    cargo test --release --features cuda --test cuda_softmax --test cuda_norm --no-run 2>&1 | tee /tmp/tk-no-run.log
    grep -o 'target/release/deps/cuda_[A-Za-z0-9_-]*' /tmp/tk-no-run.log | sort -u | while read -r bin; do
        cp "$bin" device-bin/
    done
    strip device-bin/* # debug info would push the folder past the 64 MiB a device call can carry
    ls -la device-bin
    ;;
run)
    out="${OUT:-/tmp}/device-check.md"
    export PATH="$PATH:/usr/local/cuda/bin"
    export TK_REQUIRE_GPU=1 # the CUDA tests fail instead of skipping when no device answers
    {
        echo "# device check, $(date -u +%F)"
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
        echo
        echo "## tests"
        for t in device-bin/*; do
            case "$(basename "$t")" in report) continue ;; esac
            echo "### $(basename "$t")"
            "$t" --test-threads=1 2>&1 | tail -15 || echo "!!! $(basename "$t") FAILED"
        done
        echo
        echo "## compute-sanitizer (memcheck, racecheck) on the CUDA tests"
        for t in device-bin/cuda_softmax-* device-bin/cuda_norm-*; do
            echo "### $(basename "$t")"
            compute-sanitizer --tool memcheck --error-exitcode 1 "$t" --test-threads=1 2>&1 | tail -4 ||
                echo "!!! memcheck reported errors"
        done
        compute-sanitizer --tool racecheck --error-exitcode 1 device-bin/cuda_softmax-* --test-threads=1 cuda_softmax_extremes 2>&1 |
            tail -4 || echo "!!! racecheck reported errors"
        compute-sanitizer --tool racecheck --error-exitcode 1 device-bin/cuda_norm-* --test-threads=1 backward 2>&1 |
            tail -4 || echo "!!! racecheck reported errors"
        echo
        device-bin/report --gpu-only || echo "!!! GPU report failed"
        python3 scripts/torch_softmax_bench.py || echo "!!! PyTorch baseline failed"
        python3 scripts/torch_norm_bench.py || echo "!!! PyTorch norm baseline failed"
    } 2>&1 | tee "$out"
    ;;
*)
    echo "usage: $0 build|run" >&2
    exit 2
    ;;
esac
