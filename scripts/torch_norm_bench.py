"""PyTorch baseline for the GPU norm table: torch.nn.functional.layer_norm and
rms_norm (and the unfused residual add + rms_norm) on the same shapes and
dtypes as src/bin/report_gpu_norm.rs, timed with CUDA events, median of 20."""
import torch
import torch.nn.functional as F
from torch_timing import median_ms, record, table

SHAPES = [(16384, 1024), (16384, 2048), (16384, 4096), (16384, 8192)]
DTYPES = [("f32", torch.float32), ("bf16", torch.bfloat16), ("f16", torch.float16)]



table(f"\n## PyTorch {torch.__version__} norms on {torch.cuda.get_device_name()}\n")
table("| op | dtype | rows x d | GB/s |\n|---|---|---|---:|")
for name, dt in DTYPES:
    for rows, d in SHAPES:
        x = ((torch.arange(rows * d, device="cuda") % 1000) * 0.01 - 3.0).to(dt).reshape(rows, d)
        r = x.clone()
        w = torch.ones(d, device="cuda", dtype=dt)
        b = torch.zeros(d, device="cuda", dtype=dt)
        es = x.element_size()
        # (name here, the report's op it stands in for, call, tensors moved)
        for op, ours, fn, bytes_ in [
            ("layer_norm", "layernorm", lambda: F.layer_norm(x, (d,), w, b), 2),
            ("rms_norm", "rmsnorm", lambda: F.rms_norm(x, (d,), w), 2),
            ("add + rms_norm", "residual+rmsnorm", lambda: F.rms_norm(x + r, (d,), w), 4),
        ]:
            ms = median_ms(fn)
            gbps = bytes_ * x.numel() * es / (ms * 1e-3) / 1e9
            table(f"| {op} | {name} | {rows} x {d} | {gbps:.0f} |")
            record("gpu-norm", f"torch {op}", ours, ms, dtype=name, rows=rows, cols=d, gbps=gbps)
