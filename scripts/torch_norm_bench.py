"""PyTorch baseline for the GPU norm table: torch.nn.functional.layer_norm and
rms_norm (and the unfused residual add + rms_norm) on the same shapes and
dtypes as src/bin/report_gpu_norm.rs, timed with CUDA events, median of 20."""
import torch
import torch.nn.functional as F
from torch_timing import median_ms

SHAPES = [(16384, 1024), (16384, 2048), (16384, 4096), (16384, 8192)]
DTYPES = [("f32", torch.float32), ("bf16", torch.bfloat16), ("f16", torch.float16)]



print(f"\n## PyTorch {torch.__version__} norms on {torch.cuda.get_device_name()}\n")
print("| op | dtype | rows x d | GB/s |\n|---|---|---|---:|")
for name, dt in DTYPES:
    for rows, d in SHAPES:
        x = ((torch.arange(rows * d, device="cuda") % 1000) * 0.01 - 3.0).to(dt).reshape(rows, d)
        r = x.clone()
        w = torch.ones(d, device="cuda", dtype=dt)
        b = torch.zeros(d, device="cuda", dtype=dt)
        es = x.element_size()
        for op, fn, bytes_ in [
            ("layer_norm", lambda: F.layer_norm(x, (d,), w, b), 2),
            ("rms_norm", lambda: F.rms_norm(x, (d,), w), 2),
            ("add + rms_norm", lambda: F.rms_norm(x + r, (d,), w), 4),
        ]:
            ms = median_ms(fn)
            print(f"| {op} | {name} | {rows} x {d} | {bytes_ * x.numel() * es / (ms * 1e-3) / 1e9:.0f} |")
