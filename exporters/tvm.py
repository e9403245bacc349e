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
from modnas.profilers.errors import BadInput

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
    by default; ``none`` is TVM's default single-threaded loops). For tuned builds see :mod:`modnas.exporters.tvm_tune`.
    """
    import onnx
    import tvm
    from tvm.relax.frontend.onnx import from_onnx

    target = validate_target(dict(target))
    if schedule not in SCHEDULES:
        raise BadInput(f"schedule: expected one of {', '.join(sorted(SCHEDULES))}, got {schedule!r}")
    onnx_path, input_name, input_shape, out, stem = build_paths(onnx_path, out_dir, name)
    started = time.perf_counter()
    mod = from_onnx(onnx.load(str(onnx_path)), shape_dict={input_name: input_shape}, dtype_dict="float32")
    executable = relax_compile(mod, target, schedule, onnx_path.name)
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
    got = flatten_outputs(vm["main"](tvm.runtime.tensor(x, tvm.cpu())))
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


def build_paths(onnx_path: str | Path, out_dir: str | Path, name: str | None) -> tuple[Path, str, tuple[int, ...], Path, str]:
    """The ONNX file, its input's name and shape, the (created) output folder and the artifact stem."""
    onnx_path = Path(onnx_path)
    input_name, input_shape = onnx_input(onnx_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return onnx_path, input_name, input_shape, out, name or onnx_path.stem


def relax_compile(mod: Any, target: dict[str, Any], schedule: str, what: str) -> Any:
    """``tvm.compile`` of a Relax module with the named schedule; a failure is one BadInput line."""
    import tvm

    try:
        tvm_target = tvm.target.Target(target)
        return tvm.compile(mod, target=tvm_target, relax_pipeline=relax_pipeline(schedule, tvm_target))
    except Exception as exc:
        raise BadInput(f"TVM cannot compile {what} for {target}: {error_line(exc)}") from None


def flatten_outputs(value: Any) -> list[Any]:
    """Relax VM outputs (a tensor or nested tuples of tensors) as a list of numpy arrays."""
    if hasattr(value, "numpy"):
        return [value.numpy()]
    out: list[Any] = []
    for item in value:
        out.extend(flatten_outputs(item))
    return out


def error_line(exc: BaseException) -> str:
    """The last non-empty line of an error (TVM puts the reason last)."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__
