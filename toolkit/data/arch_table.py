"""A measured table keyed by architecture string: devices (settings) x architectures for one metric."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modnas.toolkit.errors import BadInput


@dataclass
class ArchTable:
    """Settings x architectures for one metric; column ``j`` is ``archs[j]``, NaN where not measured."""

    keys: list[str]
    archs: list[str]
    values: np.ndarray  # [n_devices, n_archs] float64
    digest: str
    metric: str = "latency"

    def row(self, key: str) -> np.ndarray:
        if key not in self.keys:
            raise BadInput(f"unknown device {key!r} in the {self.metric} table ({', '.join(self.keys)})")
        return self.values[self.keys.index(key)]

    def values_by_arch(self, key: str) -> dict[str, float]:
        """``{arch: value}`` of one device (measured entries only)."""
        row = self.row(key)
        return {a: float(v) for a, v in zip(self.archs, row) if np.isfinite(v)}

    def subset(self, keys: list[str]) -> "ArchTable":
        rows = [self.keys.index(k) for k in keys]
        return ArchTable(list(keys), list(self.archs), self.values[rows].copy(), self.digest, self.metric)


def read_wide_csv(path: str | Path, metric: str, canonical: object = None) -> ArchTable:
    """A CSV with an ``arch`` column and one column per device (``arch,<key>,<key>...``); values that are
    not positive and finite become NaN; ``canonical`` (a function) rewrites each architecture string."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise BadInput(f"table {str(p)!r} not found")
    frame = pd.read_csv(p)
    if "arch" not in frame.columns or len(frame.columns) < 2:
        raise BadInput(f"table {str(p)!r} needs an 'arch' column and at least one device column")
    archs = [str(a) for a in frame["arch"]]
    if callable(canonical):
        archs = [canonical(a) for a in archs]
    keys = [str(c) for c in frame.columns if c != "arch"]
    values = frame[keys].to_numpy(np.float64).T.copy()
    values[~(np.isfinite(values) & (values > 0))] = np.nan
    return ArchTable(keys, archs, values, hashlib.sha256(p.read_bytes()).hexdigest(), metric)
