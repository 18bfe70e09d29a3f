"""Baselines for the GPU Lightning attention table (src/bin/report_gpu_lightning.rs),
same shapes, same device run: flash-linear-attention's chunk_simple_gla (Triton;
g_gamma = log decay per head, scale 1: the same math; the per-token gate `g`
trips fla 0.6's guard against Triton 3.4-3.7.1 on Hopper in its backward, the
constant per-head g_gamma does not) and OpenNLPLab's lightning_attn2
(Triton; decay exp(-s) per head), forward and forward + backward, CUDA-event
medians. Needs fla-core and lightning-attn importable (carried as wheels)."""
import math

import torch
from torch_timing import median_ms, record, table

HEADS, D, LENS = 16, 128, [2048, 8192, 32768]


def decays():
    return torch.tensor([1.0 - 0.5 ** (h % 8 + 4) for h in range(HEADS)], device="cuda")


def fla_case(n, dt):
    from fla.ops.simple_gla import chunk_simple_gla
    q, k, v = (torch.randn(1, n, HEADS, D, device="cuda", dtype=dt, requires_grad=True) for _ in range(3))
    g_gamma = decays().log().float()
    do = torch.randn(1, n, HEADS, D, device="cuda", dtype=dt)
    fwd = lambda: chunk_simple_gla(q, k, v, g_gamma=g_gamma, scale=1.0)[0]
    return fwd, do


def lightning_case(n, dt):
    from lightning_attn.ops import lightning_attn_func
    q, k, v = (torch.randn(1, HEADS, n, D, device="cuda", dtype=dt, requires_grad=True) for _ in range(3))
    s = (-decays().log()).view(HEADS, 1, 1).float()
    do = torch.randn(1, HEADS, n, D, device="cuda", dtype=dt)
    fwd = lambda: lightning_attn_func(q, k, v, s)
    return fwd, do


table(f"\n## Lightning attention baselines on {torch.cuda.get_device_name()} (torch {torch.__version__})\n")
table("| impl | dtype | b x h x n x d | forward ms | fwd+bwd ms |\n|---|---|---|---:|---:|")
for name, make in [("fla chunk_simple_gla", fla_case), ("lightning_attn2", lightning_case)]:
    for dname, dt in [("bf16", torch.bfloat16), ("f16", torch.float16)]:
        for n in LENS:
            # each measurement on its own, so a failing backward keeps the forward
            cells = []
            try:
                fwd, do = make(n, dt)
            except Exception as e:  # a baseline that fails to run is reported, not fatal
                table(f"| {name} | {dname} | 1 x {HEADS} x {n} x {D} | failed: {type(e).__name__}: {str(e)[:80]} | |")
                continue
            for op, run in (("forward", lambda: fwd()), ("forward+backward", lambda: fwd().backward(do))):
                try:
                    ms = median_ms(run, reps=10)
                    cells.append(f"{ms:.3f}")
                    record("gpu-lightning", name, op, ms, dtype=dname, batch=1, heads=HEADS, n=n, d=D)
                except Exception as e:
                    cells.append(f"failed: {type(e).__name__}: {str(e)[:60]}")
            table(f"| {name} | {dname} | 1 x {HEADS} x {n} x {D} | {cells[0]} | {cells[1]} |")
