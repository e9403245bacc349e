"""Language-model graphs (:mod:`modnas.exporters.lm_onnx`) -> TVM (Relax) libraries, checked against onnxruntime.

TVM 0.27's ONNX frontend does not take the graphs as exported: in the prefill graph the arithmetic on
the dynamic prompt length (``Shape`` -> ``Gather`` -> ``Range`` for the positions, the causal mask)
fails to import ("shape_of expects a tensor input"), and the decode graph imports with a symbolic
cache length that the ``parallel`` schedule cannot lower. So by default a graph is *frozen* first: its
dynamic length (the prompt of a prefill graph, the cache of a decode graph) set to ``length``, then
onnxruntime's basic graph optimisation (ONNX operators only: constant folding, MatMul+Add -> Gemm)
folds the shape arithmetic into constants. A frozen decode library takes a cache of exactly ``length``
tokens (``latency`` at ``context`` = ``length``); a frozen prefill library a prompt of ``length`` tokens.

``length=None`` keeps the decode graph's cache length symbolic (one library for every cache length,
for generation on the board); TVM 0.27 compiles that only with the ``none`` schedule (plain loops).

The Relax VM's ``main`` takes the graph's inputs in order (``idx``; or ``token``, ``past_k_0``,
``past_v_0``, ...) and returns ``(logits, present_k_0, present_v_0, ...)``; the sidecar lists the
inputs with their shapes and types.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from modnas.exporters.lm_onnx import TOKEN_INPUT, check_windows, nll_sum
from modnas.exporters.result import ExportMismatch, ExportResult, read_sidecar, sha256_file, write_sidecar
from modnas.exporters.targets import runs_here, target_arch, validate_target
from modnas.exporters.tvm import cross_compiler, flatten_outputs, relax_compile
from modnas.exporters.tvm_schedule import DEFAULT_SCHEDULE, SCHEDULES
from modnas.profilers.errors import BadInput

TOLERANCE = 1e-4


def lm_graph_inputs(onnx_path: str | Path) -> tuple[str, list[tuple[str, list[int | str], str]]]:
    """Which graph (``prefill`` or ``decode``) and its inputs as ``(name, declared shape, dtype)``."""
    import onnx

    path = Path(onnx_path)
    if not path.is_file():
        raise BadInput(f"ONNX file not found: {path}")
    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    inputs = []
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        dims = [d.dim_param or int(d.dim_value) for d in inp.type.tensor_type.shape.dim]
        dtype = "int64" if inp.name in TOKEN_INPUT.values() else "float32"
        inputs.append((inp.name, dims, dtype))
    names = [n for n, _, _ in inputs]
    if names == ["idx"]:
        return "prefill", inputs
    if names and names[0] == "token" and all(n.startswith("past_") for n in names[1:]) and len(names) > 1:
        return "decode", inputs
    raise BadInput(f"{path.name}: not a language-model prefill or decode graph (inputs {', '.join(names)})")


def fixed_shapes(onnx_path: str | Path, length: int) -> dict[str, list[int]]:
    """Every input's shape with the dynamic length (``prompt`` or ``past``) set to ``length``."""
    _, inputs = lm_graph_inputs(onnx_path)
    return {name: [length if isinstance(d, str) else d for d in dims] for name, dims, _ in inputs}


def freeze_lm_onnx(onnx_path: str | Path, length: int, out_path: str | Path) -> Path:
    """The graph with its dynamic length fixed to ``length`` and the shape arithmetic folded away
    (onnxruntime's basic optimisation level, written to ``out_path``)."""
    import onnx
    import onnxruntime as ort

    shapes = fixed_shapes(onnx_path, length)
    model = onnx.load(str(onnx_path))
    for inp in model.graph.input:
        if inp.name in shapes:
            for dim, value in zip(inp.type.tensor_type.shape.dim, shapes[inp.name]):
                dim.Clear()
                dim.dim_value = value
    for out in model.graph.output:  # onnxruntime infers the output shapes again
        for dim in out.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.Clear()
    out_path = Path(out_path)
    staged = out_path.with_name(out_path.name + ".in.onnx")
    onnx.save(model, str(staged))
    try:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = str(out_path)
        ort.InferenceSession(str(staged), opts, providers=["CPUExecutionProvider"])
    finally:
        staged.unlink(missing_ok=True)
    return out_path


