"""``modnas export``: build a subnet (with a run's weights when given) and write each format asked for."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from toolkit.artifacts import build_model
from toolkit.config import DeviceConfig
from toolkit.errors import BadInput
from toolkit.spaces import get_space

FORMATS = ("onnx", "tvm", "tensorrt")


def arch_stem(space: Any, arch: str) -> str:
    """A short, file-safe name: the benchmark index where the space has one, else a content hash."""
    if hasattr(space, "index"):
        return f"{space.name}-{space.index(arch)}"
    return f"{space.name}-{hashlib.sha256(arch.encode()).hexdigest()[:10]}"


def export_arch(arch: str, *, space_name: str, formats: list[str], out: Path, device: DeviceConfig | None = None,
                run: str | None = None, tensorrt_precision: str = "fp32",
                target_preset: str | None = None) -> dict[str, Any]:
    """Export one architecture; the reply names each artifact and its difference to PyTorch."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise BadInput(f"--format {','.join(formats)!r}: choose from {', '.join(FORMATS)}")
    space = get_space(space_name)
    arch = space.canonical(arch)
    if "tensorrt" in formats and device is None:
        raise BadInput("--format tensorrt needs --device: engines are built on the board that runs them")
    from exporters.onnx import export_onnx

    out.mkdir(parents=True, exist_ok=True)
    stem = arch_stem(space, arch)
    if device is not None:
        stem = f"{device.name}-{stem}"
    model = build_model(space, arch, run)
    shape = tuple(space.input_shape(arch))
    onnx_res = export_onnx(model, shape, out / f"{stem}.onnx", meta={"space": space.name, "arch": arch,
                                                                     "weights": run or "untrained"})
    doc: dict[str, Any] = {"arch": arch, "max_abs_diff": {}}
    if "onnx" in formats:
        doc["onnx"] = str(onnx_res.path)
        doc["max_abs_diff"]["onnx"] = onnx_res.max_abs_diff
    if "tvm" in formats:
        from exporters.targets import resolve_target
        from exporters.tvm import compile_tvm

        target = resolve_target(device.target if device else None, target_preset)
        tvm_res = compile_tvm(onnx_res.path, target, out, name=f"{stem}-tvm")
        doc["tvm"] = str(tvm_res.path)
        doc["max_abs_diff"]["tvm"] = tvm_res.max_abs_diff
    if "tensorrt" in formats:
        from exporters.tensorrt import build_on_board
        from profilers.connection import open_connection

        with open_connection(device) as conn:
            trt = build_on_board(conn, onnx_res.path, tensorrt_precision, out_dir=out,
                                 workdir=f"{device.workdir.rstrip('/')}/engines", name=f"{stem}-trt")
        doc["tensorrt"] = str(trt.path)
        doc["max_abs_diff"]["tensorrt"] = trt.max_abs_diff
    if "onnx" not in formats:
        onnx_res.path.unlink(missing_ok=True)
        Path(str(onnx_res.path) + ".json").unlink(missing_ok=True)
    return doc
