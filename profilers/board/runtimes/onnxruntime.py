"""ONNX Runtime on the board's CPU: explicit thread count, one inter-op thread, sequential execution."""
from __future__ import annotations

from typing import Callable, List, Tuple

NAME = "onnxruntime"

_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def available() -> Tuple[bool, str]:
    """(True, version) when onnxruntime imports here, else (False, why)."""
    try:
        return True, version()
    except Exception as exc:
        return False, "onnxruntime cannot be imported: %s" % (str(exc).splitlines() or [type(exc).__name__])[0]


def version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def load(artifact_path: str, threads: int, input_shape: List[int], meta: dict) -> Callable[[], None]:
    """Open a session on the model and return run_once(): one blocking inference on a fixed random input."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    providers = list(meta.get("providers") or ["CPUExecutionProvider"])
    session = ort.InferenceSession(artifact_path, sess_options=opts, providers=providers)
    rng = np.random.default_rng(int(meta.get("seed", 0)))
    feeds = {}
    for index, spec in enumerate(session.get_inputs()):
        shape = _shape(spec.shape, input_shape if index == 0 else None, spec.name)
        dtype = _DTYPES.get(spec.type)
        if dtype is None:
            raise ValueError("input %s has an unsupported type %s" % (spec.name, spec.type))
        if dtype.startswith("float"):
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[spec.name] = np.zeros(shape, dtype=dtype)
    outputs = [spec.name for spec in session.get_outputs()]

    def run_once() -> None:
        session.run(outputs, feeds)

    return run_once


def _shape(model_shape: list, given: "List[int] | None", name: str) -> List[int]:
    if given is not None:
        if len(given) != len(model_shape):
            raise ValueError("input %s has rank %d, the job gives %r" % (name, len(model_shape), list(given)))
        for want, dim in zip(given, model_shape):
            if isinstance(dim, int) and dim != int(want):
                raise ValueError("input %s has shape %r, the job gives %r" % (name, model_shape, list(given)))
        return [int(d) for d in given]
    return [d if isinstance(d, int) and d > 0 else 1 for d in model_shape]
