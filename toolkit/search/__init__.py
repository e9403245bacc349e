"""MODNAS search: hypernetwork over preferences and devices, MGD, supernet, read-out.

Names are imported lazily so ``import toolkit.search`` does no work.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "run_search": "toolkit.search.api",
    "search": "toolkit.search.api",
    "resolve_devices": "toolkit.search.api",
    "load_run": "toolkit.search.run",
    "default_run_path": "toolkit.search.run",
    "SearchConfig": "toolkit.search.run",
    "Run": "toolkit.search.run",
    "pareto": "toolkit.search.readout",
    "select": "toolkit.search.readout",
    "preference_grid": "toolkit.search.readout",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'toolkit.search' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
