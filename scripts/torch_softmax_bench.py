"""PyTorch baseline for the GPU softmax table: torch.softmax on the same shapes
and dtypes as src/bin/report_gpu.rs, timed with CUDA events, median of 20."""
import torch
from torch_timing import median_ms, record, table

SHAPES = [(65536, 128), (16384, 1024), (4096, 32000), (1024, 131072), (256, 262144)]
DTYPES = [("f32", torch.float32), ("f16", torch.float16), ("bf16", torch.bfloat16)]


table(f"\n## PyTorch {torch.__version__} torch.softmax on {torch.cuda.get_device_name()}\n")
table("| dtype | rows x cols | GB/s (in+out) |\n|---|---|---:|")
for name, dt in DTYPES:
    for rows, cols in SHAPES:
        x = (torch.arange(rows * cols, device="cuda") % 1000).to(dt).reshape(rows, cols) * 0.01
        ms = median_ms(lambda: torch.softmax(x, dim=-1))
        gbps = 2 * x.numel() * x.element_size() / (ms * 1e-3) / 1e9
        table(f"| {name} | {rows} x {cols} | {gbps:.1f} |")
        record("gpu-softmax", "torch.softmax", "softmax", ms, dtype=name, rows=rows, cols=cols, gbps=gbps)
