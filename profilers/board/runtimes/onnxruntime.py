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
    """Open a session on the model and return run_once(): one blocking inference on a fixed random input.

    Inputs are built from the graph's declared shapes: the first takes the job's ``input_shape``; a
    symbolic dimension takes ``meta["dims"][name]`` (the agent maps ``past`` to the measurement's context
    and ``prompt`` to its prompt), else 1; integer inputs get token ids below ``meta["vocab_size"]``
    (zeros without it). With ``meta["graphs"]`` the artifact is a tar of a language model's graphs: the
    ``decode`` member is run_once and its ``prefill`` companion is run_once.prefill (another run_once)."""
    graphs = meta.get("graphs")
    if graphs:
        return _load_graphs(artifact_path, threads, input_shape, meta, graphs)
    return _runner(_session(artifact_path, threads, meta), input_shape, meta)


def _session(model: str, threads: int, meta: dict) -> object:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    providers = list(meta.get("providers") or ["CPUExecutionProvider"])
    return ort.InferenceSession(model, sess_options=opts, providers=providers)


def _runner(session: object, input_shape: "List[int] | None", meta: dict) -> Callable[[], None]:
    import numpy as np

    rng = np.random.default_rng(int(meta.get("seed", 0)))
    dims = meta.get("dims") or {}
    vocab = meta.get("vocab_size")
    feeds = {}
    for index, spec in enumerate(session.get_inputs()):
        shape = _shape(spec.shape, input_shape if index == 0 else None, spec.name, dims)
        dtype = _DTYPES.get(spec.type)
        if dtype is None:
            raise ValueError("input %s has an unsupported type %s" % (spec.name, spec.type))
        if dtype.startswith("float"):
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif vocab and dtype in ("int64", "int32"):
            feeds[spec.name] = rng.integers(0, int(vocab), size=shape).astype(dtype)
        else:
            feeds[spec.name] = np.zeros(shape, dtype=dtype)
    outputs = [spec.name for spec in session.get_outputs()]

    def run_once() -> None:
        session.run(outputs, feeds)

    return run_once


def _load_graphs(artifact_path: str, threads: int, input_shape: List[int], meta: dict,
                 graphs: dict) -> Callable[[], None]:
    """The decode graph's run_once, its prefill companion's as run_once.prefill (members read from the tar)."""
    import tarfile

    if not isinstance(graphs, dict) or "decode" not in graphs:
        raise ValueError("meta graphs must name the decode member, got %r" % (graphs,))
    dims = meta.get("dims") or {}
    positions = meta.get("positions")
    if positions:  # the model has this many positions: the decoded token sits at position past
        if int(dims.get("past", 0)) >= int(positions):
            raise ValueError("context %s leaves no position to decode: the model has %s positions"
                             % (dims.get("past"), positions))
        if int(dims.get("prompt", 0)) > int(positions):
            raise ValueError("prompt %s exceeds the model's %s positions" % (dims.get("prompt"), positions))
    sessions = {}
    with tarfile.open(artifact_path, "r:") as tar:
        for graph in ("decode", "prefill"):
            member = graphs.get(graph)
            if member is None:
                continue
            fh = tar.extractfile(str(member))
            if fh is None:
                raise ValueError("the artifact has no graph %s" % member)
            sessions[graph] = _session(fh.read(), threads, meta)
    run_once = _runner(sessions["decode"], input_shape, meta)
    if "prefill" in sessions:
        run_once.prefill = _runner(sessions["prefill"], None, meta)  # type: ignore[attr-defined]
    return run_once


def _shape(model_shape: list, given: "List[int] | None", name: str, dims: "dict | None" = None) -> List[int]:
    if given is not None:
        if len(given) != len(model_shape):
            raise ValueError("input %s has rank %d, the job gives %r" % (name, len(model_shape), list(given)))
        for want, dim in zip(given, model_shape):
            if isinstance(dim, int) and dim != int(want):
                raise ValueError("input %s has shape %r, the job gives %r" % (name, model_shape, list(given)))
        return [int(d) for d in given]
    dims = dims or {}
    return [d if isinstance(d, int) and d > 0 else int(dims.get(d, 1)) for d in model_shape]
