"""Single-thread ONNX Runtime sessions and bound-buffer timing shared by the
ONNX Runtime baseline scripts."""
import time

import numpy as np
import onnxruntime as ort
from onnx import helper


def session(nodes, inputs, outputs, opsets):
    """A one-thread, sequential CPU session for a graph of `nodes`."""
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=opsets)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def median_bound_s(sess, feeds, outputs, reps):
    """Median seconds of a run with inputs and outputs bound once (io_binding),
    so only the kernel is timed. `outputs` maps names to preallocated f32 arrays."""
    binding = sess.io_binding()
    for k, v in feeds.items():
        binding.bind_cpu_input(k, v)
    for name, buf in outputs.items():
        binding.bind_output(name, "cpu", 0, np.float32, list(buf.shape), buf.ctypes.data)
    sess.run_with_iobinding(binding)  # warm-up, page faults
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        sess.run_with_iobinding(binding)
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]
