"""ONNX -> TVM (Relax) -> a shared library for the board, and its check against ONNX Runtime.

Pipeline (TVM 0.27): ``tvm.relax.frontend.onnx.from_onnx`` -> ``tvm.compile(mod, target=Target(dict))``
-> ``export_library``. Code for another architecture (an aarch64 board from an x86 host) is linked
with ``aarch64-linux-gnu-gcc`` when it is installed (Debian ``gcc-aarch64-linux-gnu``); otherwise a
``.tar`` of object files is written and the board links it when it loads it (needs ``gcc`` there).
Next to every artifact, ``<artifact>.json`` records the TVM version, target and input, which the
on-board runtime checks before it loads the library.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from modnas.exporters.result import ExportMismatch, ExportResult, sha256_file, write_sidecar
from modnas.exporters.targets import runs_here, target_arch, validate_target
from modnas.exporters.tvm_schedule import DEFAULT_SCHEDULE, SCHEDULES, relax_pipeline
from modnas.profilers.errors import BadInput, NotAvailable

TOLERANCE = 1e-4
CROSS_COMPILERS: dict[str, str] = {"aarch64": "aarch64-linux-gnu-gcc", "armv7l": "arm-linux-gnueabihf-gcc"}


def onnx_input(onnx_path: str | Path) -> tuple[str, list[int]]:
    """Name and static shape of the model's single graph input (BadInput otherwise)."""
    import onnx

    path = Path(onnx_path)
    if not path.is_file():
        raise BadInput(f"ONNX file not found: {path}")
    model = onnx.load(str(path), load_external_data=False)
    inits = {init.name for init in model.graph.initializer}
    inputs = [inp for inp in model.graph.input if inp.name not in inits]
    if len(inputs) != 1:
        raise BadInput(f"{path.name}: expected one graph input, found {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = [int(d.dim_value) for d in dims]
    if any(d <= 0 for d in shape):
        raise BadInput(f"{path.name}: input {inputs[0].name} needs a static shape, got {[d.dim_param or d.dim_value for d in dims]}")
    return inputs[0].name, shape


def cross_compiler(target: dict[str, Any]) -> str | None:
    """The linker for a foreign target when installed here; None when the target runs here or none is found."""
    if runs_here(target):
        return None
    name = CROSS_COMPILERS.get(target_arch(target))
    return shutil.which(name) if name else None


def compile_tvm(onnx_path: str | Path, target: dict[str, Any], out_dir: str | Path, *,
                name: str | None = None, check: bool = True, schedule: str = DEFAULT_SCHEDULE) -> ExportResult:
    """Compile an ONNX file for ``target`` into ``out_dir``; verify against ONNX Runtime when it runs here.

    ``schedule`` names an untuned schedule from ``modnas.exporters.tvm_schedule.SCHEDULES`` (``parallel``
    by default; ``none`` is TVM's default single-threaded loops). For tuned builds see :func:`tune_tvm`.
    """
    import onnx
    import tvm
    from tvm.relax.frontend.onnx import from_onnx

    target = validate_target(dict(target))
    if schedule not in SCHEDULES:
        raise BadInput(f"schedule: expected one of {', '.join(sorted(SCHEDULES))}, got {schedule!r}")
    onnx_path = Path(onnx_path)
    input_name, input_shape = onnx_input(onnx_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = name or onnx_path.stem
    started = time.perf_counter()
    mod = from_onnx(onnx.load(str(onnx_path)), shape_dict={input_name: input_shape}, dtype_dict="float32")
    try:
        tvm_target = tvm.target.Target(target)
        executable = tvm.compile(mod, target=tvm_target, relax_pipeline=relax_pipeline(schedule, tvm_target))
    except Exception as exc:
        raise BadInput(f"TVM cannot compile {onnx_path.name} for {target}: {_first_line(exc)}") from None
    cc = cross_compiler(target)
    if runs_here(target):
        artifact, linked = out / f"{stem}.so", "so"
        executable.export_library(str(artifact))
    elif cc:
        artifact, linked = out / f"{stem}.so", "so"
        executable.export_library(str(artifact), cc=cc)
    else:
        artifact, linked = out / f"{stem}.tar", "tar"
        executable.export_library(str(artifact))
    seconds = time.perf_counter() - started
    diff = verify_tvm(artifact, onnx_path) if check and runs_here(target) else None
    meta: dict[str, Any] = {
        "format": "tvm",
        "tvm_version": str(tvm.__version__),
        "target": target,
        "arch": target_arch(target),
        "linked": linked,
        "cc": cc,
        "input_name": input_name,
        "input_shape": input_shape,
        "dtype": "float32",
        "onnx_sha256": sha256_file(onnx_path),
        "compile_seconds": round(seconds, 3),
        "max_abs_diff": diff,
        "tuned": False,
        "schedule": schedule,
    }
    write_sidecar(artifact, meta)
    return ExportResult(path=artifact, sha256=sha256_file(artifact), max_abs_diff=diff, meta=meta)


def verify_tvm(lib_path: str | Path, onnx_path: str | Path, *, tolerance: float = TOLERANCE, seed: int = 0) -> float:
    """Run the library in Relax's VM on this CPU and ONNX Runtime on the same random input; the largest
    absolute difference over all outputs. Raises ExportMismatch above ``tolerance`` x max(1, largest |output|)."""
    import numpy as np
    import onnxruntime as ort
    import tvm
    from tvm import relax

    input_name, input_shape = onnx_input(onnx_path)
    x = np.random.default_rng(seed).standard_normal(input_shape).astype("float32")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {input_name: x})
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(lib_path)), tvm.cpu())
    got = _flatten(vm["main"](tvm.runtime.tensor(x, tvm.cpu())))
    if len(got) != len(expected):
        raise ExportMismatch(f"{Path(lib_path).name}: TVM gives {len(got)} outputs, ONNX Runtime {len(expected)}")
    diff, scale = 0.0, 0.0
    for a, b in zip(got, expected):
        if a.shape != b.shape:
            raise ExportMismatch(f"{Path(lib_path).name}: output shape {a.shape} != ONNX Runtime's {b.shape}")
        if a.size:
            diff = max(diff, float(np.max(np.abs(a.astype("float64") - b.astype("float64")))))
            scale = max(scale, float(np.max(np.abs(b))))
    # absolute 1e-4 for outputs up to 1; float32 cannot do better on larger outputs, so the bound scales
    # with them (the same rule as modnas.exporters.onnx)
    if not diff <= tolerance * max(1.0, scale):
        raise ExportMismatch(f"{Path(lib_path).name}: TVM differs from ONNX Runtime by {diff:.3g} "
                             f"(> {tolerance:g} x max(1, |output| = {scale:.3g}))")
    return diff


