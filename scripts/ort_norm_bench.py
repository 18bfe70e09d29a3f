"""ONNX Runtime's CPU norms, single thread, on a [rows, d] f32 batch, for a
same-machine comparison with the report's norm section
(`cargo run --release -- --family norm --ort /tmp/ortenv/bin/python`).

    python3 -m venv /tmp/ortenv && /tmp/ortenv/bin/pip install onnxruntime onnx numpy
    /tmp/ortenv/bin/python scripts/ort_norm_bench.py 16384 8192

Inputs and outputs are bound once (io_binding), so only the kernel is timed.
Prints one markdown line per operator: GB/s of the bytes it must move
(LayerNorm, RMSNorm: input + output; Add: two inputs and the sum; skip +
RMSNorm: input, skip, output and the sum, 16 bytes per element), median of the
repetitions.
"""
import sys

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper
from ort_timing import median_bound_s, session

rows = int(sys.argv[1]) if len(sys.argv) > 1 else 16384
d = int(sys.argv[2]) if len(sys.argv) > 2 else 8192
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 9


def vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


rng = np.random.default_rng(1)
x = (rng.random((rows, d), dtype=np.float32) * 4 - 1.5).astype(np.float32)
skip = (rng.random((rows, d), dtype=np.float32) * 4 - 2).astype(np.float32)
gamma = rng.random(d, dtype=np.float32)
beta = rng.random(d, dtype=np.float32)
onnx_op = [helper.make_opsetid("", 17)]
ms_op = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
xs, vs = [vi("x", [rows, d]), vi("s", [rows, d])], [vi("g", [d]), vi("b", [d])]

# (name, bytes per element, nodes, inputs, outputs, opsets, feeds)
cases = [
    ("LayerNormalization", 8,
     [helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1, epsilon=1e-5)],
     [xs[0]] + vs, ["y"], onnx_op, {"x": x, "g": gamma, "b": beta}),
    ("SimplifiedLayerNormalization (RMSNorm)", 8,
     [helper.make_node("SimplifiedLayerNormalization", ["x", "g"], ["y"], axis=-1, epsilon=1e-6)],
     [xs[0], vs[0]], ["y"], onnx_op, {"x": x, "g": gamma}),
    ("Add (the first half of the unfused pair)", 12,
     [helper.make_node("Add", ["x", "s"], ["h"])], xs, ["h"], onnx_op, {"x": x, "s": skip}),
    ("SkipSimplifiedLayerNormalization (skip + RMSNorm)", 16,
     [helper.make_node("SkipSimplifiedLayerNormalization", ["x", "s", "g"], ["y", "", "", "h"],
                       domain="com.microsoft", epsilon=1e-6)],
     xs + [vs[0]], ["y", "h"], ms_op, {"x": x, "s": skip, "g": gamma}),
]

print(f"onnxruntime {ort.__version__}, 1 thread, {rows} x {d} f32\n")
print("| ONNX Runtime operator | GB/s | median ms |\n|---|---:|---:|")
for name, bytes_per_elem, nodes, inputs, outs, opsets, feeds in cases:
    sess = session(nodes, inputs, [vi(o, [rows, d]) for o in outs], opsets)
    med = median_bound_s(sess, feeds, {o: np.empty((rows, d), dtype=np.float32) for o in outs}, reps)
    print(f"| {name} | {bytes_per_elem * rows * d / med / 1e9:.2f} | {med * 1e3:.1f} |")
