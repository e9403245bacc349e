"""Inference runtimes on the board, registered by name and imported only when asked for."""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Dict, Iterable, Optional

# name -> module (relative to this package); every module has NAME, available(), version(), load(...)
RUNTIMES = {
    "onnxruntime": ".onnxruntime",
    "tvm": ".tvm",
    "tensorrt": ".tensorrt",
    "executorch": ".executorch",
}


class UnknownRuntime(ValueError):
    """The name is not in RUNTIMES."""


def get_runtime(name: str) -> ModuleType:
    """The runtime module for a registered name (ImportError if its module cannot be imported)."""
    if name not in RUNTIMES:
        raise UnknownRuntime("unknown runtime %r (known: %s)" % (name, ", ".join(sorted(RUNTIMES))))
    return importlib.import_module(RUNTIMES[name], package=__name__)


def available_runtimes(names: Optional[Iterable[str]] = None) -> Dict[str, dict]:
    """For each runtime asked for (default: all registered): whether it can run here, and its version or why not.

    Checking imports the runtime, which can take seconds (TVM): ask only for the ones you need.
    """
    report = {}
    for name in sorted(RUNTIMES) if names is None else list(names):
        if name not in RUNTIMES:
            report[name] = {"available": False, "detail": "unknown runtime (known: %s)" % ", ".join(sorted(RUNTIMES))}
            continue
        try:
            ok, detail = get_runtime(name).available()
        except Exception as exc:  # a broken runtime module must not hide the others
            ok, detail = False, "cannot load the %s module: %s" % (name, _one_line(exc))
        report[name] = {"available": bool(ok), "detail": str(detail)}
    return report


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return "%s: %s" % (type(exc).__name__, text[0]) if text else type(exc).__name__
