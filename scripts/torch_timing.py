"""CUDA-event timing shared by the PyTorch baseline scripts."""
import torch

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
