"""CUDA-event timing shared by the PyTorch baseline scripts, and their output:
markdown tables, or with --json (how the report runs them: `report --torch
PYTHON`) one JSON record per measurement on stdout and the tables on stderr."""
import json
import sys

import torch

JSON = "--json" in sys.argv


def table(line):
    """A line of the script's markdown table."""
    print(line, file=sys.stderr if JSON else sys.stdout, flush=True)


def record(family, kernel, op, median_ms_, **fields):
    """One measurement as a report record (src/bin/report_baselines.rs): `op`
    is the report kernel it stands in for; the other fields place it (dtype
    and shape, named as the report names them)."""
    if JSON:
        rec = {"family": family, "kernel": kernel, "op": op, **fields, "median_s": median_ms_ * 1e-3}
        print(json.dumps(rec), flush=True)

# Launches timed back to back per sample, as src/bin/report_gpu.rs does.
LAUNCHES_PER_SAMPLE = 10


def median_ms(fn, reps=20):
    """Median milliseconds per call of fn() over reps samples of
    LAUNCHES_PER_SAMPLE calls each, after one warm-up call."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(LAUNCHES_PER_SAMPLE):
            fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / LAUNCHES_PER_SAMPLE)
    times.sort()
    return times[len(times) // 2]