def compile_lm_tvm(onnx_path: str | Path, target: dict[str, Any], out_dir: str | Path, *, length: int | None = 128,
                   name: str | None = None, check: bool = True, schedule: str = DEFAULT_SCHEDULE) -> ExportResult:
    """Compile a prefill or decode graph for ``target`` into ``out_dir`` with its length fixed to
    ``length`` (None: a decode graph with a symbolic cache length, ``none`` schedule only); check the
    outputs against onnxruntime when the target runs here."""
    import onnx
    import tvm
    from tvm.relax.frontend.onnx import from_onnx

    target = validate_target(dict(target))
    if schedule not in SCHEDULES:
        raise BadInput(f"schedule: expected one of {', '.join(sorted(SCHEDULES))}, got {schedule!r}", param="schedule")
    onnx_path = Path(onnx_path)
    graph, inputs = lm_graph_inputs(onnx_path)
    context = read_sidecar(onnx_path).get("context")
    if length is None:
        if graph != "decode" or schedule != "none":
            raise BadInput("length None (a symbolic cache length) compiles only a decode graph with schedule none "
                           "in TVM 0.27; give a fixed length", param=("length", "schedule"))
    elif int(length) < 1 or (context and int(length) > context - (graph == "decode")):
        raise BadInput(f"length must be 1..{context - (graph == 'decode')} tokens for this {graph} graph, "
                       f"got {length}", param="length")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = name or f"{onnx_path.stem}-{length or 'dyn'}"
    dtypes = {n: dtype for n, _, dtype in inputs}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".lm-tvm-", dir=out) as tmpdir:
        if length is None:
            mod = from_onnx(onnx.load(str(onnx_path)), dtype_dict=dtypes)
        else:
            frozen = freeze_lm_onnx(onnx_path, int(length), Path(tmpdir) / "frozen.onnx")
            mod = from_onnx(onnx.load(str(frozen)), shape_dict=fixed_shapes(onnx_path, int(length)), dtype_dict=dtypes)
        executable = relax_compile(mod, target, schedule, onnx_path.name)
    cc = cross_compiler(target)
    if runs_here(target) or cc:
        artifact, linked = out / f"{stem}.so", "so"
    else:
        artifact, linked = out / f"{stem}.tar", "tar"
    fd, tmp_name = tempfile.mkstemp(prefix=".export-", suffix=artifact.suffix, dir=out)
    os.close(fd)
    try:
        executable.export_library(tmp_name, **({"cc": cc} if cc else {}))
        os.replace(tmp_name, artifact)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    diff = verify_lm_tvm(artifact, onnx_path, length) if check and runs_here(target) else None
    meta: dict[str, Any] = {
        "format": "tvm", "graph": graph, "length": length, "tvm_version": str(tvm.__version__), "target": target,
        "arch": target_arch(target), "linked": linked, "cc": cc, "schedule": schedule, "tuned": False,
        "inputs": [{"name": n, "shape": (dims if length is None else fixed_shapes(onnx_path, int(length))[n]),
                    "dtype": dtype} for n, dims, dtype in inputs],
        "context": context, "onnx_sha256": sha256_file(onnx_path), "compile_seconds": round(seconds, 3),
        "max_abs_diff": diff,
    }
    write_sidecar(artifact, meta)
    return ExportResult(path=artifact, sha256=sha256_file(artifact), max_abs_diff=diff, meta=meta)


