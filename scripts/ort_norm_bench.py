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
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

rows = int(sys.argv[1]) if len(sys.argv) > 1 else 16384
d = int(sys.argv[2]) if len(sys.argv) > 2 else 8192
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 9
F = TensorProto.FLOAT


def session(node, inputs, outputs, opsets):
    graph = helper.make_graph([node], "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=opsets)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def vi(name, shape):
    return helper.make_tensor_value_info(name, F, shape)


rng = np.random.default_rng(1)
x = (rng.random((rows, d), dtype=np.float32) * 4 - 1.5).astype(np.float32)
skip = (rng.random((rows, d), dtype=np.float32) * 4 - 2).astype(np.float32)
gamma = rng.random(d, dtype=np.float32)
beta = rng.random(d, dtype=np.float32)
onnx_op = [helper.make_opsetid("", 17)]
ms_op = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]

cases = [
    ("LayerNormalization", 8,
     session(helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1, epsilon=1e-5),
             [vi("x", [rows, d]), vi("g", [d]), vi("b", [d])], [vi("y", [rows, d])], onnx_op),
     {"x": x, "g": gamma, "b": beta}, ["y"]),
    ("SimplifiedLayerNormalization (RMSNorm)", 8,
     session(helper.make_node("SimplifiedLayerNormalization", ["x", "g"], ["y"], axis=-1, epsilon=1e-6),
             [vi("x", [rows, d]), vi("g", [d])], [vi("y", [rows, d])], onnx_op),
     {"x": x, "g": gamma}, ["y"]),
    ("Add (the first half of the unfused pair)", 12,
     session(helper.make_node("Add", ["x", "s"], ["h"]),
             [vi("x", [rows, d]), vi("s", [rows, d])], [vi("h", [rows, d])], onnx_op),
     {"x": x, "s": skip}, ["h"]),
    ("SkipSimplifiedLayerNormalization (skip + RMSNorm)", 16,
     session(helper.make_node("SkipSimplifiedLayerNormalization", ["x", "s", "g"], ["y", "", "", "h"],
                              domain="com.microsoft", epsilon=1e-6),
             [vi("x", [rows, d]), vi("s", [rows, d]), vi("g", [d])],
             [vi("y", [rows, d]), vi("h", [rows, d])], ms_op),
     {"x": x, "s": skip, "g": gamma}, ["y", "h"]),
]

print(f"onnxruntime {ort.__version__}, 1 thread, {rows} x {d} f32\n")
print("| ONNX Runtime operator | GB/s | median ms |\n|---|---:|---:|")
for name, bytes_per_elem, sess, feeds, outs in cases:
    binding = sess.io_binding()
    for k, v in feeds.items():
        binding.bind_cpu_input(k, v)
    keep = []
    for o in outs:
        buf = np.empty((rows, d), dtype=np.float32)
        keep.append(buf)
        binding.bind_output(o, "cpu", 0, np.float32, [rows, d], buf.ctypes.data)
    sess.run_with_iobinding(binding)  # warm-up, page faults
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        sess.run_with_iobinding(binding)
        times.append(time.perf_counter() - t)
    times.sort()
    med = times[len(times) // 2]
    print(f"| {name} | {bytes_per_elem * rows * d / med / 1e9:.2f} | {med * 1e3:.1f} |")
