"""Hardware embeddings: a device's measured cost of the space's reference architectures.

The embedding is the vector of the reference measurements, min-max scaled to [0, 1] within the
vector. It is scale-free: absolute values come from calibration (``modnas.toolkit.prediction.calibration``).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modnas.toolkit.errors import BadInput


def reference_values(values: Mapping[str, float] | Sequence[float] | np.ndarray, space: Any,
                     references: Sequence[str] | None = None) -> np.ndarray:
    """The raw measurements of the reference architectures, in reference order.

    ``values`` is either ``{arch: value}`` (any string form the space parses; extra
    architectures are ignored) or a sequence in the order of ``space.reference_archs()``.
    """
    refs = list(references) if references is not None else list(space.reference_archs())
    if isinstance(values, Mapping):
        canon: dict[str, float] = {}
        for arch, v in values.items():
            canon[space.canonical(arch)] = v
        missing = [a for a in (space.canonical(r) for r in refs) if a not in canon]
        if missing:
            raise BadInput(f"{len(missing)} of {len(refs)} reference architectures of {space.name} have no "
                           f"measurement (first missing: {missing[0]}); run `modnas onboard` or `modnas import`")
        raw = [canon[space.canonical(r)] for r in refs]
    else:
        raw = list(values)
        if len(raw) != len(refs):
            raise BadInput(f"expected {len(refs)} reference values for {space.name}, got {len(raw)}")
    out = np.empty(len(raw), dtype=np.float64)
    for i, v in enumerate(raw):
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise BadInput(f"reference value {i} ({v!r}) is not a number") from None
        if not math.isfinite(x) or x <= 0:
            raise BadInput(f"reference value {i} must be positive and finite, got {x}")
        out[i] = x
    return out


def minmax(raw: np.ndarray) -> np.ndarray:
    """Scale a vector (or each row of a matrix) to [0, 1] by its own min and max."""
    arr = np.asarray(raw, dtype=np.float64)
    lo = arr.min(axis=-1, keepdims=True)
    span = arr.max(axis=-1, keepdims=True) - lo
    if np.any(span <= 0):
        raise BadInput("all reference values are equal; the hardware embedding needs some spread")
    return (arr - lo) / span


def hardware_embedding(values: Mapping[str, float] | Sequence[float] | np.ndarray, space: Any,
                       references: Sequence[str] | None = None) -> np.ndarray:
    """The min-max scaled reference measurements of one device (float32, one entry per reference)."""
    return minmax(reference_values(values, space, references)).astype(np.float32)