def _random_feed(onnx_path: Path, length: int, seed: int) -> dict[str, np.ndarray]:
    """Random tokens (within the vocabulary) and a random cache for the graph's inputs."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    vocab = int(ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).get_outputs()[0].shape[-1])
    feed = {}
    for name, shape in fixed_shapes(onnx_path, length).items():
        if name in TOKEN_INPUT.values():
            feed[name] = rng.integers(0, vocab, size=shape).astype(np.int64)
        else:
            feed[name] = rng.standard_normal(shape).astype(np.float32)
    return feed


def load_lm_vm(lib_path: str | Path) -> Any:
    """A Relax VM on this CPU for a library built here."""
    import tvm
    from tvm import relax

    return relax.VirtualMachine(tvm.runtime.load_module(str(lib_path)), tvm.cpu())


def run_lm_tvm(vm: Any, feed: list[np.ndarray]) -> list[np.ndarray]:
    """Outputs (logits, then the cache) of a Relax VM for inputs in the graph's order."""
    import tvm

    return flatten_outputs(vm["main"](*[tvm.runtime.tensor(np.ascontiguousarray(a), tvm.cpu()) for a in feed]))


def verify_lm_tvm(lib_path: str | Path, onnx_path: str | Path, length: int | None, *, tolerance: float = TOLERANCE,
                  seed: int = 0) -> float:
    """Largest logit difference between the library and onnxruntime on the (dynamic) ONNX graph, over
    random inputs of ``length`` (None: 8 and 40 cached tokens); the cache must agree too. ExportMismatch
    above ``tolerance`` x max(1, largest |output|)."""
    import onnxruntime as ort

    onnx_path = Path(onnx_path)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    vm = load_lm_vm(lib_path)
    names = [i.name for i in session.get_inputs()]
    worst = 0.0
    context = read_sidecar(onnx_path).get("context") or 41
    for n in ([length] if length is not None else sorted({min(8, context - 1), min(40, context - 1)})):
        feed = _random_feed(onnx_path, n, seed + n)
        expected = session.run(None, feed)
        got = run_lm_tvm(vm, [feed[k] for k in names])
        if len(got) != len(expected):
            raise ExportMismatch(f"{Path(lib_path).name}: TVM gives {len(got)} outputs, ONNX Runtime {len(expected)}")
        for i, (a, b) in enumerate(zip(got, expected)):
            if a.shape != b.shape:
                raise ExportMismatch(f"{Path(lib_path).name}: output {i} has shape {list(a.shape)}, "
                                     f"ONNX Runtime's {list(b.shape)}")
            diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
            scale = float(np.max(np.abs(b)))
            if not diff <= tolerance * max(1.0, scale):
                what = "logits" if i == 0 else f"cache output {i}"
                raise ExportMismatch(f"{Path(lib_path).name}: TVM {what} differ from ONNX Runtime by {diff:.3g} "
                                     f"(> {tolerance:g} x max(1, |output| = {scale:.3g}))")
            if i == 0:
                worst = max(worst, diff)
    return worst


def lm_loss_tvm(lib_path: str | Path, x: Any, y: Any) -> float:
    """Mean next-token cross-entropy (nats per token) of a frozen prefill library over windows ``x``
    ``[N, length]`` with targets ``y`` (the windows must have the library's prompt length)."""
    meta = read_sidecar(lib_path)
    if meta.get("graph") != "prefill" or not meta.get("length"):
        raise BadInput(f"{Path(lib_path).name}: not a prefill library of fixed length (see its .json)")
    vm = load_lm_vm(lib_path)
    first = run_lm_tvm(vm, [np.zeros((1, int(meta["length"])), dtype=np.int64)])[0]
    xs, ys = check_windows(x, y, int(first.shape[-1]))
    if xs.shape[1] != int(meta["length"]):
        raise BadInput(f"windows of {xs.shape[1]} tokens for a library of {meta['length']}-token prompts")
    total = 0.0
    for window, target in zip(xs, ys):
        total += nll_sum(run_lm_tvm(vm, [window[None, :]])[0][0], target)
    return total / ys.size


__all__ = ["compile_lm_tvm", "fixed_shapes", "freeze_lm_onnx", "lm_graph_inputs", "lm_loss_tvm", "load_lm_vm",
           "run_lm_tvm", "verify_lm_tvm"]
