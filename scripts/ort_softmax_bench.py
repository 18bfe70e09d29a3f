"""ONNX Runtime's CPU softmax, single thread, on one row of N f32 elements,
for a same-machine comparison with `cargo run --release -- --sizes N`.

    python3 -m venv /tmp/ortenv && /tmp/ortenv/bin/pip install onnxruntime onnx numpy
    /tmp/ortenv/bin/python scripts/ort_softmax_bench.py 134217728

Input and output are bound once (io_binding), so only the kernel is timed.
Prints GB/s of input + output, median of the repetitions.
"""
import sys

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper
from ort_timing import median_bound_s, session

n = int(sys.argv[1]) if len(sys.argv) > 1 else 128 << 20
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 9

sess = session(
    [helper.make_node("Softmax", ["x"], ["y"], axis=-1)],
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
    [helper.make_opsetid("", 13)],
)
rng = np.random.default_rng(1)
x = (rng.random((1, n), dtype=np.float32) * 16 - 8).astype(np.float32)
y = np.empty_like(x)
med = median_bound_s(sess, {"x": x}, {"y": y}, reps)
print(f"onnxruntime {ort.__version__} Softmax f32, 1 thread, row of {n} ({n * 4 >> 20} MiB): "
      f"{2 * 4 * n / med / 1e9:.2f} GB/s (input+output), median {med * 1e3:.1f} ms of {reps}")
# ONNX Runtime sums the row in f32: on long rows its outputs drift from 1 (reported, not asserted)
total = float(y.sum(dtype=np.float64))
print(f"sum of the outputs (f64): {total:.7f} (relative error of the row sum {abs(total - 1.0):.2e})")
