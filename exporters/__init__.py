"""Exporters registered by format name, each imported only when asked for.

``EXPORTERS[fmt]`` is ``"module:function"``; :func:`get_exporter` returns the function:
``onnx`` -> ``export_onnx(model, input_shape, path, check=True)``,
``tvm`` -> ``compile_tvm(onnx_path, target, out_dir, *, name=None)``,
``tensorrt`` -> ``build_on_board(connection, onnx_local, precision, ...)`` (engines are built on the board),
``executorch`` -> ``export_executorch(model, input_shape, path, check=True)`` (an XNNPACK-delegated ``.pte``).
"""
from __future__ import annotations

from importlib import import_module
from typing import Callable

from modnas.exporters.result import ExportMismatch, ExportResult
from modnas.profilers.errors import BadInput

EXPORTERS: dict[str, str] = {
    "onnx": "modnas.exporters.onnx:export_onnx",
    "tvm": "modnas.exporters.tvm:compile_tvm",
    "tensorrt": "modnas.exporters.tensorrt:build_on_board",
    "executorch": "modnas.exporters.executorch:export_executorch",
}


def get_exporter(fmt: str) -> Callable[..., ExportResult]:
    """The export function registered for ``fmt`` (BadInput naming the known formats otherwise)."""
    if fmt not in EXPORTERS:
        raise BadInput(f"unknown export format {fmt!r}; known: {', '.join(sorted(EXPORTERS))}")
    module, func = EXPORTERS[fmt].split(":")
    return getattr(import_module(module), func)


__all__ = ["EXPORTERS", "ExportMismatch", "ExportResult", "get_exporter"]