def _flatten(value: Any) -> list[Any]:
    """Relax VM outputs (a tensor or nested tuples of tensors) as a list of numpy arrays."""
    if hasattr(value, "numpy"):
        return [value.numpy()]
    out: list[Any] = []
    for item in value:
        out.extend(_flatten(item))
    return out


def tune_tvm(onnx_path: str | Path, target: dict[str, Any], out_dir: str | Path, *, trials: int,
             runner: str | dict[str, Any] = "local", work_dir: str | Path | None = None,
             name: str | None = None, builder_timeout_s: float = 120.0) -> ExportResult:
    """MetaSchedule-tuned build (slow: minutes per few dozen trials; never run in tests or CI).

    ``trials`` is the global trial budget. ``runner="local"`` measures candidates on this machine (only
    for a target that runs here); ``runner={"tracker_host": h, "tracker_port": p, "tracker_key": k}``
    measures them on a board registered with a TVM RPC tracker (``python -m tvm.exec.rpc_server
    --tracker=h:p --key=k`` on the board), candidates linked with the cross compiler. Tuning logs go
    to ``work_dir`` (default ``out_dir/<name>-tuning``) and are reused by a later call.
    ``builder_timeout_s`` bounds each candidate's build: MetaSchedule's 30 s default is too short on a
    loaded 2-core host (every build worker imports TVM first), and timed-out candidates count as failed.
    """
    import onnx
    import tvm
    from tvm.relax.frontend.onnx import from_onnx
    from tvm.s_tir import meta_schedule as ms

    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise BadInput(f"trials: expected a positive integer, got {trials!r}")
    target = validate_target(dict(target))
    onnx_path = Path(onnx_path)
    stem = name or onnx_path.stem
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    logs = Path(work_dir) if work_dir else out / f"{stem}-tuning"
    ms_runner: Any
    cc = cross_compiler(target)
    if runner == "local":
        if not runs_here(target):
            raise BadInput("runner: a local runner cannot time code for another CPU; give an RPC tracker")
        ms_runner = "local"
    elif isinstance(runner, dict) and {"tracker_host", "tracker_port", "tracker_key"} <= set(runner):
        config = ms.runner.RPCConfig(tracker_host=str(runner["tracker_host"]), tracker_port=int(runner["tracker_port"]),
                                     tracker_key=str(runner["tracker_key"]), session_timeout_sec=int(runner.get("timeout_s", 60)))
        ms_runner = ms.runner.RPCRunner(rpc_config=config)
        if not runs_here(target) and not cc:
            raise NotAvailable(f"tuning for {target_arch(target)} needs its cross compiler here")
    else:
        raise BadInput("runner: expected 'local' or {tracker_host, tracker_port, tracker_key}")
    builder = ms.builder.LocalBuilder(timeout_sec=float(builder_timeout_s),
                                      f_export=_exporter_with(cc) if cc else None)
    input_name, input_shape = onnx_input(onnx_path)
    mod = from_onnx(onnx.load(str(onnx_path)), shape_dict={input_name: input_shape}, dtype_dict="float32")
    tvm_target = tvm.target.Target(target)
    started = time.perf_counter()
    with tvm_target:
        mod = tvm.transform.Sequential([
            tvm.relax.transform.DecomposeOpsForInference(),
            tvm.relax.transform.CanonicalizeBindings(),
            tvm.relax.pipeline.zero_pipeline(),
        ])(mod)
    database = ms.relax_integration.tune_relax(mod, params={}, target=tvm_target, work_dir=str(logs),
                                               max_trials_global=trials, builder=builder, runner=ms_runner)
    executable = ms.relax_integration.compile_relax(database, mod, tvm_target, params=None)
    artifact = out / f"{stem}.so"
    if cc:
        executable.export_library(str(artifact), cc=cc)
    else:
        executable.export_library(str(artifact))
    diff = verify_tvm(artifact, onnx_path) if runs_here(target) else None
    meta = {"format": "tvm", "tvm_version": str(tvm.__version__), "target": target, "arch": target_arch(target),
            "linked": "so", "cc": cc, "input_name": input_name, "input_shape": input_shape, "dtype": "float32",
            "onnx_sha256": sha256_file(onnx_path), "compile_seconds": round(time.perf_counter() - started, 3),
            "max_abs_diff": diff, "tuned": True, "trials": trials, "tuning_logs": str(logs)}
    write_sidecar(artifact, meta)
    return ExportResult(path=artifact, sha256=sha256_file(artifact), max_abs_diff=diff, meta=meta)


def _exporter_with(cc: str) -> Any:
    """An ``f_export`` for MetaSchedule's builder that links candidates with ``cc``."""
    import os
    import tempfile

    def export(module: Any) -> str:
        path = os.path.join(tempfile.mkdtemp(prefix="modnas-tune-"), "candidate.so")
        module.export_library(path, cc=cc)
        return path

    return export


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__
