"""Preference vectors on the simplex: how the read-out and the training loop spread their trade-offs."""
from __future__ import annotations

import itertools
import math

import numpy as np

from modnas.toolkit.errors import BadInput


def preference_grid(n_objectives: int, count: int) -> np.ndarray:
    """``count`` preferences on the simplex. Two objectives: ``(cos th, sin th)`` with th evenly
    spaced strictly inside (0, pi/2), renormalised to sum 1. More: the largest even simplex grid
    (interior-shifted) with at most ``count`` points."""
    if count < 1:
        raise BadInput("preferences must be at least 1")
    if n_objectives == 2:
        th = np.linspace(0.0, math.pi / 2, count + 2)[1:-1]
        r = np.stack([np.cos(th), np.sin(th)], axis=1)
        return r / r.sum(axis=1, keepdims=True)
    h = 1
    while math.comb(h + 1 + n_objectives - 1, n_objectives - 1) <= count:
        h += 1
    pts = [c for c in itertools.product(range(h + 1), repeat=n_objectives) if sum(c) == h]
    grid = (np.asarray(pts, dtype=np.float64) + 0.05) / (h + 0.05 * n_objectives)
    return grid
