"""MODNAS search: hypernetwork over preferences and devices, MGD, supernet, read-out.

Names are imported lazily so ``import modnas.toolkit.search`` does no work.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "run_search": "modnas.toolkit.search.api",
    "search": "modnas.toolkit.search.api",
    "resolve_devices": "modnas.toolkit.search.api",
    "load_run": "modnas.toolkit.search.run",
    "default_run_path": "modnas.toolkit.search.run",
    "SearchConfig": "modnas.toolkit.search.run",
    "Run": "modnas.toolkit.search.run",
    "pareto": "modnas.toolkit.search.readout",
    "select": "modnas.toolkit.search.readout",
    "preference_grid": "modnas.toolkit.search.preferences",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'modnas.toolkit.search' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
